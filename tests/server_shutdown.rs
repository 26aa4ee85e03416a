//! Graceful shutdown under load: through the `shutdown` future of
//! `Server::serve` and through SIGTERM to a `uwire serve` child process.
//! Zero requests may be lost: every request either completes with the
//! right answer or is refused before processing (`is_refused`).
#![cfg(feature = "cli")]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use uwire::frame::Reason;
use uwire::net::SendRequest;
use uwire::server::{handler_fn, BoxError, Request, Response, ServerConfig};

/// `/w/<i>/<ms>`: counts the request as started, sleeps, answers `<i>`.
fn worker(started: Arc<AtomicUsize>) -> impl uwire::server::Handler {
    handler_fn(move |req: Request| {
        let started = started.clone();
        async move {
            started.fetch_add(1, Ordering::SeqCst);
            let p = String::from_utf8_lossy(&req.head().path).into_owned();
            let mut it = p.trim_start_matches("/w/").split('/');
            let i = it.next().unwrap_or("").to_owned();
            let ms: u64 = it.next().unwrap_or("0").parse()?;
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok::<_, BoxError>(Response::new(i.into()))
        }
    })
}

#[derive(Debug, Default)]
struct Tally {
    completed: usize,
    refused: usize,
    lost: Vec<String>,
}

fn account(t: &mut Tally, i: usize, r: Result<(u16, Bytes), uwire::net::Error>) {
    match r {
        Ok((200, body)) if body == i.to_string() => t.completed += 1,
        Ok((status, body)) => t
            .lost
            .push(format!("request {i}: wrong answer {status} {body:?}")),
        Err(e) if e.is_refused() => t.refused += 1,
        Err(e) => t.lost.push(format!("request {i}: {e}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_under_load_loses_nothing() {
    bounded(async {
        const CONNS: usize = 4;
        const PER_CONN: usize = 50;
        const BEFORE: usize = CONNS * PER_CONN;
        let started = Arc::new(AtomicUsize::new(0));
        let config = ServerConfig {
            drain_timeout: Duration::from_secs(10),
            ..ServerConfig::default()
        };
        let mut srv = TestServer::start("shutdown-load", config, worker(started.clone())).await;
        let path = srv.path.clone();
        let mut clients: Vec<SendRequest> = Vec::new();
        for _ in 0..CONNS {
            clients.push(srv.client().await);
        }

        // BEFORE requests, all inside the handler when shutdown starts.
        let mut before = tokio::task::JoinSet::new();
        for i in 0..BEFORE {
            let c = clients[i % CONNS].clone();
            let ms = 200 + (i % 7) * 50;
            before.spawn(async move { (i, get(&c, &format!("/w/{i}/{ms}")).await) });
        }
        within(Duration::from_secs(10), "all requests in flight", async {
            while started.load(Ordering::SeqCst) < BEFORE {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
        .await;

        // More requests keep coming on the same connections while the
        // server shuts down: each one must complete or be refused.
        let during = {
            let clients = clients.clone();
            tokio::spawn(async move {
                let mut t = Tally::default();
                let mut tasks = tokio::task::JoinSet::new();
                for i in BEFORE..BEFORE + 400 {
                    let c = clients[i % CONNS].clone();
                    tasks.spawn(async move { (i, get(&c, &format!("/w/{i}/20")).await) });
                    tokio::time::sleep(Duration::from_micros(500)).await;
                }
                while let Some(r) = tasks.join_next().await {
                    let (i, r) = r.unwrap();
                    account(&mut t, i, r);
                }
                t
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        let t0 = Instant::now();
        srv.trigger_shutdown();

        let mut t = Tally::default();
        while let Some(r) = before.join_next().await {
            let (i, r) = r.unwrap();
            account(&mut t, i, r);
        }
        assert!(t.lost.is_empty(), "lost requests: {:#?}", t.lost);
        assert_eq!(t.completed, BEFORE, "{t:?}");

        let d = during.await.unwrap();
        assert!(d.lost.is_empty(), "lost requests: {:#?}", d.lost);
        assert!(d.refused > 0, "no request was refused: shutdown too late? {d:?}");
        println!(
            "shutdown under load: {BEFORE} in flight completed; later: {} completed, {} refused, 0 lost",
            d.completed, d.refused
        );

        srv.join().await.unwrap();
        let took = t0.elapsed();
        assert!(took < Duration::from_secs(5), "drain took {took:?}");
        assert!(!path.exists(), "socket file left after shutdown");
        // Nothing accepts connections any more.
        assert!(tokio::net::UnixStream::connect(&path).await.is_err());
        for c in &clients {
            let e = get(c, "/w/0/0").await.expect_err("served after shutdown");
            assert!(e.is_refused() || e.is_closed(), "{e}");
        }
        let s = srv.metrics.snapshot();
        assert_eq!(s.connections_active, 0);
        assert_eq!(s.streams_active, 0);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_refuses_connections_waiting_in_the_backlog() {
    bounded(async {
        let config = ServerConfig {
            max_connections: 1,
            ..ServerConfig::default()
        };
        let started = Arc::new(AtomicUsize::new(0));
        let mut srv = TestServer::start("shutdown-backlog", config, worker(started.clone())).await;
        let c1 = srv.client().await;
        let first = {
            let c1 = c1.clone();
            tokio::spawn(async move { get(&c1, "/w/1/300").await })
        };
        within(Duration::from_secs(5), "first request", async {
            while started.load(Ordering::SeqCst) < 1 {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
        .await;
        // Connected (kernel backlog) but never accepted: max_connections = 1.
        let c2 = srv.client().await;
        let second = tokio::spawn(async move { get(&c2, "/w/2/0").await });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!second.is_finished());
        srv.trigger_shutdown();
        assert_eq!(first.await.unwrap().unwrap(), (200, Bytes::from("1")));
        let e = within(Duration::from_secs(5), "backlog request", second)
            .await
            .unwrap()
            .expect_err("a connection accepted after shutdown was served");
        assert!(
            e.is_refused(),
            "a request waiting in the backlog must be refused (retry-safe), got: {e}"
        );
        srv.join().await.unwrap();
        assert_eq!(started.load(Ordering::SeqCst), 1);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_timeout_resets_stragglers() {
    bounded(async {
        const DRAIN: Duration = Duration::from_millis(300);
        let started = Arc::new(AtomicUsize::new(0));
        let config = ServerConfig {
            drain_timeout: DRAIN,
            ..ServerConfig::default()
        };
        let mut srv = TestServer::start("drain-timeout", config, worker(started.clone())).await;
        let c = srv.client().await;
        let slow = {
            let c = c.clone();
            tokio::spawn(async move { get(&c, "/w/1/20000").await })
        };
        let quick = {
            let c = c.clone();
            tokio::spawn(async move { get(&c, "/w/2/100").await })
        };
        within(Duration::from_secs(5), "requests in flight", async {
            while started.load(Ordering::SeqCst) < 2 {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
        .await;
        let t0 = Instant::now();
        srv.trigger_shutdown();
        assert_eq!(quick.await.unwrap().unwrap(), (200, Bytes::from("2")));
        let e = slow.await.unwrap().expect_err("straggler must be reset");
        assert!(e.is_reset(), "{e}");
        assert_eq!(e.reason(), Some(Reason::CANCEL));
        assert!(!e.is_refused(), "a processed request is not retry-safe");
        srv.join().await.unwrap();
        let took = t0.elapsed();
        assert!(
            took >= DRAIN && took < DRAIN + Duration::from_secs(2),
            "serve returned after {took:?}"
        );
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_a_uwire_serve_child() {
    bounded(async {
        let path = sock_path("sigterm");
        let bind = format!("unix:{}", path.display());
        let mut child = spawn_serve(&["--bind", &bind, "--drain-timeout", "10s"]);
        wait_for_socket(&path).await;
        let clients = [connect(&path).await, connect(&path).await];
        for c in &clients {
            assert_eq!(get(c, "/").await.unwrap().0, 200);
        }

        // Uploads in flight when SIGTERM arrives, finished after it.
        let mut uploads = Vec::new();
        for (n, c) in clients.iter().cycle().take(20).enumerate() {
            let (mut send, resp) = c.send_request(head("POST", "/echo"), false).await.unwrap();
            send.send_data(Bytes::from(format!("part one of {n};")), false)
                .await
                .unwrap();
            uploads.push((n, send, resp));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        // SAFETY: plain syscall on our own child's pid.
        let rc = unsafe { libc::kill(child.child.id() as i32, libc::SIGTERM) };
        assert_eq!(rc, 0);
        tokio::time::sleep(Duration::from_millis(200)).await;

        // New requests on the old connections are refused (retry-safe).
        for c in &clients {
            let e = get(c, "/").await.expect_err("new stream after SIGTERM");
            assert!(e.is_refused(), "{e}");
        }
        let mut lost = Vec::new();
        for (n, mut send, resp) in uploads {
            let r = async {
                send.send_data(Bytes::from(format!("part two of {n}")), true)
                    .await?;
                let (h, mut b) = resp.await?;
                Ok::<_, uwire::net::Error>((h.status, b.collect(1 << 20).await?))
            }
            .await;
            match r {
                Ok((200, b)) if b == format!("part one of {n};part two of {n}") => {}
                other => lost.push(format!("upload {n}: {other:?}")),
            }
        }
        assert!(lost.is_empty(), "lost: {lost:#?}");
        let st = wait_exit(&mut child.child, Duration::from_secs(10)).await;
        assert!(st.success(), "uwire serve exited with {st}");
        assert!(!path.exists(), "socket file left after SIGTERM");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_with_a_peer_that_stopped_reading_is_bounded() {
    bounded(async {
        use uwire::frame::Settings;
        const DRAIN: Duration = Duration::from_millis(200);
        let config = ServerConfig {
            drain_timeout: DRAIN,
            ..ServerConfig::default()
        };
        let mut srv = TestServer::start("stuck-peer", config, app()).await;
        // Huge windows so the server writes until the socket is full.
        let mut raw = Raw::connect_silent(&srv.path).await;
        raw.send_bytes(&uwire::frame::preface::PREFACE).await;
        raw.send(Settings {
            initial_stream_window: Some(0x7FFF_FFFF),
            initial_connection_window: Some(0x7FFF_FFFF),
            ..Settings::default()
        })
        .await;
        // A 1 GB response we never read: the server's writes block.
        raw.send(uwire::frame::Request::new(
            sid(1),
            head("GET", "/zeros/1000000000"),
            true,
        ))
        .await;
        within(Duration::from_secs(5), "server output to stall", async {
            loop {
                let s = srv.metrics.snapshot().bytes_out;
                tokio::time::sleep(Duration::from_millis(200)).await;
                if s > 0 && srv.metrics.snapshot().bytes_out == s {
                    return;
                }
            }
        })
        .await;
        let t0 = Instant::now();
        srv.trigger_shutdown();
        srv.join().await.unwrap();
        let took = t0.elapsed();
        assert!(took < DRAIN + Duration::from_secs(4), "serve took {took:?}");
        // The stuck connection was really closed (not left to a detached
        // task): our end sees it without reading anything.
        let closed = within(Duration::from_secs(3), "socket closed", async {
            loop {
                match raw.io.try_write(b"x") {
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(_) => return true,
                    Ok(_) => {}
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        assert!(closed);
        assert_eq!(srv.metrics.snapshot().connections_active, 0);
    })
    .await
}
