//! Every server limit at its edge, over real Unix sockets: connections,
//! concurrent streams (with a raw client that ignores the announced limit),
//! head size, header count, body size, idle timeout, request deadline, and
//! malformed input closing only the offending connection.
#![cfg(feature = "cli")]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use tokio::io::AsyncReadExt;
use uwire::frame::{preface, Data, Frame, HeaderBlock, Ping, Reason, Request, RequestHead};
use uwire::server::{handler_fn, BoxError, ErrorKind, Handler, Response, ServerConfig};

// ---------------------------------------------------------------------------
// Connections and streams
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_edge() {
    bounded(async {
        let config = ServerConfig {
            max_connections: 2,
            ..ServerConfig::default()
        };
        let srv = TestServer::start("max-conns", config, app()).await;
        let c1 = srv.client().await;
        let c2 = srv.client().await;
        assert_eq!(get(&c1, "/id/1").await.unwrap().1, "1");
        assert_eq!(get(&c2, "/id/2").await.unwrap().1, "2");

        // The third connects (listen backlog) but is not served...
        let c3 = srv.client().await;
        let third = tokio::spawn(async move {
            let r = get(&c3, "/id/3").await;
            (r, c3)
        });
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(
            !third.is_finished(),
            "connection over max_connections was served"
        );
        assert_eq!(srv.metrics.snapshot().connections_total, 2);
        // ...while the first two still are.
        assert_eq!(get(&c2, "/id/2b").await.unwrap().1, "2b");

        // Closing one lets the third in.
        drop(c1);
        let (r, c3) = within(Duration::from_secs(5), "third connection served", third)
            .await
            .unwrap();
        assert_eq!(r.unwrap(), (200, Bytes::from("3")));
        assert_eq!(srv.metrics.snapshot().connections_total, 3);
        assert_eq!(srv.metrics.snapshot().connections_active, 2);
        drop((c2, c3));
    })
    .await
}

/// A handler that holds every request until `release` is notified.
fn gated(arrived: Arc<AtomicUsize>, release: Arc<tokio::sync::Notify>) -> impl Handler {
    handler_fn(move |req: uwire::server::Request| {
        let (arrived, release) = (arrived.clone(), release.clone());
        async move {
            let wait = release.notified();
            arrived.fetch_add(1, Ordering::SeqCst);
            wait.await;
            let p = String::from_utf8_lossy(&req.head().path).into_owned();
            Ok::<_, BoxError>(Response::new(p.into()))
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_concurrent_streams_refuses_a_raw_client_that_ignores_it() {
    bounded(async {
        const LIMIT: u32 = 4;
        let mut config = ServerConfig::default();
        config.conn.max_concurrent_streams = LIMIT;
        let arrived = Arc::new(AtomicUsize::new(0));
        let release = Arc::new(tokio::sync::Notify::new());
        let srv = TestServer::start(
            "max-streams-raw",
            config,
            gated(arrived.clone(), release.clone()),
        )
        .await;
        let mut raw = Raw::connect(&srv.path).await;
        let settings = raw
            .until("SETTINGS", |f| matches!(f, Frame::Settings(_)))
            .await;
        let Frame::Settings(s) = settings else {
            unreachable!()
        };
        assert_eq!(s.max_concurrent_streams, Some(LIMIT));
        // LIMIT + 2 requests, ignoring the announced limit.
        for i in 0..LIMIT + 2 {
            let id = 2 * i + 1;
            raw.send(Request::new(sid(id), head("GET", &format!("/{id}")), true))
                .await;
        }
        // The two over the limit are refused...
        let mut refused = Vec::new();
        while refused.len() < 2 {
            if let Frame::Reset(r) = raw.until("RESET", |f| matches!(f, Frame::Reset(_))).await {
                assert_eq!(r.reason(), Reason::REFUSED_STREAM);
                refused.push(r.stream_id().get());
            }
        }
        assert_eq!(refused, vec![2 * LIMIT + 1, 2 * LIMIT + 3]);
        // ...the others reach the handler, and are answered once released.
        within(Duration::from_secs(5), "handlers to start", async {
            while arrived.load(Ordering::SeqCst) < LIMIT as usize {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(arrived.load(Ordering::SeqCst), LIMIT as usize);
        release.notify_waiters();
        let mut answered = Vec::new();
        let mut bodies = 0;
        while bodies < LIMIT {
            match raw.recv().await.expect("connection stays open") {
                Frame::Response(r) => {
                    assert_eq!(r.head().status, 200);
                    answered.push(r.stream_id().get());
                }
                Frame::Data(d) if d.is_end_stream() => bodies += 1,
                Frame::Reset(r) => panic!("unexpected {r:?}"),
                _ => {}
            }
        }
        answered.sort();
        assert_eq!(answered, vec![1, 3, 5, 7]);
        // With room again, a new stream is accepted.
        raw.send(Request::new(
            sid(2 * LIMIT + 5),
            head("GET", "/again"),
            true,
        ))
        .await;
        within(Duration::from_secs(5), "fifth handler", async {
            while arrived.load(Ordering::SeqCst) < LIMIT as usize + 1 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        release.notify_waiters();
        let f = raw
            .until("RESPONSE", |f| matches!(f, Frame::Response(_)))
            .await;
        assert_eq!(f.stream_id().get(), 2 * LIMIT + 5);
        assert_eq!(srv.metrics.snapshot().streams_total, LIMIT as u64 + 1);
    })
    .await
}

// ---------------------------------------------------------------------------
// Head size and header count
// ---------------------------------------------------------------------------

/// A GET head whose encoded length is exactly `len`, padded with one header.
fn head_of_len(len: usize) -> RequestHead {
    for pad in 0..len {
        for extra in 0..4usize {
            let mut h = head("GET", "/hello");
            h.authority = Bytes::from("a".repeat(extra + 1));
            h.headers = HeaderBlock::try_from_pairs([("X-Pad", "p".repeat(pad))]).unwrap();
            if h.encoded_len() == len {
                return h;
            }
        }
    }
    panic!("cannot build a head of {len} bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_head_size_edge() {
    bounded(async {
        const MAX: u32 = 4096;
        let mut config = ServerConfig::default();
        config.conn.limits.max_head_size = MAX;
        let srv = TestServer::start("max-head", config, app()).await;

        // A good connection with a request in flight throughout.
        let good = srv.client().await;
        let slow = {
            let good = good.clone();
            tokio::spawn(async move { get(&good, "/sleep/300").await })
        };

        let mut raw = Raw::connect(&srv.path).await;
        let at = head_of_len(MAX as usize);
        assert_eq!(at.encoded_len(), MAX as usize);
        raw.send(Request::new(sid(1), at, true)).await;
        let f = raw
            .until("RESPONSE", |f| matches!(f, Frame::Response(_)))
            .await;
        let Frame::Response(r) = f else {
            unreachable!()
        };
        assert_eq!((r.stream_id().get(), r.head().status), (1, 200));

        let over = head_of_len(MAX as usize + 1);
        raw.send(Request::new(sid(3), over, true)).await;
        let (g, closed) = raw.expect_goaway().await;
        assert_eq!(g.reason(), Reason::FRAME_SIZE_ERROR);
        assert_eq!(g.last_stream_id().get(), 1);
        assert!(closed, "connection not closed after GOAWAY");

        assert_eq!(slow.await.unwrap().unwrap(), (200, "slept 300".into()));
        assert_eq!(get(&good, "/hello").await.unwrap().0, 200);
        let fresh = srv.client().await;
        assert_eq!(get(&fresh, "/hello").await.unwrap().0, 200);
        let s = settle(&srv.metrics, |s| s.error(ErrorKind::Protocol) >= 1).await;
        assert_eq!(s.error(ErrorKind::Protocol), 1);
    })
    .await
}

fn head_with_headers(n: usize) -> RequestHead {
    let mut h = head("GET", "/hello");
    h.headers = HeaderBlock::try_from_pairs((0..n).map(|i| (format!("X-H{i}"), "v"))).unwrap();
    h
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_header_count_edge() {
    bounded(async {
        const MAX: u32 = 8;
        let mut config = ServerConfig::default();
        config.conn.limits.max_header_count = MAX;
        let srv = TestServer::start("max-headers", config, app()).await;
        let good = srv.client().await;

        let mut raw = Raw::connect(&srv.path).await;
        raw.send(Request::new(sid(1), head_with_headers(MAX as usize), true))
            .await;
        let f = raw
            .until("RESPONSE", |f| matches!(f, Frame::Response(_)))
            .await;
        assert_eq!(f.stream_id().get(), 1);
        // The net client refuses to send a head the server will not take.
        let e = get_with(&good, head_with_headers(MAX as usize + 1))
            .await
            .expect_err("client must refuse an over-limit head");
        assert!(e.is_user(), "{e}");

        raw.send(Request::new(
            sid(3),
            head_with_headers(MAX as usize + 1),
            true,
        ))
        .await;
        let (g, closed) = raw.expect_goaway().await;
        assert_eq!(g.reason(), Reason::LIMIT_EXCEEDED);
        assert!(closed);
        assert_eq!(get(&good, "/hello").await.unwrap().0, 200);
    })
    .await
}

async fn get_with(
    c: &uwire::net::SendRequest,
    h: RequestHead,
) -> Result<(u16, Bytes), uwire::net::Error> {
    request(c, h, None).await
}

// ---------------------------------------------------------------------------
// Body size
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_body_size_edge() {
    bounded(async {
        const MAX: u64 = 1000;
        let config = ServerConfig {
            max_body_size: MAX,
            ..ServerConfig::default()
        };
        let calls = Arc::new(AtomicUsize::new(0));
        let inner = Arc::new(app());
        let c2 = calls.clone();
        let h = handler_fn(move |req: uwire::server::Request| {
            c2.fetch_add(1, Ordering::SeqCst);
            inner.call(req)
        });
        let srv = TestServer::start("max-body", config, h).await;
        let c = srv.client().await;

        // Exactly at the limit.
        let body = Bytes::from(vec![b'x'; MAX as usize]);
        let r = request(&c, head("POST", "/count"), Some(body))
            .await
            .unwrap();
        assert_eq!(r, (200, Bytes::from("1000")));
        // Spread over many DATA frames, still exactly at the limit.
        let (mut send, resp) = c.send_request(head("POST", "/count"), false).await.unwrap();
        for _ in 0..10 {
            send.send_data(Bytes::from(vec![b'y'; 100]), false)
                .await
                .unwrap();
        }
        send.finish().await.unwrap();
        let (h, mut b) = resp.await.unwrap();
        assert_eq!(
            (h.status, b.collect(100).await.unwrap()),
            (200, "1000".into())
        );

        // One byte over: 413, or RESET(LIMIT_EXCEEDED).
        let body = Bytes::from(vec![b'x'; MAX as usize + 1]);
        match request(&c, head("POST", "/count"), Some(body)).await {
            Ok((status, _)) => assert_eq!(status, 413),
            Err(e) => assert_eq!(e.reason(), Some(Reason::LIMIT_EXCEEDED), "{e}"),
        }
        // One byte over after the response started (streaming echo): RESET.
        let (mut send, resp) = c.send_request(head("POST", "/echo"), false).await.unwrap();
        send.send_data(Bytes::from(vec![b'e'; 600]), false)
            .await
            .unwrap();
        let (h, mut b) = resp.await.unwrap();
        assert_eq!(h.status, 200);
        let _ = send.send_data(Bytes::from(vec![b'e'; 401]), true).await;
        let e = b.collect(1 << 20).await.expect_err("echo over the limit");
        assert_eq!(e.reason(), Some(Reason::LIMIT_EXCEEDED), "{e}");

        // A body_length hint over the limit: 413 without calling the handler.
        let before = calls.load(Ordering::SeqCst);
        let bytes_in = srv.metrics.snapshot().bytes_in;
        let mut h = head("POST", "/count");
        h.body_length = Some(MAX + 1);
        let (mut send, resp) = c.send_request(h, false).await.unwrap();
        let (rh, mut rb) = resp.await.unwrap();
        assert_eq!(rh.status, 413);
        assert_eq!(rb.collect(1000).await.unwrap(), "request body too large\n");
        assert_eq!(calls.load(Ordering::SeqCst), before, "handler was called");
        // Sending the body anyway does not reach anyone.
        let _ = send.send_data(Bytes::from(vec![0u8; 2000]), true).await;
        assert_eq!(get(&c, "/hello").await.unwrap().0, 200);
        let s = settle(&srv.metrics, |s| s.streams_active == 0).await;
        assert_eq!(s.bytes_in, bytes_in, "a rejected body was read");
        assert_eq!(s.error(ErrorKind::BodyTooLarge), 3);
        assert_eq!(s.error(ErrorKind::HandlerError), 0);
    })
    .await
}

// ---------------------------------------------------------------------------
// Timeouts
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_timeout_closes_idle_connections_only() {
    bounded(async {
        const IDLE: Duration = Duration::from_millis(300);
        let config = ServerConfig {
            idle_timeout: Some(IDLE),
            ..ServerConfig::default()
        };
        let srv = TestServer::start("idle", config, app()).await;

        let busy = srv.client().await;
        let long = {
            let busy = busy.clone();
            tokio::spawn(async move { get(&busy, "/sleep/1200").await })
        };
        let steady = srv.client().await;

        let start = Instant::now();
        let mut idle = Raw::connect(&srv.path).await;
        // A connection used every 100 ms (less than the idle timeout) for
        // well over the idle timeout is never closed.
        for i in 0..10 {
            let r = get(&steady, &format!("/id/{i}")).await;
            assert_eq!(r.unwrap().0, 200, "steady request {i}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let (g, closed) = idle.expect_goaway().await;
        let waited = start.elapsed();
        assert_eq!(g.reason(), Reason::NO_ERROR);
        assert!(closed, "idle connection not closed after GOAWAY");
        assert!(
            waited >= IDLE,
            "closed after {waited:?}, before the idle timeout"
        );

        // The busy connection kept its 1.2 s request.
        assert_eq!(long.await.unwrap().unwrap(), (200, "slept 1200".into()));
        // And once idle it is closed too (new requests are refused or closed).
        tokio::time::sleep(IDLE * 3).await;
        let e = get(&busy, "/hello")
            .await
            .expect_err("idle connection reused");
        assert!(e.is_refused() || e.is_closed(), "{e}");
        assert_eq!(get(&srv.client().await, "/hello").await.unwrap().0, 200);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_deadline_before_and_after_the_head() {
    bounded(async {
        const DEADLINE: Duration = Duration::from_millis(300);
        let config = ServerConfig {
            request_deadline: Some(DEADLINE),
            ..ServerConfig::default()
        };
        let srv = TestServer::start("deadline", config, app()).await;
        let c = srv.client().await;

        let t = Instant::now();
        let (status, body) = get(&c, "/sleep/5000").await.unwrap();
        let took = t.elapsed();
        assert_eq!(status, 504);
        assert_eq!(body, "request deadline exceeded\n");
        assert!(
            took >= DEADLINE && took < Duration::from_secs(3),
            "504 after {took:?}"
        );

        // Head sent, then the body stalls: RESET(TIMEOUT).
        let (_s, resp) = c
            .send_request(head("GET", "/stall-body"), true)
            .await
            .unwrap();
        let (h, mut body) = resp.await.unwrap();
        assert_eq!(h.status, 200);
        assert_eq!(body.data().await.unwrap().unwrap(), "partial");
        let e = body.data().await.unwrap().expect_err("stalled body resets");
        assert_eq!(e.reason(), Some(Reason::TIMEOUT), "{e}");
        assert!(e.is_remote_reset());

        // A request within the deadline is fine, on the same connection.
        assert_eq!(
            get(&c, "/sleep/50").await.unwrap(),
            (200, "slept 50".into())
        );
        assert_eq!(get(&c, "/hello").await.unwrap().0, 200);
        let s = srv.metrics.snapshot();
        assert_eq!(s.error(ErrorKind::Deadline), 2);
        assert_eq!(s.connections_total, 1);
    })
    .await
}

// ---------------------------------------------------------------------------
// Malformed input
// ---------------------------------------------------------------------------

/// What a misbehaving peer sends, and the GOAWAY reason it must get.
struct Bad {
    name: &'static str,
    handshake: bool,
    bytes: Vec<u8>,
    /// The GOAWAY reason expected, or `None`: closed without a byte sent.
    reason: Option<Reason>,
}

fn frame_bytes(f: impl Into<Frame>) -> Vec<u8> {
    let mut b = bytes::BytesMut::new();
    f.into().encode(&mut b).unwrap();
    b.to_vec()
}

fn bad_inputs() -> Vec<Bad> {
    let mut wrong_version = preface::PREFACE.to_vec();
    wrong_version[preface::VERSION_INDEX] = b'2';
    let mut reuse = frame_bytes(Request::new(sid(1), head("GET", "/hello"), true));
    reuse.extend(frame_bytes(Request::new(
        sid(1),
        head("GET", "/hello"),
        true,
    )));
    vec![
        Bad {
            // PROTOCOL.md 3.1: bad_preface "MUST close the connection. It
            // SHOULD NOT send anything (the peer is not known to speak
            // uwire)": not even the server's own preface.
            name: "HTTP/1 text instead of the preface",
            handshake: false,
            bytes: b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            reason: None,
        },
        Bad {
            name: "wrong protocol version",
            handshake: false,
            bytes: wrong_version,
            reason: Some(Reason::VERSION_MISMATCH),
        },
        Bad {
            name: "PING before SETTINGS",
            handshake: false,
            bytes: [&preface::PREFACE[..], &frame_bytes(Ping::new([1; 8]))].concat(),
            reason: Some(Reason::PROTOCOL_ERROR),
        },
        Bad {
            name: "unknown critical frame kind",
            handshake: true,
            bytes: vec![0, 0, 0, 0x42, 0, 0, 0, 0, 0],
            reason: Some(Reason::PROTOCOL_ERROR),
        },
        Bad {
            name: "DATA over max_frame_size",
            handshake: true,
            bytes: vec![0x01, 0x00, 0x01, 0x00, 0, 0, 0, 0, 1],
            reason: Some(Reason::FRAME_SIZE_ERROR),
        },
        Bad {
            name: "DATA on an idle stream",
            handshake: true,
            bytes: frame_bytes(Data::new(sid(5), Bytes::from_static(b"x"), false)),
            reason: Some(Reason::PROTOCOL_ERROR),
        },
        Bad {
            name: "REQUEST on an even stream id",
            handshake: true,
            bytes: {
                let mut b = frame_bytes(Request::new(sid(1), head("GET", "/"), true));
                b[8] = 2;
                b
            },
            reason: Some(Reason::PROTOCOL_ERROR),
        },
        Bad {
            name: "stream id reuse",
            handshake: true,
            bytes: reuse,
            reason: Some(Reason::PROTOCOL_ERROR),
        },
        Bad {
            name: "zero WINDOW_UPDATE",
            handshake: true,
            // (WindowUpdate::encode refuses a zero increment: written by hand)
            bytes: vec![0, 0, 4, 0x08, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            reason: Some(Reason::FLOW_CONTROL_ERROR),
        },
        Bad {
            name: "garbage after the handshake",
            handshake: true,
            bytes: vec![b'A'; 64],
            reason: Some(Reason::PROTOCOL_ERROR),
        },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_input_closes_only_the_offending_connection() {
    bounded(async {
        // uwire only: in the default auto mode a connection whose first byte
        // is not the uwire preface's is classic uwsgi, which has no GOAWAY
        // (see `auto_mode_treats_a_foreign_first_byte_as_uwsgi`).
        let config = ServerConfig {
            protocol: uwire::server::ProtocolMode::Uwire,
            ..ServerConfig::default()
        };
        let srv = TestServer::start("malformed", config, app()).await;
        let good = srv.client().await;
        let cases = bad_inputs();
        for case in &cases {
            // A request in flight on the good connection the whole time.
            let slow = {
                let good = good.clone();
                tokio::spawn(async move { get(&good, "/sleep/100").await })
            };
            let mut raw = if case.handshake {
                Raw::connect(&srv.path).await
            } else {
                Raw::connect_silent(&srv.path).await
            };
            raw.send_bytes(&case.bytes).await;
            match case.reason {
                Some(reason) => {
                    let (g, closed) = raw.expect_goaway().await;
                    assert_eq!(g.reason(), reason, "{}: {g:?}", case.name);
                    assert!(closed, "{}: connection left open", case.name);
                }
                None => {
                    let mut buf = [0u8; 64];
                    let n = within(Duration::from_secs(5), case.name, raw.io.read(&mut buf))
                        .await
                        .unwrap_or(0);
                    assert_eq!(n, 0, "{}: the server answered {:?}", case.name, &buf[..n]);
                }
            }
            assert_eq!(
                slow.await.unwrap().unwrap(),
                (200, "slept 100".into()),
                "{}",
                case.name
            );
        }
        assert_eq!(get(&good, "/hello").await.unwrap().0, 200);
        assert_eq!(get(&srv.client().await, "/hello").await.unwrap().0, 200);
        let s = settle(&srv.metrics, |s| {
            s.error(ErrorKind::Protocol) >= cases.len() as u64
        })
        .await;
        assert_eq!(s.error(ErrorKind::Protocol), cases.len() as u64);
        assert_eq!(s.connections_total, cases.len() as u64 + 2);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_mode_treats_a_foreign_first_byte_as_uwsgi() {
    bounded(async {
        let srv = TestServer::start("automode", ServerConfig::default(), app()).await;
        let good = srv.client().await;
        // HTTP text is no uwsgi packet either (modifier1 'G' is unsupported):
        // the connection is closed without a frame, the server keeps serving.
        let mut raw = Raw::connect_silent(&srv.path).await;
        raw.send_bytes(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(
            raw.recv().await.is_none(),
            "foreign bytes must close the connection"
        );
        assert_eq!(
            get(&good, "/sleep/1").await.unwrap(),
            (200, "slept 1".into())
        );
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_uwsgi_peer_leaving_a_bodiless_request_drops_the_handler() {
    bounded(async {
        use tokio::io::AsyncWriteExt;
        struct Dropped(Arc<AtomicUsize>);
        impl Drop for Dropped {
            fn drop(&mut self) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let arrived = Arc::new(AtomicUsize::new(0));
        let dropped = Arc::new(AtomicUsize::new(0));
        let (a, d) = (arrived.clone(), dropped.clone());
        let app = handler_fn(move |_req: uwire::server::Request| {
            let guard = Dropped(d.clone());
            a.fetch_add(1, Ordering::SeqCst);
            async move {
                let _guard = guard;
                std::future::pending::<()>().await;
                Ok::<_, BoxError>(Response::new("never".into()))
            }
        });
        let srv = TestServer::start("uwsgi-gone", ServerConfig::default(), app).await;
        let mut packet = bytes::BytesMut::new();
        uwire::uwsgi::encode_packet(
            0,
            0,
            &[
                ("REQUEST_METHOD", "GET"),
                ("REQUEST_URI", "/hold"),
                ("PATH_INFO", "/hold"),
                ("SERVER_PROTOCOL", "HTTP/1.1"),
                ("CONTENT_LENGTH", ""),
            ],
            &uwire::uwsgi::UwsgiLimits::default(),
            &mut packet,
        )
        .unwrap();
        let mut conn = tokio::net::UnixStream::connect(&srv.path).await.unwrap();
        conn.write_all(&packet).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while arrived.load(Ordering::SeqCst) == 0 {
            assert!(Instant::now() < deadline, "the request never arrived");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        drop(conn);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let s = srv.metrics.snapshot();
            if dropped.load(Ordering::SeqCst) == 1
                && s.streams_active == 0
                && s.connections_active == 0
                && s.error(ErrorKind::PeerReset) == 1
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the peer leaving was not noticed: {s:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
}
