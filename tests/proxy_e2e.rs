//! End-to-end tests of the proxy side, all in one process: a real HTTP
//! client (hyper-util's legacy client, an HTTP/2 prior-knowledge connection
//! or a raw HTTP/1.1 socket) -> the HTTP front (`uwire::proxy::serve` on
//! 127.0.0.1:0) -> `uwire::client::Client` -> the app runtime
//! (`uwire::server::Server` on a per-test Unix socket) running the test app
//! of `proxy_common`.
//!
//! Child-process tests (peak memory, kill -9 and restart, `uwire
//! quickstart`) are in `proxy_process.rs`; load balancing, ejection and
//! error mapping in `proxy_upstreams.rs`.
#![cfg(feature = "cli")]

mod proxy_common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::BodyExt;
use proxy_common::*;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use uwire::client::ClientConfig;
use uwire::proxy::ProxyConfig;
use uwire::server::{ErrorKind, ServerConfig};

// ---------------------------------------------------------------------------
// Round trips, headers, environ
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_and_post_round_trip_with_status_and_headers() {
    bounded(async {
        let app = App::start("roundtrip").await;
        let proxy = Proxy::to(&app).await;
        let c = http_client();

        let r = get(&c, &proxy.url("/hello")).await;
        assert_eq!((r.status, r.text().as_str()), (200, "hello"));
        assert_eq!(r.header("content-type"), Some("text/plain"));

        let body: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let r = post(&c, &proxy.url("/echo"), body.clone()).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.body.len(), body.len());
        assert!(r.body == body, "echoed body differs");
        assert_eq!(r.header("content-type"), Some("application/octet-stream"));

        // Status, repeated and custom response headers pass through.
        let r = get(&c, &proxy.url("/status?code=418")).await;
        assert_eq!(r.status, 418);
        assert_eq!(r.header("x-custom"), Some("yes"));
        let cookies: Vec<&str> = r
            .headers
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert_eq!(cookies, ["a=1", "b=2"]);
        assert_eq!(r.text(), "status 418");
        let r = get(&c, &proxy.url("/status?code=503")).await;
        assert_eq!((r.status, r.text().as_str()), (503, "status 503"));

        // The app's own 404 is not a proxy error.
        let r = get(&c, &proxy.url("/nope")).await;
        assert_eq!((r.status, r.text().as_str()), (404, "not found"));

        // A POST with Content-Length reaches the app as CONTENT_LENGTH.
        let r = post(&c, &proxy.url("/environ"), "abc").await;
        let env = r.environ();
        assert_eq!(env["REQUEST_METHOD"], "POST");
        assert_eq!(env["CONTENT_LENGTH"], "3");

        // Every request went over one pooled connection.
        assert_eq!(proxy.client.connections_opened(), [1]);
        assert_eq!(app.metrics.snapshot().connections_total, 1);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_headers_are_stripped_both_ways() {
    bounded(async {
        let app = App::start("hop").await;
        let proxy = Proxy::to(&app).await;

        // Request side: fields named in Connection, and every standard
        // hop-by-hop field, never reach the app.
        let r = raw_exchange(
            proxy.addr,
            b"GET /headers HTTP/1.1\r\n\
              Host: localhost\r\n\
              Connection: keep-alive, X-Drop-Me\r\n\
              Keep-Alive: timeout=5\r\n\
              TE: trailers\r\n\
              Upgrade: foo/1\r\n\
              Proxy-Connection: keep-alive\r\n\
              X-Drop-Me: 1\r\n\
              X-Keep-Me: 1\r\n\
              \r\n",
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text());
        let seen = r.text();
        for gone in [
            "connection:",
            "keep-alive:",
            "te:",
            "upgrade:",
            "proxy-connection:",
            "x-drop-me:",
            "transfer-encoding:",
        ] {
            assert!(
                !seen.lines().any(|l| l.starts_with(gone)),
                "{gone} reached the app:\n{seen}"
            );
        }
        assert!(seen.contains("x-keep-me: 1\n"), "{seen}");
        assert!(seen.contains("host: localhost\n"), "{seen}");

        // Transfer-Encoding on a request: the body arrives de-chunked,
        // the field does not.
        let r = raw_exchange(
            proxy.addr,
            b"POST /headers HTTP/1.1\r\n\
              Host: localhost\r\n\
              Transfer-Encoding: chunked\r\n\
              \r\n\
              5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        )
        .await;
        assert_eq!(r.status, 200);
        let seen = r.text();
        assert!(!seen.contains("transfer-encoding"), "{seen}");
        assert!(seen.contains("body-bytes: 11\n"), "{seen}");

        // Response side: the app's hop-by-hop fields (and the field its
        // Connection names) do not reach the client; the body is framed by
        // the proxy (Content-Length kept).
        let r = raw_exchange(proxy.addr, b"GET /hop HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
        assert_eq!(r.status, 200);
        for gone in [
            "connection",
            "x-resp-drop",
            "keep-alive",
            "upgrade",
            "transfer-encoding",
            "trailer",
            "proxy-connection",
        ] {
            assert!(!r.has(gone), "{gone} reached the client: {:?}", r.headers);
        }
        assert_eq!(r.header("x-resp-keep"), Some("1"));
        assert_eq!(r.header("content-length"), Some("3"));
        assert_eq!(r.text(), "hop");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_forwarded_headers_appended_and_configurable() {
    bounded(async {
        let app = App::start("xff").await;
        let on = Proxy::to(&app).await;
        let off = Proxy::start(
            vec![app.upstream()],
            ClientConfig::default(),
            ProxyConfig {
                x_forwarded_for: false,
                x_forwarded_proto: false,
                ..ProxyConfig::default()
            },
        )
        .await;
        let lines = |r: &Raw, name: &str| -> Vec<String> {
            r.text()
                .lines()
                .filter_map(|l| l.strip_prefix(&format!("{name}: ")).map(str::to_string))
                .collect()
        };

        // No incoming value: the client address.
        let req = b"GET /headers HTTP/1.1\r\nHost: a\r\n\r\n";
        let r = raw_exchange(on.addr, req).await;
        assert_eq!(lines(&r, "x-forwarded-for"), ["127.0.0.1"]);
        assert_eq!(lines(&r, "x-forwarded-proto"), ["http"]);

        // An existing value is kept and the client appended.
        let req = b"GET /headers HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 203.0.113.7\r\n\r\n";
        let r = raw_exchange(on.addr, req).await;
        assert_eq!(lines(&r, "x-forwarded-for"), ["203.0.113.7, 127.0.0.1"]);

        // Several incoming fields: all kept, in order.
        let req = b"GET /headers HTTP/1.1\r\nHost: a\r\n\
            X-Forwarded-For: 203.0.113.7\r\nX-Forwarded-For: 198.51.100.2, 192.0.2.1\r\n\r\n";
        let r = raw_exchange(on.addr, req).await;
        assert_eq!(
            lines(&r, "x-forwarded-for"),
            ["203.0.113.7, 198.51.100.2, 192.0.2.1, 127.0.0.1"]
        );

        // A client-supplied X-Forwarded-Proto is replaced, not trusted.
        let req = b"GET /headers HTTP/1.1\r\nHost: a\r\nX-Forwarded-Proto: https\r\n\r\n";
        let r = raw_exchange(on.addr, req).await;
        assert_eq!(lines(&r, "x-forwarded-proto"), ["http"]);

        // Both turned off: nothing added, incoming values untouched.
        let req = b"GET /headers HTTP/1.1\r\nHost: a\r\n\r\n";
        let r = raw_exchange(off.addr, req).await;
        assert!(lines(&r, "x-forwarded-for").is_empty(), "{}", r.text());
        assert!(lines(&r, "x-forwarded-proto").is_empty(), "{}", r.text());
        let req = b"GET /headers HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 203.0.113.7\r\n\r\n";
        let r = raw_exchange(off.addr, req).await;
        assert_eq!(lines(&r, "x-forwarded-for"), ["203.0.113.7"]);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn params_and_connection_facts_reach_the_environ() {
    bounded(async {
        let app = App::start("environ").await;
        let proxy = Proxy::start(
            vec![app.upstream()],
            ClientConfig::default(),
            ProxyConfig {
                params: vec![
                    (Bytes::from("APP_ENV"), Bytes::from("staging")),
                    (Bytes::from("UWSGI_APPID"), Bytes::from("shop, main")),
                ],
                ..ProxyConfig::default()
            },
        )
        .await;
        let mut conn = RawConn::connect(proxy.addr).await;
        let local = conn.io.local_addr().unwrap();
        conn.send(b"GET /environ/sub/path?x=1&y=%20 HTTP/1.1\r\nHost: example.test:8080\r\n\r\n")
            .await
            .unwrap();
        let r = conn.read_response(false).await.unwrap();
        assert_eq!(r.status, 200);
        let env: std::collections::HashMap<String, String> =
            serde_json::from_slice(&r.body).unwrap();
        let port = proxy.addr.port().to_string();
        let expect = [
            ("APP_ENV", "staging"),
            ("UWSGI_APPID", "shop, main"),
            ("REMOTE_ADDR", "127.0.0.1"),
            ("REMOTE_PORT", &local.port().to_string()),
            ("SERVER_PORT", &port),
            ("SERVER_NAME", "example.test"),
            ("HTTP_HOST", "example.test:8080"),
            ("REQUEST_METHOD", "GET"),
            ("PATH_INFO", "/environ/sub/path"),
            ("QUERY_STRING", "x=1&y=%20"),
            ("REQUEST_URI", "/environ/sub/path?x=1&y=%20"),
            ("REQUEST_SCHEME", "http"),
            ("SERVER_PROTOCOL", "HTTP/1.1"),
            ("HTTP_X_FORWARDED_FOR", "127.0.0.1"),
            ("HTTP_X_FORWARDED_PROTO", "http"),
        ];
        for (k, v) in expect {
            assert_eq!(env.get(k).map(String::as_str), Some(v), "{k} in {env:?}");
        }
        assert!(!env.contains_key("HTTPS"));
        assert!(
            !env.contains_key("CONTENT_LENGTH"),
            "a GET has no body length"
        );

        // An IPv6-literal Host without a port keeps its brackets intact.
        let r = raw_exchange(
            proxy.addr,
            b"GET /environ HTTP/1.1\r\nHost: [2001:db8::1]\r\n\r\n",
        )
        .await;
        let env: std::collections::HashMap<String, String> =
            serde_json::from_slice(&r.body).unwrap();
        assert_eq!(env["SERVER_NAME"], "[2001:db8::1]");
        let r = raw_exchange(
            proxy.addr,
            b"GET /environ HTTP/1.1\r\nHost: [2001:db8::1]:8443\r\n\r\n",
        )
        .await;
        let env: std::collections::HashMap<String, String> =
            serde_json::from_slice(&r.body).unwrap();
        assert_eq!(env["SERVER_NAME"], "[2001:db8::1]");
    })
    .await
}

// ---------------------------------------------------------------------------
// Streaming bodies
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_request_bodies_stream_through() {
    bounded(async {
        let app = App::start("chunked").await;
        let proxy = Proxy::to(&app).await;
        let c = http_client();

        // Ping-pong over /echo: each chunk comes back before the next one is
        // sent, so nothing on the way buffers the request body.
        let (tx, rx) = mpsc::channel::<Bytes>(1);
        tx.send(Bytes::from("chunk-0;")).await.unwrap();
        let req = Request::post(proxy.url("/echo"))
            .body(channel_body(rx))
            .unwrap();
        let resp = within(Duration::from_secs(5), "echo head", c.request(req))
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let mut body = resp.into_body();
        let mut got = Vec::new();
        for i in 0..6 {
            if i > 0 {
                tx.send(Bytes::from(format!("chunk-{i};"))).await.unwrap();
            }
            let want = format!("chunk-{i};");
            within(Duration::from_secs(5), "chunk echoed", async {
                while !String::from_utf8_lossy(&got).ends_with(&want) {
                    let f = body.frame().await.expect("body ended early").unwrap();
                    if let Ok(d) = f.into_data() {
                        got.extend_from_slice(&d);
                    }
                }
            })
            .await;
        }
        drop(tx);
        while let Some(f) = body.frame().await {
            if let Ok(d) = f.unwrap().into_data() {
                got.extend_from_slice(&d);
            }
        }
        let want: String = (0..6).map(|i| format!("chunk-{i};")).collect();
        assert_eq!(String::from_utf8(got).unwrap(), want);

        // A chunked body has no CONTENT_LENGTH and no Transfer-Encoding in
        // the environ.
        let req = Request::post(proxy.url("/environ"))
            .body(stream_body(Pattern::new().stream(1000, 100)))
            .unwrap();
        let env = fetch(&c, req).await.unwrap().environ();
        assert!(!env.contains_key("CONTENT_LENGTH"), "{env:?}");
        assert!(!env.contains_key("HTTP_TRANSFER_ENCODING"), "{env:?}");

        // 3 MiB in uneven chunks, counted and checked by the app.
        let total = 3 * 1024 * 1024 + 17;
        let req = Request::post(proxy.url("/count"))
            .body(stream_body(Pattern::new().stream(total, 10_007)))
            .unwrap();
        let r = fetch(&c, req).await.unwrap();
        assert_eq!(r.text(), format!("count={total} pattern_ok=true"));
    })
    .await
}

/// An app allowing 128 streams per connection (an ASGI worker's number),
/// behind a proxy whose pool holds up to `conns` connections to it.
async fn behind_a_pool_of(name: &str, conns: usize) -> (App, Proxy) {
    let mut scfg = ServerConfig::default();
    scfg.conn.max_concurrent_streams = 128;
    let app = App::start_with(name, scfg).await;
    let proxy = Proxy::start(
        vec![app.upstream()],
        ClientConfig {
            max_connections_per_upstream: conns,
            ..ClientConfig::default()
        },
        ProxyConfig::default(),
    )
    .await;
    (app, proxy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_requests_share_two_connections() {
    bounded(async {
        const N: usize = 500;
        let (app, proxy) = behind_a_pool_of("many", 2).await;
        let c = http_client();
        let started = Instant::now();
        let mut set = JoinSet::new();
        for i in 0..N {
            let c = c.clone();
            let url = proxy.url(&format!("/slow?ms=400&id={i}"));
            set.spawn(async move { (i, get(&c, &url).await) });
        }
        let mut ok = 0;
        while let Some(r) = set.join_next().await {
            let (i, g) = r.unwrap();
            assert_eq!(g.status, 200, "{}", g.text());
            assert_eq!(g.text(), format!("slow {i}"));
            ok += 1;
        }
        let elapsed = started.elapsed();
        let opened = proxy.client.connections_opened();
        let live = proxy.client.connection_counts();
        let peak = app
            .state
            .slow_peak
            .load(std::sync::atomic::Ordering::Relaxed);
        let server_conns = app.metrics.snapshot().connections_total;
        println!(
            "{ok} concurrent requests in {elapsed:?}: uwire connections opened {opened:?}, \
             live {live:?}, app accepted {server_conns}, peak concurrent handlers {peak}"
        );
        assert_eq!(ok, N);
        assert!(opened[0] <= 2, "opened {opened:?}");
        assert!(live[0] <= 2, "live {live:?}");
        assert_eq!(server_conns, opened[0]);
        // 2 connections x 128 streams: never more at once, and the second
        // connection was used (more than one connection's worth at once).
        assert!(
            peak <= 256,
            "peak {peak} exceeds 2 x max_concurrent_streams"
        );
        assert!(
            peak > 128,
            "peak {peak}: the second connection never carried streams"
        );
        assert_eq!(proxy.client.outstanding(), [0]);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_spread_over_the_pool_before_sharing_a_connection() {
    // The app allows 128 streams per connection (as an ASGI worker does),
    // yet 4 requests at once open 4 connections: each to whichever worker
    // process accepts it, so a pool in front of several workers gets work
    // to all of them rather than to the one that accepted the first.
    bounded(async {
        let (app, proxy) = behind_a_pool_of("spread", 4).await;
        let c = http_client();
        // One at a time: one connection.
        for _ in 0..3 {
            assert_eq!(get(&c, &proxy.url("/environ")).await.status, 200);
        }
        assert_eq!(proxy.client.connections_opened(), [1]);
        let burst = |n: usize| {
            let mut set = JoinSet::new();
            for i in 0..n {
                let (c, url) = (c.clone(), proxy.url(&format!("/slow?ms=300&id={i}")));
                set.spawn(async move { get(&c, &url).await.status });
            }
            set
        };
        let mut set = burst(4);
        while let Some(r) = set.join_next().await {
            assert_eq!(r.unwrap(), 200);
        }
        assert_eq!(proxy.client.connections_opened(), [4]);
        assert_eq!(app.metrics.snapshot().connections_total, 4);
        // Past the pool's size, connections are shared: no fifth.
        let mut set = burst(12);
        while let Some(r) = set.join_next().await {
            assert_eq!(r.unwrap(), 200);
        }
        assert_eq!(proxy.client.connections_opened(), [4]);
        assert_eq!(proxy.client.connection_counts(), [4]);
        // A copy without connections (a forked child's): the same
        // upstreams and configuration, none of the pool, which stays.
        let fresh = proxy.client.without_connections();
        assert_eq!(fresh.connection_counts(), [0]);
        assert_eq!(fresh.connections_opened(), [0]);
        assert_eq!(
            format!("{:?}", fresh.config()),
            format!("{:?}", proxy.client.config())
        );
        assert_eq!(proxy.client.connection_counts(), [4]);
    })
    .await
}

// ---------------------------------------------------------------------------
// Cancellation, deadlines
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_disconnect_mid_response_resets_the_app_stream() {
    bounded(async {
        let app = App::start("drip").await;
        let proxy = Proxy::to(&app).await;

        // HTTP/1.1: the client closes its socket mid-body.
        let mut conn = RawConn::connect(proxy.addr).await;
        conn.send(b"GET /drip?ms=20 HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let (status, _) = conn.read_head().await.unwrap().unwrap();
        assert_eq!(status, 200);
        assert!(conn.read_until(b"drip 3\n").await.unwrap());
        assert!(app.state.events().is_empty());
        let dropped = Instant::now();
        drop(conn);
        wait_until(
            Duration::from_secs(3),
            "the app sees the cancellation",
            || !app.state.events().is_empty(),
        )
        .await;
        let noticed = dropped.elapsed();
        println!("h1 disconnect reached the app after {noticed:?}");
        assert!(app.state.events()[0].starts_with("drip cancelled after"));
        wait_until(Duration::from_secs(3), "PeerReset counted", || {
            app.metrics.snapshot().error(ErrorKind::PeerReset) >= 1
        })
        .await;
        wait_until(
            Duration::from_secs(3),
            "proxy outstanding back to 0",
            || proxy.client.outstanding() == [0],
        )
        .await;

        // Gone before the response head: the in-flight upstream request is
        // cancelled too (nothing stays outstanding).
        let mut conn = RawConn::connect(proxy.addr).await;
        conn.send(b"GET /slow?ms=3000 HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        wait_until(
            Duration::from_secs(3),
            "slow request reaches the app",
            || {
                app.state
                    .slow_inflight
                    .load(std::sync::atomic::Ordering::Relaxed)
                    == 1
            },
        )
        .await;
        assert_eq!(proxy.client.outstanding(), [1]);
        drop(conn);
        wait_until(
            Duration::from_secs(2),
            "outstanding back to 0 after an early disconnect",
            || proxy.client.outstanding() == [0],
        )
        .await;

        // HTTP/2: the client drops one response body (RST_STREAM); the
        // connection stays up and the app stream is reset all the same.
        let h2 = h2_connect(proxy.addr).await;
        let mut send = h2.clone();
        std::future::poll_fn(|cx| send.poll_ready(cx))
            .await
            .unwrap();
        let resp = send
            .send_request(
                Request::get(proxy.url("/drip?ms=20"))
                    .body(empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let mut body = resp.into_body();
        let first = body.frame().await.unwrap().unwrap();
        assert!(first.is_data());
        drop(body);
        wait_until(
            Duration::from_secs(3),
            "the app sees the h2 cancellation",
            || app.state.events().len() >= 2,
        )
        .await;
        wait_until(Duration::from_secs(3), "second PeerReset counted", || {
            app.metrics.snapshot().error(ErrorKind::PeerReset) >= 2
        })
        .await;
        let r = h2_fetch(
            &h2,
            Request::get(proxy.url("/hello")).body(empty()).unwrap(),
        )
        .await
        .unwrap();
        assert_eq!(r.text(), "hello");
        // The pooled uwire connection survived both resets.
        assert_eq!(proxy.client.connections_opened(), [1]);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_deadline_gives_504() {
    bounded(async {
        let app = App::start("deadline").await;
        let proxy = Proxy::start(
            vec![app.upstream()],
            ClientConfig {
                request_timeout: Some(Duration::from_millis(300)),
                ..ClientConfig::default()
            },
            ProxyConfig::default(),
        )
        .await;
        let c = http_client();
        let t = Instant::now();
        let r = get(&c, &proxy.url("/slow?ms=5000")).await;
        let took = t.elapsed();
        assert_eq!(r.status, 504, "{}", r.text());
        assert!(r.text().contains("deadline"), "{}", r.text());
        assert!(
            took >= Duration::from_millis(290) && took < Duration::from_secs(3),
            "504 after {took:?}"
        );
        // Under the deadline is fine, and the upstream is not ejected for it.
        let r = get(&c, &proxy.url("/slow?ms=10&id=ok")).await;
        assert_eq!((r.status, r.text().as_str()), (200, "slow ok"));
        assert_eq!(proxy.client.ejected(), [false]);
        // The late stream was reset, not its connection.
        assert_eq!(proxy.client.connections_opened(), [1]);
        wait_until(Duration::from_secs(3), "outstanding back to 0", || {
            proxy.client.outstanding() == [0]
        })
        .await;
    })
    .await
}

/// The deadline also bounds the wait for room under the app's stream
/// limit: one stream allowed, taken by an endless response, one pooled
/// connection allowed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_deadline_covers_the_wait_for_a_stream() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    bounded(async {
        let mut scfg = ServerConfig::default();
        scfg.conn.max_concurrent_streams = 1;
        let app = App::start_with("deadline-room", scfg).await;
        let proxy = Proxy::start(
            vec![app.upstream()],
            ClientConfig {
                request_timeout: Some(Duration::from_millis(300)),
                max_connections_per_upstream: 1,
                ..ClientConfig::default()
            },
            ProxyConfig::default(),
        )
        .await;
        // An endless response holds the only stream (its head came in
        // time, so no deadline applies to it any more).
        let mut drip = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
        drip.write_all(b"GET /drip?ms=50 HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut seen = Vec::new();
        while !String::from_utf8_lossy(&seen).contains("drip 1") {
            let mut buf = [0u8; 1024];
            let n = drip.read(&mut buf).await.unwrap();
            assert!(n > 0, "drip ended: {}", String::from_utf8_lossy(&seen));
            seen.extend_from_slice(&buf[..n]);
        }
        assert!(seen.starts_with(b"HTTP/1.1 200"));
        let c = http_client();
        let t = Instant::now();
        let r = get(&c, &proxy.url("/hello")).await;
        let took = t.elapsed();
        assert_eq!(r.status, 504, "{}", r.text());
        assert!(
            took >= Duration::from_millis(290) && took < Duration::from_secs(3),
            "504 after {took:?}"
        );
        // The stream frees up when its client leaves.
        drop(drip);
        let r = get(&c, &proxy.url("/hello")).await;
        assert_eq!((r.status, r.text().as_str()), (200, "hello"));
        assert_eq!(proxy.client.connections_opened(), [1]);
    })
    .await
}

// ---------------------------------------------------------------------------
// Limits, Expect
// ---------------------------------------------------------------------------

/// The default field count cap (100) is exact too: the front leaves the
/// HTTP/1 parser at its own default then, so this pins the two together.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_header_count_cap_is_exact() {
    bounded(async {
        let app = App::start("hcount").await;
        let proxy = Proxy::start(
            vec![app.upstream()],
            ClientConfig::default(),
            ProxyConfig::default(),
        )
        .await;
        assert_eq!(ProxyConfig::default().max_headers, 100);
        let with_fields = |n: usize| {
            let mut s = String::from("GET /hello HTTP/1.1\r\nHost: x\r\n");
            for i in 1..n {
                s.push_str(&format!("X-F{i}: {i}\r\n"));
            }
            s + "\r\n"
        };
        let r = raw_exchange(proxy.addr, with_fields(100).as_bytes()).await;
        assert_eq!(r.status, 200);
        let r = raw_exchange(proxy.addr, with_fields(101).as_bytes()).await;
        assert_eq!(r.status, 431);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_limits_give_431() {
    bounded(async {
        let app = App::start("hlimits").await;
        let proxy = Proxy::start(
            vec![app.upstream()],
            ClientConfig::default(),
            ProxyConfig {
                max_header_size: 16 * 1024,
                max_headers: 20,
                ..ProxyConfig::default()
            },
        )
        .await;
        let with_header = |len: usize| {
            format!(
                "GET /hello HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
                "a".repeat(len)
            )
        };
        let with_fields = |n: usize| {
            let mut s = String::from("GET /hello HTTP/1.1\r\nHost: x\r\n");
            for i in 1..n {
                s.push_str(&format!("X-F{i}: {i}\r\n"));
            }
            s + "\r\n"
        };

        // HTTP/1.1.
        let r = raw_exchange(proxy.addr, with_header(8 * 1024).as_bytes()).await;
        assert_eq!(r.status, 200);
        let r = raw_exchange(proxy.addr, with_header(20 * 1024).as_bytes()).await;
        assert_eq!(r.status, 431);
        // The limit is exact: a head of exactly max_header_size bytes
        // passes, one byte more does not.
        let fixed = with_header(0).len();
        let exact = with_header(16 * 1024 - fixed);
        assert_eq!(exact.len(), 16 * 1024);
        let r = raw_exchange(proxy.addr, exact.as_bytes()).await;
        assert_eq!(r.status, 200);
        let over = with_header(16 * 1024 - fixed + 1);
        let r = raw_exchange(proxy.addr, over.as_bytes()).await;
        assert_eq!(r.status, 431);
        let r = raw_exchange(proxy.addr, with_fields(20).as_bytes()).await;
        assert_eq!(r.status, 200);
        let r = raw_exchange(proxy.addr, with_fields(30).as_bytes()).await;
        assert_eq!(r.status, 431);
        let hits_h1 = app.state.hits.load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(hits_h1, 3, "rejected requests must not reach the app");

        // HTTP/2: the same limits.
        let h2 = h2_connect(proxy.addr).await;
        let req = |extra: Vec<(String, String)>| {
            let mut b = Request::get(proxy.url("/hello"));
            for (n, v) in extra {
                b = b.header(n, v);
            }
            b.body(empty()).unwrap()
        };
        let big = |len| vec![("x-big".to_string(), "a".repeat(len))];
        let many = |n: usize| {
            (0..n)
                .map(|i| (format!("x-f{i}"), i.to_string()))
                .collect::<Vec<_>>()
        };
        let r = h2_fetch(&h2, req(big(8 * 1024))).await.unwrap();
        assert_eq!(r.status, 200);
        let r = h2_fetch(&h2, req(big(20 * 1024))).await.unwrap();
        assert_eq!(r.status, 431);
        let r = h2_fetch(&h2, req(many(10))).await.unwrap();
        assert_eq!(r.status, 200);
        let r = h2_fetch(&h2, req(many(30))).await.unwrap();
        assert_eq!(r.status, 431);
        assert_eq!(
            app.state.hits.load(std::sync::atomic::Ordering::Relaxed),
            hits_h1 + 2
        );
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_limits_give_413() {
    bounded(async {
        const LIMIT: usize = 64 * 1024;
        let app = App::start("blimits").await;
        let proxy = Proxy::start(
            vec![app.upstream()],
            ClientConfig::default(),
            ProxyConfig {
                max_body_size: LIMIT as u64,
                ..ProxyConfig::default()
            },
        )
        .await;
        let c = http_client();
        let hits = || app.state.hits.load(std::sync::atomic::Ordering::Relaxed);

        // Declared too large: answered at once, before any body byte, and
        // the app never sees it.
        let r = raw_exchange(
            proxy.addr,
            b"POST /count HTTP/1.1\r\nHost: x\r\nContent-Length: 65537\r\n\r\n",
        )
        .await;
        assert_eq!(r.status, 413, "{}", r.text());
        assert_eq!(hits(), 0);

        // Exactly the limit passes.
        let body = Pattern::new().slice(0, LIMIT);
        let r = post(&c, &proxy.url("/count"), body).await;
        assert_eq!(r.text(), format!("count={LIMIT} pattern_ok=true"));

        // Chunked, growing past the limit, to an app that reads the whole
        // body before answering: the response has not started -> 413.
        let mut req =
            b"POST /buffer HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        for _ in 0..12 {
            req.extend_from_slice(format!("{:x}\r\n", 8192).as_bytes());
            req.extend_from_slice(&[b'z'; 8192]);
            req.extend_from_slice(b"\r\n");
        }
        req.extend_from_slice(b"0\r\n\r\n");
        let r = raw_exchange(proxy.addr, &req).await;
        assert_eq!(r.status, 413, "{}", r.text());

        // Chunked, growing past the limit, to an app that answers at once
        // (/echo): the 200 head is already out, so the only way to say "too
        // large" is to abort the response: the connection closes before the
        // terminating chunk, after at most LIMIT echoed bytes.
        let mut conn = RawConn::connect(proxy.addr).await;
        conn.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
            .await
            .unwrap();
        conn.send(b"2000\r\n").await.unwrap();
        conn.send(&[b'e'; 8192]).await.unwrap();
        conn.send(b"\r\n").await.unwrap();
        let (status, headers) = conn.read_head().await.unwrap().unwrap();
        assert_eq!(status, 200);
        assert!(headers
            .iter()
            .any(|(n, v)| n == "transfer-encoding" && v == "chunked"));
        let mut more = Vec::new();
        for _ in 0..11 {
            more.extend_from_slice(b"2000\r\n");
            more.extend_from_slice(&[b'e'; 8192]);
            more.extend_from_slice(b"\r\n");
        }
        more.extend_from_slice(b"0\r\n\r\n");
        let _ = conn.send(&more).await; // may fail once the proxy closes
        let mut echoed = Vec::new();
        let mut terminated = false;
        // Read what comes back until the connection ends.
        let mut rest = conn.buffered().to_vec();
        let mut tmp = vec![0u8; 64 * 1024];
        loop {
            use tokio::io::AsyncReadExt;
            match conn.io.read(&mut tmp).await {
                Ok(0) | Err(_) => break,
                Ok(n) => rest.extend_from_slice(&tmp[..n]),
            }
        }
        // Decode whatever chunks arrived.
        let mut s = &rest[..];
        while let Some(i) = s.windows(2).position(|w| w == b"\r\n") {
            let size = usize::from_str_radix(std::str::from_utf8(&s[..i]).unwrap(), 16).unwrap();
            if size == 0 {
                terminated = true;
                break;
            }
            if s.len() < i + 2 + size + 2 {
                echoed.extend_from_slice(&s[i + 2..(i + 2 + size).min(s.len())]);
                break;
            }
            echoed.extend_from_slice(&s[i + 2..i + 2 + size]);
            s = &s[i + 2 + size + 2..];
        }
        assert!(
            !terminated,
            "an over-limit body must not end with a clean response"
        );
        assert!(echoed.len() <= LIMIT, "echoed {} bytes", echoed.len());
        assert!(echoed.iter().all(|b| *b == b'e'));
        // The pooled upstream connection survived the reset stream.
        let r = get(&c, &proxy.url("/hello")).await;
        assert_eq!(r.status, 200);
        assert_eq!(proxy.client.connections_opened(), [1]);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_100_continue() {
    bounded(async {
        let app = App::start("expect").await;
        let proxy = Proxy::to(&app).await;
        for path in ["/echo", "/headers"] {
            let mut conn = RawConn::connect(proxy.addr).await;
            conn.send(
                format!(
                    "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\
                     Expect: 100-continue\r\n\r\n"
                )
                .as_bytes(),
            )
            .await
            .unwrap();
            // The interim response comes before any body byte is sent.
            let (status, _) = within(Duration::from_secs(5), "100 Continue", conn.read_head())
                .await
                .unwrap()
                .expect("connection closed before 100 Continue");
            assert_eq!(status, 100);
            conn.send(b"hello world").await.unwrap();
            let r = within(
                Duration::from_secs(5),
                "final response",
                conn.read_response(false),
            )
            .await
            .unwrap();
            assert_eq!(r.status, 200);
            assert!(r.complete);
            if path == "/echo" {
                assert_eq!(r.text(), "hello world");
            } else {
                // Expect is hop-by-hop: answered by the proxy, not forwarded.
                assert!(!r.text().contains("expect"), "{}", r.text());
                assert!(r.text().contains("body-bytes: 11\n"), "{}", r.text());
            }
        }
    })
    .await
}

// ---------------------------------------------------------------------------
// Shutdown, HTTP/2
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_loses_nothing() {
    bounded(async {
        let app = App::start("drain").await;
        let mut proxy = Proxy::to(&app).await;
        let c = http_client();
        let h2 = h2_connect(proxy.addr).await;

        // Two large downloads whose heads are already back.
        const DL: u64 = 8 * 1024 * 1024;
        let mut downloads = Vec::new();
        for _ in 0..2 {
            let req = Request::get(proxy.url(&format!("/download?bytes={DL}")))
                .body(empty())
                .unwrap();
            let resp = c.request(req).await.unwrap();
            assert_eq!(resp.status(), 200);
            downloads.push(resp);
        }
        // 60 HTTP/1.1 and 20 HTTP/2 requests inside the handler.
        let mut set = JoinSet::new();
        for i in 0..60 {
            let c = c.clone();
            let url = proxy.url(&format!("/slow?ms=1500&id=h1-{i}"));
            set.spawn(async move { (format!("h1-{i}"), get(&c, &url).await) });
        }
        for i in 0..20 {
            let h2 = h2.clone();
            let url = proxy.url(&format!("/slow?ms=1500&id=h2-{i}"));
            set.spawn(async move {
                let req = Request::get(url).body(empty()).unwrap();
                (format!("h2-{i}"), h2_fetch(&h2, req).await.unwrap())
            });
        }
        wait_until(Duration::from_secs(10), "80 requests in the app", || {
            app.state
                .slow_started
                .load(std::sync::atomic::Ordering::Relaxed)
                == 80
        })
        .await;

        proxy.trigger_shutdown();
        let inflight = app
            .state
            .slow_inflight
            .load(std::sync::atomic::Ordering::Relaxed);
        assert!(inflight > 0, "nothing in flight at shutdown");
        println!("proxy shutdown with {inflight} requests in the app + 2 downloads");
        // The listener closes promptly: new connections are refused.
        wait_until(Duration::from_secs(3), "listener closed", || {
            std::net::TcpStream::connect(proxy.addr).is_err()
        })
        .await;

        let mut done = 0;
        while let Some(r) = set.join_next().await {
            let (id, g) = r.unwrap();
            assert_eq!(g.status, 200);
            assert_eq!(g.text(), format!("slow {id}"));
            done += 1;
        }
        assert_eq!(done, 80);
        let pattern = Pattern::new();
        for resp in downloads {
            let mut body = resp.into_body();
            let mut off = 0u64;
            while let Some(f) = body.frame().await {
                let d = f
                    .expect("download aborted by the shutdown")
                    .into_data()
                    .unwrap();
                assert!(pattern.check(off, &d));
                off += d.len() as u64;
            }
            assert_eq!(off, DL);
        }
        proxy.join().await.unwrap();
        assert_eq!(proxy.client.outstanding(), [0]);
        let snap = app.metrics.snapshot();
        assert_eq!(snap.error(ErrorKind::PeerReset), 0, "{snap:?}");
        app.shutdown().await.unwrap();
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_prior_knowledge_downstream() {
    bounded(async {
        let app = App::start("h2").await;
        let proxy = Proxy::to(&app).await;
        let h2 = h2_connect(proxy.addr).await;
        let req = |m: http::Method, p: &str, b: ReqBody| {
            Request::builder()
                .method(m)
                .uri(proxy.url(p))
                .body(b)
                .unwrap()
        };

        let r = h2_fetch(&h2, req(http::Method::GET, "/hello", empty()))
            .await
            .unwrap();
        assert_eq!((r.status, r.text().as_str()), (200, "hello"));

        let body = Pattern::new().slice(0, 200_000);
        let r = h2_fetch(&h2, req(http::Method::POST, "/echo", full(body.clone())))
            .await
            .unwrap();
        assert_eq!(r.body, body);

        let r = h2_fetch(&h2, req(http::Method::GET, "/environ?q=2", empty()))
            .await
            .unwrap();
        let env = r.environ();
        assert_eq!(env["SERVER_PROTOCOL"], "HTTP/2");
        assert_eq!(env["QUERY_STRING"], "q=2");
        assert_eq!(env["HTTP_HOST"], proxy.addr.to_string());
        assert_eq!(env["SERVER_PORT"], proxy.addr.port().to_string());

        // Connection-specific response fields would be a protocol error in
        // HTTP/2; the proxy strips them.
        let r = h2_fetch(&h2, req(http::Method::GET, "/hop", empty()))
            .await
            .unwrap();
        assert_eq!((r.status, r.text().as_str()), (200, "hop"));
        assert!(r.header("x-resp-drop").is_none());
        assert_eq!(r.header("x-resp-keep"), Some("1"));

        // Many streams on the one downstream connection.
        let mut set = JoinSet::new();
        for i in 0..100 {
            let h2 = h2.clone();
            let r = req(http::Method::GET, &format!("/slow?ms=50&id={i}"), empty());
            set.spawn(async move { (i, h2_fetch(&h2, r).await.unwrap()) });
        }
        while let Some(r) = set.join_next().await {
            let (i, g) = r.unwrap();
            assert_eq!(g.text(), format!("slow {i}"));
        }

        // Streaming both ways on one stream.
        let (tx, rx) = mpsc::channel::<Bytes>(1);
        tx.send(Bytes::from("ping-0;")).await.unwrap();
        let mut send = h2.clone();
        std::future::poll_fn(|cx| send.poll_ready(cx))
            .await
            .unwrap();
        let resp = send
            .send_request(req(http::Method::POST, "/echo", channel_body(rx)))
            .await
            .unwrap();
        let mut body = resp.into_body();
        let mut got = Vec::new();
        for i in 0..4 {
            if i > 0 {
                tx.send(Bytes::from(format!("ping-{i};"))).await.unwrap();
            }
            let want = format!("ping-{i};");
            while !String::from_utf8_lossy(&got).ends_with(&want) {
                let f = body.frame().await.unwrap().unwrap();
                if let Ok(d) = f.into_data() {
                    got.extend_from_slice(&d);
                }
            }
        }
        drop(tx);
        while let Some(f) = body.frame().await {
            f.unwrap();
        }
    })
    .await
}
