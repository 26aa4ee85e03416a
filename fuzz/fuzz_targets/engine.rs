//! The sans-IO connection engine driven by an adversarial peer.
//!
//! The input is a small program. Byte 0 picks the engine's role (bit 0:
//! server or client), its configuration (bits 1-3) and whether the harness
//! plays a well-behaved application that returns flow-control credit for
//! every DATA event (bit 4). Every following op starts with one byte:
//!
//! | op % 10 | what                                                          |
//! |---------|---------------------------------------------------------------|
//! | 0, 1    | raw peer bytes: a length byte, then that many bytes           |
//! | 2, 3    | a well-formed peer frame built from the next bytes            |
//! | 4       | advance the clock, then `handle_timeout`                      |
//! | 5       | jump to `poll_timeout()`, then `handle_timeout`               |
//! | 6, 7, 8 | a local action (open_stream, send_data, a deadline, ...)      |
//! | 9       | `handle_eof`                                                  |
//!
//! Peer bytes go through a `Codec` (the engine's own limits, no preface) into
//! `handle_frame`; a decode error goes to `handle_decode_error`. After every
//! op the harness drains `poll_transmit` and `poll_event`. When the engine
//! reports a connection error (or a decode error was fed) it drains one last
//! time and stops.
//!
//! Invariants checked on everything the engine transmits:
//!
//! * nothing panics (in particular no arithmetic overflow: fuzz builds have
//!   debug assertions and overflow checks on);
//! * the first frame is SETTINGS and there is never a second one;
//! * every frame encodes to `encoded_len()` bytes and decodes back equal
//!   under the limits the peer announced (so DATA is split at the peer's
//!   `max_frame_size`, heads respect its `max_head_size` and
//!   `max_header_count`);
//! * DATA never exceeds the credit the peer granted: per stream and per
//!   connection, the bytes sent stay within the initial window from the
//!   peer's SETTINGS plus the WINDOW_UPDATE increments the peer sent (a model
//!   kept by the harness); `send_window()` never reports more than that;
//! * a client's REQUEST ids are odd and strictly increasing; a server never
//!   sends REQUEST, a client never sends RESPONSE;
//! * a PING (without ACK) the engine accepted is answered by a PING ACK with
//!   the same payload in the same drain;
//! * `Event::Closed` is emitted at most once, and once closed the engine
//!   emits no further events for new input.
#![no_main]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use uwire::codec::Codec;
use uwire::conn::{Config, Connection, Event, Role};
use uwire::frame::Limits;
use uwire::frame::{
    Data, Frame, GoAway, HeaderBlock, HttpVersion, Kind, Ping, Reason, Request, RequestHead, Reset,
    Response, ResponseHead, Settings, StreamId, Trailers, Unknown, WindowUpdate,
};

/// Most ops run per input (keeps executions fast and bounded).
const MAX_OPS: usize = 512;

/// `UWIRE_FUZZ_TRACE=1` prints what happens, to debug a crash input:
/// `UWIRE_FUZZ_TRACE=1 cargo fuzz run --sanitizer none engine <file>`.
fn tracing() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("UWIRE_FUZZ_TRACE").is_some())
}

macro_rules! trace {
    ($($t:tt)*) => {
        if tracing() {
            eprintln!($($t)*);
        }
    };
}

/// Reads the program; exhausted input reads as zeros.
struct Input<'a> {
    data: &'a [u8],
}

impl Input<'_> {
    fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }

    fn u32(&mut self) -> u32 {
        u32::from_be_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }

    fn take(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.data.len());
        let (a, b) = self.data.split_at(n);
        self.data = b;
        a
    }

    fn bool(&mut self) -> bool {
        self.u8() & 1 == 1
    }

    /// A small, a medium or a boundary-ish 32-bit value.
    fn size(&mut self) -> u32 {
        match self.u8() % 8 {
            0 => 0,
            1 => u32::from(self.u8()),
            2 => u32::from(self.u16()),
            3 => 1024 << (self.u8() % 15),
            4 => 0x7FFF_FFFF - u32::from(self.u8()),
            5 => 0x8000_0000 | u32::from(self.u8()),
            6 => u32::MAX - u32::from(self.u8()),
            _ => self.u32(),
        }
    }
}

fn config(variant: u8) -> Config {
    let mut c = Config::default();
    match variant & 7 {
        0 => {}
        1 => {
            c.initial_stream_window(1024);
        }
        2 => {
            // Tight abuse budgets: floods end the connection quickly.
            c.max_concurrent_streams(1)
                .max_reset_streams(0)
                .abuse_window(Duration::from_millis(100))
                .max_peer_resets(4)
                .max_peer_pings(4)
                .max_useless_frames(4)
                .max_pending_pongs(2)
                .max_pending_resets(2);
        }
        3 => {
            c.keepalive_interval(Some(Duration::from_secs(1)))
                .ping_timeout(Duration::from_secs(2))
                .settings_timeout(Duration::from_millis(500));
        }
        4 => {
            let mut l = Limits::default();
            l.max_frame_size(1024)
                .max_head_size(1024)
                .max_control_size(1024)
                .max_header_count(1);
            c.limits(l)
                .initial_stream_window(100)
                .initial_connection_window(300);
        }
        5 => {
            c.initial_stream_window(0x7FFF_FFFF)
                .initial_connection_window(0x7FFF_FFFF);
        }
        6 => {
            c.max_concurrent_streams(0);
        }
        _ => {
            c.initial_stream_window(2048)
                .initial_connection_window(2048)
                .max_reset_streams(2);
        }
    }
    c
}

fn header_block(inp: &mut Input) -> HeaderBlock {
    const NAMES: [&str; 8] = [
        "Host",
        "content-type",
        "Content-Length",
        "cookie",
        "x-a",
        "te",
        "grpc-status",
        "Set-Cookie",
    ];
    let n = match inp.u8() % 8 {
        0 => 0,
        7 => 300,
        k => usize::from(k),
    };
    let mut b = HeaderBlock::builder();
    for i in 0..n {
        let name = NAMES[(usize::from(inp.u8()) + i) % NAMES.len()];
        let len = usize::from(inp.u8() % 4) * 40;
        let _ = b.push(name.as_bytes(), &vec![b'v'; len]);
    }
    b.finish()
}

fn request_head(inp: &mut Input) -> RequestHead {
    const METHODS: [&str; 5] = ["GET", "POST", "PUT", "HEAD", "BAD METHOD"];
    const PATHS: [&str; 4] = ["/", "/a/b", "", "/x"];
    let sel = inp.u8();
    RequestHead {
        method: METHODS[usize::from(sel % 5)].into(),
        scheme: "http".into(),
        authority: "h".into(),
        path: PATHS[usize::from((sel >> 3) % 4)].into(),
        query: (sel & 0x20 != 0).then(|| Bytes::from_static(b"q=1")),
        version: HttpVersion::HTTP_11,
        headers: header_block(inp),
        body_length: (sel & 0x40 != 0).then(|| u64::from(inp.u16())),
        ..RequestHead::default()
    }
}

fn response_head(inp: &mut Input) -> ResponseHead {
    const STATUS: [u16; 8] = [200, 204, 100, 103, 404, 500, 999, 42];
    let sel = inp.u8();
    ResponseHead {
        status: STATUS[usize::from(sel % 8)],
        reason: (sel & 8 != 0).then(|| Bytes::from_static(b"OK")),
        headers: header_block(inp),
    }
}

fn reason(inp: &mut Input) -> Reason {
    match inp.u8() % 4 {
        0 => Reason::NO_ERROR,
        1 => Reason::CANCEL,
        2 => Reason::REFUSED_STREAM,
        _ => Reason(inp.u32()),
    }
}

/// What the harness knows and what it granted the engine.
struct Harness {
    role: Role,
    conn: Connection,
    now: Instant,
    codec: Codec,
    rx: BytesMut,
    auto_release: bool,
    /// Stream ids seen (opened locally, announced in events, or sent by us).
    ids: Vec<u32>,
    /// Next REQUEST id the (fuzzer) client side uses when the engine is a
    /// server.
    next_peer_request: u32,
    /// The peer SETTINGS the engine accepted, if any.
    peer_settings: Option<Settings>,
    settings_seen: usize,
    frames_sent: usize,
    last_request_id: u32,
    /// Flow-control model: credit granted by us (the peer) and DATA bytes
    /// the engine sent.
    conn_granted: u64,
    conn_sent: u64,
    stream_granted: HashMap<u32, u64>,
    stream_sent: HashMap<u32, u64>,
    /// PING payloads that must be answered in the current drain.
    pongs_due: Vec<[u8; 8]>,
    closed_events: usize,
    dead: bool,
}

impl Harness {
    fn new(setup: u8) -> Harness {
        let role = if setup & 1 == 1 {
            Role::Client
        } else {
            Role::Server
        };
        let cfg = config(setup >> 1);
        let now = Instant::now();
        let limits = cfg.limits;
        Harness {
            role,
            conn: Connection::new(role, cfg, now),
            now,
            codec: Codec::without_preface(limits),
            rx: BytesMut::new(),
            auto_release: setup & 0x10 != 0,
            ids: Vec::new(),
            next_peer_request: 1,
            peer_settings: None,
            settings_seen: 0,
            frames_sent: 0,
            last_request_id: 0,
            conn_granted: 0,
            conn_sent: 0,
            stream_granted: HashMap::new(),
            stream_sent: HashMap::new(),
            pongs_due: Vec::new(),
            closed_events: 0,
            dead: false,
        }
    }

    fn pick_id(&mut self, inp: &mut Input) -> StreamId {
        let sel = inp.u8();
        if sel < 224 && !self.ids.is_empty() {
            StreamId::new(self.ids[usize::from(sel) % self.ids.len()])
        } else {
            StreamId::new(u32::from(sel & 0x1F))
        }
    }

    fn note_id(&mut self, id: StreamId) {
        if !id.is_zero() && !self.ids.contains(&id.get()) {
            self.ids.push(id.get());
        }
    }

    fn initial_stream_window(&self) -> u64 {
        u64::from(
            self.peer_settings
                .and_then(|s| s.initial_stream_window)
                .unwrap_or(256 * 1024),
        )
    }

    fn stream_credit(&self, id: u32) -> u64 {
        self.initial_stream_window() + self.stream_granted.get(&id).copied().unwrap_or(0)
    }

    fn conn_credit(&self) -> u64 {
        let initial = self
            .peer_settings
            .and_then(|s| s.initial_connection_window)
            .unwrap_or(1024 * 1024);
        u64::from(initial) + self.conn_granted
    }

    fn peer_limits(&self) -> Limits {
        self.peer_settings
            .as_ref()
            .map(Limits::from_settings)
            .unwrap_or_default()
    }

    /// Feeds peer bytes through the codec into the engine.
    fn feed(&mut self, bytes: &[u8]) {
        self.rx.extend_from_slice(bytes);
        while !self.dead {
            match self.codec.decode_frame(&mut self.rx) {
                Ok(Some(f)) => self.deliver(f),
                Ok(None) => break,
                Err(e) => {
                    trace!("decode   {e}");
                    self.conn.handle_decode_error(&e);
                    self.dead = true;
                }
            }
        }
    }

    fn deliver(&mut self, f: Frame) {
        trace!("recv     {f:?}");
        let was_closed = self.conn.is_closed();
        let ping = match &f {
            Frame::Ping(p) if !p.is_ack() => Some(p.payload()),
            _ => None,
        };
        // Model updates are made before the engine sees the frame: they
        // only ever widen what the engine may send, so the model stays an
        // upper bound whatever the engine decides about the frame.
        match &f {
            Frame::WindowUpdate(w) if w.stream_id().is_zero() => {
                self.conn_granted += u64::from(w.increment());
            }
            Frame::WindowUpdate(w) => {
                *self.stream_granted.entry(w.stream_id().get()).or_default() +=
                    u64::from(w.increment());
            }
            _ => {}
        }
        let settings = match &f {
            Frame::Settings(s) => Some(*s),
            _ => None,
        };
        match self.conn.handle_frame(f, self.now) {
            Ok(()) => {
                if let (Some(s), None) = (settings, self.peer_settings) {
                    if !was_closed {
                        self.peer_settings = Some(s);
                    }
                }
                if let Some(p) = ping {
                    if !was_closed && !self.conn.is_closed() {
                        self.pongs_due.push(p);
                    }
                }
            }
            Err(e) => {
                trace!("error    {e}");
                assert!(self.conn.is_closed(), "engine error but not closed");
                self.dead = true;
            }
        }
    }

    /// Builds one well-formed peer frame and feeds its bytes.
    fn peer_frame(&mut self, inp: &mut Input) {
        let f: Frame = match inp.u8() % 12 {
            0 | 1 => {
                let id = self.pick_id(inp);
                let len = usize::from(inp.u16()) % (70 * 1024);
                Data::new(id, Bytes::from(vec![b'd'; len]), inp.bool()).into()
            }
            2 => {
                let id = if inp.u8() < 240 {
                    let id = self.next_peer_request;
                    self.next_peer_request =
                        self.next_peer_request.saturating_add(2).min(0x7FFF_FFFF);
                    StreamId::new(id)
                } else {
                    self.pick_id(inp)
                };
                let head = request_head(inp);
                Request::new(id, head, inp.bool()).into()
            }
            3 => {
                let id = self.pick_id(inp);
                Response::new(id, response_head(inp), inp.bool()).into()
            }
            4 => {
                let id = self.pick_id(inp);
                Trailers::new(id, header_block(inp)).into()
            }
            5 => {
                let id = self.pick_id(inp);
                Reset::new(id, reason(inp)).into()
            }
            6 => {
                let mut s = Settings::default();
                let mask = inp.u8();
                let field = |bit: u8, inp: &mut Input| (mask & bit != 0).then(|| inp.size());
                s.max_concurrent_streams = field(1, inp);
                s.initial_stream_window = field(2, inp);
                s.initial_connection_window = field(4, inp);
                s.max_frame_size = field(8, inp);
                s.max_head_size = field(16, inp);
                s.max_header_count = field(32, inp);
                s.into()
            }
            7 => {
                let mut p = [0u8; 8];
                p.copy_from_slice(&{
                    let mut v = inp.take(8).to_vec();
                    v.resize(8, 0);
                    v
                });
                // Echo a keepalive payload now and then so ACKs can match.
                if inp.bool() {
                    p[..4].copy_from_slice(b"uwka");
                }
                if inp.bool() {
                    Ping::pong(p).into()
                } else {
                    Ping::new(p).into()
                }
            }
            8 => {
                let last = StreamId::new(inp.u32() & 0x7FFF_FFFF);
                let last = if inp.bool() { self.pick_id(inp) } else { last };
                GoAway::new(last, reason(inp), Bytes::from_static(b"bye")).into()
            }
            9 | 10 => {
                let id = if inp.bool() {
                    StreamId::ZERO
                } else {
                    self.pick_id(inp)
                };
                let inc = inp.size().clamp(1, 0x7FFF_FFFF);
                WindowUpdate::new(id, inc).into()
            }
            _ => Unknown::new(
                Kind(0x80 | inp.u8()),
                inp.u8(),
                StreamId::new(1),
                Bytes::new(),
            )
            .into(),
        };
        if let Frame::Request(r) = &f {
            self.note_id(r.stream_id());
        }
        let mut wire = BytesMut::new();
        if f.encode(&mut wire).is_ok() {
            self.feed(&wire);
        }
    }

    fn action(&mut self, inp: &mut Input) {
        let now = self.now;
        match inp.u8() % 10 {
            0 => {
                let head = request_head(inp);
                let end = inp.bool();
                let r = self.conn.open_stream(head, end);
                trace!("action   open_stream(end_stream: {end}) -> {r:?}");
                if let Ok(id) = r {
                    assert_eq!(self.role, Role::Client);
                    self.note_id(id);
                }
            }
            1 => {
                let id = self.pick_id(inp);
                let head = response_head(inp);
                let end = inp.bool();
                let status = head.status;
                let r = self.conn.send_response(id, head, end);
                trace!("action   send_response({id}, {status}, end_stream: {end}) -> {r:?}");
            }
            2 => {
                let id = self.pick_id(inp);
                let len = usize::from(inp.u8()) << (inp.u8() % 10);
                let end = inp.bool();
                let r = self.conn.send_data(id, Bytes::from(vec![b'b'; len]), end);
                trace!("action   send_data({id}, {len} bytes, end_stream: {end}) -> {r:?}");
            }
            3 => {
                let id = self.pick_id(inp);
                let r = self.conn.send_trailers(id, header_block(inp));
                trace!("action   send_trailers({id}) -> {r:?}");
            }
            4 => {
                let id = self.pick_id(inp);
                let reason = reason(inp);
                let r = self.conn.reset_stream(id, reason);
                trace!("action   reset_stream({id}, {reason:?}) -> {r:?}");
            }
            5 => {
                let id = self.pick_id(inp);
                let n = match inp.u8() % 4 {
                    0 => usize::MAX,
                    _ => usize::from(inp.u16()),
                };
                trace!("action   release_capacity({id}, {n})");
                self.conn.release_capacity(id, n);
            }
            6 => {
                let mut p = [0u8; 8];
                p[..4].copy_from_slice(&inp.u32().to_be_bytes());
                let r = self.conn.send_ping(p, now);
                trace!("action   send_ping({p:?}) -> {r:?}");
            }
            7 => {
                let r = reason(inp);
                let debug = Bytes::from(vec![b'g'; usize::from(inp.u8()) * 4]);
                trace!("action   go_away({r:?}, {} bytes)", debug.len());
                self.conn.go_away(r, debug, now);
            }
            8 => {
                let d = Duration::from_millis(u64::from(inp.u16()));
                trace!("action   set_drain_deadline(+{d:?})");
                self.conn.set_drain_deadline(now + d);
            }
            _ => {
                // A response deadline (ignored unless `id` is a client
                // stream waiting for its head); query methods must not
                // panic either.
                let id = self.pick_id(inp);
                let d = Duration::from_millis(u64::from(inp.u16()));
                trace!("action   set_response_deadline({id}, +{d:?})");
                self.conn.set_response_deadline(id, now + d);
                let _ = self.conn.can_open_stream();
                let _ = self.conn.active_streams();
                let _ = self.conn.send_buffered(id);
                let _ = self.conn.has_pending_transmit();
                let _ = self.conn.poll_timeout();
            }
        }
    }

    /// Checks one transmitted frame against the invariants and the model.
    fn check_transmit(&mut self, f: &Frame) {
        trace!("send     {f:?}");
        if self.frames_sent == 0 {
            assert!(matches!(f, Frame::Settings(_)), "first frame {f:?}");
        }
        self.frames_sent += 1;
        let mut wire = BytesMut::new();
        f.encode(&mut wire).expect("transmitted frame encodes");
        assert_eq!(wire.len(), f.encoded_len());
        let mut peer = Codec::without_preface(self.peer_limits());
        match peer.decode_frame_eof(&mut wire) {
            Ok(Some(back)) => assert_eq!(&back, f),
            other => panic!("peer cannot decode {f:?}: {other:?}"),
        }
        match f {
            Frame::Settings(_) => {
                self.settings_seen += 1;
                assert_eq!(self.settings_seen, 1, "second SETTINGS");
            }
            Frame::Request(r) => {
                assert_eq!(self.role, Role::Client, "server sent REQUEST");
                let id = r.stream_id().get();
                assert!(id % 2 == 1 && id > self.last_request_id, "REQUEST id {id}");
                self.last_request_id = id;
            }
            Frame::Response(_) => assert_eq!(self.role, Role::Server, "client sent RESPONSE"),
            Frame::Data(d) => {
                let id = d.stream_id().get();
                let n = d.payload().len() as u64;
                self.conn_sent += n;
                *self.stream_sent.entry(id).or_default() += n;
                assert!(
                    self.conn_sent <= self.conn_credit(),
                    "connection window overrun: sent {} of {}",
                    self.conn_sent,
                    self.conn_credit()
                );
                assert!(
                    self.stream_sent[&id] <= self.stream_credit(id),
                    "stream {id} window overrun: sent {} of {}",
                    self.stream_sent[&id],
                    self.stream_credit(id)
                );
            }
            Frame::Ping(p) if p.is_ack() => {
                if let Some(i) = self.pongs_due.iter().position(|q| *q == p.payload()) {
                    self.pongs_due.remove(i);
                }
            }
            _ => {}
        }
    }

    fn drain(&mut self) {
        while let Some(f) = self.conn.poll_transmit() {
            self.check_transmit(&f);
        }
        assert!(
            self.pongs_due.is_empty() || self.conn.is_closed(),
            "PING not answered: {:?}",
            self.pongs_due
        );
        self.pongs_due.clear();
        while let Some(e) = self.conn.poll_event() {
            trace!("event    {e:?}");
            assert_eq!(self.closed_events, 0, "event after Closed: {e:?}");
            match e {
                Event::Request { id, .. } | Event::Response { id, .. } => self.note_id(id),
                Event::Data { id, data, .. } if self.auto_release => {
                    self.conn.release_capacity(id, data.len());
                }
                Event::Closed { .. } => self.closed_events += 1,
                Event::ResponseTimeout { id } => {
                    assert_eq!(self.role, Role::Client, "server timed out {id}");
                }
                _ => {}
            }
        }
        // The engine never offers more credit than the peer granted.
        let conn_left = self.conn_credit().saturating_sub(self.conn_sent);
        for &id in &self.ids {
            let w = self.conn.send_window(StreamId::new(id)) as u64;
            let stream_left = self
                .stream_credit(id)
                .saturating_sub(self.stream_sent.get(&id).copied().unwrap_or(0));
            assert!(
                w <= conn_left.min(stream_left),
                "send_window({id}) = {w} > granted {}",
                conn_left.min(stream_left)
            );
        }
        // Whatever the release pattern, transmit can always be drained.
        let _ = self.conn.poll_transmit();
    }
}

fuzz_target!(|data: &[u8]| {
    let mut inp = Input { data };
    let mut h = Harness::new(inp.u8());
    h.drain();
    let mut ops = 0;
    while !inp.is_empty() && !h.dead && ops < MAX_OPS {
        ops += 1;
        match inp.u8() % 10 {
            0 | 1 => {
                let n = usize::from(inp.u8());
                let bytes = inp.take(n).to_vec();
                h.feed(&bytes);
            }
            2 | 3 => h.peer_frame(&mut inp),
            4 => {
                let d = inp.u8();
                let ms = u64::from(d & 63)
                    * match d >> 6 {
                        0 => 1,
                        1 => 50,
                        2 => 1000,
                        _ => 60_000,
                    };
                h.now += Duration::from_millis(ms);
                trace!("clock    +{ms} ms");
                h.conn.handle_timeout(h.now);
            }
            5 => {
                if let Some(t) = h.conn.poll_timeout() {
                    h.now = h.now.max(t);
                }
                h.conn.handle_timeout(h.now);
            }
            6..=8 => h.action(&mut inp),
            _ => {
                trace!("eof");
                h.conn.handle_eof();
                assert!(!h.conn.has_pending_transmit() || !h.conn.is_closed());
            }
        }
        h.drain();
    }
});
