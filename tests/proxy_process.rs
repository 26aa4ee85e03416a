//! Proxy tests with `uwire` child processes: `uwire quickstart` (start-up
//! output, the demo routes, SIGTERM), peak memory while 100 MiB stream up
//! and down (read from the child's /proc/<pid>/status), and an app killed
//! with SIGKILL mid-request and restarted on the same socket path.
//!
//! Run with `--nocapture` to see the measured figures.
#![cfg(feature = "cli")]

mod proxy_common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::BodyExt;
use proxy_common::*;
use tokio::sync::mpsc;
use uwire::client::ClientConfig;
use uwire::proxy::ProxyConfig;

const MIB: u64 = 1024 * 1024;
/// What each transfer moves.
const BIG: u64 = 100 * MIB;
/// Peak resident set allowed for a child that moved [`BIG`] bytes: far
/// below the 100 MiB it would take to hold the body.
const MAX_HWM_KIB: u64 = 64 * 1024;

/// `uwire quickstart --listen 127.0.0.1:<free port>`, up and answering.
async fn quickstart(extra: &[&str]) -> (ChildProc, SocketAddr, Vec<String>) {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut args = vec!["quickstart", "--listen", &listen];
    args.extend_from_slice(extra);
    let mut child = ChildProc::spawn(&args);
    child
        .wait_line("Ctrl-C stops both.", Duration::from_secs(10))
        .await;
    let addr: SocketAddr = listen.parse().unwrap();
    let out = child.stdout.lock().unwrap().clone();
    (child, addr, out)
}

/// `uwire proxy --upstream <up> --listen 127.0.0.1:0`, up; its address is
/// read from its start-up line.
async fn proxy_child(upstream: &str) -> (ChildProc, SocketAddr) {
    let mut child = ChildProc::spawn(&["proxy", "--upstream", upstream, "--listen", "127.0.0.1:0"]);
    let line = child
        .wait_line("uwire proxy: http://", Duration::from_secs(10))
        .await;
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    (child, addr)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Streams [`BIG`] bytes of [`Pattern`] up to `url` and checks what comes
/// back against the same pattern; returns the bytes received.
async fn echo_big(c: &HttpClient, url: &str) -> u64 {
    let req = Request::post(url)
        .body(stream_body(Pattern::new().stream(BIG, 64 * 1024)))
        .unwrap();
    let resp = c.request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let pattern = Pattern::new();
    let mut body = resp.into_body();
    let mut off = 0u64;
    while let Some(f) = body.frame().await {
        let d = f.unwrap().into_data().unwrap();
        assert!(pattern.check(off, &d), "echoed bytes differ at {off}");
        off += d.len() as u64;
    }
    off
}

/// Downloads `url` checking every byte against [`Pattern`].
async fn download_checked(c: &HttpClient, url: &str) -> u64 {
    let resp = c
        .request(Request::get(url).body(empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let pattern = Pattern::new();
    let mut body = resp.into_body();
    let mut off = 0u64;
    while let Some(f) = body.frame().await {
        let d = f.unwrap().into_data().unwrap();
        assert!(pattern.check(off, &d), "downloaded bytes differ at {off}");
        off += d.len() as u64;
    }
    off
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quickstart_prints_curl_commands_serves_demo_and_stops_on_sigterm() {
    bounded(async {
        let (mut child, addr, out) = quickstart(&["--param", "TEAM=blue"]).await;
        let text = out.join("\n");
        for want in [
            format!("HTTP on http://{addr}"),
            format!("curl http://{addr}/"),
            format!("curl http://{addr}/environ/some/path?x=1"),
            format!("curl --data-binary @/etc/os-release http://{addr}/echo"),
            format!("curl -sT - http://{addr}/echo"),
        ] {
            assert!(text.contains(&want), "{want:?} not in:\n{text}");
        }

        let c = http_client();
        let base = format!("http://{addr}");
        let r = get(&c, &format!("{base}/")).await;
        assert_eq!((r.status, r.text().as_str()), (200, "Hello from uwire!\n"));
        let body = Pattern::new().slice(0, 100_000);
        let r = post(&c, &format!("{base}/echo"), body.clone()).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.body, body);
        let r = get(&c, &format!("{base}/environ/some/path?x=1")).await;
        assert_eq!(r.status, 200);
        let env = r.environ();
        assert_eq!(env["PATH_INFO"], "/environ/some/path");
        assert_eq!(env["QUERY_STRING"], "x=1");
        assert_eq!(env["TEAM"], "blue");
        assert_eq!(env["REMOTE_ADDR"], "127.0.0.1");
        assert_eq!(env["SERVER_PORT"], addr.port().to_string());
        assert_eq!(env["HTTP_X_FORWARDED_FOR"], "127.0.0.1");

        // SIGTERM with an idle keep-alive connection still open (the
        // client's pool holds it): a clean, prompt exit.
        let t = Instant::now();
        child.signal(libc::SIGTERM);
        let status = child.wait_exit(Duration::from_secs(10)).await;
        assert_eq!(status.code(), Some(0), "{status:?}");
        println!(
            "quickstart exited {status:?} {:?} after SIGTERM",
            t.elapsed()
        );
        child
            .wait_line("uwire quickstart: stopped", Duration::from_secs(5))
            .await;
        // The app's socket file is removed on the way out.
        let sock = text
            .split("uwire over unix:")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .expect("socket path in the banner");
        assert!(
            !std::path::Path::new(sock).exists(),
            "{sock} left behind after a clean exit"
        );
        drop(c);
    })
    .await
}

/// CPU ticks (user + system) each thread of `pid` has used, by thread name.
fn thread_ticks(pid: u32) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
    {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // "tid (name) state ..." : the name may hold spaces, so split at
        // the last ')'.
        let (head, rest) = stat.rsplit_once(')').unwrap();
        let name = head.split_once('(').unwrap().1.to_string();
        let f: Vec<&str> = rest.split_whitespace().collect();
        // Fields 14 and 15 of stat (utime, stime); `rest` starts at field 3.
        let ticks = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
        out.push((name, ticks));
    }
    out
}

/// `clients` concurrent HTTP clients (each its own keep-alive connections)
/// POST `requests` bodies of varied sizes each to `/echo` and check every
/// answer.
async fn echo_from_clients(addr: SocketAddr, clients: u32, requests: u32) {
    let url = format!("http://{addr}/echo");
    let mut tasks = Vec::new();
    for i in 0..clients {
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let c = http_client();
            for j in 0..requests {
                let body = format!("client {i} request {j} ").repeat(1 + (j as usize % 50));
                let r = post(&c, &url, body.clone()).await;
                assert_eq!(r.status, 200);
                assert_eq!(r.text(), body);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

/// SIGTERM: the quickstart drains, says it stopped and exits 0.
async fn stop_quickstart(child: &mut ChildProc) {
    child.signal(libc::SIGTERM);
    let status = child.wait_exit(Duration::from_secs(10)).await;
    assert_eq!(status.code(), Some(0), "{status:?}");
    child
        .wait_line("uwire quickstart: stopped", Duration::from_secs(5))
        .await;
}

/// `--threads 2`: both serving threads take connections (a shared
/// listening socket), every request of many concurrent connections is
/// answered right, and SIGTERM still drains and exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quickstart_with_two_threads_serves_on_both_and_stops_cleanly() {
    bounded(async {
        let (mut child, addr, _) = quickstart(&["--threads", "2"]).await;
        // Which thread accepts a new connection of the shared listening
        // socket is up to the scheduler: a burst can land on one thread,
        // more so when other tests load the machine. A few bursts of new
        // connections give each thread its chance; CPU ticks (10 ms) show
        // which ones served.
        let busy = |ticks: &[(String, u64)], name: &str| {
            ticks
                .iter()
                .filter(|(n, _)| n == name)
                .map(|(_, t)| *t)
                .sum::<u64>()
        };
        let mut ticks = Vec::new();
        for _ in 0..5 {
            echo_from_clients(addr, 32, 40).await;
            ticks = thread_ticks(child.pid);
            let main_name = ticks[0].0.clone();
            if busy(&ticks, &main_name) > 0 && busy(&ticks, "uwire-1") > 0 {
                break;
            }
        }
        let main_name = ticks[0].0.clone();
        let busy = |name: &str| busy(&ticks, name);
        println!("quickstart --threads 2: CPU ticks by thread {ticks:?}");
        assert!(
            busy(&main_name) > 0,
            "the first serving thread did no work: {ticks:?}"
        );
        assert!(
            busy("uwire-1") > 0,
            "the second serving thread did no work: {ticks:?}"
        );
        stop_quickstart(&mut child).await;
    })
    .await
}

/// `--busy-poll`: with the serving thread polling its event loop before it
/// sleeps, every request of many concurrent connections is
/// answered right, and SIGTERM still drains and exits 0 (a thread polling
/// its window still sees the stop). A window over the 10 ms maximum is
/// refused at start with a clear error. (That the polling ends on
/// readiness is tested in `uwire::net::busy_poll`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quickstart_with_busy_polling_serves_and_stops_cleanly() {
    bounded(async {
        let (mut child, addr, _) = quickstart(&["--busy-poll", "200us"]).await;
        echo_from_clients(addr, 8, 25).await;
        stop_quickstart(&mut child).await;

        let mut refused = ChildProc::spawn(&["quickstart", "--busy-poll", "11ms"]);
        refused
            .wait_line(
                "--busy-poll \"11ms\": at most 10ms",
                Duration::from_secs(10),
            )
            .await;
        let status = refused.wait_exit(Duration::from_secs(10)).await;
        assert_eq!(status.code(), Some(2), "{status:?}");
    })
    .await
}

/// A buffered access log (`--access-log-buffer`) keeps its lines in memory
/// while the buffer has room and the flush interval (an hour here) has not
/// passed, and SIGTERM's drain writes every one of them: one line per
/// request, none lost, none twice, from both serving threads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_buffered_access_log_loses_no_line_on_sigterm() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("access.log");
        let log_arg = log.to_str().unwrap().to_owned();
        let (mut child, addr, _) = quickstart(&[
            "--threads",
            "2",
            "--access-log",
            &log_arg,
            "--access-log-buffer",
            "1048576",
            "--access-log-flush",
            "1h",
        ])
        .await;
        let mut tasks = Vec::new();
        for i in 0..8u32 {
            let url = format!("http://{addr}/?client={i}");
            tasks.push(tokio::spawn(async move {
                let c = http_client();
                for _ in 0..25 {
                    assert_eq!(get(&c, &url).await.status, 200);
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let lines = |p: &std::path::Path| std::fs::read_to_string(p).unwrap_or_default();
        assert_eq!(
            lines(&log),
            "",
            "200 lines fit the buffer and an hour has not passed: nothing written yet"
        );
        child.signal(libc::SIGTERM);
        let status = child.wait_exit(Duration::from_secs(10)).await;
        assert_eq!(status.code(), Some(0), "{status:?}");
        let text = lines(&log);
        for i in 0..8 {
            let n = text
                .lines()
                .filter(|l| l.contains(&format!("\"GET /?client={i} HTTP/1.1\" 200 ")))
                .count();
            assert_eq!(n, 25, "client {i}'s lines in:\n{text}");
        }
        assert_eq!(text.lines().count(), 200, "{text}");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quickstart_echoes_100_mib_with_bounded_memory() {
    bounded(async {
        let (mut child, addr, _) = quickstart(&[]).await;
        let c = http_client();
        let url = format!("http://{addr}/echo");
        assert_eq!(post(&c, &url, "warm-up").await.text(), "warm-up");
        let (hwm0, rss0) = child.memory_kib();
        let t = Instant::now();
        let n = echo_big(&c, &url).await;
        let took = t.elapsed();
        let (hwm, rss) = child.memory_kib();
        println!(
            "quickstart (proxy + app, one process): 100 MiB up through /echo and back in \
             {took:.2?} ({:.0} MiB/s each way): VmHWM {:.1} MiB (before {:.1} MiB), \
             VmRSS {:.1} MiB (before {:.1} MiB)",
            BIG as f64 / MIB as f64 / took.as_secs_f64(),
            mib(hwm),
            mib(hwm0),
            mib(rss),
            mib(rss0)
        );
        assert_eq!(n, BIG);
        assert!(
            hwm < MAX_HWM_KIB,
            "peak RSS {:.1} MiB: the body was buffered",
            mib(hwm)
        );
        child.signal(libc::SIGTERM);
        assert_eq!(
            child.wait_exit(Duration::from_secs(10)).await.code(),
            Some(0)
        );
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_streams_100_mib_down_and_up_with_bounded_memory() {
    bounded(async {
        // The app in this process; `uwire proxy` is the child measured.
        let app = App::start("rss").await;
        let (mut child, addr) = proxy_child(&format!("unix:{}", app.path.display())).await;
        let c = http_client();
        let base = format!("http://{addr}");
        assert_eq!(get(&c, &format!("{base}/hello")).await.text(), "hello");
        let (hwm0, _) = child.memory_kib();

        // Download: the app streams 100 MiB.
        let t = Instant::now();
        let n = download_checked(&c, &format!("{base}/download?bytes={BIG}")).await;
        let took = t.elapsed();
        let (hwm_down, rss_down) = child.memory_kib();
        assert_eq!(n, BIG);
        println!(
            "uwire proxy: 100 MiB download in {took:.2?}: VmHWM {:.1} MiB (before {:.1} MiB), \
             VmRSS {:.1} MiB",
            mib(hwm_down),
            mib(hwm0),
            mib(rss_down)
        );

        // Upload: the app counts and checks 100 MiB.
        let t = Instant::now();
        let req = Request::post(format!("{base}/count"))
            .body(stream_body(Pattern::new().stream(BIG, 64 * 1024)))
            .unwrap();
        let r = fetch(&c, req).await.unwrap();
        let took = t.elapsed();
        assert_eq!(r.text(), format!("count={BIG} pattern_ok=true"));
        let (hwm_up, rss_up) = child.memory_kib();
        println!(
            "uwire proxy: 100 MiB upload in {took:.2?}: VmHWM {:.1} MiB (peak over both \
             transfers), VmRSS {:.1} MiB",
            mib(hwm_up),
            mib(rss_up)
        );
        assert!(
            hwm_down < MAX_HWM_KIB,
            "download peak RSS {:.1} MiB",
            mib(hwm_down)
        );
        assert!(
            hwm_up < MAX_HWM_KIB,
            "upload peak RSS {:.1} MiB",
            mib(hwm_up)
        );

        child.signal(libc::SIGTERM);
        assert_eq!(
            child.wait_exit(Duration::from_secs(10)).await.code(),
            Some(0)
        );
        app.shutdown().await.unwrap();
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_killed_mid_request_then_restarted() {
    bounded(async {
        let path = sock_path("killed");
        let bind = format!("unix:{}", path.display());
        let mut app = ChildProc::spawn(&["serve", "--bind", &bind]);
        wait_connectable(&path, Duration::from_secs(10)).await;
        let proxy = Proxy::start(
            vec![unix_upstream(&path)],
            ClientConfig {
                connect_retries: 1,
                retry_backoff: Duration::from_millis(20),
                connect_timeout: Duration::from_secs(1),
                ..ClientConfig::default()
            },
            ProxyConfig::default(),
        )
        .await;
        let c = http_client();
        let r = get(&c, &proxy.url("/")).await;
        assert_eq!((r.status, r.text().as_str()), (200, "Hello from uwire!\n"));

        // In flight: an upload to /echo trickling in. The demo app answers
        // /echo at once (it streams the body back as it arrives), so the
        // 200 head is already out when the app dies.
        let (tx, rx) = mpsc::channel::<Bytes>(1);
        tx.send(Bytes::from("first;")).await.unwrap();
        let resp = c
            .request(
                Request::post(proxy.url("/echo"))
                    .body(channel_body(rx))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let mut body = resp.into_body();
        let mut got = Vec::new();
        while got != b"first;" {
            let f = body.frame().await.unwrap().unwrap();
            got.extend_from_slice(&f.into_data().unwrap());
        }

        app.signal(libc::SIGKILL);
        let status = app.wait_exit(Duration::from_secs(5)).await;
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(libc::SIGKILL)
        );
        // Head already sent: the only honest signal left is to abort the
        // body; the client must see an error, never a clean (truncated) end.
        let next = within(Duration::from_secs(5), "aborted body", body.frame()).await;
        match next {
            Some(Err(e)) => println!("in-flight response body after SIGKILL: error: {e}"),
            other => panic!("expected the body to fail after SIGKILL, got {other:?}"),
        }
        drop(tx);

        // While the app is down: 502, quickly.
        assert!(path.exists(), "SIGKILL leaves the stale socket file behind");
        let t = Instant::now();
        let r = get(&c, &proxy.url("/")).await;
        assert_eq!(r.status, 502, "{}", r.text());
        assert!(t.elapsed() < Duration::from_secs(2));

        // Restart on the same path: the stale socket is replaced, the pool
        // reconnects, requests succeed again.
        let mut app2 = ChildProc::spawn(&["serve", "--bind", &bind]);
        wait_connectable(&path, Duration::from_secs(10)).await;
        let r = get(&c, &proxy.url("/")).await;
        assert_eq!((r.status, r.text().as_str()), (200, "Hello from uwire!\n"));
        let r = post(&c, &proxy.url("/echo"), "after restart").await;
        assert_eq!((r.status, r.text().as_str()), (200, "after restart"));
        assert_eq!(proxy.client.connections_opened(), [2]);
        assert_eq!(proxy.client.connection_counts(), [1]);

        app2.signal(libc::SIGTERM);
        assert_eq!(
            app2.wait_exit(Duration::from_secs(10)).await.code(),
            Some(0)
        );
        assert!(!path.exists(), "a clean exit removes the socket file");
    })
    .await
}
