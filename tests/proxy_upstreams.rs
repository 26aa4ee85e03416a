//! End-to-end tests of the proxy's upstream handling, in one process: load
//! balancing over two apps, passive ejection of a dead one and its return,
//! and how upstream failures map to 502/503/504.
#![cfg(feature = "cli")]

mod proxy_common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use proxy_common::*;
use tokio::io::AsyncReadExt;
use tokio::task::JoinSet;
use uwire::client::{Balance, ClientConfig, Protocol, Transport, Upstream};
use uwire::proxy::ProxyConfig;
use uwire::server::ServerConfig;

/// Which app answered each of `n` sequential requests to `path`.
async fn sequential_hits(c: &HttpClient, proxy: &Proxy, path: &str, n: usize) -> Vec<String> {
    let mut who = Vec::new();
    for _ in 0..n {
        let r = get(c, &proxy.url(path)).await;
        assert_eq!(r.status, 200, "{}", r.text());
        who.push(r.header("x-upstream").expect("x-upstream").to_string());
    }
    who
}

fn tally(who: &[String]) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for w in who {
        *m.entry(w.clone()).or_insert(0) += 1;
    }
    m
}

/// `n` requests to `/work`, started `gap` apart, all in flight together.
async fn staggered_hits(c: &HttpClient, proxy: &Proxy, n: usize, gap: Duration) -> Vec<String> {
    let mut set = JoinSet::new();
    for i in 0..n {
        let c = c.clone();
        let url = proxy.url("/work");
        set.spawn(async move {
            let r = get(&c, &url).await;
            assert_eq!(r.status, 200);
            (i, r.header("x-upstream").unwrap().to_string())
        });
        tokio::time::sleep(gap).await;
    }
    let mut who = vec![String::new(); n];
    while let Some(r) = set.join_next().await {
        let (i, w) = r.unwrap();
        who[i] = w;
    }
    who
}

async fn two_apps(tag: &str) -> (App, App) {
    (
        App::start_with(&format!("{tag}-a"), ServerConfig::default()).await,
        App::start_with(&format!("{tag}-b"), ServerConfig::default()).await,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_outstanding_shares_load_and_prefers_the_idle_upstream() {
    bounded(async {
        let (a, b) = two_apps("lo").await;
        let (na, nb) = (a.state.name.clone(), b.state.name.clone());
        let proxy = Proxy::start(
            vec![a.upstream(), b.upstream()],
            ClientConfig {
                balance: Balance::LeastOutstanding,
                ..ClientConfig::default()
            },
            ProxyConfig::default(),
        )
        .await;
        let c = http_client();

        // Idle upstreams: ties rotate, so sequential requests share.
        let t = tally(&sequential_hits(&c, &proxy, "/id", 20).await);
        println!("least-outstanding, sequential: {t:?}");
        assert!(t[&na] >= 8 && t[&nb] >= 8, "{t:?}");

        // a is slow: while it holds a request, b (0 outstanding) wins.
        *a.state.work_delay.lock().unwrap() = Duration::from_millis(1200);
        let a_before = a.state.hits.load(std::sync::atomic::Ordering::Relaxed) as usize;
        let who = staggered_hits(&c, &proxy, 20, Duration::from_millis(15)).await;
        let t = tally(&who);
        println!("least-outstanding, a slow: {t:?}");
        let to_a = t.get(&na).copied().unwrap_or(0);
        assert!(to_a <= 3, "the slow upstream got {to_a} of 20: {who:?}");
        let a_after = a.state.hits.load(std::sync::atomic::Ordering::Relaxed) as usize;
        assert_eq!(a_after - a_before, to_a);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_alternates_regardless_of_load() {
    bounded(async {
        let (a, b) = two_apps("rr").await;
        let (na, nb) = (a.state.name.clone(), b.state.name.clone());
        let proxy = Proxy::start(
            vec![a.upstream(), b.upstream()],
            ClientConfig {
                balance: Balance::RoundRobin,
                ..ClientConfig::default()
            },
            ProxyConfig::default(),
        )
        .await;
        let c = http_client();

        let who = sequential_hits(&c, &proxy, "/id", 20).await;
        assert!(
            who.windows(2).all(|w| w[0] != w[1]),
            "round robin must alternate: {who:?}"
        );
        let t = tally(&who);
        assert_eq!((t[&na], t[&nb]), (10, 10));

        // Even with a slow, busy a, each gets every other request.
        *a.state.work_delay.lock().unwrap() = Duration::from_millis(300);
        let t = tally(&staggered_hits(&c, &proxy, 20, Duration::from_millis(15)).await);
        println!("round-robin, a slow: {t:?}");
        assert_eq!((t[&na], t[&nb]), (10, 10));
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_upstream_is_ejected_and_returns_after_cooldown() {
    bounded(async {
        let live = App::start("eject-live").await;
        let dead_path = sock_path("eject-dead"); // nothing listens here
        const BACKOFF: Duration = Duration::from_millis(500);
        const COOLDOWN: Duration = Duration::from_millis(3000);
        let proxy = Proxy::start(
            vec![live.upstream(), unix_upstream(&dead_path)],
            ClientConfig {
                balance: Balance::RoundRobin,
                connect_retries: 1,
                retry_backoff: BACKOFF,
                eject_after: 3,
                eject_cooldown: COOLDOWN,
                ..ClientConfig::default()
            },
            ProxyConfig::default(),
        )
        .await;
        let c = http_client();

        // Every request succeeds (a failed connect is retried on the live
        // upstream); the dead one collects failures until it is ejected.
        let mut n = 0;
        // The ejection happens during a request: after this instant.
        let mut ejected_after = Instant::now();
        while proxy.client.ejected() != [false, true] {
            n += 1;
            ejected_after = Instant::now();
            assert!(n <= 8, "not ejected after {n} requests");
            let r = get(&c, &proxy.url("/id")).await;
            assert_eq!((r.status, r.text()), (200, live.state.name.clone()));
        }
        println!("dead upstream ejected after {n} requests");

        // Ejected: nothing tries it. Each try would cost a BACKOFF-long
        // retry, so 10 requests in well under one BACKOFF prove it.
        let t = Instant::now();
        let who = sequential_hits(&c, &proxy, "/id", 10).await;
        let took = t.elapsed();
        assert!(who.iter().all(|w| *w == live.state.name), "{who:?}");
        assert!(
            took < BACKOFF,
            "10 requests took {took:?}: the ejected upstream was tried"
        );
        assert!(
            ejected_after.elapsed() < COOLDOWN,
            "test too slow for the cool-down"
        );
        assert_eq!(proxy.client.ejected(), [false, true]);
        assert_eq!(proxy.client.connections_opened(), [1, 0]);

        // It comes back to life; after the cool-down it gets traffic again.
        let revived = App::start_at(&dead_path, "eject-revived", ServerConfig::default()).await;
        wait_until(COOLDOWN + Duration::from_secs(2), "cool-down ends", || {
            proxy.client.ejected() == [false, false]
        })
        .await;
        assert!(
            ejected_after.elapsed() >= COOLDOWN,
            "the cool-down ended early"
        );
        let t = tally(&sequential_hits(&c, &proxy, "/id", 10).await);
        println!("after the cool-down: {t:?}");
        assert_eq!(t.get(&revived.state.name).copied(), Some(5), "{t:?}");
        assert_eq!(proxy.client.connections_opened(), [1, 1]);
    })
    .await
}

// ---------------------------------------------------------------------------
// Error mapping
// ---------------------------------------------------------------------------

fn fast_fail() -> ClientConfig {
    ClientConfig {
        connect_retries: 1,
        retry_backoff: Duration::from_millis(10),
        connect_timeout: Duration::from_millis(500),
        ..ClientConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_not_running_gives_502() {
    bounded(async {
        let c = http_client();

        // No socket file at all.
        let missing = sock_path("missing");
        let proxy = Proxy::start(
            vec![unix_upstream(&missing)],
            fast_fail(),
            ProxyConfig::default(),
        )
        .await;
        let t = Instant::now();
        let r = get(&c, &proxy.url("/hello")).await;
        assert_eq!(r.status, 502, "{}", r.text());
        assert!(r.text().contains("connect"), "{}", r.text());
        assert!(t.elapsed() < Duration::from_secs(2));

        // A stale socket file (what a killed app leaves behind): refused.
        let stale = sock_path("stale");
        drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
        assert!(stale.exists());
        let proxy = Proxy::start(
            vec![unix_upstream(&stale)],
            fast_fail(),
            ProxyConfig::default(),
        )
        .await;
        let r = get(&c, &proxy.url("/hello")).await;
        assert_eq!(r.status, 502, "{}", r.text());
        let _ = std::fs::remove_file(&stale);

        // A TCP port nobody listens on.
        let port = free_port();
        let up: Upstream = format!("tcp:127.0.0.1:{port}").parse().unwrap();
        let proxy = Proxy::start(vec![up], fast_fail(), ProxyConfig::default()).await;
        let r = get(&c, &proxy.url("/hello")).await;
        assert_eq!(r.status, 502, "{}", r.text());
        // A POST body is not lost in a way that hangs: same answer.
        let r = post(&c, &proxy.url("/echo"), "body").await;
        assert_eq!(r.status, 502);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_timeout_gives_504() {
    bounded(async {
        // A TCP listener with backlog 0 that never accepts: once one
        // connection fills its accept queue, Linux drops further SYNs, so
        // connecting hangs until the client gives up.
        let sock =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        sock.bind(
            &"127.0.0.1:0"
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .into(),
        )
        .unwrap();
        sock.listen(0).unwrap();
        let addr = sock.local_addr().unwrap().as_socket().unwrap();
        let mut fillers = Vec::new();
        let mut hung = false;
        for _ in 0..8 {
            match tokio::time::timeout(
                Duration::from_millis(300),
                tokio::net::TcpStream::connect(addr),
            )
            .await
            {
                Ok(Ok(s)) => fillers.push(s),
                Ok(Err(e)) => panic!("filler connect failed: {e}"),
                Err(_) => {
                    hung = true;
                    break;
                }
            }
        }
        assert!(
            hung,
            "could not fill the accept queue ({} connected)",
            fillers.len()
        );

        let up = Upstream {
            protocol: Protocol::Uwire,
            transport: Transport::Tcp(addr.to_string()),
        };
        let proxy = Proxy::start(
            vec![up],
            ClientConfig {
                connect_timeout: Duration::from_millis(400),
                ..ClientConfig::default()
            },
            ProxyConfig::default(),
        )
        .await;
        let c = http_client();
        let t = Instant::now();
        let r = get(&c, &proxy.url("/hello")).await;
        let took = t.elapsed();
        assert_eq!(r.status, 504, "{}", r.text());
        assert!(r.text().contains("timed out"), "{}", r.text());
        assert!(
            took >= Duration::from_millis(390) && took < Duration::from_secs(3),
            "504 after {took:?}"
        );
        drop(fillers);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_closing_before_the_response_gives_502() {
    bounded(async {
        // A fake upstream: accepts, reads what the proxy sends (preface,
        // settings, the request head), then closes without a word.
        let path = sock_path("closer");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let got = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let g = got.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    return;
                };
                let g = g.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    let deadline = tokio::time::Instant::now() + Duration::from_millis(200);
                    while let Ok(Ok(n)) = tokio::time::timeout_at(deadline, s.read(&mut buf)).await
                    {
                        if n == 0 {
                            break;
                        }
                        g.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                    }
                });
            }
        });
        let proxy = Proxy::start(
            vec![unix_upstream(&path)],
            ClientConfig {
                eject_after: 0,
                ..fast_fail()
            },
            ProxyConfig::default(),
        )
        .await;
        let c = http_client();
        let r = get(&c, &proxy.url("/hello?x=1")).await;
        assert_eq!(r.status, 502, "{}", r.text());
        assert!(
            got.load(std::sync::atomic::Ordering::Relaxed) > 0,
            "the fake upstream saw nothing"
        );
        let _ = std::fs::remove_file(&path);
    })
    .await
}
