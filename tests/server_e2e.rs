//! End-to-end tests of the app-side runtime (`uwire::server`) over real Unix
//! and TCP sockets: listeners, peer credentials, many streams, cancellation,
//! panics, environs, metrics, tower services.
#![cfg(feature = "cli")]

mod common;

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use tokio::io::AsyncReadExt;
use uwire::frame::{HeaderBlock, Reason};
use uwire::server::{
    demo::Demo, from_service, handler_fn, BindAddr, BindOptions, BodyError, BoxError, ErrorKind,
    Handler, Listener, Request, Response, ServerConfig,
};

// ---------------------------------------------------------------------------
// Listener
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unix_socket_default_mode_serves_and_is_removed_on_exit() {
    bounded(async {
        let srv = TestServer::start("mode-default", ServerConfig::default(), app()).await;
        let meta = std::fs::symlink_metadata(&srv.path).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.permissions().mode() & 0o777, 0o660);
        let c = srv.client().await;
        assert_eq!(get(&c, "/hello").await.unwrap(), (200, "hello".into()));
        let path = srv.path.clone();
        drop(c);
        srv.shutdown().await.unwrap();
        assert!(!path.exists(), "socket file left behind after a clean exit");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unix_socket_custom_mode() {
    bounded(async {
        let mut config = ServerConfig::default();
        config.bind.socket_mode = 0o600;
        let srv = TestServer::start("mode-0600", config, app()).await;
        let mode = std::fs::metadata(&srv.path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let c = srv.client().await;
        assert_eq!(get(&c, "/hello").await.unwrap().0, 200);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bind_refuses_to_replace_a_regular_file() {
    bounded(async {
        let path = sock_path("not-a-socket");
        std::fs::write(&path, b"precious data").unwrap();
        let err = Listener::bind(&BindAddr::Unix(path.clone()), &BindOptions::default())
            .await
            .expect_err("bind over a regular file must fail");
        assert_eq!(err.kind(), std::io::ErrorKind::AlreadyExists, "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), b"precious data");
        std::fs::remove_file(&path).unwrap();
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bind_replaces_a_stale_socket() {
    bounded(async {
        let path = sock_path("stale");
        // A socket file whose listener is gone (std's listener does not
        // remove its file on drop, like a crashed server).
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(std::fs::symlink_metadata(&path)
            .unwrap()
            .file_type()
            .is_socket());
        let listener = Listener::bind(&BindAddr::Unix(path.clone()), &BindOptions::default())
            .await
            .expect("a stale socket is replaced");
        let srv = TestServer::serve(path, listener, ServerConfig::default(), app());
        let c = srv.client().await;
        assert_eq!(get(&c, "/hello").await.unwrap().0, 200);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bind_on_a_live_socket_is_addr_in_use() {
    bounded(async {
        let srv = TestServer::start("live", ServerConfig::default(), app()).await;
        let err = Listener::bind(&BindAddr::Unix(srv.path.clone()), &BindOptions::default())
            .await
            .expect_err("a live socket must not be replaced");
        assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse, "{err}");
        // The live server is untouched.
        let c = srv.client().await;
        assert_eq!(get(&c, "/hello").await.unwrap().0, 200);
        assert!(srv.path.exists());
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_listener_on_port_zero() {
    bounded(async {
        let addr: BindAddr = "tcp:127.0.0.1:0".parse().unwrap();
        let listener = Listener::bind(&addr, &BindOptions::default())
            .await
            .unwrap();
        let local = listener.tcp_addr().expect("a TCP listener has an address");
        assert_ne!(local.port(), 0);
        let server = uwire::server::Server::new(ServerConfig::default());
        let metrics = server.metrics();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            server
                .serve(listener, app(), async {
                    let _ = rx.await;
                })
                .await
        });
        let sock = tokio::net::TcpStream::connect(local).await.unwrap();
        let (c, conn) = uwire::net::client(sock, Default::default());
        tokio::spawn(conn);
        assert_eq!(get(&c, "/hello").await.unwrap(), (200, "hello".into()));
        assert_eq!(get(&c, "/id/tcp").await.unwrap(), (200, "tcp".into()));
        assert_eq!(metrics.snapshot().streams_total, 2);
        drop(c);
        tx.send(()).unwrap();
        task.await.unwrap().unwrap();

        // Peer-credential allowlists need a Unix socket.
        let listener = Listener::bind(&addr, &BindOptions::default())
            .await
            .unwrap();
        let config = ServerConfig {
            allow_uids: vec![ids().0],
            ..ServerConfig::default()
        };
        let err = uwire::server::Server::new(config)
            .serve(listener, app(), std::future::pending())
            .await
            .expect_err("allowlist on TCP is a configuration error");
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    })
    .await
}

// ---------------------------------------------------------------------------
// Peer credentials
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_denied_is_closed_before_any_frame() {
    bounded(async {
        let (uid, gid) = ids();
        let config = ServerConfig {
            allow_uids: vec![uid.wrapping_add(4242)],
            ..ServerConfig::default()
        };
        let srv = TestServer::start("peer-denied", config, app()).await;
        for _ in 0..2 {
            // The server must not even send its preface: the first read is EOF.
            let mut raw = Raw::connect_silent(&srv.path).await;
            let mut buf = [0u8; 64];
            let n = within(Duration::from_secs(5), "denied read", raw.io.read(&mut buf))
                .await
                .unwrap_or(0);
            assert_eq!(n, 0, "denied peer received {:?}", &buf[..n]);
        }
        // A net client sees its request fail.
        let c = srv.client().await;
        let e = get(&c, "/hello")
            .await
            .expect_err("denied peer got an answer");
        // Never sent (no SETTINGS ever came): safe to retry elsewhere.
        assert!(e.is_refused(), "{e}");
        let snap = srv.metrics.snapshot();
        assert_eq!(snap.error(ErrorKind::PeerDenied), 3);
        assert_eq!(snap.connections_total, 0);
        assert_eq!(snap.streams_total, 0);

        // Our uid listed (among others): served.
        let config = ServerConfig {
            allow_uids: vec![uid.wrapping_add(4242), uid],
            ..ServerConfig::default()
        };
        let ok = TestServer::start("peer-allowed-uid", config, app()).await;
        let c = ok.client().await;
        assert_eq!(get(&c, "/hello").await.unwrap().0, 200);
        assert_eq!(ok.metrics.snapshot().error(ErrorKind::PeerDenied), 0);

        // Either list may match: our gid listed, our uid not.
        let config = ServerConfig {
            allow_uids: vec![uid.wrapping_add(4242)],
            allow_gids: vec![gid],
            ..ServerConfig::default()
        };
        let ok = TestServer::start("peer-allowed-gid", config, app()).await;
        let c = ok.client().await;
        assert_eq!(get(&c, "/hello").await.unwrap().0, 200);

        // The denying server is still serving (its accept loop survived).
        let raw = Raw::connect_silent(&srv.path).await;
        drop(raw);
        let s = settle(&srv.metrics, |s| s.error(ErrorKind::PeerDenied) >= 4).await;
        assert_eq!(s.error(ErrorKind::PeerDenied), 4);
    })
    .await
}

// ---------------------------------------------------------------------------
// Many streams on one connection
// ---------------------------------------------------------------------------

/// Streams held in flight at once on one connection.
const IN_FLIGHT: usize = 1000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_streams_in_flight_on_one_connection() {
    bounded(async {
        let mut config = ServerConfig::default();
        config.conn.max_concurrent_streams = IN_FLIGHT as u32;
        // Every handler waits until all of them have arrived: the test only
        // passes if IN_FLIGHT streams are really open at the same time.
        let barrier = Arc::new(tokio::sync::Barrier::new(IN_FLIGHT));
        let h = handler_fn(move |req: Request| {
            let barrier = barrier.clone();
            async move {
                barrier.wait().await;
                let id = String::from_utf8_lossy(&req.head().path[1..]).into_owned();
                Ok::<_, BoxError>(Response::new(format!("answer {id}").into()))
            }
        });
        let srv = TestServer::start("1000-streams", config, h).await;
        let c = srv.client().await;
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..IN_FLIGHT {
            let c = c.clone();
            tasks.spawn(async move { (i, get(&c, &format!("/{i}")).await) });
        }
        let mut seen = vec![false; IN_FLIGHT];
        while let Some(r) = tasks.join_next().await {
            let (i, r) = r.unwrap();
            let (status, body) = r.unwrap_or_else(|e| panic!("request {i} failed: {e}"));
            assert_eq!(status, 200);
            assert_eq!(body, format!("answer {i}"));
            seen[i] = true;
        }
        assert!(seen.iter().all(|s| *s));
        let snap = srv.metrics.snapshot();
        assert_eq!(snap.streams_total, IN_FLIGHT as u64);
        assert_eq!(snap.connections_total, 1);
        println!("concurrent streams in flight on one connection: {IN_FLIGHT}");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_queues_above_the_server_stream_limit() {
    bounded(async {
        const LIMIT: usize = 8;
        const REQUESTS: usize = 300;
        let mut config = ServerConfig::default();
        config.conn.max_concurrent_streams = LIMIT as u32;
        let now = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let (n2, p2) = (now.clone(), peak.clone());
        let h = handler_fn(move |req: Request| {
            let (now, peak) = (n2.clone(), p2.clone());
            async move {
                let cur = now.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(cur, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(2)).await;
                now.fetch_sub(1, Ordering::SeqCst);
                let id = String::from_utf8_lossy(&req.head().path[1..]).into_owned();
                Ok::<_, BoxError>(Response::new(id.into()))
            }
        });
        let srv = TestServer::start("queue-above-limit", config, h).await;
        let c = srv.client().await;
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..REQUESTS {
            let c = c.clone();
            tasks.spawn(async move { (i, get(&c, &format!("/{i}")).await) });
        }
        while let Some(r) = tasks.join_next().await {
            let (i, r) = r.unwrap();
            let (status, body) = r.unwrap_or_else(|e| panic!("request {i} failed: {e}"));
            assert_eq!((status, body), (200, Bytes::from(i.to_string())));
        }
        let peak = peak.load(Ordering::SeqCst);
        assert!(peak <= LIMIT, "{peak} handlers ran at once, limit {LIMIT}");
        assert!(
            peak >= 2,
            "requests were not concurrent at all (peak {peak})"
        );
        assert_eq!(srv.metrics.snapshot().streams_total, REQUESTS as u64);
    })
    .await
}

// ---------------------------------------------------------------------------
// Cancellation and failures
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_mid_body_fails_the_body_read_only_for_that_stream() {
    bounded(async {
        let (first_tx, first_rx) = tokio::sync::oneshot::channel::<()>();
        let (result_tx, result_rx) = tokio::sync::oneshot::channel::<Result<u64, String>>();
        let slots = Arc::new(std::sync::Mutex::new(Some((first_tx, result_tx))));
        let inner = Arc::new(app());
        let h = handler_fn(move |mut req: Request| {
            let slots = slots.clone();
            let inner = inner.clone();
            async move {
                if &req.head().path[..] != b"/victim" {
                    return uwire::server::Handler::call(&*inner, req).await;
                }
                let (first_tx, result_tx) = slots.lock().unwrap().take().unwrap();
                let body = req.body_mut();
                let first = body.data().await.expect("first chunk").expect("ok chunk");
                assert_eq!(&first[..], b"first part");
                let _ = first_tx.send(());
                let outcome = loop {
                    match body.data().await {
                        Some(Ok(_)) => continue,
                        Some(Err(e @ BodyError::Aborted(_))) => break Err(e.to_string()),
                        Some(Err(e)) => break Err(format!("unexpected error kind: {e}")),
                        None => break Ok(body.bytes_read()),
                    }
                };
                let _ = result_tx.send(outcome);
                Ok::<_, BoxError>(Response::new("unreachable".into()))
            }
        });
        let srv = TestServer::start("reset-mid-body", ServerConfig::default(), h).await;
        let c = srv.client().await;

        // A concurrent echo on the same connection, started before the reset
        // and finished after it.
        let (mut echo_send, echo_resp) =
            c.send_request(head("POST", "/echo"), false).await.unwrap();
        echo_send.send_data("before ".into(), false).await.unwrap();

        let (mut send, resp) = c
            .send_request(head("POST", "/victim"), false)
            .await
            .unwrap();
        send.send_data("first part".into(), false).await.unwrap();
        first_rx.await.unwrap();
        send.reset(Reason::CANCEL);
        let outcome = within(Duration::from_secs(5), "handler sees the reset", result_rx)
            .await
            .unwrap();
        let msg = outcome.expect_err("body read must fail after a RESET");
        assert!(msg.contains("aborted"), "{msg}");
        let e = resp.await.expect_err("reset stream has no response");
        assert!(e.is_reset(), "{e}");

        echo_send.send_data("after".into(), true).await.unwrap();
        let (h2, mut b2) = echo_resp.await.unwrap();
        assert_eq!(h2.status, 200);
        assert_eq!(b2.collect(1 << 20).await.unwrap(), "before after");
        assert_eq!(get(&c, "/hello").await.unwrap().0, 200);
        let s = settle(&srv.metrics, |s| s.streams_active == 0).await;
        assert_eq!(s.error(ErrorKind::PeerReset), 1, "{:?}", s.errors);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_panic_is_isolated_to_its_stream() {
    bounded(async {
        // `Handler::call` itself panicking (work done before the future is
        // built, as handler_fn closures may do) is a handler panic too.
        let inner = Arc::new(app());
        let h = handler_fn(move |req: Request| {
            if &req.head().path[..] == b"/sync-panic" {
                panic!("handler panics before returning its future");
            }
            inner.call(req)
        });
        let srv = TestServer::start("panic", ServerConfig::default(), h).await;
        let c = srv.client().await;
        let slow: Vec<_> = (0..8)
            .map(|_| {
                let c = c.clone();
                tokio::spawn(async move { get(&c, "/sleep/200").await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(20)).await;

        // Before the head: 500 for that stream.
        let (status, body) = get(&c, "/panic").await.unwrap();
        assert_eq!(status, 500);
        assert_eq!(body, "internal server error\n");
        assert_eq!(get(&c, "/sync-panic").await.unwrap().0, 500);
        // A handler error: 500 as well.
        assert_eq!(get(&c, "/error").await.unwrap().0, 500);

        // After the head: RESET(INTERNAL_ERROR) for that stream.
        let (_s, resp) = c
            .send_request(head("GET", "/panic-body"), true)
            .await
            .unwrap();
        let (h, mut body) = resp.await.unwrap();
        assert_eq!(h.status, 200);
        let first = body.data().await.unwrap().unwrap();
        assert_eq!(first, "partial");
        let e = body
            .data()
            .await
            .expect("an error, not the end")
            .expect_err("body must fail");
        assert!(e.is_reset() && e.is_remote_reset(), "{e}");
        assert_eq!(e.reason(), Some(Reason::INTERNAL_ERROR));

        for s in slow {
            assert_eq!(s.await.unwrap().unwrap(), (200, "slept 200".into()));
        }
        assert_eq!(get(&c, "/hello").await.unwrap().0, 200);
        let snap = srv.metrics.snapshot();
        assert_eq!(snap.error(ErrorKind::HandlerPanic), 3);
        assert_eq!(snap.error(ErrorKind::HandlerError), 1);
        assert_eq!(snap.connections_total, 1, "the connection survived");
    })
    .await
}

// ---------------------------------------------------------------------------
// Environ, metrics, tower
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environ_of_the_demo_app_end_to_end() {
    bounded(async {
        let srv = TestServer::start("environ", ServerConfig::default(), Demo).await;
        let c = srv.client().await;
        let mut h = head("POST", "/environ/sub%20dir?x=1&y=%20");
        h.headers = HeaderBlock::try_from_pairs([
            ("Host", "example.org:8080"),
            ("X-Custom", "one"),
            ("x-custom", "two"),
            ("X_Under", "spoof"),
            ("Proxy", "http://evil.example/"),
            ("Content-Type", "text/plain"),
            ("User-Agent", "uwire-test"),
        ])
        .unwrap();
        h.authority = "example.org:8080".into();
        h.client_addr = "192.0.2.7".into();
        h.client_port = 40000;
        h.body_length = Some(5);
        let (status, body) = request(&c, h, Some("abcde".into())).await.unwrap();
        assert_eq!(status, 200);
        let env: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&body).expect("environ is JSON");
        let get = |k: &str| env.get(k).and_then(|v| v.as_str()).map(str::to_owned);
        assert_eq!(get("REQUEST_METHOD").as_deref(), Some("POST"));
        assert_eq!(get("PATH_INFO").as_deref(), Some("/environ/sub dir"));
        assert_eq!(get("SCRIPT_NAME").as_deref(), Some(""));
        assert_eq!(get("QUERY_STRING").as_deref(), Some("x=1&y=%20"));
        assert_eq!(
            get("REQUEST_URI").as_deref(),
            Some("/environ/sub%20dir?x=1&y=%20")
        );
        assert_eq!(get("SERVER_NAME").as_deref(), Some("example.org"));
        assert_eq!(get("SERVER_PORT").as_deref(), Some("8080"));
        assert_eq!(get("REMOTE_ADDR").as_deref(), Some("192.0.2.7"));
        assert_eq!(get("REMOTE_PORT").as_deref(), Some("40000"));
        assert_eq!(get("CONTENT_LENGTH").as_deref(), Some("5"));
        assert_eq!(get("CONTENT_TYPE").as_deref(), Some("text/plain"));
        assert_eq!(get("HTTP_HOST").as_deref(), Some("example.org:8080"));
        assert_eq!(get("HTTP_X_CUSTOM").as_deref(), Some("one, two"));
        assert_eq!(get("HTTP_USER_AGENT").as_deref(), Some("uwire-test"));
        assert_eq!(get("HTTP_X_UNDER"), None, "underscore header mapped");
        assert_eq!(get("HTTP_PROXY"), None, "httpoxy: Proxy header mapped");
        assert_eq!(get("HTTP_CONTENT_TYPE"), None);
        assert!(!env.keys().any(|k| k.contains("UNDER")), "{env:?}");

        // Demo's other routes.
        assert_eq!(
            get_(&c, "/").await,
            (200, Bytes::from_static(b"Hello from uwire!\n"))
        );
        assert_eq!(get_(&c, "/nope").await.0, 404);
        // A bad head (conflicting Content-Length) is a 400, not a crash.
        let mut bad = head("GET", "/environ");
        bad.headers =
            HeaderBlock::try_from_pairs([("Content-Length", "1"), ("Content-Length", "2")])
                .unwrap();
        assert_eq!(request(&c, bad, None).await.unwrap().0, 400);
        assert_eq!(srv.metrics.snapshot().error(ErrorKind::BadRequest), 1);
    })
    .await
}

/// The runtime builds the environ only when a handler asks for it, but
/// refuses a bad head before any handler runs, whether or not the handler
/// would have looked: every refusal of the environ rules is a 400 that never
/// reaches a handler reading only the head, and a size limit still holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environ_refusals_do_not_wait_for_the_handler_to_read_it() {
    bounded(async {
        for max_size in [None, Some(600)] {
            let calls = Arc::new(AtomicUsize::new(0));
            let seen = calls.clone();
            let h = handler_fn(move |req: Request| {
                seen.fetch_add(1, Ordering::SeqCst);
                let reply = match &req.head().path[..] {
                    // Asked for late, after the handler has started.
                    b"/env" => req.environ().get("HTTP_X_ID").unwrap_or(b"none").to_vec(),
                    _ => b"head only".to_vec(),
                };
                async move { Ok::<_, BoxError>(Response::new(reply.into())) }
            });
            let mut config = ServerConfig::default();
            config.environ.max_size(max_size);
            let srv = TestServer::start("environ-lazy", config, h).await;
            let c = srv.client().await;
            let refused: [(&str, &[(&str, &str)]); 6] = [
                ("/a%00", &[]),
                ("/", &[("Content-Length", "x")]),
                ("/", &[("Content-Length", "1"), ("Content-Length", "2")]),
                ("/", &[("Content-Type", "a/b"), ("Content-Type", "c/d")]),
                ("/", &[("Host", "a"), ("Host", "a")]),
                (
                    "/",
                    &[("Transfer-Encoding", "chunked"), ("Content-Length", "1")],
                ),
            ];
            for (path, fields) in refused {
                let mut h = head("GET", path);
                h.headers = HeaderBlock::try_from_pairs(fields.iter().copied()).unwrap();
                let (status, body) = request(&c, h, None).await.unwrap();
                assert_eq!(status, 400, "{path} {fields:?}: {body:?}");
            }
            assert_eq!(
                calls.load(Ordering::SeqCst),
                0,
                "a refused head reached the handler"
            );
            assert_eq!(srv.metrics.snapshot().error(ErrorKind::BadRequest), 6);

            // Accepted heads: the handler runs; the environ is right when
            // it is asked for.
            assert_eq!(get_(&c, "/").await, (200, Bytes::from_static(b"head only")));
            let mut h = head("GET", "/env");
            h.headers = HeaderBlock::try_from_pairs([("X-Id", "7"), ("x-id", "8")]).unwrap();
            assert_eq!(
                request(&c, h, None).await.unwrap(),
                (200, Bytes::from_static(b"7, 8"))
            );
            assert_eq!(calls.load(Ordering::SeqCst), 2);

            // An environ over the limit is refused even for a handler that
            // would never read it; under the limit it passes.
            let mut big = head("GET", "/");
            big.headers = HeaderBlock::try_from_pairs([("X-Big", "b".repeat(700))]).unwrap();
            let status = request(&c, big, None).await.unwrap().0;
            match max_size {
                Some(_) => assert_eq!(status, 400),
                None => assert_eq!(status, 200),
            }
        }
    })
    .await
}

async fn get_(c: &uwire::net::SendRequest, target: &str) -> (u16, Bytes) {
    get(c, target).await.unwrap()
}

/// The accept gate is consulted before every accept and hears of each
/// connection three times: accepted, identified (uwire/1 or classic uwsgi,
/// from its first bytes in `auto` mode, at once in a fixed mode; never for
/// one that sends nothing), and closed, with what it was identified as.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accept_gate_hears_every_connection_open_identify_and_close() {
    use uwire::server::{AcceptGate, BoxFuture, ConnProtocol, ProtocolMode};

    #[derive(Default)]
    struct Log {
        readies: AtomicUsize,
        events: std::sync::Mutex<Vec<String>>,
    }
    struct Gate(Arc<Log>);
    impl AcceptGate for Gate {
        fn ready(&self) -> BoxFuture<()> {
            self.0.readies.fetch_add(1, Ordering::SeqCst);
            Box::pin(std::future::ready(()))
        }
        fn opened(&self) {
            self.0.events.lock().unwrap().push("opened".into());
        }
        fn identified(&self, protocol: ConnProtocol) {
            self.0.events.lock().unwrap().push(format!("{protocol:?}"));
        }
        fn closed(&self, protocol: Option<ConnProtocol>) {
            self.0
                .events
                .lock()
                .unwrap()
                .push(format!("closed {protocol:?}"));
        }
    }
    impl Log {
        /// Waits for `n` events and takes them.
        async fn take(&self, n: usize) -> Vec<String> {
            loop {
                {
                    let mut e = self.events.lock().unwrap();
                    if e.len() >= n {
                        return std::mem::take(&mut *e);
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
    async fn uwsgi_get(path: &std::path::Path) {
        let mut packet = Vec::new();
        uwire::uwsgi::encode_packet(
            0,
            0,
            &[("REQUEST_METHOD", "GET"), ("PATH_INFO", "/")],
            &uwire::uwsgi::UwsgiLimits::default(),
            &mut packet,
        )
        .unwrap();
        let mut s = tokio::net::UnixStream::connect(path).await.unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut s, &packet)
            .await
            .unwrap();
        let mut answer = Vec::new();
        s.read_to_end(&mut answer).await.unwrap();
        assert!(answer.starts_with(b"HTTP/1.1 200"), "{answer:?}");
    }

    bounded(async {
        for mode in [ProtocolMode::Auto, ProtocolMode::Uwsgi, ProtocolMode::Uwire] {
            let log = Arc::new(Log::default());
            let path = sock_path(&format!("gate-{mode:?}"));
            let config = ServerConfig {
                protocol: mode,
                uwsgi_head_timeout: Duration::from_millis(200),
                ..ServerConfig::default()
            };
            let listener = Listener::bind(&BindAddr::Unix(path.clone()), &config.bind)
                .await
                .unwrap();
            let server = uwire::server::Server::new(config).with_gate(Gate(log.clone()));
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let task = tokio::spawn(async move {
                server
                    .serve(listener, Demo, async {
                        let _ = stopped.await;
                    })
                    .await
            });

            if mode != ProtocolMode::Uwsgi {
                let c = connect(&path).await;
                assert_eq!(get(&c, "/").await.unwrap().0, 200);
                assert_eq!(log.take(2).await, ["opened", "Uwire"]);
                drop(c);
                assert_eq!(log.take(1).await, ["closed Some(Uwire)"]);
            }
            if mode != ProtocolMode::Uwire {
                uwsgi_get(&path).await;
                assert_eq!(log.take(3).await, ["opened", "Uwsgi", "closed Some(Uwsgi)"]);
            }
            // A connection that sends nothing: identified at once in a fixed
            // mode, never in `auto` (closed at the head timeout).
            let silent = tokio::net::UnixStream::connect(&path).await.unwrap();
            let events = match mode {
                ProtocolMode::Auto => {
                    let e = log.take(2).await;
                    assert_eq!(e, ["opened", "closed None"]);
                    e
                }
                _ => log.take(2).await,
            };
            assert_eq!(events[0], "opened", "{mode:?}");
            drop(silent);
            if mode != ProtocolMode::Auto {
                let rest = log.take(1).await;
                assert_eq!(
                    [events[1].as_str(), rest[0].as_str()],
                    match mode {
                        ProtocolMode::Uwsgi => ["Uwsgi", "closed Some(Uwsgi)"],
                        _ => ["Uwire", "closed Some(Uwire)"],
                    }
                );
            }
            let accepted = if mode == ProtocolMode::Auto { 3 } else { 2 };
            assert!(log.readies.load(Ordering::SeqCst) > accepted, "{mode:?}");
            let _ = stop.send(());
            task.await.unwrap().unwrap();
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_what_happened() {
    bounded(async {
        let srv = TestServer::start("metrics", ServerConfig::default(), app()).await;
        let c1 = srv.client().await;
        let c2 = srv.client().await;
        for i in 0..5 {
            assert_eq!(get(&c1, &format!("/id/{i}")).await.unwrap().0, 200);
        }
        let body = Bytes::from(vec![7u8; 10_000]);
        let (status, echoed) = request(&c2, head("POST", "/echo"), Some(body.clone()))
            .await
            .unwrap();
        assert_eq!((status, echoed), (200, body));
        assert_eq!(get(&c2, "/panic").await.unwrap().0, 500);
        assert_eq!(get(&c2, "/missing").await.unwrap().0, 404);
        let s = settle(&srv.metrics, |s| s.streams_active == 0).await;
        assert_eq!(s.connections_total, 2);
        assert_eq!(s.connections_active, 2);
        assert_eq!(s.streams_total, 8);
        assert_eq!(s.streams_active, 0);
        assert_eq!(s.latency_count, 8);
        assert_eq!(s.bytes_in, 10_000);
        // 5 one-byte ids, the echo, "internal server error\n", "not found".
        assert_eq!(s.bytes_out, 5 + 10_000 + 22 + 9);
        assert_eq!(s.error(ErrorKind::HandlerPanic), 1);
        let total_errors: u64 = s.errors.iter().map(|(_, n)| n).sum();
        assert_eq!(total_errors, 1, "{:?}", s.errors);

        let text = srv.metrics.render_prometheus();
        for line in [
            "uwire_connections_total 2",
            "uwire_connections_active 2",
            "uwire_streams_total 8",
            "uwire_streams_active 0",
            "uwire_request_body_bytes_total 10000",
            "uwire_errors_total{kind=\"handler_panic\"} 1",
            "uwire_request_duration_seconds_count 8",
            "uwire_request_duration_seconds_bucket{le=\"+Inf\"} 8",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }

        drop((c1, c2));
        within(Duration::from_secs(5), "connections to close", async {
            while srv.metrics.snapshot().connections_active != 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tower_service_handler() {
    bounded(async {
        let svc = tower::service_fn(|req: Request| async move {
            let p = String::from_utf8_lossy(&req.head().path).into_owned();
            Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::new(
                Bytes::from(format!("tower saw {p}")),
            )))
        });
        let srv = TestServer::start("tower", ServerConfig::default(), from_service(svc)).await;
        let c = srv.client().await;
        assert_eq!(
            get(&c, "/x/y").await.unwrap(),
            (200, Bytes::from("tower saw /x/y"))
        );
    })
    .await
}

// ---------------------------------------------------------------------------
// Responses the client cannot take, trailers, disconnects
// ---------------------------------------------------------------------------

/// `/1xx`: a handler answering 103 as its final status; `/big-head`: a
/// response head over the client's `max_head_size`; `/many-headers`: over
/// its `max_header_count`; `/trailers`: body then trailers; `/big-trailers`:
/// trailers over the client's `max_head_size`.
fn awkward() -> impl uwire::server::Handler {
    use http_body_util::StreamBody;
    handler_fn(|req: Request| async move {
        let mut r = Response::new("body".into());
        match &req.head().path[..] {
            b"/1xx" => *r.status_mut() = http::StatusCode::EARLY_HINTS,
            b"/big-head" => {
                r.headers_mut()
                    .insert("x-big", "b".repeat(4000).parse().unwrap());
            }
            b"/many-headers" => {
                for i in 0..10 {
                    r.headers_mut().insert(
                        format!("x-h{i}").parse::<http::HeaderName>().unwrap(),
                        "v".parse().unwrap(),
                    );
                }
            }
            p @ (b"/trailers" | b"/big-trailers") => {
                let mut t = http::HeaderMap::new();
                let v = if p == b"/trailers" {
                    "ok".to_string()
                } else {
                    "t".repeat(4000)
                };
                t.insert("x-checksum", v.parse().unwrap());
                let frames = futures_util::stream::iter([
                    Ok::<_, BoxError>(http_body::Frame::data(Bytes::from_static(b"data"))),
                    Ok(http_body::Frame::trailers(t)),
                ]);
                r = Response::new(uwire::server::ResponseBody::new(StreamBody::new(frames)));
            }
            _ => {}
        }
        Ok::<_, BoxError>(r)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_the_client_cannot_take_fail_the_stream_not_hang_it() {
    bounded(async {
        let srv = TestServer::start("awkward", ServerConfig::default(), awkward()).await;
        let mut cfg = uwire::conn::Config::default();
        cfg.limits.max_head_size = 1024;
        cfg.limits.max_header_count = 4;
        let c = connect_with(&srv.path, cfg).await;
        let quick = Duration::from_secs(3);

        // A 1xx status is no final response: 500 instead of a hang.
        let r = within(quick, "1xx final status", get(&c, "/1xx")).await;
        assert_eq!(r.unwrap().0, 500);

        // Heads over the client's limits: the stream fails at once.
        for path in ["/big-head", "/many-headers"] {
            let e = within(quick, path, get(&c, path))
                .await
                .expect_err("over-limit response head delivered");
            assert!(
                e.is_reset() || e.is_refused(),
                "{path}: unexpected error {e}"
            );
        }

        // Trailers end to end.
        let (_s, resp) = c
            .send_request(head("GET", "/trailers"), true)
            .await
            .unwrap();
        let (h, mut b) = within(quick, "trailers head", resp).await.unwrap();
        assert_eq!(h.status, 200);
        assert_eq!(b.collect(100).await.unwrap(), "data");
        assert_eq!(b.trailers().unwrap().get(b"x-checksum"), Some(&b"ok"[..]));

        // Trailers over the client's limit: the stream fails, not hangs.
        let (_s, resp) = c
            .send_request(head("GET", "/big-trailers"), true)
            .await
            .unwrap();
        let r = within(quick, "big trailers", async {
            let (_, mut b) = resp.await?;
            b.collect(100).await
        })
        .await;
        assert!(r.is_err(), "over-limit trailers: {r:?}");

        // The connection is still fine.
        assert_eq!(get(&c, "/").await.unwrap(), (200, Bytes::from("body")));
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_disconnect_cancels_running_handlers() {
    bounded(async {
        struct Flag(Arc<AtomicUsize>);
        impl Drop for Flag {
            fn drop(&mut self) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let started = Arc::new(AtomicUsize::new(0));
        let dropped = Arc::new(AtomicUsize::new(0));
        let (s2, d2) = (started.clone(), dropped.clone());
        let h = handler_fn(move |_req: Request| {
            let flag = Flag(d2.clone());
            s2.fetch_add(1, Ordering::SeqCst);
            async move {
                let _flag = flag;
                tokio::time::sleep(Duration::from_secs(60)).await;
                Ok::<_, BoxError>(Response::new("late".into()))
            }
        });
        let srv = TestServer::start("disconnect", ServerConfig::default(), h).await;

        // A probe that connects and leaves, and a pool-like client that
        // handshakes and drops an idle connection: neither is an error.
        drop(Raw::connect_silent(&srv.path).await);
        drop(Raw::connect(&srv.path).await);

        let mut raw = Raw::connect(&srv.path).await;
        for id in [1, 3, 5] {
            raw.send(uwire::frame::Request::new(sid(id), head("GET", "/"), true))
                .await;
        }
        within(Duration::from_secs(5), "handlers to start", async {
            while started.load(Ordering::SeqCst) < 3 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        drop(raw); // vanishes without GOAWAY
        within(Duration::from_secs(5), "handlers to be cancelled", async {
            while dropped.load(Ordering::SeqCst) < 3 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        within(Duration::from_secs(5), "gauges to settle", async {
            loop {
                let s = srv.metrics.snapshot();
                if s.streams_active == 0 && s.connections_active == 0 {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        let s = srv.metrics.snapshot();
        assert_eq!(s.connections_total, 3);
        assert_eq!(s.error(ErrorKind::Protocol), 0, "{:?}", s.errors);
        assert_eq!(s.error(ErrorKind::Io), 0, "{:?}", s.errors);
        // The abandoned requests are counted by their streams.
        assert_eq!(s.error(ErrorKind::PeerReset), 3, "{:?}", s.errors);
        assert_eq!(s.latency_count, 3);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_mode_is_in_place_before_the_first_connection() {
    bounded(async {
        // A thread connects in a tight loop while the socket is bound, and
        // looks at the mode the moment a connection first succeeds: setting
        // the mode after listen() would show the umask's mode here.
        let opts = BindOptions {
            socket_mode: 0o600,
            ..BindOptions::default()
        };
        for round in 0..20 {
            let path = sock_path(&format!("mode-race-{round}"));
            let p2 = path.clone();
            let spy = std::thread::spawn(move || {
                let t0 = std::time::Instant::now();
                while t0.elapsed() < Duration::from_secs(5) {
                    if let Ok(s) = std::os::unix::net::UnixStream::connect(&p2) {
                        let mode = std::fs::metadata(&p2).unwrap().permissions().mode();
                        drop(s);
                        return Some(mode & 0o777);
                    }
                }
                None
            });
            std::thread::sleep(Duration::from_millis(1));
            let listener = Listener::bind(&BindAddr::Unix(path.clone()), &opts)
                .await
                .unwrap();
            let seen = spy.join().unwrap().expect("spy never connected");
            assert_eq!(seen, 0o600, "round {round}: mode at first connect {seen:o}");
            drop(listener);
            assert!(!path.exists());
        }
    })
    .await
}

// ---------------------------------------------------------------------------
// Flow-control credit of bodies nobody reads
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unread_request_bodies_do_not_leak_connection_credit() {
    bounded(async {
        // /hello never reads its body. Each upload fits the stream window
        // (256 KiB), so it arrives whether or not anyone reads it; 40 of
        // them are 8 MiB, far over the 1 MiB connection window: unless the
        // server returns the credit of bytes it throws away, the connection
        // stalls after a few.
        let srv = TestServer::start("unread-bodies", ServerConfig::default(), app()).await;
        let c = srv.client().await;
        let body = Bytes::from(vec![b'u'; 200 << 10]);
        for i in 0..40 {
            let r = within(
                Duration::from_secs(5),
                &format!("upload {i} to a handler that ignores it"),
                request(&c, head("POST", "/hello"), Some(body.clone())),
            )
            .await;
            assert_eq!(r.unwrap(), (200, Bytes::from("hello")), "upload {i}");
        }
        let big = Bytes::from(vec![b'e'; 3 << 20]);
        let r = within(
            Duration::from_secs(10),
            "echo after the ignored uploads",
            echo(&c, big.clone()),
        )
        .await;
        assert_eq!(r.unwrap(), (200, big));
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_response_bodies_do_not_leak_connection_credit() {
    bounded(async {
        let srv = TestServer::start("dropped-bodies", ServerConfig::default(), app()).await;
        let c = srv.client().await;
        for i in 0..40 {
            let (_s, resp) = c
                .send_request(head("GET", "/zeros/200000"), true)
                .await
                .unwrap();
            let (h, mut body) = within(Duration::from_secs(5), &format!("response {i}"), resp)
                .await
                .unwrap();
            assert_eq!(h.status, 200);
            // Read one chunk, let the rest arrive, then drop the body.
            body.data().await.unwrap().unwrap();
            tokio::time::sleep(Duration::from_millis(5)).await;
            drop(body);
        }
        let r = within(
            Duration::from_secs(10),
            "a full response after the dropped ones",
            get(&c, "/zeros/3000000"),
        )
        .await;
        let (status, body) = r.unwrap();
        assert_eq!((status, body.len()), (200, 3_000_000));
    })
    .await
}

// ---------------------------------------------------------------------------
// Cancellation by the proxy
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_reset_cancels_the_handler_and_the_body_stream() {
    bounded(async {
        struct Flag(Arc<AtomicUsize>);
        impl Drop for Flag {
            fn drop(&mut self) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let started = Arc::new(AtomicUsize::new(0));
        let dropped = Arc::new(AtomicUsize::new(0));
        let (s2, d2) = (started.clone(), dropped.clone());
        let inner = Arc::new(app());
        let h = handler_fn(move |req: Request| {
            let flag = Flag(d2.clone());
            let (s2, inner) = (s2.clone(), inner.clone());
            async move {
                let _flag = flag;
                s2.fetch_add(1, Ordering::SeqCst);
                if &req.head().path[..] == b"/long-poll" {
                    // Works for a minute before answering.
                    tokio::time::sleep(Duration::from_secs(60)).await;
                }
                inner.call(req).await
            }
        });
        let srv = TestServer::start("proxy-cancel", ServerConfig::default(), h).await;
        let c = srv.client().await;

        // Before the head: dropping the response future sends RESET(CANCEL);
        // the handler is dropped promptly instead of running for a minute.
        let (_send, resp) = c
            .send_request(head("GET", "/long-poll"), true)
            .await
            .unwrap();
        within(Duration::from_secs(5), "handler start", async {
            while started.load(Ordering::SeqCst) < 1 {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
        .await;
        drop(resp);
        within(Duration::from_secs(3), "handler cancelled", async {
            while dropped.load(Ordering::SeqCst) < 1 {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
        .await;

        // After the head: an endless body stream (server-sent events, say)
        // stops when the proxy resets, not at its next chunk.
        let (_send, resp) = c
            .send_request(head("GET", "/stall-body"), true)
            .await
            .unwrap();
        let (h, mut body) = resp.await.unwrap();
        assert_eq!(h.status, 200);
        assert_eq!(body.data().await.unwrap().unwrap(), "partial");
        drop(body);
        let s = settle(&srv.metrics, |s| s.streams_active == 0).await;
        assert_eq!(s.streams_active, 0, "the body stream outlived its reset");
        assert_eq!(s.error(ErrorKind::PeerReset), 2, "{:?}", s.errors);

        // The connection is unaffected.
        assert_eq!(get(&c, "/hello").await.unwrap().0, 200);
    })
    .await
}

/// A request whose head ends its stream has no body, and its handler can
/// tell at once, before reading (the Python runtime answers such requests
/// on its I/O thread); a request with a body is not at its end until read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bodiless_request_is_at_its_end_on_arrival() {
    bounded(async {
        let h = handler_fn(|mut req: Request| async move {
            let at_end = http_body::Body::is_end_stream(req.body_mut());
            let body = req.body_mut().to_bytes().await?;
            let after = http_body::Body::is_end_stream(req.body_mut());
            Ok::<_, BoxError>(Response::new(
                format!("{at_end} {} {after}", body.len()).into(),
            ))
        });
        let srv = TestServer::start("bodiless-end", ServerConfig::default(), h).await;
        let c = srv.client().await;
        let r = request(&c, head("GET", "/"), None).await.unwrap();
        assert_eq!(r, (200, Bytes::from("true 0 true")));
        let r = request(&c, head("POST", "/"), Some(Bytes::from("abc")))
            .await
            .unwrap();
        assert_eq!(r, (200, Bytes::from("false 3 true")));
    })
    .await
}
