//! Engine-level unit tests that need the private state (stream states,
//! id exhaustion, the recently-closed memory).

use std::time::Instant;

use bytes::Bytes;

use super::stream::{Recent, RecvState, SendState};
use super::{Config, Connection, Event, Role, UserError};
use crate::frame::{
    Data, Frame, Reason, Request, RequestHead, Response, ResponseHead, Settings, StreamId,
};

fn head() -> RequestHead {
    RequestHead {
        method: "GET".into(),
        path: "/".into(),
        ..Default::default()
    }
}

fn client() -> (Connection, Instant) {
    let now = Instant::now();
    let mut c = Connection::new(Role::Client, Config::default(), now);
    c.handle_frame(Settings::default().into(), now).unwrap();
    while c.poll_transmit().is_some() {}
    assert_eq!(c.poll_event(), Some(Event::Ready));
    (c, now)
}

fn server() -> (Connection, Instant) {
    let now = Instant::now();
    let mut s = Connection::new(Role::Server, Config::default(), now);
    s.handle_frame(Settings::default().into(), now).unwrap();
    while s.poll_transmit().is_some() {}
    assert_eq!(s.poll_event(), Some(Event::Ready));
    (s, now)
}

fn states(c: &Connection, id: u32) -> (RecvState, SendState) {
    let s = c.streams.get(StreamId::new(id)).expect("stream open");
    (s.recv, s.send)
}

#[test]
fn client_stream_state_transitions() {
    let (mut c, now) = client();
    let id = c.open_stream(head(), false).unwrap();
    assert_eq!(states(&c, 1), (RecvState::AwaitHead, SendState::Open));
    c.handle_frame(Response::new(id, ResponseHead::new(100), false).into(), now)
        .unwrap();
    assert_eq!(states(&c, 1), (RecvState::AwaitHead, SendState::Open));
    c.handle_frame(Response::new(id, ResponseHead::new(200), false).into(), now)
        .unwrap();
    assert_eq!(states(&c, 1), (RecvState::Body, SendState::Open));
    c.send_data(id, Bytes::from_static(b"abc"), true).unwrap();
    assert_eq!(states(&c, 1), (RecvState::Body, SendState::Ending));
    // END_STREAM leaves with the last DATA frame: half-closed (local).
    while c.poll_transmit().is_some() {}
    assert_eq!(states(&c, 1), (RecvState::Body, SendState::Done));
    c.handle_frame(Data::new(id, Bytes::new(), true).into(), now)
        .unwrap();
    assert!(c.streams.get(id).is_none());
    assert_eq!(c.streams.recent(id), Some(Recent::Closed));
    let evs: Vec<Event> = std::iter::from_fn(|| c.poll_event()).collect();
    assert_eq!(evs.last(), Some(&Event::StreamClosed { id }));
}

#[test]
fn server_stream_state_transitions() {
    let (mut s, now) = server();
    let id = StreamId::new(1);
    s.handle_frame(Request::new(id, head(), true).into(), now)
        .unwrap();
    // The peer's half is already closed: half-closed (remote).
    assert_eq!(states(&s, 1), (RecvState::Closed, SendState::AwaitHead));
    s.send_response(id, ResponseHead::new(103), false).unwrap();
    assert_eq!(states(&s, 1), (RecvState::Closed, SendState::AwaitHead));
    s.send_response(id, ResponseHead::new(200), false).unwrap();
    assert_eq!(states(&s, 1), (RecvState::Closed, SendState::Open));
    s.send_data(id, Bytes::new(), true).unwrap();
    assert_eq!(states(&s, 1), (RecvState::Closed, SendState::Ending));
    let frames: Vec<Frame> = std::iter::from_fn(|| s.poll_transmit()).collect();
    assert!(
        matches!(frames.last(), Some(Frame::Data(d)) if d.is_end_stream() && d.payload().is_empty())
    );
    assert!(s.streams.get(id).is_none());
    assert_eq!(s.active_streams(), 0);
}

#[test]
fn reset_closes_both_halves() {
    let (mut s, now) = server();
    let id = StreamId::new(1);
    s.handle_frame(Request::new(id, head(), false).into(), now)
        .unwrap();
    s.handle_frame(crate::frame::Reset::new(id, Reason::CANCEL).into(), now)
        .unwrap();
    assert!(s.streams.get(id).is_none());
    assert_eq!(s.streams.recent(id), Some(Recent::Reset));
    assert_eq!(
        s.send_response(id, ResponseHead::new(200), true),
        Err(UserError::UnknownStream(id))
    );
}

#[test]
fn stream_ids_exhaust_at_2_pow_31() {
    let (mut c, _) = client();
    c.next_stream_id = u64::from(StreamId::MAX.get()) - 2;
    assert!(c.can_open_stream());
    assert_eq!(c.open_stream(head(), true), Ok(StreamId::new(0x7FFF_FFFD)));
    assert!(c.can_open_stream());
    assert_eq!(c.open_stream(head(), true), Ok(StreamId::MAX));
    assert!(!c.can_open_stream());
    assert_eq!(
        c.open_stream(head(), true),
        Err(UserError::StreamIdsExhausted)
    );
}

#[test]
fn sanitized_config_never_panics() {
    let mut cfg = Config::default();
    cfg.initial_stream_window(0)
        .initial_connection_window(u32::MAX)
        .ping_timeout(std::time::Duration::ZERO);
    cfg.limits.max_frame_size = 0;
    let now = Instant::now();
    let mut c = Connection::new(Role::Client, cfg, now);
    match c.poll_transmit() {
        Some(Frame::Settings(s)) => assert_eq!(s.validate(), Ok(())),
        f => panic!("{f:?}"),
    }
}
