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

/// The frames waiting to go out.
fn transmitted(c: &mut Connection) -> Vec<Frame> {
    std::iter::from_fn(|| c.poll_transmit()).collect()
}

fn events(c: &mut Connection) -> Vec<Event> {
    std::iter::from_fn(|| c.poll_event()).collect()
}

fn final_response(c: &mut Connection, id: StreamId, end_stream: bool, now: Instant) {
    c.handle_frame(
        Response::new(id, ResponseHead::new(200), end_stream).into(),
        now,
    )
    .unwrap();
}

#[test]
fn a_response_deadline_resets_only_a_stream_still_waiting_for_its_head() {
    let (mut c, now) = client();
    let s = std::time::Duration::from_secs(1);
    let a = c.open_stream(head(), true).unwrap();
    let b = c.open_stream(head(), true).unwrap();
    let d = c.open_stream(head(), true).unwrap();
    c.set_response_deadline(a, now + s);
    c.set_response_deadline(b, now + 2 * s);
    c.set_response_deadline(d, now + 3 * s);
    transmitted(&mut c);
    assert_eq!(c.poll_timeout(), Some(now + s));
    // Answered: its deadline goes, the next one is the connection's.
    final_response(&mut c, a, false, now);
    assert_eq!(c.poll_timeout(), Some(now + 2 * s));
    // An interim head is not the answer.
    c.handle_frame(Response::new(d, ResponseHead::new(103), false).into(), now)
        .unwrap();
    events(&mut c);
    // Early: nothing fires.
    c.handle_timeout(now + 2 * s - std::time::Duration::from_millis(1));
    assert!(events(&mut c).is_empty());
    assert!(transmitted(&mut c).is_empty());
    c.handle_timeout(now + 2 * s);
    assert_eq!(events(&mut c), vec![Event::ResponseTimeout { id: b }]);
    assert_eq!(
        transmitted(&mut c),
        vec![Frame::Reset(crate::frame::Reset::new(b, Reason::CANCEL))]
    );
    assert!(c.streams.get(b).is_none());
    assert_eq!(c.streams.recent(b), Some(Recent::Reset));
    // The answered stream is untouched, and the interim-only one times out.
    assert_eq!(states(&c, 1), (RecvState::Body, SendState::Done));
    assert_eq!(c.poll_timeout(), Some(now + 3 * s));
    c.handle_timeout(now + 10 * s);
    assert_eq!(events(&mut c), vec![Event::ResponseTimeout { id: d }]);
    assert_eq!(c.poll_timeout(), None);
    // A late RESPONSE for a timed-out stream is ignored, not an error.
    final_response(&mut c, b, true, now + 10 * s);
    assert!(!c.is_closed());
    assert_eq!(states(&c, 1), (RecvState::Body, SendState::Done));
}

#[test]
fn response_deadlines_keep_deadline_order_whatever_order_they_are_set_in() {
    let (mut c, now) = client();
    let s = std::time::Duration::from_secs(1);
    let a = c.open_stream(head(), true).unwrap();
    let b = c.open_stream(head(), true).unwrap();
    c.set_response_deadline(a, now + 5 * s);
    c.set_response_deadline(b, now + 2 * s);
    // A second, earlier deadline for one stream: the earliest applies.
    c.set_response_deadline(a, now + 3 * s);
    assert_eq!(c.poll_timeout(), Some(now + 2 * s));
    c.handle_timeout(now + 2 * s);
    assert_eq!(events(&mut c), vec![Event::ResponseTimeout { id: b }]);
    assert_eq!(c.poll_timeout(), Some(now + 3 * s));
    c.handle_timeout(now + 3 * s);
    assert_eq!(events(&mut c), vec![Event::ResponseTimeout { id: a }]);
    // Its later entry is stale: dropped, nothing more fires.
    c.handle_timeout(now + 5 * s);
    assert!(events(&mut c).is_empty());
    assert!(c.head_deadlines.is_empty());
}

#[test]
fn a_response_deadline_is_ignored_where_it_cannot_apply() {
    let (mut c, now) = client();
    let a = c.open_stream(head(), true).unwrap();
    final_response(&mut c, a, false, now);
    // Already answered; unknown; and on a server.
    c.set_response_deadline(a, now);
    c.set_response_deadline(StreamId::new(99), now);
    assert!(c.head_deadlines.is_empty());
    let (mut srv, now) = server();
    srv.handle_frame(Request::new(StreamId::new(1), head(), true).into(), now)
        .unwrap();
    srv.set_response_deadline(StreamId::new(1), now);
    assert!(srv.head_deadlines.is_empty());
    assert_eq!(srv.poll_timeout(), None);
}

#[test]
fn a_stream_reset_before_its_deadline_leaves_no_timer_behind() {
    let (mut c, now) = client();
    let a = c.open_stream(head(), true).unwrap();
    c.set_response_deadline(a, now + std::time::Duration::from_secs(1));
    c.handle_frame(crate::frame::Reset::new(a, Reason::CANCEL).into(), now)
        .unwrap();
    assert_eq!(c.poll_timeout(), None);
    let b = c.open_stream(head(), true).unwrap();
    c.set_response_deadline(b, now + std::time::Duration::from_secs(1));
    c.reset_stream(b, Reason::CANCEL).unwrap();
    assert_eq!(c.poll_timeout(), None);
}

#[test]
fn response_deadlines_stay_bounded_behind_a_stream_that_is_never_answered() {
    let (mut c, now) = client();
    let s = std::time::Duration::from_secs(1);
    // The first stream waits (a long poll) while 5,000 others come and go
    // behind it, answered out of the deadlines' order.
    let slow = c.open_stream(head(), true).unwrap();
    c.set_response_deadline(slow, now + 60 * s);
    let mut most = 0;
    for i in 0..5_000u32 {
        let id = c.open_stream(head(), true).unwrap();
        c.set_response_deadline(
            id,
            now + 60 * s + std::time::Duration::from_micros(u64::from(i)),
        );
        final_response(&mut c, id, true, now);
        transmitted(&mut c);
        events(&mut c);
        most = most.max(c.head_deadlines.len());
    }
    // Twice the open streams (here at most 2) plus the sweep margin.
    assert!(
        most <= 2 * 2 + super::actions::DEADLINE_SWEEP_MARGIN,
        "{most}"
    );
    assert_eq!(c.poll_timeout(), Some(now + 60 * s));
    c.handle_timeout(now + 61 * s);
    assert_eq!(events(&mut c), vec![Event::ResponseTimeout { id: slow }]);
    assert_eq!(c.poll_timeout(), None);
}

#[test]
fn response_deadlines_go_with_the_connection() {
    let (mut c, now) = client();
    let a = c.open_stream(head(), true).unwrap();
    c.set_response_deadline(a, now + std::time::Duration::from_secs(1));
    c.handle_eof();
    assert!(c.head_deadlines.is_empty());
    assert_eq!(c.poll_timeout(), None);
}

#[test]
fn a_response_timeout_that_ends_a_drain_comes_before_closed() {
    let (mut c, now) = client();
    let a = c.open_stream(head(), true).unwrap();
    c.set_response_deadline(a, now + std::time::Duration::from_secs(1));
    // Draining: the last stream's end closes the connection.
    c.go_away(Reason::NO_ERROR, Bytes::new(), now);
    transmitted(&mut c);
    events(&mut c);
    c.handle_timeout(now + std::time::Duration::from_secs(1));
    assert_eq!(
        events(&mut c),
        vec![
            Event::ResponseTimeout { id: a },
            Event::Closed { error: None }
        ]
    );
    assert!(c.is_closed());
}
