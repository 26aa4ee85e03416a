//! Language-neutral connection-engine vectors: `tests/vectors/engine_*.json`.
//!
//! Each case drives one engine (`role`) with raw frame bytes from the peer
//! (`recv_hex`, decoded through the codec), local actions and clock steps,
//! then checks what the engine transmitted and whether it failed.
//!
//! The JSON files are committed data. They were produced by
//! `generate_engine_vectors` below; to regenerate after a deliberate change:
//!
//! ```text
//! cargo test --no-default-features --test engine_vectors -- --ignored
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use serde::Deserialize;
use serde_json::{json, Value};
use uwire::codec::Codec;
use uwire::conn::{Config, Connection, Event, Role};
use uwire::frame::{
    Data, Frame, GoAway, HeaderBlock, Kind, Ping, Reason, Request, RequestHead, Reset, Response,
    ResponseHead, Settings, StreamId, Trailers, Unknown, WindowUpdate,
};

#[derive(Debug, Deserialize)]
struct VectorFile {
    cases: Vec<Case>,
}

#[derive(Debug, Deserialize)]
struct Case {
    name: String,
    description: String,
    role: String,
    #[serde(default)]
    config: BTreeMap<String, u64>,
    steps: Vec<Value>,
}

fn vectors_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
}

fn load(name: &str) -> Vec<Case> {
    let path = vectors_dir().join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let file: VectorFile = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not a valid vector file: {e}", path.display()));
    file.cases
}

fn reason_by_name(name: &str) -> Reason {
    (0..=12)
        .map(Reason)
        .find(|r| r.name() == Some(name))
        .unwrap_or_else(|| panic!("unknown reason name {name:?}"))
}

fn config_for(case: &Case) -> Config {
    let mut c = Config::default();
    for (k, &v) in &case.config {
        let v32 = u32::try_from(v).expect("config value fits u32");
        match k.as_str() {
            "max_concurrent_streams" => c.max_concurrent_streams = v32,
            "initial_stream_window" => c.initial_stream_window = v32,
            "initial_connection_window" => c.initial_connection_window = v32,
            "max_frame_size" => c.limits.max_frame_size = v32,
            "max_head_size" => c.limits.max_head_size = v32,
            "max_header_count" => c.limits.max_header_count = v32,
            "settings_timeout_ms" => c.settings_timeout = Duration::from_millis(v),
            "keepalive_interval_ms" => c.keepalive_interval = Some(Duration::from_millis(v)),
            "ping_timeout_ms" => c.ping_timeout = Duration::from_millis(v),
            "max_reset_streams" => c.max_reset_streams = v as usize,
            "abuse_window_ms" => c.abuse_window = Duration::from_millis(v),
            "max_peer_resets" => c.max_peer_resets = v32,
            "max_peer_pings" => c.max_peer_pings = v32,
            "max_useless_frames" => c.max_useless_frames = v32,
            "max_pending_pongs" => c.max_pending_pongs = v as usize,
            "max_pending_resets" => c.max_pending_resets = v as usize,
            other => panic!("case {}: unknown config key {other:?}", case.name),
        }
    }
    assert_eq!(c.validate(), Ok(()), "case {}: invalid config", case.name);
    c
}

/// One engine under test plus everything it produced.
struct Run<'a> {
    case: &'a Case,
    conn: Connection,
    codec: Codec,
    inbuf: BytesMut,
    base: Instant,
    elapsed: Duration,
    /// Frames transmitted since the last `expect` step.
    sent: Vec<Frame>,
    /// The connection error class, once the engine failed.
    error: Option<String>,
}

impl<'a> Run<'a> {
    fn new(case: &'a Case) -> Run<'a> {
        let role = match case.role.as_str() {
            "server" => Role::Server,
            "client" => Role::Client,
            r => panic!("case {}: unknown role {r:?}", case.name),
        };
        let config = config_for(case);
        let base = Instant::now();
        let mut conn = Connection::new(role, config.clone(), base);
        // Our own SETTINGS is always the first frame; vectors do not list it.
        assert!(
            matches!(conn.poll_transmit(), Some(Frame::Settings(_))),
            "case {}: first frame is not SETTINGS",
            case.name
        );
        Run {
            case,
            conn,
            codec: Codec::without_preface(config.limits),
            inbuf: BytesMut::new(),
            base,
            elapsed: Duration::ZERO,
            sent: Vec::new(),
            error: None,
        }
    }

    fn now(&self) -> Instant {
        self.base + self.elapsed
    }

    fn fail(&self, step: usize, msg: impl std::fmt::Display) -> ! {
        panic!(
            "engine vector {:?} ({}), step {step}: {msg}",
            self.case.name, self.case.description
        )
    }

    fn collect(&mut self) {
        while let Some(f) = self.conn.poll_transmit() {
            self.sent.push(f);
        }
        while let Some(ev) = self.conn.poll_event() {
            if let Event::Closed { error: Some(e) } = ev {
                self.error.get_or_insert(e.class().as_str().to_string());
            }
        }
    }

    fn run(&mut self) {
        let steps = &self.case.steps;
        assert!(
            steps.last().is_some_and(|s| s.get("expect").is_some()),
            "case {}: last step must be an expect",
            self.case.name
        );
        for (i, step) in steps.iter().enumerate() {
            let obj = step
                .as_object()
                .unwrap_or_else(|| self.fail(i, "step is not an object"));
            if obj.len() != 1 {
                self.fail(i, "a step has exactly one key");
            }
            let (key, arg) = obj.iter().next().unwrap();
            if key != "expect" && self.error.is_some() {
                self.fail(i, "steps after the connection failed");
            }
            match key.as_str() {
                "recv_hex" => self.recv(i, arg),
                "open_stream" => {
                    let head = RequestHead {
                        method: Bytes::copy_from_slice(
                            arg["method"].as_str().unwrap_or("GET").as_bytes(),
                        ),
                        path: Bytes::copy_from_slice(
                            arg["path"].as_str().unwrap_or("/").as_bytes(),
                        ),
                        ..Default::default()
                    };
                    let end = arg["end_stream"].as_bool().unwrap_or(true);
                    if let Err(e) = self.conn.open_stream(head, end) {
                        self.fail(i, format!("open_stream failed: {e}"));
                    }
                }
                "advance_ms" => {
                    let ms = arg
                        .as_u64()
                        .unwrap_or_else(|| self.fail(i, "bad advance_ms"));
                    self.elapsed += Duration::from_millis(ms);
                    let now = self.now();
                    self.conn.handle_timeout(now);
                }
                "release" => {
                    let id = StreamId::new(arg["stream"].as_u64().unwrap() as u32);
                    self.conn
                        .release_capacity(id, arg["bytes"].as_u64().unwrap() as usize);
                }
                "go_away" => {
                    let reason = reason_by_name(arg["reason"].as_str().unwrap());
                    let now = self.now();
                    self.conn.go_away(reason, Bytes::new(), now);
                }
                "expect" => self.expect(i, arg),
                other => self.fail(i, format!("unknown step {other:?}")),
            }
            self.collect();
        }
    }

    fn recv(&mut self, i: usize, arg: &Value) {
        let bytes = hex::decode(arg.as_str().unwrap_or_else(|| self.fail(i, "bad hex")))
            .unwrap_or_else(|e| self.fail(i, format!("bad hex: {e}")));
        self.inbuf.extend_from_slice(&bytes);
        let now = self.now();
        loop {
            match self.codec.decode_frame(&mut self.inbuf) {
                Ok(Some(f)) => {
                    if let Err(e) = self.conn.handle_frame(f, now) {
                        self.error.get_or_insert(e.class().as_str().to_string());
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    self.conn.handle_decode_error(&e);
                    break;
                }
            }
        }
        if !self.inbuf.is_empty() && self.error.is_none() {
            self.fail(i, "recv_hex left a partial frame");
        }
    }

    fn expect(&mut self, i: usize, want: &Value) {
        let want = want
            .as_object()
            .unwrap_or_else(|| self.fail(i, "expect is not an object"));
        for (key, arg) in want {
            match key.as_str() {
                "connection_error" => {
                    let class = arg.as_str().unwrap();
                    if self.error.as_deref() != Some(class) {
                        self.fail(
                            i,
                            format!("expected connection error {class}, got {:?}", self.error),
                        );
                    }
                    if !self.conn.is_closed() {
                        self.fail(i, "connection error but not closed");
                    }
                }
                "goaway_reason" => {
                    let reason = reason_by_name(arg.as_str().unwrap());
                    let got: Vec<Reason> = self
                        .sent
                        .iter()
                        .filter_map(|f| match f {
                            Frame::GoAway(g) => Some(g.reason()),
                            _ => None,
                        })
                        .collect();
                    if got != [reason] {
                        self.fail(i, format!("expected one GOAWAY({reason}), sent {got:?}"));
                    }
                }
                "stream_reset" => {
                    let id = StreamId::new(arg["stream"].as_u64().unwrap() as u32);
                    let reason = reason_by_name(arg["reason"].as_str().unwrap());
                    let found = self.sent.iter().any(|f| {
                        matches!(f, Frame::Reset(r) if r.stream_id() == id && r.reason() == reason)
                    });
                    if !found {
                        self.fail(
                            i,
                            format!("expected RESET({id}, {reason}), sent {:?}", self.sent),
                        );
                    }
                    if let Some(e) = &self.error {
                        self.fail(i, format!("stream error escalated to connection error {e}"));
                    }
                    if self.conn.is_closed() {
                        self.fail(i, "stream error closed the connection");
                    }
                }
                "no_error" => {
                    if let Some(e) = &self.error {
                        self.fail(i, format!("unexpected connection error {e}"));
                    }
                }
                "closed" => {
                    if self.conn.is_closed() != arg.as_bool().unwrap() {
                        self.fail(i, format!("is_closed() != {arg}"));
                    }
                }
                "sent" => {
                    let want = arg.as_array().unwrap();
                    if want.len() != self.sent.len()
                        || !want
                            .iter()
                            .zip(&self.sent)
                            .all(|(w, f)| frame_matches(w, f))
                    {
                        self.fail(i, format!("expected sent {arg}, got {:?}", self.sent));
                    }
                }
                other => self.fail(i, format!("unknown expectation {other:?}")),
            }
        }
        self.sent.clear();
    }
}

/// Whether frame `f` matches descriptor `w` (only the keys given are checked).
fn frame_matches(w: &Value, f: &Frame) -> bool {
    let kind = w["kind"].as_str().unwrap();
    if f.kind().name() != kind {
        return false;
    }
    if let Some(s) = w.get("stream") {
        if u64::from(f.stream_id().get()) != s.as_u64().unwrap() {
            return false;
        }
    }
    let reason = |name: &Value| reason_by_name(name.as_str().unwrap());
    match f {
        Frame::WindowUpdate(u) => w
            .get("increment")
            .is_none_or(|v| v.as_u64() == Some(u.increment().into())),
        Frame::Reset(r) => w.get("reason").is_none_or(|v| reason(v) == r.reason()),
        Frame::Ping(p) => {
            w.get("ack").is_none_or(|v| v.as_bool() == Some(p.is_ack()))
                && w.get("payload_hex")
                    .is_none_or(|v| v.as_str() == Some(&hex::encode(p.payload())))
        }
        Frame::GoAway(g) => {
            w.get("reason").is_none_or(|v| reason(v) == g.reason())
                && w.get("last_stream_id")
                    .is_none_or(|v| v.as_u64() == Some(g.last_stream_id().get().into()))
        }
        _ => true,
    }
}

fn run_file(name: &str, min_cases: usize) {
    let cases = load(name);
    assert!(
        cases.len() >= min_cases,
        "{name}: {} cases, expected at least {min_cases}",
        cases.len()
    );
    let mut names = std::collections::HashSet::new();
    for case in &cases {
        assert!(
            names.insert(&case.name),
            "duplicate case name {}",
            case.name
        );
        Run::new(case).run();
    }
}

#[test]
fn engine_invalid_vectors() {
    run_file("engine_invalid.json", 20);
}

#[test]
fn engine_valid_vectors() {
    run_file("engine_valid.json", 8);
}

#[test]
fn invalid_vectors_all_end_in_an_error() {
    for case in load("engine_invalid.json") {
        let last = &case.steps.last().unwrap()["expect"];
        assert!(
            last.get("connection_error").is_some() || last.get("stream_reset").is_some(),
            "engine_invalid case {} does not end in an error",
            case.name
        );
    }
}

// ----------------------------------------------------------------------
// Generator (run with --ignored to rewrite the JSON files)
// ----------------------------------------------------------------------

fn hex_frame(f: impl Into<Frame>) -> String {
    let mut b = BytesMut::new();
    f.into().encode(&mut b).unwrap();
    hex::encode(b)
}

fn recv(f: impl Into<Frame>) -> Value {
    json!({ "recv_hex": hex_frame(f) })
}

/// Several frames in one `recv_hex` step: fed back to back, with no
/// transmit drain in between.
fn recv_all(frames: impl IntoIterator<Item = Frame>) -> Value {
    let hex: String = frames.into_iter().map(hex_frame).collect();
    json!({ "recv_hex": hex })
}

fn req_frame(id: u32, end: bool) -> Frame {
    let head = RequestHead {
        method: "GET".into(),
        path: "/".into(),
        ..Default::default()
    };
    Request::new(sid(id), head, end).into()
}

/// REQUEST n, RESET(CANCEL) n for stream ids `first`, `first + 2`, ...
fn open_reset_pairs(first: u32, count: u32) -> Value {
    recv_all((0..count).flat_map(|i| {
        let id = first + 2 * i;
        [
            req_frame(id, false),
            Reset::new(sid(id), Reason::CANCEL).into(),
        ]
    }))
}

fn pings(count: usize) -> Value {
    recv_all((0..count).map(|i| Ping::new((i as u64).to_be_bytes()).into()))
}

fn extension() -> Frame {
    Unknown::new(Kind(0xA0), 0, sid(0), Bytes::new()).into()
}

fn calm(class: &str) -> Value {
    conn_err(class, "ENHANCE_YOUR_CALM")
}

fn sid(n: u32) -> StreamId {
    StreamId::new(n)
}

fn settings() -> Value {
    recv(Settings::default())
}

fn req(id: u32, end: bool) -> Value {
    let head = RequestHead {
        method: "GET".into(),
        path: "/".into(),
        ..Default::default()
    };
    recv(Request::new(sid(id), head, end))
}

fn resp(id: u32, status: u16, end: bool) -> Value {
    recv(Response::new(sid(id), ResponseHead::new(status), end))
}

fn data(id: u32, len: usize, end: bool) -> Value {
    recv(Data::new(sid(id), Bytes::from(vec![b'x'; len]), end))
}

fn trailers(id: u32) -> Value {
    let fields = HeaderBlock::try_from_pairs([("x-trailer", "1")]).unwrap();
    recv(Trailers::new(sid(id), fields))
}

fn wu(id: u32, inc: u32) -> Value {
    recv(WindowUpdate::new(sid(id), inc))
}

fn open(end: bool) -> Value {
    json!({ "open_stream": { "method": "GET", "path": "/", "end_stream": end } })
}

fn advance(ms: u64) -> Value {
    json!({ "advance_ms": ms })
}

fn conn_err(class: &str, reason: &str) -> Value {
    json!({ "expect": { "connection_error": class, "goaway_reason": reason } })
}

fn stream_reset(id: u32, reason: &str) -> Value {
    json!({ "expect": { "stream_reset": { "stream": id, "reason": reason } } })
}

fn expect(v: Value) -> Value {
    json!({ "expect": v })
}

fn case(name: &str, description: &str, role: &str, config: Value, steps: Vec<Value>) -> Value {
    json!({
        "name": name,
        "description": description,
        "role": role,
        "config": config,
        "steps": steps,
    })
}

fn invalid_cases() -> Vec<Value> {
    let none = json!({});
    let s = "server";
    let c = "client";
    let proto = "PROTOCOL_ERROR";
    let fce = "FLOW_CONTROL_ERROR";
    vec![
        case("settings_not_first_ping", "PING before the peer's SETTINGS", s, none.clone(),
            vec![recv(Ping::new(*b"12345678")), conn_err("settings_not_first", proto)]),
        case("settings_not_first_request", "REQUEST before the peer's SETTINGS", s, none.clone(),
            vec![req(1, true), conn_err("settings_not_first", proto)]),
        case("settings_not_first_window_update", "WINDOW_UPDATE before the peer's SETTINGS", s, none.clone(),
            vec![wu(0, 100), conn_err("settings_not_first", proto)]),
        case("settings_not_first_goaway_to_client", "GOAWAY before the server's SETTINGS", c, none.clone(),
            vec![recv(GoAway::new(sid(0), Reason::NO_ERROR, Bytes::new())), conn_err("settings_not_first", proto)]),
        case("settings_not_first_extension", "an extension frame (kind 0xA0) before SETTINGS: any other frame first is an error", s, none.clone(),
            vec![recv(Unknown::new(Kind(0xA0), 0, sid(0), Bytes::new())), conn_err("settings_not_first", proto)]),
        case("duplicate_settings", "two SETTINGS in a row", s, none.clone(),
            vec![settings(), settings(), conn_err("duplicate_settings", proto)]),
        case("duplicate_settings_later", "a second SETTINGS after a stream opened", s, none.clone(),
            vec![settings(), req(1, true), settings(), conn_err("duplicate_settings", proto)]),
        case("stream_id_reuse_same_id", "REQUEST on stream 1 twice", s, none.clone(),
            vec![settings(), req(1, true), req(1, true), conn_err("stream_id_reuse", proto)]),
        case("stream_id_decreasing", "REQUEST 5 then REQUEST 3", s, none.clone(),
            vec![settings(), req(5, true), req(3, true), conn_err("stream_id_reuse", proto)]),
        case("data_on_idle_stream", "DATA on stream 1 before any REQUEST", s, none.clone(),
            vec![settings(), data(1, 1, false), conn_err("frame_on_idle_stream", proto)]),
        case("data_above_highest_stream", "DATA on stream 3 when only 1 was opened", s, none.clone(),
            vec![settings(), req(1, false), data(3, 1, false), conn_err("frame_on_idle_stream", proto)]),
        case("data_on_even_stream", "DATA on stream 2: only odd ids are ever opened", s, none.clone(),
            vec![settings(), req(3, false), data(2, 1, false), conn_err("frame_on_idle_stream", proto)]),
        case("trailers_on_idle_stream", "TRAILERS on a stream never opened", s, none.clone(),
            vec![settings(), trailers(1), conn_err("frame_on_idle_stream", proto)]),
        case("reset_on_idle_stream", "RESET on a stream never opened", s, none.clone(),
            vec![settings(), recv(Reset::new(sid(1), Reason::CANCEL)), conn_err("frame_on_idle_stream", proto)]),
        case("window_update_on_idle_stream", "WINDOW_UPDATE on a stream never opened", s, none.clone(),
            vec![settings(), wu(1, 10), conn_err("frame_on_idle_stream", proto)]),
        case("data_exceeds_stream_window", "1025 DATA bytes into a 1024-byte stream window", s,
            json!({"initial_stream_window": 1024}),
            vec![settings(), req(1, false), data(1, 1025, false), stream_reset(1, fce)]),
        case("data_exceeds_stream_window_over_two_frames", "600 + 600 DATA bytes into a 1024-byte stream window", s,
            json!({"initial_stream_window": 1024}),
            vec![settings(), req(1, false), data(1, 600, false), expect(json!({"no_error": true, "sent": []})),
                 data(1, 600, false), stream_reset(1, fce)]),
        case("data_exceeds_connection_window", "1500 + 1000 DATA bytes on two streams into a 2048-byte connection window", s,
            json!({"initial_stream_window": 2048, "initial_connection_window": 2048}),
            vec![settings(), req(1, false), req(3, false), data(1, 1500, false), data(3, 1000, false),
                 conn_err("flow_control_violation", fce)]),
        case("data_on_reset_stream_counts_against_connection_window",
            "DATA for a stream the peer reset is ignored but still counts: 2049 bytes into a 2048-byte connection window", s,
            json!({"initial_stream_window": 2048, "initial_connection_window": 2048}),
            vec![settings(), req(1, false), recv(Reset::new(sid(1), Reason::CANCEL)), data(1, 2049, false),
                 conn_err("flow_control_violation", fce)]),
        case("window_update_overflows_stream_window", "stream send window 256 KiB + 2^31-1", s, none.clone(),
            vec![settings(), req(1, true), wu(1, 0x7FFF_FFFF), stream_reset(1, fce)]),
        case("window_update_overflows_connection_window", "connection send window 1 MiB + 2^31-1", s, none.clone(),
            vec![settings(), wu(0, 0x7FFF_FFFF), conn_err("window_overflow", fce)]),
        case("window_update_overflow_cumulative", "1 MiB + 0x7FE00000 = 2^31-2^20 is fine, another 1 MiB overflows", s, none.clone(),
            vec![settings(), wu(0, 0x7FE0_0000), expect(json!({"no_error": true})), wu(0, 0x0010_0000),
                 conn_err("window_overflow", fce)]),
        case("data_after_end_stream", "DATA after a REQUEST with END_STREAM", s, none.clone(),
            vec![settings(), req(1, true), data(1, 1, false), stream_reset(1, "STREAM_CLOSED")]),
        case("data_after_data_end_stream", "DATA after DATA with END_STREAM", s, none.clone(),
            vec![settings(), req(1, false), data(1, 3, true), data(1, 1, false), stream_reset(1, "STREAM_CLOSED")]),
        case("trailers_after_end_stream", "TRAILERS after a REQUEST with END_STREAM", s, none.clone(),
            vec![settings(), req(1, true), trailers(1), stream_reset(1, "STREAM_CLOSED")]),
        case("trailers_after_trailers", "two TRAILERS frames", s, none.clone(),
            vec![settings(), req(1, false), trailers(1), trailers(1), stream_reset(1, "STREAM_CLOSED")]),
        case("response_sent_to_server", "RESPONSE received by a server", s, none.clone(),
            vec![settings(), req(1, false), resp(1, 200, true), conn_err("unexpected_frame", proto)]),
        case("streams_over_max_concurrent_refused", "REQUEST 3 while stream 1 is open and max_concurrent_streams is 1", s,
            json!({"max_concurrent_streams": 1}),
            vec![settings(), req(1, true), req(3, true), stream_reset(3, "REFUSED_STREAM")]),
        case("zero_concurrent_streams_refused", "max_concurrent_streams 0 refuses every REQUEST", s,
            json!({"max_concurrent_streams": 0}),
            vec![settings(), req(1, true), stream_reset(1, "REFUSED_STREAM")]),
        case("settings_timeout", "no SETTINGS from the peer within the default 10 s", s, none.clone(),
            vec![advance(9_999), expect(json!({"no_error": true, "sent": []})), advance(1),
                 conn_err("settings_timeout", "SETTINGS_TIMEOUT")]),
        case("settings_timeout_configured", "no SETTINGS within a configured 500 ms", c,
            json!({"settings_timeout_ms": 500}),
            vec![advance(499), expect(json!({"no_error": true})), advance(1),
                 conn_err("settings_timeout", "SETTINGS_TIMEOUT")]),
        case("keepalive_ping_timeout", "keepalive PING after 1 s of silence, no ACK within 2 s", s,
            json!({"keepalive_interval_ms": 1000, "ping_timeout_ms": 2000}),
            vec![settings(), advance(999), expect(json!({"sent": []})), advance(1),
                 expect(json!({"sent": [{"kind": "PING", "ack": false}]})), advance(1_999),
                 expect(json!({"no_error": true, "sent": []})), advance(1),
                 conn_err("ping_timeout", "TIMEOUT")]),
        case("unexpected_ping_ack", "PING ACK when no PING was sent", s, none.clone(),
            vec![settings(), recv(Ping::pong(*b"notours!")), conn_err("unexpected_ping_ack", proto)]),
        case("ping_ack_wrong_payload", "PING ACK whose payload matches no PING we sent (a keepalive is outstanding)", c,
            json!({"keepalive_interval_ms": 1000}),
            vec![settings(), advance(1000), expect(json!({"sent": [{"kind": "PING", "ack": false}]})),
                 recv(Ping::pong(*b"notours!")), conn_err("unexpected_ping_ack", proto)]),
        case("request_sent_to_client", "REQUEST received by a client", c, none.clone(),
            vec![settings(), req(1, true), conn_err("unexpected_frame", proto)]),
        case("response_on_idle_stream", "RESPONSE on a stream the client never opened", c, none.clone(),
            vec![settings(), resp(1, 200, true), conn_err("frame_on_idle_stream", proto)]),
        case("response_on_even_stream", "RESPONSE on stream 2: clients open odd ids only", c, none.clone(),
            vec![settings(), open(true), resp(2, 200, true), conn_err("frame_on_idle_stream", proto)]),
        case("data_before_response", "DATA before the final RESPONSE", c, none.clone(),
            vec![settings(), open(true), data(1, 1, false), conn_err("unexpected_frame", proto)]),
        case("data_after_interim_response", "DATA after a 100 Continue but before the final RESPONSE", c, none.clone(),
            vec![settings(), open(false), resp(1, 100, false), data(1, 1, false), conn_err("unexpected_frame", proto)]),
        case("trailers_before_response", "TRAILERS before the final RESPONSE", c, none.clone(),
            vec![settings(), open(true), trailers(1), conn_err("unexpected_frame", proto)]),
        case("second_final_response", "two final RESPONSE heads", c, none.clone(),
            vec![settings(), open(true), resp(1, 200, false), resp(1, 200, false), conn_err("unexpected_frame", proto)]),
        case("client_data_after_end_stream", "DATA after a RESPONSE with END_STREAM while the request body is still open", c, none.clone(),
            vec![settings(), open(false), resp(1, 200, true), data(1, 1, false), stream_reset(1, "STREAM_CLOSED")]),
        case("data_on_recently_closed_stream", "DATA on a stream that closed normally (both END_STREAMs seen)", c, none.clone(),
            vec![settings(), open(true), resp(1, 200, true), expect(json!({"no_error": true})), data(1, 1, false),
                 stream_reset(1, "STREAM_CLOSED")]),
        case("client_data_exceeds_stream_window", "1025 response bytes into a 1024-byte stream window", c,
            json!({"initial_stream_window": 1024}),
            vec![settings(), open(true), resp(1, 200, false), data(1, 1025, false), stream_reset(1, fce)]),
        case("rapid_reset_over_budget", "max_peer_resets 2 per 1 s: a third REQUEST+RESET within the window fails", s,
            json!({"max_peer_resets": 2, "abuse_window_ms": 1000}),
            vec![settings(), open_reset_pairs(1, 2), expect(json!({"no_error": true, "sent": []})), advance(999),
                 open_reset_pairs(5, 1), calm("rapid_reset")]),
        case("rapid_reset_default_budget", "the default budget: 1000 REQUEST+RESET pairs pass, the 1001st within 10 s fails", s, none.clone(),
            vec![settings(), open_reset_pairs(1, 1000), expect(json!({"no_error": true, "sent": []})), advance(9_999),
                 open_reset_pairs(2001, 1), calm("rapid_reset")]),
        case("rapid_reset_refusals", "refused REQUESTs count as resets: max_peer_resets 2, max_concurrent_streams 0", s,
            json!({"max_peer_resets": 2, "max_concurrent_streams": 0}),
            vec![settings(), req(1, true), req(3, true),
                 expect(json!({"no_error": true, "sent": [{"kind": "RESET", "stream": 1, "reason": "REFUSED_STREAM"},
                                                        {"kind": "RESET", "stream": 3, "reason": "REFUSED_STREAM"}]})),
                 req(5, true), calm("rapid_reset")]),
        case("rapid_reset_stream_errors", "RESET(STREAM_CLOSED) replies count as resets: max_peer_resets 1", s,
            json!({"max_peer_resets": 1}),
            vec![settings(), req(1, true), req(3, true), data(1, 1, false), stream_reset(1, "STREAM_CLOSED"),
                 data(3, 1, false), calm("rapid_reset")]),
        case("reply_reset_backlog", "max_pending_resets 2: a third refusal RESET queued without a transmit drain fails", s,
            json!({"max_pending_resets": 2, "max_concurrent_streams": 0}),
            vec![settings(), recv_all([req_frame(1, true), req_frame(3, true)]), expect(json!({"no_error": true})),
                 recv_all([req_frame(5, true), req_frame(7, true), req_frame(9, true)]), calm("transmit_backlog")]),
        case("ping_flood_budget", "max_peer_pings 3 per 1 s: a fourth PING within the window fails", s,
            json!({"max_peer_pings": 3, "abuse_window_ms": 1000}),
            vec![settings(), pings(1), pings(1), pings(1), expect(json!({"no_error": true})), advance(999),
                 pings(1), calm("ping_flood")]),
        case("ping_flood_pending_acks", "max_pending_pongs 2: three PINGs in one read without a transmit drain fail", s,
            json!({"max_pending_pongs": 2}),
            vec![settings(), pings(2), expect(json!({"no_error": true, "sent": [{"kind": "PING", "ack": true}, {"kind": "PING", "ack": true}]})),
                 pings(3), calm("ping_flood")]),
        case("ping_flood_default_pending_acks", "the default: 16 PINGs in one read pass, 17 fail", s, none.clone(),
            vec![settings(), pings(16), expect(json!({"no_error": true})), pings(17), calm("ping_flood")]),
        case("frame_flood_empty_data", "max_useless_frames 2: a third empty DATA without END_STREAM fails", s,
            json!({"max_useless_frames": 2}),
            vec![settings(), req(1, false), data(1, 0, false), data(1, 0, false), expect(json!({"no_error": true, "sent": []})),
                 data(1, 0, false), calm("frame_flood")]),
        case("frame_flood_extension_frames", "max_useless_frames 2: a third extension frame fails", s,
            json!({"max_useless_frames": 2}),
            vec![settings(), recv_all([extension(), extension()]), expect(json!({"no_error": true})),
                 recv(Unknown::new(Kind(0xFF), 0, sid(3), Bytes::new())), calm("frame_flood")]),
        case("frame_flood_tiny_window_updates", "max_useless_frames 2: connection WINDOW_UPDATEs below 1024 bytes, the third fails", s,
            json!({"max_useless_frames": 2}),
            vec![settings(), wu(0, 1), wu(0, 1023), expect(json!({"no_error": true})), wu(0, 100), calm("frame_flood")]),
        case("frame_flood_mixed", "empty DATA, extension and tiny WINDOW_UPDATE share one budget of 2", c,
            json!({"max_useless_frames": 2}),
            vec![settings(), open(false), resp(1, 200, false), data(1, 0, false), recv(extension()),
                 expect(json!({"no_error": true})), wu(0, 10), calm("frame_flood")]),
        case("frame_flood_default_budget", "the default: 1000 extension frames per 10 s pass, the 1001st fails", s, none.clone(),
            vec![settings(), recv_all((0..1000).map(|_| extension())), expect(json!({"no_error": true})),
                 advance(9_999), recv(extension()), calm("frame_flood")]),
    ]
}

fn valid_cases() -> Vec<Value> {
    let none = json!({});
    let s = "server";
    let c = "client";
    let ok = |sent: Value| expect(json!({"no_error": true, "sent": sent}));
    vec![
        case(
            "ping_is_answered",
            "PING answered by PING ACK with the same payload",
            s,
            none.clone(),
            vec![
                settings(),
                recv(Ping::new(*b"abcdefgh")),
                ok(json!([{"kind": "PING", "ack": true, "payload_hex": hex::encode(b"abcdefgh")}])),
            ],
        ),
        case(
            "extension_frames_ignored",
            "unknown extension kinds (0x80-0xFF) are ignored, on any stream",
            s,
            none.clone(),
            vec![
                settings(),
                recv(Unknown::new(
                    Kind(0xA0),
                    0,
                    sid(0),
                    Bytes::from_static(b"x"),
                )),
                recv(Unknown::new(Kind(0xFF), 0xF0, sid(7), Bytes::new())),
                ok(json!([])),
            ],
        ),
        case(
            "stream_window_exactly_filled",
            "exactly 1024 DATA bytes into a 1024-byte stream window",
            s,
            json!({"initial_stream_window": 1024}),
            vec![
                settings(),
                req(1, false),
                data(1, 1024, false),
                ok(json!([])),
            ],
        ),
        case(
            "data_on_reset_stream_credited",
            "DATA after the peer's RESET is ignored and returned to the connection window",
            s,
            json!({"initial_stream_window": 2048, "initial_connection_window": 2048}),
            vec![
                settings(),
                req(1, false),
                recv(Reset::new(sid(1), Reason::CANCEL)),
                data(1, 1500, false),
                ok(json!([{"kind": "WINDOW_UPDATE", "stream": 0, "increment": 1500}])),
            ],
        ),
        case(
            "refused_stream_data_ignored",
            "DATA for a refused stream is ignored",
            s,
            json!({"max_concurrent_streams": 1}),
            vec![
                settings(),
                req(1, false),
                req(3, false),
                ok(json!([{"kind": "RESET", "stream": 3, "reason": "REFUSED_STREAM"}])),
                data(3, 100, true),
                ok(json!([])),
            ],
        ),
        case(
            "peer_reset_then_data_ignored",
            "a stream the peer reset ignores later DATA",
            s,
            none.clone(),
            vec![
                settings(),
                req(1, false),
                recv(Reset::new(sid(1), Reason::CANCEL)),
                data(1, 10, false),
                ok(json!([])),
            ],
        ),
        case(
            "window_update_when_exhausted",
            "a release while the stream window is 0 is returned at once",
            s,
            json!({"initial_stream_window": 1024}),
            vec![
                settings(),
                req(1, false),
                data(1, 1024, false),
                ok(json!([])),
                json!({"release": {"stream": 1, "bytes": 10}}),
                ok(json!([{"kind": "WINDOW_UPDATE", "stream": 1, "increment": 10}])),
            ],
        ),
        case(
            "window_update_batched_at_half",
            "releases are batched until half the window is unreturned",
            s,
            json!({"initial_stream_window": 1024}),
            vec![
                settings(),
                req(1, false),
                data(1, 600, false),
                json!({"release": {"stream": 1, "bytes": 511}}),
                ok(json!([])),
                json!({"release": {"stream": 1, "bytes": 1}}),
                ok(json!([{"kind": "WINDOW_UPDATE", "stream": 1, "increment": 512}])),
            ],
        ),
        case(
            "interim_responses",
            "any number of 1xx heads before the final one",
            c,
            none.clone(),
            vec![
                settings(),
                open(true),
                ok(json!([{"kind": "REQUEST", "stream": 1}])),
                resp(1, 100, false),
                resp(1, 103, false),
                resp(1, 200, true),
                expect(json!({"no_error": true, "closed": false, "sent": []})),
            ],
        ),
        case(
            "window_update_on_closed_stream_ignored",
            "WINDOW_UPDATE for a closed stream is ignored",
            c,
            none.clone(),
            vec![
                settings(),
                open(true),
                resp(1, 200, true),
                wu(1, 100),
                ok(json!([{"kind": "REQUEST", "stream": 1}])),
            ],
        ),
        case(
            "data_on_forgotten_stream_ignored",
            "with max_reset_streams 0 a closed stream is forgotten at once; late DATA is ignored",
            c,
            json!({"max_reset_streams": 0}),
            vec![
                settings(),
                open(true),
                resp(1, 200, true),
                data(1, 1, false),
                ok(json!([{"kind": "REQUEST", "stream": 1}])),
            ],
        ),
        case(
            "client_graceful_goaway",
            "GOAWAY(last=1): stream 3 is refused locally, the client closes when stream 1 ends",
            c,
            none.clone(),
            vec![
                settings(),
                open(true),
                open(true),
                ok(json!([{"kind": "REQUEST", "stream": 1}, {"kind": "REQUEST", "stream": 3}])),
                recv(GoAway::new(sid(1), Reason::NO_ERROR, Bytes::new())),
                expect(json!({"no_error": true, "closed": false})),
                resp(1, 200, true),
                expect(json!({"no_error": true, "closed": true, "sent": []})),
            ],
        ),
        case(
            "rapid_reset_budget_renews",
            "max_peer_resets 2 per 1 s: two REQUEST+RESET pairs in each of three windows",
            s,
            json!({"max_peer_resets": 2, "abuse_window_ms": 1000}),
            vec![
                settings(),
                open_reset_pairs(1, 2),
                advance(1000),
                open_reset_pairs(5, 2),
                advance(1000),
                open_reset_pairs(9, 2),
                ok(json!([])),
            ],
        ),
        case(
            "client_resets_not_counted_on_client",
            "a client does not count the server's RESETs of its streams: max_peer_resets 0",
            c,
            json!({"max_peer_resets": 0}),
            vec![
                settings(),
                open(false),
                open(false),
                recv(Reset::new(sid(1), Reason::REFUSED_STREAM)),
                recv(Reset::new(sid(3), Reason::INTERNAL_ERROR)),
                ok(json!([{"kind": "REQUEST", "stream": 1}, {"kind": "REQUEST", "stream": 3}])),
            ],
        ),
        case(
            "ping_budget_exactly_reached",
            "max_peer_pings 3 and max_pending_pongs 3: three PINGs in one read are all answered",
            s,
            json!({"max_peer_pings": 3, "max_pending_pongs": 3}),
            vec![
                settings(),
                pings(3),
                ok(json!([
                    {"kind": "PING", "ack": true, "payload_hex": "0000000000000000"},
                    {"kind": "PING", "ack": true, "payload_hex": "0000000000000001"},
                    {"kind": "PING", "ack": true, "payload_hex": "0000000000000002"}
                ])),
            ],
        ),
        case(
            "useful_frames_not_counted",
            "max_useless_frames 0: connection WINDOW_UPDATE of 1024, stream WINDOW_UPDATE of 1, empty DATA with END_STREAM",
            s,
            json!({"max_useless_frames": 0}),
            vec![
                settings(),
                req(1, false),
                wu(0, 1024),
                wu(1, 1),
                data(1, 0, true),
                ok(json!([])),
            ],
        ),
        case(
            "useless_frame_budget_renews",
            "max_useless_frames 2 per 1 s: two extension frames in each of three windows",
            s,
            json!({"max_useless_frames": 2, "abuse_window_ms": 1000}),
            vec![
                settings(),
                recv_all([extension(), extension()]),
                advance(1000),
                recv_all([extension(), extension()]),
                advance(1000),
                recv_all([extension(), extension()]),
                ok(json!([])),
            ],
        ),
        case(
            "server_graceful_goaway",
            "after our GOAWAY(NO_ERROR) new REQUESTs are refused; close when none remain",
            s,
            none.clone(),
            vec![
                settings(),
                req(1, true),
                json!({"go_away": {"reason": "NO_ERROR"}}),
                ok(json!([{"kind": "GOAWAY", "reason": "NO_ERROR", "last_stream_id": 1}])),
                req(3, true),
                ok(json!([{"kind": "RESET", "stream": 3, "reason": "REFUSED_STREAM"}])),
                recv(Reset::new(sid(1), Reason::CANCEL)),
                expect(json!({"no_error": true, "closed": true})),
            ],
        ),
    ]
}

#[test]
#[ignore = "rewrites tests/vectors/engine_*.json"]
fn generate_engine_vectors() {
    let about = "uwire/1 connection-engine vectors. Each case drives one engine in `role` \
        with `config` overrides (defaults otherwise). Steps: recv_hex = frame bytes (after \
        the preface) from the peer, decoded and fed to the engine; open_stream = a client \
        opens a stream; advance_ms = move the clock and fire timers; release = the app \
        consumed received bytes; go_away = local GOAWAY; expect = checks. `sent` lists \
        exactly the frames the engine transmitted since the previous expect (only the keys \
        given are compared; the engine's own initial SETTINGS is never listed). \
        connection_error = the engine failed with that class and transmitted one GOAWAY \
        with goaway_reason; stream_reset = the engine transmitted that RESET and is still \
        open.";
    for (file, cases) in [
        ("engine_invalid.json", invalid_cases()),
        ("engine_valid.json", valid_cases()),
    ] {
        let doc = json!({ "format_version": 1, "description": about, "cases": cases });
        let mut text = serde_json::to_string_pretty(&doc).unwrap();
        text.push('\n');
        std::fs::write(vectors_dir().join(file), text).unwrap();
    }
}
