//! Slow and silent clients against the front, over real sockets: each
//! timeout fires at its edge (not before the configured time, and within a
//! generous bound after it), answers as specified (a quiet close, or 408),
//! and leaves other clients unaffected; connection caps hold and idle
//! peers cannot exhaust them for longer than the first-byte timeout.
//! (Issue 12 item 4; issue 13 item 1 and its slow-client fault suite.)
#![cfg(feature = "cli")]

mod proxy_common;

use std::time::{Duration, Instant};

use proxy_common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use uwire::client::ClientConfig;
use uwire::proxy::ProxyConfig;

/// Every timeout under test; short so tests stay fast, far apart from the
/// slack allowed after them.
const T: Duration = Duration::from_millis(800);
/// How late a timeout may fire on a loaded 2-core machine.
const SLACK: Duration = Duration::from_secs(8);

fn short() -> ProxyConfig {
    ProxyConfig {
        first_byte_timeout: T,
        header_read_timeout: T,
        body_read_timeout: T,
        keepalive_timeout: T,
        send_timeout: T,
        ..ProxyConfig::default()
    }
}

async fn setup(cfg: ProxyConfig) -> (App, Proxy) {
    let app = App::start("slow").await;
    let proxy = Proxy::start(vec![app.upstream()], ClientConfig::default(), cfg).await;
    (app, proxy)
}

/// Reads until EOF (or a reset); returns what arrived and when it ended.
async fn read_to_close(s: &mut TcpStream) -> (Vec<u8>, Instant) {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return (out, Instant::now()),
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
}

fn assert_at_edge(what: &str, start: Instant, end: Instant, t: Duration) {
    let took = end - start;
    // Timers may round down by a millisecond; never by more.
    assert!(
        took + Duration::from_millis(50) >= t,
        "{what}: closed after {took:?}, before its {t:?} timeout"
    );
    assert!(
        took <= t + SLACK,
        "{what}: took {took:?} for a {t:?} timeout"
    );
}

/// A connection that has had one `GET /hello` answered (`200 hello`),
/// kept alive for what the test does next.
async fn answered_once(addr: std::net::SocketAddr) -> RawConn {
    let mut c = RawConn::connect(addr).await;
    c.send(b"GET /hello HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let r = within(
        Duration::from_secs(10),
        "the first response",
        c.read_response(false),
    )
    .await
    .unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "hello"));
    c
}

async fn hello_works(proxy: &Proxy) {
    let r = within(
        Duration::from_secs(10),
        "another client's request",
        raw_exchange(proxy.addr, b"GET /hello HTTP/1.1\r\nHost: a\r\n\r\n"),
    )
    .await;
    assert_eq!((r.status, r.text().as_str()), (200, "hello"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_connection_is_closed_after_the_first_byte_timeout() {
    bounded(async {
        let (_app, proxy) = setup(short()).await;
        let start = Instant::now();
        let mut silent = TcpStream::connect(proxy.addr).await.unwrap();
        let mut other = TcpStream::connect(proxy.addr).await.unwrap();
        hello_works(&proxy).await;
        let (got, end) = read_to_close(&mut silent).await;
        assert!(got.is_empty(), "a silent connection got {got:?}");
        assert_at_edge("silent connection", start, end, T);
        let (_, end) = read_to_close(&mut other).await;
        assert_at_edge("second silent connection", start, end, T);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slowloris_head_gets_408_at_the_header_timeout() {
    bounded(async {
        let (app, proxy) = setup(ProxyConfig {
            header_read_timeout: Duration::from_millis(1500),
            ..short()
        })
        .await;
        let mut s = TcpStream::connect(proxy.addr).await.unwrap();
        s.write_all(b"GET /hello HTTP/1.1\r\nHost: a\r\n")
            .await
            .unwrap();
        let start = Instant::now();
        // One byte every 100 ms: always within the first-byte and idle
        // timeouts, never finishing the head.
        let drip = async {
            loop {
                if s.write_all(b"X").await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                let mut probe = [0u8; 1];
                if let Ok(Ok(_)) =
                    tokio::time::timeout(Duration::from_millis(1), s.peek(&mut probe)).await
                {
                    break;
                }
            }
        };
        within(Duration::from_secs(20), "slowloris dripping", drip).await;
        hello_works(&proxy).await;
        let (got, end) = read_to_close(&mut s).await;
        let text = String::from_utf8_lossy(&got);
        assert!(text.starts_with("HTTP/1.1 408 "), "{text:?}");
        assert!(text.contains("connection: close"), "{text:?}");
        assert_at_edge("slowloris", start, end, Duration::from_millis(1500));
        assert_eq!(app.state.hits.load(std::sync::atomic::Ordering::Relaxed), 1);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_head_then_silence_gets_408() {
    bounded(async {
        let (_app, proxy) = setup(short()).await;
        let mut s = TcpStream::connect(proxy.addr).await.unwrap();
        let start = Instant::now();
        s.write_all(b"GET /hel").await.unwrap();
        let (got, end) = read_to_close(&mut s).await;
        assert!(String::from_utf8_lossy(&got).starts_with("HTTP/1.1 408 "));
        assert_at_edge("partial head", start, end, T);
    })
    .await
}

/// On a kept-alive connection, the next request's head is timed from its
/// first byte too (each idle phase starts its own head timer), not by the
/// far longer keep-alive timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_second_head_gets_408_at_the_header_timeout() {
    bounded(async {
        let (_app, proxy) = setup(ProxyConfig {
            keepalive_timeout: Duration::from_secs(60),
            ..short()
        })
        .await;
        let mut c = answered_once(proxy.addr).await;
        let start = Instant::now();
        c.send(b"GET /hel").await.unwrap();
        let (got, end) = read_to_close(&mut c.io).await;
        assert!(
            String::from_utf8_lossy(&got).starts_with("HTTP/1.1 408 "),
            "{got:?}"
        );
        assert_at_edge("partial second head", start, end, T);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keepalive_connection_is_closed_quietly() {
    bounded(async {
        let (_app, proxy) = setup(ProxyConfig {
            first_byte_timeout: Duration::from_secs(30),
            ..short()
        })
        .await;
        let mut c = answered_once(proxy.addr).await;
        let start = Instant::now();
        // Still usable before the timeout.
        tokio::time::sleep(T / 4).await;
        c.send(b"GET /hello HTTP/1.1\r\nHost: a\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(c.read_response(false).await.unwrap().status, 200);
        let start2 = Instant::now();
        let (got, end) = read_to_close(&mut c.io).await;
        assert!(got.is_empty(), "{got:?}");
        assert_at_edge("idle keep-alive", start2, end, T);
        assert!(end - start >= T);
    })
    .await
}

/// A connection that released its HTTP state while idle (`idle_release`
/// far below the timeouts) keeps every timeout: the keep-alive close
/// counts from its last response, and a head started after the release
/// still gets its 408 at the header timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_released_idle_connection_keeps_its_timeouts() {
    bounded(async {
        let (_app, proxy) = setup(ProxyConfig {
            first_byte_timeout: Duration::from_secs(30),
            idle_release: Duration::from_millis(10),
            ..short()
        })
        .await;
        // Keep-alive: released, used again, then closed at the edge.
        let mut c = RawConn::connect(proxy.addr).await;
        c.send(b"GET /hello HTTP/1.1\r\nHost: a\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(c.read_response(false).await.unwrap().status, 200);
        tokio::time::sleep(T / 4).await;
        c.send(b"GET /hello HTTP/1.1\r\nHost: a\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(c.read_response(false).await.unwrap().status, 200);
        let start = Instant::now();
        let (got, end) = read_to_close(&mut c.io).await;
        assert!(got.is_empty(), "{got:?}");
        assert_at_edge("idle keep-alive after a release", start, end, T);

        // A head begun after the release, then silence: 408.
        let mut c = RawConn::connect(proxy.addr).await;
        c.send(b"GET /hello HTTP/1.1\r\nHost: a\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(c.read_response(false).await.unwrap().status, 200);
        tokio::time::sleep(T / 4).await;
        c.send(b"GET /hello HTTP/1.1\r\nHo").await.unwrap();
        let start = Instant::now();
        let (got, end) = read_to_close(&mut c.io).await;
        let text = String::from_utf8_lossy(&got);
        assert!(text.starts_with("HTTP/1.1 408"), "{text}");
        assert_at_edge("head after a release", start, end, T);
        hello_works(&proxy).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_body_gets_408_and_frees_the_upstream() {
    bounded(async {
        let (_app, proxy) = setup(short()).await;
        let mut s = TcpStream::connect(proxy.addr).await.unwrap();
        s.write_all(b"POST /buffer HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nhello")
            .await
            .unwrap();
        let start = Instant::now();
        hello_works(&proxy).await;
        let (got, end) = read_to_close(&mut s).await;
        let text = String::from_utf8_lossy(&got);
        assert!(text.starts_with("HTTP/1.1 408 "), "{text:?}");
        assert_at_edge("stalled body", start, end, T);
        wait_until(Duration::from_secs(10), "upstream stream released", || {
            proxy.client.outstanding() == [0]
        })
        .await;
        assert_eq!(proxy.client.ejected(), [false]);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_trickling_within_the_timeout_is_accepted() {
    bounded(async {
        let (_app, proxy) = setup(ProxyConfig {
            body_read_timeout: Duration::from_millis(1500),
            ..short()
        })
        .await;
        let mut c = RawConn::connect(proxy.addr).await;
        c.send(b"POST /buffer HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n")
            .await
            .unwrap();
        for b in b"hello" {
            tokio::time::sleep(Duration::from_millis(300)).await;
            c.send(&[*b]).await.unwrap();
        }
        let r = c.read_response(false).await.unwrap();
        assert_eq!((r.status, r.text().as_str()), (200, "len=5"));
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_cut_off_after_the_send_timeout() {
    bounded(async {
        let (_app, proxy) = setup(short()).await;
        let mut s = TcpStream::connect(proxy.addr).await.unwrap();
        // 256 MiB: far more than the socket buffers hold.
        s.write_all(b"GET /download?bytes=268435456 HTTP/1.1\r\nHost: a\r\n\r\n")
            .await
            .unwrap();
        wait_until(Duration::from_secs(10), "download started", || {
            proxy.client.outstanding() == [1]
        })
        .await;
        let start = Instant::now();
        wait_until(T + SLACK, "stalled download abandoned", || {
            proxy.client.outstanding() == [0]
        })
        .await;
        assert!(start.elapsed() + Duration::from_millis(50) >= T / 2);
        hello_works(&proxy).await;
        drop(s);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_peers_cannot_hold_the_connection_cap() {
    bounded(async {
        let (_app, proxy) = setup(ProxyConfig {
            max_connections: 8,
            first_byte_timeout: Duration::from_secs(2),
            ..short()
        })
        .await;
        let mut silent = Vec::new();
        for _ in 0..8 {
            silent.push(TcpStream::connect(proxy.addr).await.unwrap());
        }
        // Every slot is taken; a real client waits in the backlog until
        // the first-byte timeout frees one, then is served.
        let start = Instant::now();
        let r = within(
            Duration::from_secs(2) + SLACK,
            "request behind idle peers",
            raw_exchange(proxy.addr, b"GET /hello HTTP/1.1\r\nHost: a\r\n\r\n"),
        )
        .await;
        assert_eq!(r.status, 200);
        let waited = start.elapsed();
        assert!(
            waited + Duration::from_millis(300) >= Duration::from_secs(2),
            "served after {waited:?}: the cap of 8 did not hold"
        );
        for mut s in silent {
            let (got, _) = read_to_close(&mut s).await;
            assert!(got.is_empty());
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_ip_cap_closes_the_extra_connection_at_once() {
    bounded(async {
        let (_app, proxy) = setup(ProxyConfig {
            max_connections_per_ip: 2,
            first_byte_timeout: Duration::from_secs(30),
            ..short()
        })
        .await;
        let mut a = RawConn::connect(proxy.addr).await;
        let mut b = RawConn::connect(proxy.addr).await;
        for c in [&mut a, &mut b] {
            c.send(b"GET /hello HTTP/1.1\r\nHost: a\r\n\r\n")
                .await
                .unwrap();
            assert_eq!(c.read_response(false).await.unwrap().status, 200);
        }
        let mut third = TcpStream::connect(proxy.addr).await.unwrap();
        let start = Instant::now();
        let _ = third
            .write_all(b"GET /hello HTTP/1.1\r\nHost: a\r\n\r\n")
            .await;
        let (got, _) = read_to_close(&mut third).await;
        assert!(got.is_empty(), "{:?}", String::from_utf8_lossy(&got));
        assert!(start.elapsed() < Duration::from_secs(5));
        // Closing one makes room.
        drop(a);
        let r = within(Duration::from_secs(10), "after a slot freed", async {
            loop {
                let mut c = TcpStream::connect(proxy.addr).await.unwrap();
                let _ = c
                    .write_all(b"GET /hello HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
                    .await;
                let (got, _) = read_to_close(&mut c).await;
                if !got.is_empty() {
                    return got;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        assert!(String::from_utf8_lossy(&r).starts_with("HTTP/1.1 200"));
        drop(b);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_idle_connections_close_after_the_keepalive_timeout() {
    bounded(async {
        let (_app, proxy) = setup(short()).await;
        let send = h2_connect(proxy.addr).await;
        let req = http::Request::get(proxy.url("/hello"))
            .body(empty())
            .unwrap();
        let r = h2_fetch(&send, req).await.unwrap();
        assert_eq!(r.status, 200);
        let start = Instant::now();
        within(T + SLACK, "h2 connection closed when idle", async {
            while !send.is_closed() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        assert!(start.elapsed() + Duration::from_millis(50) >= T);
    })
    .await
}
