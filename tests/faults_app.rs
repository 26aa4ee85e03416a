//! Faults of the application runtime behind `uwire proxy`, both real child
//! processes (issue 13, fault injection):
//!
//! * the app SIGKILLed with 200 requests in flight: each one ends at once,
//!   with 502 when its response had not started and an aborted body when
//!   it had, none hangs; a new `uwire serve` on the same socket path is
//!   used by the proxy without a restart of its own;
//! * the app restarted under steady load (`uwire serve --replace`, then
//!   SIGTERM to the old process), three times: not one request fails.
//!
//! Each scenario prints its row of the table (`--nocapture`).
#![cfg(feature = "cli")]

mod faults_common;
mod proxy_common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use faults_common::*;
use http::Request;
use http_body_util::BodyExt;
use proxy_common::{channel_body, full, sock_path, within, ReqBody};
use tokio::sync::mpsc;
use tokio::time::Instant;

const HELLO: &[u8] = b"Hello from uwire!\n";

fn get(_addr: std::net::SocketAddr, path: &str) -> Request<ReqBody> {
    get_req(path)
}

fn post(_addr: std::net::SocketAddr, path: &str, body: ReqBody) -> Request<ReqBody> {
    post_req(path, body)
}

/// How one of the 200 in-flight requests ended, and when.
struct InFlight {
    head_seen: bool,
    outcome: Outcome,
    at: Instant,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_with_200_in_flight_then_the_app_returns() {
    within(Duration::from_secs(120), "test", async {
        let sock = sock_path("kill200");
        let upstream = format!("unix:{}", sock.display());
        // 2 connections x 16 streams: 32 requests reach the app, the other
        // 168 wait in the proxy for a stream. Both kinds are in flight
        // when the app dies.
        let mut app = serve_child(&sock, &["--max-streams", "16"]).await;
        let (proxy, addr) = proxy_child(&upstream, &["--connections-per-upstream", "2"]).await;
        let mut c = h1(addr).await.unwrap();
        let warm = exchange(&mut c, get(addr, "/"), HELLO, Duration::from_secs(10)).await;
        assert_eq!(warm, Outcome::Ok);

        const N: usize = 200;
        let echoing = Arc::new(AtomicUsize::new(0));
        let connected = Arc::new(AtomicUsize::new(0));
        let mut senders = Vec::new();
        let mut tasks = Vec::new();
        for i in 0..N {
            let (tx, rx) = mpsc::channel::<Bytes>(4);
            let first = Bytes::from(format!("in-flight {i};"));
            tx.send(first.clone()).await.unwrap();
            senders.push(tx);
            let (echoing, connected) = (echoing.clone(), connected.clone());
            tasks.push(tokio::spawn(async move {
                let done = |head_seen, outcome| InFlight {
                    head_seen,
                    outcome,
                    at: Instant::now(),
                };
                let Ok(mut send) = h1(addr).await else {
                    return done(false, Outcome::ConnectFailed);
                };
                connected.fetch_add(1, Ordering::SeqCst);
                let req = post(addr, "/echo", channel_body(rx));
                let limit = Duration::from_secs(60);
                let resp = match tokio::time::timeout(limit, send.send_request(req)).await {
                    Err(_) => return done(false, Outcome::Hang),
                    Ok(Err(_)) => return done(false, Outcome::NoResponse),
                    Ok(Ok(r)) => r,
                };
                let status = resp.status().as_u16();
                if status != 200 {
                    let _ = resp.into_body().collect().await;
                    return done(false, Outcome::Status(status));
                }
                let mut body = resp.into_body();
                let mut got = Vec::new();
                loop {
                    match tokio::time::timeout(limit, body.frame()).await {
                        Err(_) => return done(true, Outcome::Hang),
                        // The request body never ended, so neither may the
                        // response: a clean end is a truncation.
                        Ok(None) => return done(true, Outcome::Corrupt),
                        Ok(Some(Err(_))) => return done(true, Outcome::Aborted),
                        Ok(Some(Ok(f))) => {
                            if let Ok(d) = f.into_data() {
                                got.extend_from_slice(&d);
                                if got == first {
                                    echoing.fetch_add(1, Ordering::SeqCst);
                                }
                            }
                        }
                    }
                }
            }));
        }
        // Every request connected, the app echoing on all its streams, and
        // nothing changing for a second: the rest wait in the proxy.
        let mut last = (0, 0);
        let mut stable_since = Instant::now();
        loop {
            let now = (
                connected.load(Ordering::SeqCst),
                echoing.load(Ordering::SeqCst),
            );
            if now != last {
                last = now;
                stable_since = Instant::now();
            } else if now.0 == N && now.1 >= 16 && stable_since.elapsed() > Duration::from_secs(1)
            {
                break;
            }
            assert!(
                stable_since.elapsed() < Duration::from_secs(30),
                "requests did not get in flight: {now:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let in_app = echoing.load(Ordering::SeqCst);

        let killed_at = Instant::now();
        app.signal(libc::SIGKILL);
        let status = app.wait_exit(Duration::from_secs(10)).await;
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(libc::SIGKILL)
        );
        let mut tally = Tally::new(
            "app SIGKILLed, 200 requests in flight through uwire proxy",
            "SIGKILL of uwire serve (32 streams in the app, 168 queued in the proxy); then a new uwire serve on the same path",
        );
        let mut slowest = Duration::ZERO;
        for t in tasks {
            let r = t.await.unwrap();
            slowest = slowest.max(r.at.saturating_duration_since(killed_at));

            match (&r.outcome, r.head_seen) {
                // The response had started: only aborting it is honest.
                (Outcome::Aborted, true) => tally.expected("aborted body (head was out)"),
                // Not started: the proxy answers 502 (its retries of the
                // never-sent requests find no listener).
                (Outcome::Status(502), false) => tally.expected("502 (no head yet)"),
                (o, _) => tally.lost(&o.name()),
            }
        }
        drop(senders);
        // Every one ended promptly, none waited for a timeout. (The queued
        // ones used to fail one after another, each after a connect retry
        // sequence of its own: 13 s for the last of 168.)
        assert!(
            slowest < Duration::from_secs(5),
            "the last in-flight request ended {slowest:?} after the kill"
        );

        // The app returns on the same path (its stale socket file is
        // replaced); the proxy reconnects by itself.
        let app2 = serve_child(&sock, &[]).await;
        for i in 0..50usize {
            let mut c = h1(addr).await.unwrap();
            let o = if i % 2 == 0 {
                exchange(&mut c, get(addr, "/"), HELLO, Duration::from_secs(20)).await
            } else {
                let body = payload(i, 10_000);
                let req = post(addr, "/echo", full(body.clone()));
                exchange(&mut c, req, &body, Duration::from_secs(20)).await
            };
            match o {
                Outcome::Ok => tally.ok(),
                o => tally.lost(&format!("after the restart: {}", o.name())),
            }
        }
        println!(
            "in the app at the kill: {in_app}; last in-flight request ended {slowest:?} after it"
        );
        tally.report();
        assert!(
            tally.expected.get("aborted body (head was out)").copied() == Some(in_app),
            "every request the app was echoing must be aborted: {:?}",
            tally.expected
        );
        drop(app2);
        drop(proxy);
    })
    .await
}

/// What the load workers send, in turn.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Hello,
    SmallEcho,
    BigEcho,
    SlowEcho,
}

impl Kind {
    const ALL: [Kind; 4] = [Kind::Hello, Kind::SmallEcho, Kind::BigEcho, Kind::SlowEcho];

    fn request(self, addr: std::net::SocketAddr, seed: usize) -> (Request<ReqBody>, Bytes) {
        match self {
            Kind::Hello => (get(addr, "/"), Bytes::from_static(HELLO)),
            Kind::SmallEcho => {
                let b = payload(seed, 1024);
                (post(addr, "/echo", full(b.clone())), b)
            }
            Kind::BigEcho => {
                let b = payload(seed, 256 * 1024);
                (
                    post(addr, "/echo", trickle(b.clone(), 16, Duration::ZERO)),
                    b,
                )
            }
            // In flight for ~150 ms: some are always mid-way when the old
            // app starts draining.
            Kind::SlowEcho => {
                let b = payload(seed, 4096);
                let body = trickle(b.clone(), 4, Duration::from_millis(50));
                (post(addr, "/echo", body), b)
            }
        }
    }
}

/// Runs `workers` connections sending requests of every [`Kind`] until
/// `stop`; counts outcomes by kind.
fn steady_load(
    addr: std::net::SocketAddr,
    workers: usize,
    stop: Arc<AtomicBool>,
    counts: Arc<Mutex<BTreeMap<String, usize>>>,
    done: Arc<AtomicUsize>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..workers)
        .map(|w| {
            let (stop, counts, done) = (stop.clone(), counts.clone(), done.clone());
            tokio::spawn(async move {
                let mut conn = None;
                let mut n = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    if conn.is_none() {
                        conn = h1(addr).await.ok();
                    }
                    let kind = Kind::ALL[(n + w) % Kind::ALL.len()];
                    let (req, want) = kind.request(addr, w * 1_000_000 + n);
                    let o = match conn.as_mut() {
                        Some(c) => exchange(c, req, &want, Duration::from_secs(40)).await,
                        None => Outcome::ConnectFailed,
                    };
                    if o != Outcome::Ok {
                        conn = None;
                    }
                    let key = match o {
                        Outcome::Ok => "ok".to_string(),
                        o => format!("{kind:?}: {}", o.name()),
                    };
                    *counts.lock().unwrap().entry(key).or_default() += 1;
                    done.fetch_add(1, Ordering::SeqCst);
                    n += 1;
                }
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_restart_under_steady_load_loses_nothing() {
    within(Duration::from_secs(120), "test", async {
        let sock = sock_path("restart");
        let upstream = format!("unix:{}", sock.display());
        let mut app = serve_child(&sock, &["--drain-timeout", "20s"]).await;
        let (mut proxy, addr) = proxy_child(&upstream, &[]).await;

        let stop = Arc::new(AtomicBool::new(false));
        let counts = Arc::new(Mutex::new(BTreeMap::new()));
        let done = Arc::new(AtomicUsize::new(0));
        let workers = steady_load(addr, 8, stop.clone(), counts.clone(), done.clone());
        let wait_for = |n: usize| {
            let done = done.clone();
            async move {
                let target = done.load(Ordering::SeqCst) + n;
                within(Duration::from_secs(30), "load progress", async {
                    while done.load(Ordering::SeqCst) < target {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                })
                .await
            }
        };
        wait_for(200).await;

        const RESTARTS: usize = 3;
        let mut exits = Vec::new();
        for _ in 0..RESTARTS {
            // Bind-then-drain: the new process takes the path over while
            // the old one still serves, then the old one drains (GOAWAY;
            // in-flight streams finish; the proxy opens new connections,
            // which reach the new process).
            let next = serve_child(&sock, &["--replace", "--drain-timeout", "20s"]).await;
            app.signal(libc::SIGTERM);
            let status = app.wait_exit(Duration::from_secs(30)).await;
            exits.push(status.code());
            assert!(
                sock.exists(),
                "the old server's exit removed its successor's socket"
            );
            app = next;
            wait_for(200).await;
        }
        stop.store(true, Ordering::Relaxed);
        for w in workers {
            within(Duration::from_secs(60), "load worker", w)
                .await
                .unwrap();
        }
        assert_eq!(exits, vec![Some(0); RESTARTS], "old servers exit cleanly");

        let mut tally = Tally::new(
            "graceful app restart under steady load",
            "3 restarts: uwire serve --replace, then SIGTERM to the old one (8 clients: GET, 1 KiB and 256 KiB echo, slow uploads)",
        );
        for (k, n) in counts.lock().unwrap().iter() {
            for _ in 0..*n {
                if k == "ok" {
                    tally.ok();
                } else {
                    tally.lost(k);
                }
            }
        }
        tally.report();

        // The last server is the path's owner: its clean exit removes it.
        app.signal(libc::SIGTERM);
        assert_eq!(app.wait_exit(Duration::from_secs(30)).await.code(), Some(0));
        assert!(!sock.exists());
        proxy.signal(libc::SIGTERM);
        assert_eq!(
            proxy.wait_exit(Duration::from_secs(30)).await.code(),
            Some(0)
        );
    })
    .await
}
