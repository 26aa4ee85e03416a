//! A client and a server `Connection` driven against each other in memory,
//! with a fake clock. Every frame goes through real bytes: `Frame::encode`
//! on the sending side, `Codec::without_preface` on the receiving side.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use uwire::codec::Codec;
use uwire::conn::{
    Config, ConnError, ConnErrorClass, Connection, Event, Role, UserError, MAX_WINDOW,
};
use uwire::frame::Limits;
use uwire::frame::{
    Frame, GoAway, HeaderBlock, Ping, Reason, Request, RequestHead, Response, ResponseHead,
    Settings, StreamId, WindowUpdate,
};

type Filter = Box<dyn FnMut(Frame) -> Option<Frame>>;

struct Side {
    conn: Connection,
    codec: Codec,
    inbuf: BytesMut,
    /// Every frame this side transmitted (before any filter).
    sent: Vec<Frame>,
    events: Vec<Event>,
    errors: Vec<ConnError>,
    /// Release received DATA as soon as it is delivered.
    auto_release: bool,
    /// Delivered and not yet released, per stream.
    held: HashMap<StreamId, usize>,
    /// Body bytes received, per stream.
    bodies: HashMap<StreamId, Vec<u8>>,
}

impl Side {
    fn new(role: Role, config: Config, now: Instant) -> Side {
        Side {
            codec: Codec::without_preface(config.limits),
            conn: Connection::new(role, config, now),
            inbuf: BytesMut::new(),
            sent: Vec::new(),
            events: Vec::new(),
            errors: Vec::new(),
            auto_release: true,
            held: HashMap::new(),
            bodies: HashMap::new(),
        }
    }

    fn drain_events(&mut self) {
        while let Some(ev) = self.conn.poll_event() {
            if let Event::Data { id, data, .. } = &ev {
                self.bodies.entry(*id).or_default().extend_from_slice(data);
                if self.auto_release {
                    self.conn.release_capacity(*id, data.len());
                } else {
                    *self.held.entry(*id).or_default() += data.len();
                }
            }
            self.events.push(ev);
        }
    }

    fn release(&mut self, id: StreamId, n: usize) {
        let h = self.held.entry(id).or_default();
        let n = n.min(*h);
        *h -= n;
        self.conn.release_capacity(id, n);
    }

    fn release_all(&mut self) {
        let held: Vec<(StreamId, usize)> = self.held.drain().collect();
        for (id, n) in held {
            self.conn.release_capacity(id, n);
        }
    }

    fn total_held(&self) -> usize {
        self.held.values().sum()
    }

    fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    fn resets(&self) -> Vec<(StreamId, Reason, bool)> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::StreamReset { id, reason, remote } => Some((*id, *reason, *remote)),
                _ => None,
            })
            .collect()
    }

    /// The `last_stream_id` of every GOAWAY received, in order.
    fn goaways(&self) -> Vec<StreamId> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::GoAway { last_stream_id, .. } => Some(*last_stream_id),
                _ => None,
            })
            .collect()
    }

    fn closed_error(&self) -> Option<Option<ConnError>> {
        self.events.iter().find_map(|e| match e {
            Event::Closed { error } => Some(error.clone()),
            _ => None,
        })
    }

    fn sent_goaway(&self) -> Option<GoAway> {
        self.sent.iter().rev().find_map(|f| match f {
            Frame::GoAway(g) => Some(g.clone()),
            _ => None,
        })
    }

    fn sent_resets(&self) -> Vec<(StreamId, Reason)> {
        self.sent
            .iter()
            .filter_map(|f| match f {
                Frame::Reset(r) => Some((r.stream_id(), r.reason())),
                _ => None,
            })
            .collect()
    }

    fn count_sent(&self, pred: impl Fn(&Frame) -> bool) -> usize {
        self.sent.iter().filter(|f| pred(f)).count()
    }
}

struct Pair {
    c: Side,
    s: Side,
    base: Instant,
    elapsed: Duration,
    c2s_filter: Option<Filter>,
    s2c_filter: Option<Filter>,
}

impl Pair {
    fn new(client: Config, server: Config) -> Pair {
        let base = Instant::now();
        Pair {
            c: Side::new(Role::Client, client, base),
            s: Side::new(Role::Server, server, base),
            base,
            elapsed: Duration::ZERO,
            c2s_filter: None,
            s2c_filter: None,
        }
    }

    /// A pair that has exchanged SETTINGS (events cleared).
    fn ready(client: Config, server: Config) -> Pair {
        let mut p = Pair::new(client, server);
        p.pump();
        assert_eq!(p.c.take_events(), vec![Event::Ready]);
        assert_eq!(p.s.take_events(), vec![Event::Ready]);
        p
    }

    fn default_ready() -> Pair {
        Pair::ready(Config::default(), Config::default())
    }

    fn now(&self) -> Instant {
        self.base + self.elapsed
    }

    /// Advances the fake clock and fires both sides' timers.
    fn advance(&mut self, d: Duration) {
        self.elapsed += d;
        let now = self.now();
        self.c.conn.handle_timeout(now);
        self.s.conn.handle_timeout(now);
        self.c.drain_events();
        self.s.drain_events();
    }

    /// Encodes `frame` and feeds the bytes to one side through its codec.
    fn deliver(&mut self, to_server: bool, frame: &Frame) {
        let mut buf = BytesMut::new();
        frame.encode(&mut buf).expect("encode");
        self.deliver_bytes(to_server, &buf);
    }

    fn deliver_bytes(&mut self, to_server: bool, bytes: &[u8]) {
        let now = self.now();
        let side = if to_server { &mut self.s } else { &mut self.c };
        side.inbuf.extend_from_slice(bytes);
        loop {
            match side.codec.decode_frame(&mut side.inbuf) {
                Ok(Some(f)) => {
                    if let Err(e) = side.conn.handle_frame(f, now) {
                        side.errors.push(e);
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    side.conn.handle_decode_error(&e);
                    break;
                }
            }
        }
        side.drain_events();
    }

    /// Moves one frame in one direction. Returns whether one was sent.
    fn step(&mut self, from_client: bool) -> bool {
        let sender = if from_client {
            &mut self.c
        } else {
            &mut self.s
        };
        let Some(f) = sender.conn.poll_transmit() else {
            return false;
        };
        sender.sent.push(f.clone());
        sender.drain_events();
        let filter = if from_client {
            &mut self.c2s_filter
        } else {
            &mut self.s2c_filter
        };
        let f = match filter {
            Some(filt) => filt(f),
            None => Some(f),
        };
        if let Some(f) = f {
            self.deliver(from_client, &f);
        }
        true
    }

    /// Moves frames both ways until both sides are quiet.
    fn pump(&mut self) {
        for _ in 0..10_000_000 {
            let a = self.step(true);
            let b = self.step(false);
            if !a && !b {
                return;
            }
        }
        panic!("pump did not settle");
    }

    /// Feeds a hand-made frame to the server (as if from the client).
    fn inject_to_server(&mut self, f: Frame) {
        self.deliver(true, &f);
    }

    /// Feeds a hand-made frame to the client (as if from the server).
    fn inject_to_client(&mut self, f: Frame) {
        self.deliver(false, &f);
    }
}

fn get(path: &str) -> RequestHead {
    RequestHead {
        method: "GET".into(),
        path: Bytes::copy_from_slice(path.as_bytes()),
        ..Default::default()
    }
}

fn post(path: &str) -> RequestHead {
    RequestHead {
        method: "POST".into(),
        ..get(path)
    }
}

fn sid(n: u32) -> StreamId {
    StreamId::new(n)
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(31).wrapping_add(seed as u32) as u8)
        .collect()
}

fn small_windows() -> Config {
    let mut c = Config::default();
    let mut l = Limits::default();
    l.max_frame_size(16 * 1024);
    c.limits(l)
        .initial_stream_window(64 * 1024)
        .initial_connection_window(128 * 1024);
    c
}

// ----------------------------------------------------------------------
// Settings and basic exchange
// ----------------------------------------------------------------------

#[test]
fn settings_exchange_makes_both_sides_ready() {
    let mut p = Pair::new(Config::default(), small_windows());
    assert!(!p.c.conn.is_ready());
    assert!(!p.c.conn.can_open_stream());
    assert_eq!(
        p.c.conn.open_stream(get("/"), true),
        Err(UserError::NotReady)
    );
    // The first frame each side transmits is its SETTINGS.
    assert!(p.c.conn.has_pending_transmit());
    p.pump();
    assert!(matches!(p.c.sent[0], Frame::Settings(_)));
    assert!(matches!(p.s.sent[0], Frame::Settings(_)));
    assert_eq!(p.c.events, vec![Event::Ready]);
    assert_eq!(p.s.events, vec![Event::Ready]);
    assert!(p.c.conn.is_ready() && p.s.conn.is_ready());
    assert!(p.c.conn.can_open_stream());
    assert!(!p.s.conn.can_open_stream(), "servers never open streams");
    let ps = p.c.conn.peer_settings().unwrap();
    assert_eq!(ps.initial_stream_window, Some(64 * 1024));
    assert_eq!(ps.max_frame_size, Some(16 * 1024));
    assert_eq!(p.c.conn.poll_timeout(), None, "no timers once ready");
    assert!(!p.c.conn.has_pending_transmit());
}

#[test]
fn request_and_response_with_bodies() {
    let mut p = Pair::default_ready();
    let id = p.c.conn.open_stream(post("/upload"), false).unwrap();
    assert_eq!(id, sid(1));
    p.c.conn.send_data(id, "hello ".into(), false).unwrap();
    p.c.conn.send_data(id, "world".into(), true).unwrap();
    assert_eq!(
        p.c.conn.send_data(id, "more".into(), false),
        Err(UserError::SendClosed(id))
    );
    p.pump();
    match &p.s.events[0] {
        Event::Request {
            id: rid,
            head,
            end_stream,
        } => {
            assert_eq!(*rid, id);
            assert_eq!(&head.path[..], b"/upload");
            assert!(!end_stream);
        }
        e => panic!("{e:?}"),
    }
    assert_eq!(p.s.bodies[&id], b"hello world");
    assert!(matches!(
        p.s.events.last(),
        Some(Event::Data {
            end_stream: true,
            ..
        })
    ));
    assert_eq!(
        p.s.conn.send_data(id, "x".into(), true),
        Err(UserError::ResponseNotSent(id))
    );
    p.s.conn
        .send_response(id, ResponseHead::new(201), false)
        .unwrap();
    p.s.conn.send_data(id, "created".into(), true).unwrap();
    p.pump();
    assert!(matches!(
        &p.c.events[0],
        Event::Response { head, end_stream: false, .. } if head.status == 201
    ));
    assert_eq!(p.c.bodies[&id], b"created");
    assert!(p.c.events.contains(&Event::StreamClosed { id }));
    assert!(p.s.events.contains(&Event::StreamClosed { id }));
    assert_eq!(p.c.conn.active_streams(), 0);
    assert_eq!(p.s.conn.active_streams(), 0);
    assert_eq!(
        p.s.conn.send_data(id, "late".into(), true),
        Err(UserError::UnknownStream(id))
    );
}

#[test]
fn head_only_exchange_closes_stream() {
    let mut p = Pair::default_ready();
    let id = p.c.conn.open_stream(get("/"), true).unwrap();
    p.pump();
    assert!(matches!(
        p.s.take_events()[..],
        [Event::Request {
            end_stream: true,
            ..
        }]
    ));
    p.s.conn
        .send_response(id, ResponseHead::new(204), true)
        .unwrap();
    assert!(p.s.events.is_empty());
    p.s.drain_events();
    assert_eq!(p.s.events, vec![Event::StreamClosed { id }]);
    p.pump();
    assert_eq!(p.c.events.len(), 2);
    assert_eq!(p.c.events[1], Event::StreamClosed { id });
}

#[test]
fn more_than_100_concurrent_streams() {
    let mut server = Config::default();
    server.max_concurrent_streams(200);
    let mut p = Pair::ready(Config::default(), server);
    let mut ids = Vec::new();
    for i in 0..150u32 {
        let id = p.c.conn.open_stream(post(&format!("/{i}")), false).unwrap();
        p.c.conn
            .send_data(id, Bytes::from(pattern(1000 + i as usize, i as u8)), true)
            .unwrap();
        ids.push(id);
    }
    assert_eq!(p.c.conn.active_streams(), 150);
    p.pump();
    assert_eq!(p.s.conn.active_streams(), 150);
    let requests: Vec<StreamId> =
        p.s.events
            .iter()
            .filter_map(|e| match e {
                Event::Request { id, .. } => Some(*id),
                _ => None,
            })
            .collect();
    assert_eq!(requests, ids);
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(p.s.bodies[id], pattern(1000 + i, i as u8));
        p.s.conn
            .send_response(*id, ResponseHead::new(200), false)
            .unwrap();
        p.s.conn
            .send_data(*id, Bytes::from(pattern(500 + i, i as u8 ^ 0x55)), true)
            .unwrap();
    }
    p.pump();
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(p.c.bodies[id], pattern(500 + i, i as u8 ^ 0x55));
    }
    let closed = |s: &Side| {
        s.events
            .iter()
            .filter(|e| matches!(e, Event::StreamClosed { .. }))
            .count()
    };
    assert_eq!(closed(&p.c), 150);
    assert_eq!(closed(&p.s), 150);
    assert_eq!(p.c.conn.active_streams(), 0);
    assert_eq!(p.s.conn.active_streams(), 0);
}

// ----------------------------------------------------------------------
// Flow control
// ----------------------------------------------------------------------

#[test]
fn large_body_through_small_windows_never_exceeds_window() {
    const BODY: usize = 10 * 1024 * 1024;
    let server = small_windows();
    let stream_window = server.initial_stream_window as usize;
    let conn_window = server.initial_connection_window as usize;
    let mut p = Pair::ready(Config::default(), server);
    p.s.auto_release = false;
    let body = pattern(BODY, 7);
    let id = p.c.conn.open_stream(post("/big"), false).unwrap();
    for chunk in body.chunks(1024 * 1024) {
        p.c.conn
            .send_data(id, Bytes::copy_from_slice(chunk), false)
            .unwrap();
    }
    p.c.conn.send_data(id, Bytes::new(), true).unwrap();
    assert_eq!(p.c.conn.send_buffered(id), BODY);
    let mut tick = 0u32;
    let mut stalls = 0;
    while p.s.bodies.get(&id).is_none_or(|b| b.len() != BODY) {
        let moved = p.step(true) | p.step(false);
        // The receiver never holds more than it granted.
        let held = p.s.held.get(&id).copied().unwrap_or(0);
        assert!(held <= stream_window, "held {held} > stream window");
        assert!(p.s.total_held() <= conn_window);
        // A slow application: releases odd-sized pieces now and then.
        tick += 1;
        if tick % 3 == 0 {
            p.s.release(id, 5000);
        }
        if !moved {
            stalls += 1;
            assert!(stalls < 100_000, "transfer stalled");
            p.s.release_all();
        }
        for f in p.c.sent.drain(..) {
            if let Frame::Data(d) = f {
                assert!(d.payload().len() <= 16 * 1024, "split at max_frame_size");
            }
        }
    }
    assert_eq!(p.s.bodies[&id], body);
    assert!(
        p.s.count_sent(|f| matches!(f, Frame::WindowUpdate(w) if !w.stream_id().is_zero())) > 10
    );
    assert!(
        p.s.count_sent(|f| matches!(f, Frame::WindowUpdate(w) if w.stream_id().is_zero())) > 10
    );
    assert_eq!(p.c.conn.send_buffered(id), 0);
}

#[test]
fn release_capacity_drives_window_updates() {
    let mut server = Config::default();
    server.initial_stream_window(64 * 1024);
    let mut p = Pair::ready(Config::default(), server);
    p.s.auto_release = false;
    let id = p.c.conn.open_stream(post("/"), false).unwrap();
    p.c.conn
        .send_data(id, Bytes::from(vec![1u8; 40 * 1024]), false)
        .unwrap();
    p.pump();
    assert_eq!(p.s.held[&id], 40 * 1024);
    assert_eq!(p.c.conn.send_window(id), 24 * 1024);
    let wus = |s: &Side| -> Vec<(u32, u32)> {
        s.sent
            .iter()
            .filter_map(|f| match f {
                Frame::WindowUpdate(w) => Some((w.stream_id().get(), w.increment())),
                _ => None,
            })
            .collect()
    };
    assert_eq!(wus(&p.s), vec![], "nothing released yet");
    // Below half the window: batched, nothing sent.
    p.s.release(id, 20_000);
    p.pump();
    assert_eq!(wus(&p.s), vec![]);
    // Half the window (32 KiB) released: one update.
    p.s.release(id, 12_768);
    p.pump();
    assert_eq!(wus(&p.s), vec![(1, 32 * 1024)]);
    assert_eq!(p.c.conn.send_window(id), 56 * 1024);
    // Exhaust the window; then any release is returned at once.
    p.c.conn
        .send_data(id, Bytes::from(vec![2u8; 100 * 1024]), false)
        .unwrap();
    p.pump();
    assert_eq!(p.s.held[&id], 64 * 1024);
    assert_eq!(p.c.conn.send_window(id), 0);
    assert_eq!(p.c.conn.send_buffered(id), 100 * 1024 - 56 * 1024);
    p.s.release(id, 1000);
    p.pump();
    assert_eq!(wus(&p.s), vec![(1, 32 * 1024), (1, 1000)]);
    assert_eq!(p.s.held[&id], 64 * 1024, "the 1000 bytes came right back");
    assert_eq!(p.c.conn.send_buffered(id), 100 * 1024 - 56 * 1024 - 1000);
}

#[test]
fn ignored_data_is_credited_to_the_connection() {
    let mut server = Config::default();
    server.initial_connection_window(100_000);
    let mut p = Pair::ready(Config::default(), server);
    let a = p.c.conn.open_stream(post("/"), false).unwrap();
    p.c.conn
        .send_data(a, Bytes::from(vec![0u8; 60_000]), true)
        .unwrap();
    assert!(p.step(true), "REQUEST");
    assert!(matches!(p.s.events[..], [Event::Request { .. }]));
    // The server resets before the body arrives; the body is in flight.
    p.s.conn.reset_stream(a, Reason::CANCEL).unwrap();
    assert!(p.step(true), "DATA for the reset stream");
    assert!(p.s.bodies.is_empty(), "ignored");
    p.pump();
    assert_eq!(p.s.sent_resets(), vec![(a, Reason::CANCEL)]);
    assert_eq!(
        p.s.count_sent(|f| matches!(f, Frame::WindowUpdate(w)
            if w.stream_id().is_zero() && w.increment() == 60_000)),
        1
    );
    let b = p.c.conn.open_stream(post("/"), false).unwrap();
    assert_eq!(p.c.conn.send_window(b), 100_000);
    assert!(p.s.errors.is_empty() && p.c.errors.is_empty());
}

#[test]
fn release_after_close_credits_connection() {
    let mut client = Config::default();
    client.initial_connection_window(64 * 1024);
    let mut p = Pair::ready(client, Config::default());
    p.c.auto_release = false;
    let id = p.c.conn.open_stream(get("/"), true).unwrap();
    p.pump();
    p.s.conn
        .send_response(id, ResponseHead::new(200), false)
        .unwrap();
    p.s.conn
        .send_data(id, Bytes::from(vec![0u8; 40_000]), true)
        .unwrap();
    p.pump();
    assert!(p.c.events.contains(&Event::StreamClosed { id }));
    assert_eq!(p.s.conn.send_window(sid(1)), 0, "stream gone");
    // A second stream is limited by the connection window (64K - 40000).
    let id2 = p.c.conn.open_stream(get("/"), true).unwrap();
    p.pump();
    assert_eq!(p.s.conn.send_window(id2), 64 * 1024 - 40_000);
    p.c.release_all();
    p.pump();
    assert_eq!(p.s.conn.send_window(id2), 64 * 1024);
}

#[test]
fn peer_max_concurrent_streams_is_honoured_by_the_client() {
    let mut server = Config::default();
    server.max_concurrent_streams(2);
    let mut p = Pair::ready(Config::default(), server);
    let a = p.c.conn.open_stream(get("/a"), true).unwrap();
    let _b = p.c.conn.open_stream(get("/b"), true).unwrap();
    assert!(!p.c.conn.can_open_stream());
    assert_eq!(
        p.c.conn.open_stream(get("/c"), true),
        Err(UserError::StreamLimit { max: 2 })
    );
    p.pump();
    p.s.conn
        .send_response(a, ResponseHead::new(200), true)
        .unwrap();
    p.pump();
    assert!(p.c.conn.can_open_stream());
    assert_eq!(p.c.conn.open_stream(get("/c"), true), Ok(sid(5)));
}

#[test]
fn server_refuses_streams_over_its_limit() {
    let mut server = Config::default();
    server.max_concurrent_streams(1);
    let mut p = Pair::new(Config::default(), server);
    // The client is told the server allows 10 streams: it will overrun.
    p.s2c_filter = Some(Box::new(|f| match f {
        Frame::Settings(s) => Some(Frame::Settings(Settings {
            max_concurrent_streams: Some(10),
            ..s
        })),
        f => Some(f),
    }));
    p.pump();
    p.c.take_events();
    p.s.take_events();
    let ids: Vec<StreamId> = (0..3)
        .map(|_| p.c.conn.open_stream(post("/"), false).unwrap())
        .collect();
    for id in &ids {
        p.c.conn.send_data(*id, "body".into(), true).unwrap();
    }
    p.pump();
    assert_eq!(
        p.s.sent_resets(),
        vec![
            (sid(3), Reason::REFUSED_STREAM),
            (sid(5), Reason::REFUSED_STREAM)
        ]
    );
    assert_eq!(
        p.c.resets(),
        vec![
            (sid(3), Reason::REFUSED_STREAM, true),
            (sid(5), Reason::REFUSED_STREAM, true)
        ]
    );
    // The app never heard of the refused streams.
    assert!(p.s.resets().is_empty());
    assert_eq!(p.s.bodies.len(), 1);
    assert_eq!(p.s.bodies[&sid(1)], b"body");
    assert_eq!(p.s.conn.active_streams(), 1);
    assert!(p.s.errors.is_empty() && p.c.errors.is_empty());
}

#[test]
fn reset_mid_body_leaves_other_streams_alone() {
    let mut p = Pair::ready(Config::default(), small_windows());
    let a = p.c.conn.open_stream(post("/a"), false).unwrap();
    let b = p.c.conn.open_stream(post("/b"), false).unwrap();
    let body = pattern(1024 * 1024, 3);
    p.c.conn
        .send_data(a, Bytes::from(body.clone()), true)
        .unwrap();
    p.c.conn
        .send_data(b, Bytes::from(body.clone()), true)
        .unwrap();
    for _ in 0..20 {
        p.step(true);
        p.step(false);
    }
    assert!(p.s.bodies[&a].len() < body.len());
    // Some DATA for `a` is in flight when it is reset: the server ignores it
    // but credits the connection window, or `b` would stall.
    p.c.conn.send_data(a, Bytes::new(), false).unwrap_err();
    p.c.conn.reset_stream(a, Reason::CANCEL).unwrap();
    assert_eq!(
        p.c.conn.reset_stream(a, Reason::CANCEL),
        Err(UserError::UnknownStream(a))
    );
    p.pump();
    assert_eq!(p.s.resets(), vec![(a, Reason::CANCEL, true)]);
    assert!(p.c.resets().is_empty(), "no event for our own reset");
    assert_eq!(p.s.bodies[&b], body);
    assert!(p.s.errors.is_empty() && p.c.errors.is_empty());
    // Server-side reset while the client is still sending.
    let c = p.c.conn.open_stream(post("/c"), false).unwrap();
    p.c.conn
        .send_data(c, Bytes::from(body.clone()), true)
        .unwrap();
    for _ in 0..6 {
        p.step(true);
    }
    p.s.conn.reset_stream(c, Reason::ENHANCE_YOUR_CALM).unwrap();
    // More DATA for `c` arrives after the server reset it.
    for _ in 0..3 {
        p.step(true);
    }
    p.pump();
    assert_eq!(p.c.resets(), vec![(c, Reason::ENHANCE_YOUR_CALM, true)]);
    // And the connection window is intact: a full body still flows.
    let d = p.c.conn.open_stream(post("/d"), false).unwrap();
    p.c.conn
        .send_data(d, Bytes::from(body.clone()), true)
        .unwrap();
    p.pump();
    assert_eq!(p.s.bodies[&d], body);
    assert!(p.s.errors.is_empty() && p.c.errors.is_empty());
}

#[test]
fn fairness_between_two_streams() {
    let mut p = Pair::default_ready();
    let a = p.c.conn.open_stream(get("/a"), true).unwrap();
    let b = p.c.conn.open_stream(get("/b"), true).unwrap();
    p.pump();
    for id in [a, b] {
        p.s.conn
            .send_response(id, ResponseHead::new(200), false)
            .unwrap();
    }
    // `a` queues a large body first; `b` must not wait for all of it.
    p.s.conn
        .send_data(a, Bytes::from(vec![1u8; 600 * 1024]), true)
        .unwrap();
    p.s.conn
        .send_data(b, Bytes::from(vec![2u8; 200 * 1024]), true)
        .unwrap();
    p.s.sent.clear();
    p.pump();
    let order: Vec<u32> =
        p.s.sent
            .iter()
            .filter_map(|f| match f {
                Frame::Data(d) => Some(d.stream_id().get()),
                _ => None,
            })
            .collect();
    let last_b = order.iter().rposition(|&s| s == 3).unwrap();
    // Alternating while both have data: a, b, a, b, ...
    for (i, s) in order[..=last_b].iter().enumerate() {
        assert_eq!(*s, if i % 2 == 0 { 1 } else { 3 }, "{order:?}");
    }
    assert!(order[last_b + 1..].iter().all(|&s| s == 1));
    assert_eq!(p.c.bodies[&a].len(), 600 * 1024);
    assert_eq!(p.c.bodies[&b].len(), 200 * 1024);
}

#[test]
fn window_update_overflow_on_stream_resets_only_that_stream() {
    let mut p = Pair::default_ready();
    let a = p.c.conn.open_stream(post("/a"), false).unwrap();
    let b = p.c.conn.open_stream(post("/b"), false).unwrap();
    p.pump();
    p.inject_to_client(WindowUpdate::new(a, MAX_WINDOW).into());
    assert!(p.c.errors.is_empty());
    assert_eq!(p.c.resets(), vec![(a, Reason::FLOW_CONTROL_ERROR, false)]);
    p.pump();
    assert_eq!(p.c.sent_resets(), vec![(a, Reason::FLOW_CONTROL_ERROR)]);
    assert_eq!(p.s.resets(), vec![(a, Reason::FLOW_CONTROL_ERROR, true)]);
    p.c.conn.send_data(b, "still fine".into(), true).unwrap();
    p.pump();
    assert_eq!(p.s.bodies[&b], b"still fine");
}

#[test]
fn window_update_overflow_on_connection_is_fatal() {
    let mut p = Pair::default_ready();
    let a = p.c.conn.open_stream(post("/a"), false).unwrap();
    p.pump();
    p.inject_to_client(WindowUpdate::new(StreamId::ZERO, MAX_WINDOW).into());
    assert_eq!(p.c.errors.len(), 1);
    assert_eq!(p.c.errors[0].class(), ConnErrorClass::WindowOverflow);
    assert_eq!(p.c.errors[0].class().as_str(), "window_overflow");
    assert!(p.c.conn.is_closed());
    assert_eq!(p.c.resets(), vec![(a, Reason::FLOW_CONTROL_ERROR, false)]);
    p.pump();
    let g = p.c.sent_goaway().unwrap();
    assert_eq!(g.reason(), Reason::FLOW_CONTROL_ERROR);
    assert!(matches!(
        p.s.events
            .iter()
            .find(|e| matches!(e, Event::GoAway { .. })),
        Some(Event::GoAway {
            reason: Reason::FLOW_CONTROL_ERROR,
            ..
        })
    ));
    assert!(p.s.conn.is_closed(), "error GOAWAY closes the receiver too");
    assert_eq!(
        p.s.closed_error().unwrap().unwrap().class(),
        ConnErrorClass::RemoteGoAway
    );
    assert_eq!(p.c.conn.open_stream(get("/"), true), Err(UserError::Closed));
}

#[test]
fn stream_id_reuse_is_fatal() {
    let mut p = Pair::default_ready();
    let a = p.c.conn.open_stream(get("/"), true).unwrap();
    p.pump();
    p.inject_to_server(Request::new(a, get("/again"), true).into());
    assert_eq!(p.s.errors[0].class(), ConnErrorClass::StreamIdReuse);
    p.pump();
    let g = p.s.sent_goaway().unwrap();
    assert_eq!(g.reason(), Reason::PROTOCOL_ERROR);
    assert_eq!(g.last_stream_id(), a);
    assert!(p.s.conn.is_closed());
    assert_eq!(p.s.resets(), vec![(a, Reason::PROTOCOL_ERROR, false)]);
}

#[test]
fn stream_error_data_after_end_stream() {
    let mut p = Pair::default_ready();
    let a = p.c.conn.open_stream(get("/"), true).unwrap();
    p.pump();
    p.inject_to_server(uwire::frame::Data::new(a, "late".into(), false).into());
    assert!(p.s.errors.is_empty());
    assert_eq!(p.s.resets(), vec![(a, Reason::STREAM_CLOSED, false)]);
    assert_eq!(p.s.conn.active_streams(), 0);
    p.pump();
    assert_eq!(p.s.sent_resets(), vec![(a, Reason::STREAM_CLOSED)]);
    assert!(!p.s.conn.is_closed());
}

// ----------------------------------------------------------------------
// Connection errors: each returns Err and queues GOAWAY with its reason
// ----------------------------------------------------------------------

#[test]
fn connection_errors_return_err_and_queue_goaway() {
    struct Case {
        name: &'static str,
        to_server: bool,
        setup: fn(&mut Pair),
        frame: Frame,
        class: &'static str,
        reason: Reason,
    }
    fn nothing(_: &mut Pair) {}
    fn open_one(p: &mut Pair) {
        p.c.conn.open_stream(get("/"), false).unwrap();
        p.pump();
    }
    let cases = vec![
        Case {
            name: "duplicate settings to server",
            to_server: true,
            setup: nothing,
            frame: Settings::default().into(),
            class: "duplicate_settings",
            reason: Reason::PROTOCOL_ERROR,
        },
        Case {
            name: "DATA on idle stream",
            to_server: true,
            setup: nothing,
            frame: uwire::frame::Data::new(sid(1), "x".into(), false).into(),
            class: "frame_on_idle_stream",
            reason: Reason::PROTOCOL_ERROR,
        },
        Case {
            name: "RESPONSE sent to a server",
            to_server: true,
            setup: open_one,
            frame: Response::new(sid(1), ResponseHead::new(200), true).into(),
            class: "unexpected_frame",
            reason: Reason::PROTOCOL_ERROR,
        },
        Case {
            name: "REQUEST sent to a client",
            to_server: false,
            setup: nothing,
            frame: Request::new(sid(1), get("/"), true).into(),
            class: "unexpected_frame",
            reason: Reason::PROTOCOL_ERROR,
        },
        Case {
            name: "DATA before RESPONSE",
            to_server: false,
            setup: open_one,
            frame: uwire::frame::Data::new(sid(1), "x".into(), false).into(),
            class: "unexpected_frame",
            reason: Reason::PROTOCOL_ERROR,
        },
        Case {
            name: "DATA over the connection window",
            to_server: true,
            setup: open_one,
            frame: uwire::frame::Data::new(sid(1), Bytes::from(vec![0u8; 65_536]), false).into(),
            class: "flow_control_violation",
            reason: Reason::FLOW_CONTROL_ERROR,
        },
        Case {
            name: "unexpected PING ack",
            to_server: false,
            setup: nothing,
            frame: Ping::pong(*b"whatever").into(),
            class: "unexpected_ping_ack",
            reason: Reason::PROTOCOL_ERROR,
        },
    ];
    for case in cases {
        let mut server = Config::default();
        // Small connection window for the flow-control case; frame size
        // large enough for one frame to overrun it.
        server
            .initial_connection_window(60_000)
            .initial_stream_window(60_000);
        let mut p = Pair::ready(Config::default(), server);
        (case.setup)(&mut p);
        p.c.take_events();
        p.s.take_events();
        if case.to_server {
            p.inject_to_server(case.frame.clone());
        } else {
            p.inject_to_client(case.frame.clone());
        }
        let side = if case.to_server { &mut p.s } else { &mut p.c };
        assert_eq!(side.errors.len(), 1, "{}: expected Err", case.name);
        assert_eq!(side.errors[0].class().as_str(), case.class, "{}", case.name);
        assert_eq!(side.errors[0].reason(), case.reason, "{}", case.name);
        assert!(side.conn.is_closed(), "{}", case.name);
        assert!(side.conn.has_pending_transmit(), "{}", case.name);
        let mut goaway = None;
        while let Some(f) = side.conn.poll_transmit() {
            if let Frame::GoAway(g) = f {
                goaway = Some(g);
            }
        }
        let g = goaway.unwrap_or_else(|| panic!("{}: no GOAWAY", case.name));
        assert_eq!(g.reason(), case.reason, "{}", case.name);
        assert!(!g.debug_data().is_empty(), "{}", case.name);
        assert_eq!(
            side.closed_error().flatten().map(|e| e.class().as_str()),
            Some(case.class),
            "{}",
            case.name
        );
        // Frames after the error are ignored.
        let now = p.now();
        let side = if case.to_server { &mut p.s } else { &mut p.c };
        assert!(side
            .conn
            .handle_frame(Ping::new([0; 8]).into(), now)
            .is_ok());
        assert_eq!(side.conn.poll_transmit(), None);
    }
}

#[test]
fn settings_not_first_is_fatal() {
    let mut p = Pair::new(Config::default(), Config::default());
    p.inject_to_server(Ping::new([1; 8]).into());
    assert_eq!(p.s.errors[0].class().as_str(), "settings_not_first");
    let mut frames = Vec::new();
    while let Some(f) = p.s.conn.poll_transmit() {
        frames.push(f);
    }
    assert!(matches!(frames[0], Frame::Settings(_)));
    assert!(matches!(&frames[1], Frame::GoAway(g) if g.reason() == Reason::PROTOCOL_ERROR));
}

#[test]
fn decode_error_goes_through_handle_decode_error() {
    let mut p = Pair::default_ready();
    let a = p.c.conn.open_stream(get("/"), false).unwrap();
    p.pump();
    // Kind 0x09 is in the critical range and unknown.
    p.deliver_bytes(true, &[0, 0, 0, 0x09, 0, 0, 0, 0, 0]);
    assert!(p.s.conn.is_closed());
    assert_eq!(p.s.resets(), vec![(a, Reason::PROTOCOL_ERROR, false)]);
    let err = p.s.closed_error().unwrap().unwrap();
    assert_eq!(err.class().as_str(), "unknown_kind");
    assert!(matches!(err.class(), ConnErrorClass::Decode(_)));
    p.pump();
    let g = p.s.sent_goaway().unwrap();
    assert_eq!(g.reason(), Reason::PROTOCOL_ERROR);
    assert!(String::from_utf8_lossy(g.debug_data()).contains("unknown_kind"));
    assert_eq!(g.last_stream_id(), a);
}

// ----------------------------------------------------------------------
// PING, timers
// ----------------------------------------------------------------------

#[test]
fn ping_ack_reports_rtt_from_the_fake_clock() {
    let mut p = Pair::default_ready();
    let now = p.now();
    p.c.conn.send_ping(*b"rtt-test", now).unwrap();
    assert!(p.step(true));
    p.advance(Duration::from_millis(30));
    assert!(p.step(false));
    assert_eq!(
        p.c.events,
        vec![Event::PingAck {
            payload: *b"rtt-test",
            rtt: Some(Duration::from_millis(30))
        }]
    );
    assert!(
        p.s.events.is_empty(),
        "PINGs from the peer are answered silently"
    );
    assert!(matches!(&p.s.sent[1], Frame::Ping(x) if x.is_ack() && x.payload() == *b"rtt-test"));
}

#[test]
fn keepalive_pings_and_times_out() {
    let mut client = Config::default();
    client
        .keepalive_interval(Some(Duration::from_secs(1)))
        .ping_timeout(Duration::from_secs(2));
    let mut p = Pair::ready(client, Config::default());
    let t0 = p.now();
    assert_eq!(p.c.conn.poll_timeout(), Some(t0 + Duration::from_secs(1)));
    p.advance(Duration::from_millis(999));
    assert!(!p.c.conn.has_pending_transmit());
    p.advance(Duration::from_millis(1));
    // A keepalive PING goes out; the server answers it.
    p.pump();
    assert!(matches!(p.c.events[..], [Event::PingAck { .. }]));
    p.c.take_events();
    assert!(!p.c.conn.is_closed());
    // Now the server stops answering.
    p.s2c_filter = Some(Box::new(|_| None));
    p.advance(Duration::from_secs(1));
    p.pump();
    assert!(matches!(p.c.sent.last(), Some(Frame::Ping(x)) if !x.is_ack()));
    p.advance(Duration::from_millis(1999));
    assert!(!p.c.conn.is_closed());
    p.advance(Duration::from_millis(1));
    assert!(p.c.conn.is_closed());
    assert_eq!(
        p.c.closed_error().unwrap().unwrap().class().as_str(),
        "ping_timeout"
    );
    p.pump();
    assert_eq!(p.c.sent_goaway().unwrap().reason(), Reason::TIMEOUT);
}

#[test]
fn settings_timeout_fires() {
    let mut p = Pair::new(Config::default(), Config::default());
    // The server's SETTINGS is lost.
    p.s2c_filter = Some(Box::new(|_| None));
    p.pump();
    assert_eq!(
        p.c.conn.poll_timeout(),
        Some(p.base + Duration::from_secs(10))
    );
    p.advance(Duration::from_millis(9_999));
    assert!(!p.c.conn.is_closed());
    p.advance(Duration::from_millis(1));
    assert!(p.c.conn.is_closed());
    assert_eq!(
        p.c.closed_error().unwrap().unwrap().class().as_str(),
        "settings_timeout"
    );
    p.pump();
    assert_eq!(
        p.c.sent_goaway().unwrap().reason(),
        Reason::SETTINGS_TIMEOUT
    );
    assert_eq!(p.c.conn.poll_timeout(), None);
}

// ----------------------------------------------------------------------
// GOAWAY and shutdown
// ----------------------------------------------------------------------

#[test]
fn graceful_goaway_drains_then_closes() {
    let mut p = Pair::default_ready();
    let a = p.c.conn.open_stream(post("/a"), false).unwrap();
    let b = p.c.conn.open_stream(post("/b"), false).unwrap();
    p.pump();
    let now = p.now();
    p.s.conn.go_away(Reason::NO_ERROR, "restart".into(), now);
    // A stream opened before the client sees the GOAWAY.
    let c = p.c.conn.open_stream(get("/c"), true).unwrap();
    p.pump();
    assert!(matches!(
        &p.c.events[0],
        Event::GoAway { last_stream_id, reason: Reason::NO_ERROR, .. } if *last_stream_id == b
    ));
    assert_eq!(p.c.resets(), vec![(c, Reason::REFUSED_STREAM, true)]);
    assert_eq!(p.s.sent_resets(), vec![(c, Reason::REFUSED_STREAM)]);
    assert!(!p.c.conn.can_open_stream());
    assert_eq!(
        p.c.conn.open_stream(get("/d"), true),
        Err(UserError::GoingAway)
    );
    // In-flight streams finish.
    for id in [a, b] {
        p.c.conn.send_data(id, "body".into(), true).unwrap();
        p.s.conn
            .send_response(id, ResponseHead::new(200), false)
            .unwrap();
    }
    p.pump();
    assert!(!p.s.conn.is_closed());
    p.s.conn.send_data(a, "done".into(), true).unwrap();
    p.pump();
    assert!(!p.s.conn.is_closed());
    p.s.conn.send_data(b, "done".into(), true).unwrap();
    p.pump();
    assert_eq!(p.c.bodies[&a], b"done");
    assert_eq!(p.c.bodies[&b], b"done");
    assert!(p.s.conn.is_closed());
    assert!(p.c.conn.is_closed());
    assert_eq!(p.s.closed_error(), Some(None));
    assert_eq!(p.c.closed_error(), Some(None));
    assert!(p.s.errors.is_empty() && p.c.errors.is_empty());
}

#[test]
fn two_step_graceful_goaway_refuses_nothing_already_sent() {
    let mut p = Pair::default_ready();
    let a = p.c.conn.open_stream(post("/a"), false).unwrap();
    p.pump();
    let now = p.now();
    p.s.conn.go_away_gracefully(now);
    // Opened before the client reads the notice: it arrives before the
    // answer to the notice's PING, so it is served, not refused.
    let c = p.c.conn.open_stream(get("/c"), true).unwrap();
    p.pump();
    let goaways: Vec<StreamId> =
        p.c.events
            .iter()
            .filter_map(|e| match e {
                Event::GoAway {
                    last_stream_id,
                    reason: Reason::NO_ERROR,
                    ..
                } => Some(*last_stream_id),
                _ => None,
            })
            .collect();
    // The notice (largest id), then the final GOAWAY naming `c`.
    assert_eq!(goaways, vec![StreamId::MAX, c]);
    assert!(p.c.resets().is_empty(), "{:?}", p.c.resets());
    assert!(p.s.sent_resets().is_empty());
    // The drain's PING is the engine's own: no PingAck for the server's user.
    assert!(!p
        .s
        .events
        .iter()
        .any(|e| matches!(e, Event::PingAck { .. })));
    assert_eq!(
        p.c.conn.open_stream(get("/d"), true),
        Err(UserError::GoingAway)
    );
    p.c.conn.send_data(a, "x".into(), true).unwrap();
    for id in [a, c] {
        p.s.conn
            .send_response(id, ResponseHead::new(200), true)
            .unwrap();
    }
    p.pump();
    assert!(p.s.conn.is_closed());
    assert!(p.c.conn.is_closed());
    assert_eq!(p.s.closed_error(), Some(None));
    assert!(p.s.errors.is_empty() && p.c.errors.is_empty());
}

#[test]
fn two_step_goaway_without_a_ping_answer_goes_final_after_a_second() {
    let mut p = Pair::default_ready();
    let a = p.c.conn.open_stream(post("/slow"), false).unwrap();
    p.pump();
    let now = p.now();
    p.s.conn.set_drain_deadline(now + Duration::from_secs(5));
    p.s.conn.go_away_gracefully(now);
    // The client never hears of it (nothing is pumped): one second on,
    // the final GOAWAY names the processed streams anyway; at the drain
    // deadline the rest is reset.
    assert_eq!(p.s.conn.poll_timeout(), Some(now + Duration::from_secs(1)));
    p.advance(Duration::from_secs(1));
    assert!(!p.s.conn.is_closed());
    assert_eq!(p.s.conn.poll_timeout(), Some(now + Duration::from_secs(5)));
    p.advance(Duration::from_secs(4));
    assert!(p.s.conn.is_closed());
    assert_eq!(p.s.resets(), vec![(a, Reason::CANCEL, false)]);
    p.pump();
    let last = p.c.goaways();
    assert_eq!(last, vec![StreamId::MAX, a]);
    assert_eq!(p.c.resets(), vec![(a, Reason::CANCEL, true)]);
}

/// `drain_notice_timeout` is the bound, exactly: a stream's final GOAWAY
/// is not out 1 ms before it and is out at it; zero drains in one step.
#[test]
fn drain_notice_timeout_is_configurable_and_exact() {
    let server = Config {
        drain_notice_timeout: Duration::from_secs(3),
        ..Config::default()
    };
    let mut p = Pair::ready(Config::default(), server);
    let now = p.now();
    p.s.conn.set_drain_deadline(now + Duration::from_secs(30));
    p.s.conn.go_away_gracefully(now);
    assert_eq!(p.s.conn.poll_timeout(), Some(now + Duration::from_secs(3)));
    p.advance(Duration::from_millis(2999));
    assert!(!p.s.conn.is_closed());
    p.advance(Duration::from_millis(1));
    assert!(p.s.conn.is_closed());

    let one_step = Config {
        drain_notice_timeout: Duration::ZERO,
        ..Config::default()
    };
    let mut p = Pair::ready(Config::default(), one_step);
    let a = p.c.conn.open_stream(post("/slow"), false).unwrap();
    p.pump();
    let now = p.now();
    p.s.conn.set_drain_deadline(now + Duration::from_secs(30));
    p.s.conn.go_away_gracefully(now);
    p.pump();
    let last = p.c.goaways();
    // No notice: the final GOAWAY (naming the processed stream) at once.
    assert_eq!(last, vec![a]);
}

#[test]
fn an_idle_connection_whose_peer_never_answers_the_notice_closes_after_a_second() {
    let mut p = Pair::default_ready();
    let now = p.now();
    p.s.conn.set_drain_deadline(now + Duration::from_secs(30));
    p.s.conn.go_away_gracefully(now);
    p.advance(Duration::from_secs(1));
    // No stream: the final GOAWAY ends the drain at once.
    assert!(p.s.conn.is_closed());
    assert_eq!(p.s.closed_error(), Some(None));
}

#[test]
fn drain_deadline_cancels_remaining_streams() {
    let mut p = Pair::default_ready();
    let a = p.c.conn.open_stream(post("/slow"), false).unwrap();
    p.pump();
    let now = p.now();
    p.s.conn.set_drain_deadline(now + Duration::from_secs(5));
    assert_eq!(p.s.conn.poll_timeout(), None, "not draining yet");
    p.s.conn.go_away(Reason::NO_ERROR, Bytes::new(), now);
    assert_eq!(p.s.conn.poll_timeout(), Some(now + Duration::from_secs(5)));
    p.pump();
    p.advance(Duration::from_secs(5));
    assert!(p.s.conn.is_closed());
    assert_eq!(p.s.resets(), vec![(a, Reason::CANCEL, false)]);
    assert_eq!(p.s.closed_error(), Some(None));
    p.pump();
    assert_eq!(p.c.resets(), vec![(a, Reason::CANCEL, true)]);
    assert!(
        p.c.conn.is_closed(),
        "client drained: peer GOAWAY and no streams"
    );
}

#[test]
fn error_goaway_closes_at_once() {
    let mut p = Pair::default_ready();
    let a = p.c.conn.open_stream(get("/"), false).unwrap();
    p.pump();
    let now = p.now();
    p.s.conn.go_away(Reason::INTERNAL_ERROR, "boom".into(), now);
    p.s.drain_events();
    assert!(p.s.conn.is_closed());
    assert_eq!(p.s.resets(), vec![(a, Reason::INTERNAL_ERROR, false)]);
    assert_eq!(
        p.s.closed_error().unwrap().unwrap().class().as_str(),
        "local_go_away"
    );
    p.pump();
    assert!(p.c.conn.is_closed());
    assert_eq!(p.c.resets(), vec![(a, Reason::INTERNAL_ERROR, true)]);
}

#[test]
fn eof_resets_open_streams() {
    let mut p = Pair::default_ready();
    let a = p.c.conn.open_stream(get("/"), false).unwrap();
    p.pump();
    p.c.conn.handle_eof();
    p.c.drain_events();
    assert!(p.c.conn.is_closed());
    assert!(!p.c.conn.has_pending_transmit());
    assert_eq!(p.c.resets(), vec![(a, Reason::INTERNAL_ERROR, true)]);
    assert_eq!(
        p.c.closed_error().unwrap().unwrap().class().as_str(),
        "unexpected_eof"
    );
}

// ----------------------------------------------------------------------
// Heads and trailers
// ----------------------------------------------------------------------

#[test]
fn interim_responses_precede_the_final_one() {
    let mut p = Pair::default_ready();
    let id = p.c.conn.open_stream(post("/"), false).unwrap();
    p.pump();
    assert_eq!(
        p.s.conn.send_response(id, ResponseHead::new(100), true),
        Err(UserError::InterimWithEndStream)
    );
    p.s.conn
        .send_response(id, ResponseHead::new(100), false)
        .unwrap();
    p.s.conn
        .send_response(id, ResponseHead::new(103), false)
        .unwrap();
    p.s.conn
        .send_response(id, ResponseHead::new(200), false)
        .unwrap();
    assert_eq!(
        p.s.conn.send_response(id, ResponseHead::new(200), false),
        Err(UserError::ResponseAlreadySent(id))
    );
    assert_eq!(
        p.s.conn.send_response(id, ResponseHead::new(1000), false),
        Err(UserError::InvalidHead("status outside 100..=999"))
    );
    p.pump();
    let statuses: Vec<u16> =
        p.c.events
            .iter()
            .filter_map(|e| match e {
                Event::Response { head, .. } => Some(head.status),
                _ => None,
            })
            .collect();
    assert_eq!(statuses, vec![100, 103, 200]);
}

#[test]
fn trailers_both_ways() {
    let mut p = Pair::default_ready();
    let id = p.c.conn.open_stream(post("/"), false).unwrap();
    let req_trailers = HeaderBlock::try_from_pairs([("x-checksum", "abc")]).unwrap();
    p.c.conn.send_data(id, "body".into(), false).unwrap();
    p.c.conn.send_trailers(id, req_trailers.clone()).unwrap();
    assert_eq!(
        p.c.conn.send_data(id, "x".into(), false),
        Err(UserError::SendClosed(id))
    );
    p.pump();
    assert_eq!(
        p.s.events.last(),
        Some(&Event::Trailers {
            id,
            fields: req_trailers
        })
    );
    let resp_trailers = HeaderBlock::try_from_pairs([("grpc-status", "0")]).unwrap();
    assert_eq!(
        p.s.conn.send_trailers(id, resp_trailers.clone()),
        Err(UserError::ResponseNotSent(id))
    );
    p.s.conn
        .send_response(id, ResponseHead::new(200), false)
        .unwrap();
    p.s.conn.send_data(id, "reply".into(), false).unwrap();
    p.s.conn.send_trailers(id, resp_trailers.clone()).unwrap();
    p.pump();
    let n = p.c.events.len();
    assert_eq!(
        p.c.events[n - 2],
        Event::Trailers {
            id,
            fields: resp_trailers
        }
    );
    assert_eq!(p.c.events[n - 1], Event::StreamClosed { id });
    assert!(p.s.events.contains(&Event::StreamClosed { id }));
    assert_eq!(p.c.bodies[&id], b"reply");
}

#[test]
fn user_errors_for_misuse() {
    let mut p = Pair::default_ready();
    assert_eq!(
        p.s.conn.open_stream(get("/"), true),
        Err(UserError::WrongRole {
            expected: Role::Client
        })
    );
    let id = p.c.conn.open_stream(get("/"), false).unwrap();
    assert_eq!(
        p.c.conn.send_response(id, ResponseHead::new(200), true),
        Err(UserError::WrongRole {
            expected: Role::Server
        })
    );
    assert_eq!(
        p.c.conn.send_data(sid(99), "x".into(), true),
        Err(UserError::UnknownStream(sid(99)))
    );
    let bad = RequestHead {
        method: "BAD METHOD".into(),
        ..get("/")
    };
    assert!(matches!(
        p.c.conn.open_stream(bad, true),
        Err(UserError::InvalidHead(_))
    ));
    assert!(matches!(
        p.c.conn.open_stream(get(""), true),
        Err(UserError::InvalidHead(_))
    ));
    let big = RequestHead {
        params: HeaderBlock::try_from_pairs([("x", "y".repeat(2 * 1024 * 1024))]).unwrap(),
        ..get("/")
    };
    assert!(matches!(
        p.c.conn.open_stream(big, true),
        Err(UserError::HeadTooLarge { .. })
    ));
    // None of that touched the wire in a bad way.
    p.pump();
    assert!(p.s.errors.is_empty() && p.c.errors.is_empty());
    assert_eq!(p.s.conn.active_streams(), 1);
}

// ----------------------------------------------------------------------
// Abusive peers: budgets and bounded reply backlog
// ----------------------------------------------------------------------

/// Takes whatever `side` has queued for transmit (into `side.sent`).
fn flush(side: &mut Side) {
    while let Some(f) = side.conn.poll_transmit() {
        side.sent.push(f);
    }
    side.drain_events();
}

/// Asserts `side` failed with `class` and transmitted GOAWAY(ENHANCE_YOUR_CALM).
fn assert_calm(side: &mut Side, class: &str) {
    flush(side);
    assert!(side.conn.is_closed(), "expected {class}, still open");
    let err = side
        .closed_error()
        .expect("Closed event")
        .expect("an error");
    assert_eq!(err.class().as_str(), class, "{err}");
    assert_eq!(err.reason(), Reason::ENHANCE_YOUR_CALM);
    assert_eq!(side.errors.last().map(|e| e.class()), Some(err.class()));
    let g = side.sent_goaway().expect("GOAWAY sent");
    assert_eq!(g.reason(), Reason::ENHANCE_YOUR_CALM);
}

fn assert_alive(side: &Side) {
    assert!(side.errors.is_empty(), "{:?}", side.errors);
    assert!(!side.conn.is_closed());
}

fn abuse_config(f: impl FnOnce(&mut Config)) -> Config {
    let mut c = Config::default();
    c.abuse_window(Duration::from_secs(1));
    f(&mut c);
    assert_eq!(c.validate(), Ok(()));
    c
}

/// Client opens a stream with a body and resets it before the server
/// answers (the CVE-2023-44487 pattern).
fn open_and_reset(p: &mut Pair) {
    let id = p.c.conn.open_stream(post("/"), false).unwrap();
    p.pump();
    p.c.conn.reset_stream(id, Reason::CANCEL).unwrap();
    p.pump();
}

#[test]
fn rapid_reset_exactly_at_the_limit_passes_one_over_fails() {
    let server = abuse_config(|c| {
        c.max_peer_resets(3);
    });
    let mut p = Pair::ready(Config::default(), server);
    for _ in 0..3 {
        open_and_reset(&mut p);
    }
    assert_alive(&p.s);
    // Just before the window ends the budget is still spent.
    p.advance(Duration::from_millis(999));
    open_and_reset(&mut p);
    assert_calm(&mut p.s, "rapid_reset");
    assert_eq!(
        p.c.closed_error().unwrap().unwrap().class().as_str(),
        "remote_go_away"
    );
}

#[test]
fn rapid_reset_budget_renews_each_window() {
    let server = abuse_config(|c| {
        c.max_peer_resets(3);
    });
    let mut p = Pair::ready(Config::default(), server);
    for _ in 0..5 {
        for _ in 0..3 {
            open_and_reset(&mut p);
        }
        p.advance(Duration::from_secs(1));
    }
    assert_alive(&p.s);
    assert_eq!(p.s.sent_resets(), vec![], "peer resets are never answered");
}

#[test]
fn resets_after_the_response_head_do_not_count() {
    let server = abuse_config(|c| {
        c.max_peer_resets(1);
    });
    let mut p = Pair::ready(Config::default(), server);
    for _ in 0..20 {
        let id = p.c.conn.open_stream(post("/"), false).unwrap();
        p.pump();
        p.s.conn
            .send_response(id, ResponseHead::new(200), false)
            .unwrap();
        p.pump();
        p.c.conn.reset_stream(id, Reason::CANCEL).unwrap();
        p.pump();
    }
    assert_alive(&p.s);
}

#[test]
fn default_reset_budget_edge() {
    // The default budget: 1000 early resets per 10 s pass, the 1001st fails.
    let mut p = Pair::default_ready();
    for n in 0..1000u32 {
        let id = sid(2 * n + 1);
        p.inject_to_server(Request::new(id, post("/"), false).into());
        p.inject_to_server(uwire::frame::Reset::new(id, Reason::CANCEL).into());
    }
    assert_alive(&p.s);
    p.advance(Duration::from_millis(9_999));
    p.inject_to_server(Request::new(sid(2001), post("/"), false).into());
    p.inject_to_server(uwire::frame::Reset::new(sid(2001), Reason::CANCEL).into());
    assert_calm(&mut p.s, "rapid_reset");
}

#[test]
fn refused_streams_count_as_resets() {
    let server = abuse_config(|c| {
        c.max_concurrent_streams(0).max_peer_resets(2);
    });
    let mut p = Pair::ready(Config::default(), server);
    for n in [1, 3] {
        p.inject_to_server(Request::new(sid(n), get("/"), true).into());
        flush(&mut p.s);
    }
    assert_alive(&p.s);
    assert_eq!(
        p.s.sent_resets(),
        vec![
            (sid(1), Reason::REFUSED_STREAM),
            (sid(3), Reason::REFUSED_STREAM)
        ]
    );
    p.inject_to_server(Request::new(sid(5), get("/"), true).into());
    assert_calm(&mut p.s, "rapid_reset");
}

#[test]
fn reply_reset_backlog_is_bounded() {
    let server = abuse_config(|c| {
        c.max_concurrent_streams(0).max_pending_resets(2);
    });
    let mut p = Pair::ready(Config::default(), server);
    // Draining keeps the backlog empty: any number passes (within budget).
    for n in 0..10 {
        p.inject_to_server(Request::new(sid(2 * n + 1), get("/"), true).into());
        flush(&mut p.s);
    }
    assert_alive(&p.s);
    // The glue stops draining: 2 pending RESETs pass, the 3rd fails.
    p.inject_to_server(Request::new(sid(21), get("/"), true).into());
    p.inject_to_server(Request::new(sid(23), get("/"), true).into());
    assert_alive(&p.s);
    p.inject_to_server(Request::new(sid(25), get("/"), true).into());
    assert_calm(&mut p.s, "transmit_backlog");
}

#[test]
fn ping_budget_exactly_at_the_limit_passes_one_over_fails() {
    let server = abuse_config(|c| {
        c.max_peer_pings(5);
    });
    let mut p = Pair::ready(Config::default(), server);
    for i in 0..5u8 {
        p.inject_to_server(Ping::new([i; 8]).into());
        flush(&mut p.s);
    }
    assert_alive(&p.s);
    assert_eq!(
        p.s.count_sent(|f| matches!(f, Frame::Ping(x) if x.is_ack())),
        5
    );
    // A new window: 5 more pass.
    p.advance(Duration::from_secs(1));
    for i in 0..5u8 {
        p.inject_to_server(Ping::new([i; 8]).into());
        flush(&mut p.s);
    }
    assert_alive(&p.s);
    p.inject_to_server(Ping::new([9; 8]).into());
    assert_calm(&mut p.s, "ping_flood");
}

#[test]
fn pending_pong_backlog_is_bounded() {
    let server = abuse_config(|c| {
        c.max_pending_pongs(4);
    });
    let mut p = Pair::ready(Config::default(), server);
    for i in 0..4u8 {
        p.inject_to_server(Ping::new([i; 8]).into());
    }
    assert_alive(&p.s);
    // Draining empties the backlog.
    flush(&mut p.s);
    for i in 0..4u8 {
        p.inject_to_server(Ping::new([i; 8]).into());
    }
    assert_alive(&p.s);
    p.inject_to_server(Ping::new([4; 8]).into());
    assert_calm(&mut p.s, "ping_flood");
    // The ACKs queued before the failure still go out, then the GOAWAY.
    assert_eq!(
        p.s.count_sent(|f| matches!(f, Frame::Ping(x) if x.is_ack())),
        9
    );
}

#[test]
fn default_pending_pong_edge() {
    let mut p = Pair::default_ready();
    for i in 0..16u8 {
        p.inject_to_server(Ping::new([i; 8]).into());
    }
    assert_alive(&p.s);
    p.inject_to_server(Ping::new([16; 8]).into());
    assert_calm(&mut p.s, "ping_flood");
}

#[test]
fn useless_frames_share_one_budget() {
    let server = abuse_config(|c| {
        c.max_useless_frames(3);
    });
    let mut p = Pair::ready(Config::default(), server);
    let id = p.c.conn.open_stream(post("/"), false).unwrap();
    p.pump();
    // Useful frames do not count: a large connection increment, an empty
    // DATA on another stream that ends it, a stream WINDOW_UPDATE.
    for _ in 0..10 {
        p.inject_to_server(WindowUpdate::new(StreamId::ZERO, 1024).into());
        p.inject_to_server(WindowUpdate::new(id, 1).into());
    }
    let id2 = p.c.conn.open_stream(post("/"), false).unwrap();
    p.pump();
    p.inject_to_server(uwire::frame::Data::new(id2, Bytes::new(), true).into());
    assert_alive(&p.s);
    // Three useless frames of the three kinds pass.
    p.inject_to_server(uwire::frame::Data::new(id, Bytes::new(), false).into());
    p.inject_to_server(
        uwire::frame::Unknown::new(uwire::frame::Kind(0xA0), 0, StreamId::ZERO, Bytes::new())
            .into(),
    );
    p.inject_to_server(WindowUpdate::new(StreamId::ZERO, 1023).into());
    assert_alive(&p.s);
    // The 4th in the same window fails.
    p.advance(Duration::from_millis(999));
    p.inject_to_server(uwire::frame::Data::new(id, Bytes::new(), false).into());
    assert_calm(&mut p.s, "frame_flood");
}

#[test]
fn useless_frame_budget_renews_each_window() {
    let server = abuse_config(|c| {
        c.max_useless_frames(3);
    });
    let mut p = Pair::ready(Config::default(), server);
    for _ in 0..5 {
        for _ in 0..3 {
            p.inject_to_server(WindowUpdate::new(StreamId::ZERO, 1).into());
        }
        p.advance(Duration::from_secs(1));
    }
    assert_alive(&p.s);
}

#[test]
fn tiny_increment_threshold_follows_the_peer_window() {
    // A client announcing a 1000-byte connection window batches updates of
    // about 500 bytes: those are not useless.
    let mut client = Config::default();
    client.initial_connection_window(1000);
    let server = abuse_config(|c| {
        c.max_useless_frames(0);
    });
    let mut p = Pair::ready(client, server);
    p.inject_to_server(WindowUpdate::new(StreamId::ZERO, 500).into());
    assert_alive(&p.s);
    p.inject_to_server(WindowUpdate::new(StreamId::ZERO, 499).into());
    assert_calm(&mut p.s, "frame_flood");
}

#[test]
fn legitimate_traffic_stays_under_the_default_budgets() {
    // Many requests with bodies through small windows, with keepalive
    // PINGs and cancellations: no abuse error on either side.
    let mut client = small_windows();
    client.keepalive_interval(Some(Duration::from_millis(100)));
    let mut p = Pair::ready(client, small_windows());
    for round in 0..50u8 {
        let id = p.c.conn.open_stream(post("/"), false).unwrap();
        p.c.conn
            .send_data(id, Bytes::from(pattern(100_000, round)), true)
            .unwrap();
        p.pump();
        if round % 2 == 0 {
            p.c.conn.reset_stream(id, Reason::CANCEL).unwrap();
        } else {
            p.s.conn
                .send_response(id, ResponseHead::new(200), true)
                .unwrap();
        }
        p.pump();
        p.advance(Duration::from_millis(100));
        p.pump();
    }
    assert_alive(&p.s);
    assert_alive(&p.c);
}

// ----------------------------------------------------------------------
// Robustness: arbitrary peer input never panics
// ----------------------------------------------------------------------

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn flip(&mut self) -> bool {
        self.next() & 1 == 1
    }
}

/// A frame the codec might hand over, or one built by hand that the codec
/// would have rejected (stream 0 DATA, even REQUEST ids, zero increments).
fn random_frame(r: &mut Rng) -> Frame {
    let id = sid(r.below(12) as u32);
    let reason = Reason(r.below(14) as u32);
    match r.below(11) {
        0 => uwire::frame::Data::new(
            id,
            Bytes::from(vec![0u8; r.below(70_000) as usize]),
            r.flip(),
        )
        .into(),
        1 => Request::new(id, get("/"), r.flip()).into(),
        2 => Response::new(id, ResponseHead::new(100 + r.below(300) as u16), r.flip()).into(),
        3 => uwire::frame::Trailers::new(id, HeaderBlock::new()).into(),
        4 => uwire::frame::Reset::new(id, reason).into(),
        5 => Settings::default().into(),
        6 => {
            let payload = (r.below(4)).to_be_bytes();
            if r.flip() {
                Ping::new(payload).into()
            } else {
                Ping::pong(payload).into()
            }
        }
        7 => GoAway::new(id, reason, Bytes::from_static(b"fuzz")).into(),
        8 => {
            let inc = match r.below(3) {
                0 => 0,
                1 => MAX_WINDOW,
                _ => r.below(200_000) as u32,
            };
            WindowUpdate::new(id, inc).into()
        }
        9 => uwire::frame::Unknown::new(
            uwire::frame::Kind(0x80 + r.below(0x80) as u8),
            0,
            id,
            Bytes::new(),
        )
        .into(),
        _ => Settings {
            initial_stream_window: Some(r.below(u64::from(MAX_WINDOW) + 1) as u32),
            max_concurrent_streams: Some(r.below(4) as u32),
            ..Default::default()
        }
        .into(),
    }
}

fn random_config(r: &mut Rng) -> Config {
    let mut cfg = Config::default();
    cfg.initial_stream_window(1 + r.below(100_000) as u32)
        .initial_connection_window(1 + r.below(200_000) as u32)
        .max_concurrent_streams(r.below(5) as u32)
        .max_reset_streams(r.below(4) as usize)
        .keepalive_interval(Some(Duration::from_millis(500)));
    cfg
}

/// A frame a roughly well-behaved peer of `role` might send, on one of the
/// `opened` streams (odd ids 1, 3, ...); now and then a garbage frame.
fn plausible_frame(r: &mut Rng, role: Role, opened: u32) -> Frame {
    if r.below(40) == 0 {
        return random_frame(r);
    }
    if opened == 0 {
        // Nothing open yet: open a stream (server) or probe (client).
        return match role {
            Role::Server => Request::new(sid(1), get("/"), r.flip()).into(),
            Role::Client => Ping::new([9; 8]).into(),
        };
    }
    let id = sid(1 + 2 * r.below(u64::from(opened)) as u32);
    let small = || Bytes::from(vec![7u8; 1 + (id.get() as usize * 37) % 3000]);
    match (role, r.below(9)) {
        (Role::Server, 0 | 1) => Request::new(sid(2 * opened + 1), get("/"), r.flip()).into(),
        (Role::Client, 0 | 1) => Response::new(
            id,
            ResponseHead::new([100, 200, 204, 500][r.below(4) as usize]),
            r.flip() && r.flip(),
        )
        .into(),
        (_, 2..=4) => uwire::frame::Data::new(id, small(), r.below(4) == 0).into(),
        (_, 5) => uwire::frame::Trailers::new(id, HeaderBlock::new()).into(),
        (_, 6) => uwire::frame::Reset::new(id, Reason::CANCEL).into(),
        (_, 7) => WindowUpdate::new(
            if r.flip() { StreamId::ZERO } else { id },
            1 + r.below(50_000) as u32,
        )
        .into(),
        _ => Ping::new([r.below(3) as u8; 8]).into(),
    }
}

#[test]
fn random_peer_input_never_panics() {
    let (mut handled_open, mut connections, mut delivered) = (0u64, 0u64, 0u64);
    let mut hist: std::collections::BTreeMap<&str, u64> = Default::default();
    for seed in 1..300u64 {
        let mut r = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let base = Instant::now();
        let mut now = base;
        let mut conn = Connection::new(Role::Server, Config::default(), now);
        conn.handle_eof();
        let mut opened = 0u32;
        for _ in 0..3000 {
            if conn.is_closed() {
                // Start over with a fresh connection, usually past SETTINGS.
                let role = if r.flip() { Role::Client } else { Role::Server };
                conn = Connection::new(role, random_config(&mut r), now);
                connections += 1;
                opened = 0;
                if r.below(8) != 0 {
                    conn.handle_frame(Settings::default().into(), now).unwrap();
                }
            }
            match r.below(12) {
                0..=5 => {
                    let f = plausible_frame(&mut r, conn.role(), opened);
                    if conn.role() == Role::Server && matches!(f, Frame::Request(_)) {
                        opened += 1;
                    }
                    if !conn.is_closed() {
                        handled_open += 1;
                    }
                    if let Err(e) = conn.handle_frame(f, now) {
                        *hist.entry(e.class().as_str()).or_insert(0u64) += 1;
                    }
                }
                6 => now += Duration::from_millis(r.below(300)),
                7 | 8 => {
                    if conn.open_stream(post("/"), r.flip()).is_ok() {
                        opened += 1;
                    }
                }
                9 | 10 => {
                    let id = sid(1 + 2 * r.below(u64::from(opened.max(1))) as u32);
                    let _ = match r.below(5) {
                        0 => conn.send_data(
                            id,
                            Bytes::from(vec![1u8; r.below(100_000) as usize]),
                            r.flip(),
                        ),
                        1 => conn.send_response(
                            id,
                            ResponseHead::new([100, 200, 404][r.below(3) as usize]),
                            r.flip(),
                        ),
                        2 => conn.reset_stream(id, Reason::CANCEL),
                        3 => conn.send_trailers(id, HeaderBlock::new()),
                        _ => {
                            conn.release_capacity(id, r.below(100_000) as usize);
                            Ok(())
                        }
                    };
                }
                _ => {
                    if r.below(50) == 0 {
                        conn.go_away(Reason(r.below(3) as u32), Bytes::new(), now);
                    }
                }
            }
            conn.handle_timeout(now);
            // Every output is well-formed and finite.
            let mut n = 0;
            while let Some(f) = conn.poll_transmit() {
                let mut buf = BytesMut::new();
                f.encode(&mut buf).expect("transmitted frames encode");
                n += 1;
                assert!(n < 100_000, "seed {seed}: transmit does not end");
            }
            while let Some(ev) = conn.poll_event() {
                if matches!(
                    ev,
                    Event::Data { .. } | Event::Request { .. } | Event::Response { .. }
                ) {
                    delivered += 1;
                }
            }
            assert!(!conn.has_pending_transmit(), "seed {seed}");
            if let Some(t) = conn.poll_timeout() {
                assert!(t >= base, "seed {seed}");
            }
        }
        conn.handle_eof();
        assert!(conn.is_closed());
        assert_eq!(conn.poll_transmit(), None);
    }
    eprintln!("connection errors from handle_frame: {hist:?}");
    eprintln!(
        "{connections} connections, {handled_open} frames while open, {delivered} deliveries"
    );
    assert!(handled_open > 100_000 && delivered > 20_000);
}
