//! Slow and silent HTTP clients, then a connection storm, against a
//! `uwire proxy` child process in front of a `uwire serve` child (issue 13,
//! fault injection):
//!
//! * silent connections filling the whole connection cap, slowloris heads,
//!   stalled bodies and readers that stop reading, all at once: each is
//!   ended by its own timeout (a quiet close, 408, or the send-progress
//!   cut-off), and well-behaved clients arriving meanwhile are served, the
//!   ones that found the cap full after at most the first-byte timeout;
//! * 600 connections in waves: whole requests, heads cut off, garbage,
//!   connections closed at once: afterwards the descriptors of both
//!   processes are back to their baseline and the proxy still serves.
//!
//! Prints its rows of the table (`--nocapture`).
#![cfg(feature = "cli")]

mod faults_common;
mod proxy_common;

use std::net::SocketAddr;
use std::time::Duration;

use faults_common::*;
use proxy_common::{sock_path, within};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

const HELLO: &[u8] = b"Hello from uwire!\n";
/// Every timeout of the proxy under test.
const T: Duration = Duration::from_secs(1);
/// How late a timeout may fire on a loaded 2-core machine.
const SLACK: Duration = Duration::from_secs(10);
/// The proxy's connection cap.
const CAP: usize = 48;

/// Reads until EOF or a reset (bounded); what arrived and when it ended.
async fn read_to_close(s: &mut TcpStream, limit: Duration) -> Option<(Vec<u8>, Instant)> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    tokio::time::timeout(limit, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return (out, Instant::now()),
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .ok()
}

fn status_of(bytes: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(bytes.get(..12)?).ok()?;
    text.strip_prefix("HTTP/1.1 ")?.parse().ok()
}

#[derive(Debug, Clone, Copy)]
enum Slow {
    /// Connects, says nothing.
    Silent,
    /// A head at one byte every 200 ms.
    Slowloris,
    /// A head announcing 1000 bytes of body, 10 sent, then nothing.
    StalledBody,
    /// An 8 MiB echo whose answer is never read.
    StalledReader,
}

/// One slow client; `Ok(kind)` when the proxy ended it as configured.
async fn slow_client(addr: SocketAddr, kind: Slow) -> Result<&'static str, String> {
    let mut s = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("{kind:?}: connect: {e}"))?;
    let start = Instant::now();
    let ended = match kind {
        Slow::Silent => {
            let (got, at) = read_to_close(&mut s, T + SLACK)
                .await
                .ok_or(format!("{kind:?}: not closed"))?;
            if !got.is_empty() {
                return Err(format!("{kind:?}: got {:?}", String::from_utf8_lossy(&got)));
            }
            (at, "silent: closed quietly after the first-byte timeout")
        }
        Slow::Slowloris => {
            let head = b"GET / HTTP/1.1\r\nHost: faults.test\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
            let (mut r, mut w) = s.into_split();
            let writer = tokio::spawn(async move {
                for b in head {
                    if w.write_all(&[*b]).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            });
            let mut got = Vec::new();
            let r = tokio::time::timeout(T + SLACK, r.read_to_end(&mut got)).await;
            writer.abort();
            if r.is_err() {
                return Err(format!("{kind:?}: not closed"));
            }
            if status_of(&got) != Some(408) {
                return Err(format!("{kind:?}: got {:?}", String::from_utf8_lossy(&got)));
            }
            (Instant::now(), "slowloris head: 408")
        }
        Slow::StalledBody => {
            s.write_all(
                b"POST /echo HTTP/1.1\r\nHost: faults.test\r\nContent-Length: 1000\r\n\r\n0123456789",
            )
            .await
            .map_err(|e| format!("{kind:?}: {e}"))?;
            let (got, at) = read_to_close(&mut s, T + SLACK)
                .await
                .ok_or(format!("{kind:?}: not closed"))?;
            // The head may have gone out already (the app echoes as the
            // body comes): then the answer is cut off, never completed.
            match status_of(&got) {
                Some(408) => (at, "stalled body: 408"),
                Some(200) if got.len() < 1000 => (at, "stalled body: answer cut off"),
                _ => return Err(format!("{kind:?}: got {:?}", String::from_utf8_lossy(&got))),
            }
        }
        Slow::StalledReader => {
            const LEN: usize = 8 << 20;
            let head = format!(
                "POST /echo HTTP/1.1\r\nHost: faults.test\r\nContent-Length: {LEN}\r\n\r\n"
            );
            let (mut r, mut w) = s.into_split();
            let writer = tokio::spawn(async move {
                let _ = w.write_all(head.as_bytes()).await;
                let _ = w.write_all(&vec![b'r'; LEN]).await;
                w
            });
            // Read the status line only, then nothing: the proxy must cut
            // the answer off after its send timeout.
            let mut line = [0u8; 12];
            tokio::time::timeout(SLACK, r.read_exact(&mut line))
                .await
                .map_err(|_| format!("{kind:?}: no head"))?
                .map_err(|e| format!("{kind:?}: {e}"))?;
            if status_of(&line) != Some(200) {
                return Err(format!("{kind:?}: {:?}", String::from_utf8_lossy(&line)));
            }
            // Wait until the proxy gave up (the writer fails or finishes
            // once it does), then drain what was left in the buffers.
            tokio::time::sleep(T * 3).await;
            let mut rest = Vec::new();
            let r = tokio::time::timeout(T + SLACK, r.read_to_end(&mut rest)).await;
            writer.abort();
            match r {
                Ok(_) if rest.len() + 12 < LEN => (Instant::now(), "stalled reader: cut off"),
                _ => return Err(format!("{kind:?}: {} bytes, not cut off", rest.len())),
            }
        }
    };
    let (at, what) = ended;
    let took = at - start;
    if took + Duration::from_millis(50) < T {
        return Err(format!(
            "{kind:?}: ended after {took:?}, before its {T:?} timeout"
        ));
    }
    Ok(what)
}

/// A well-behaved client on a fresh connection: `GET /`.
async fn good_client(addr: SocketAddr) -> Outcome {
    match h1(addr).await {
        Ok(mut c) => exchange(&mut c, get_req("/"), HELLO, T + SLACK * 2).await,
        Err(_) => Outcome::ConnectFailed,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_silent_clients_time_out_and_others_are_served() {
    within(Duration::from_secs(120), "test", async {
        let sock = sock_path("slow-clients");
        let app = serve_child(&sock, &[]).await;
        let t = format!("{}ms", T.as_millis());
        let cap = CAP.to_string();
        let (proxy, addr) = proxy_child(
            &format!("unix:{}", sock.display()),
            &[
                "--first-byte-timeout",
                &t,
                "--header-read-timeout",
                &t,
                "--body-read-timeout",
                &t,
                "--send-timeout",
                &t,
                "--max-connections",
                &cap,
            ],
        )
        .await;
        assert_eq!(good_client(addr).await, Outcome::Ok);
        let proxy_base = fd_count(proxy.pid);
        let app_base = fd_count(app.pid);

        let mut tally = Tally::new(
            "slow and silent HTTP clients against uwire proxy (every timeout 1 s, cap 48)",
            "48 silent connections (the whole cap), then 8 slowloris heads, 8 stalled bodies, 4 readers that stop reading; 40 well-behaved clients meanwhile",
        );
        // The silent ones take every slot first.
        let mut slow = Vec::new();
        for _ in 0..CAP {
            slow.push(tokio::spawn(slow_client(addr, Slow::Silent)));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let cap_full_at = Instant::now();
        for kind in [Slow::Slowloris, Slow::StalledBody] {
            for _ in 0..8 {
                slow.push(tokio::spawn(slow_client(addr, kind)));
            }
        }
        for _ in 0..4 {
            slow.push(tokio::spawn(slow_client(addr, Slow::StalledReader)));
        }
        let mut good = Vec::new();
        for _ in 0..40 {
            good.push(tokio::spawn(async move {
                let o = good_client(addr).await;
                (o, Instant::now())
            }));
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let mut last_good = cap_full_at;
        for g in good {
            let (o, at) = g.await.unwrap();
            last_good = last_good.max(at);
            match o {
                Outcome::Ok => tally.ok(),
                o => tally.lost(&format!("well-behaved client: {}", o.name())),
            }
        }
        for s in slow {
            match s.await.unwrap() {
                Ok(kind) => tally.expected(kind),
                Err(e) => tally.lost(&e),
            }
        }
        println!(
            "slow clients: the last well-behaved client was served {:?} after the cap filled",
            last_good - cap_full_at
        );
        // Idle peers hold the cap for the first-byte timeout, not longer.
        assert!(last_good - cap_full_at < T + SLACK);
        // Concurrent requests spread over the pool's connections: up to
        // its size may stay open (pooled, not leaked), one end each side.
        let pool = uwire::client::DEFAULT_MAX_CONNECTIONS_PER_UPSTREAM - 1;
        wait_fds_at_most(proxy.pid, proxy_base + pool, SLACK, "proxy after the slow clients").await;
        wait_fds_at_most(app.pid, app_base + pool, SLACK, "serve after the slow clients").await;
        tally.report();
    })
    .await
}

#[derive(Debug, Clone, Copy)]
enum Storm {
    Get,
    HalfHead,
    Garbage,
    CloseAtOnce,
    PostThenClose,
}

const STORM: [Storm; 5] = [
    Storm::Get,
    Storm::HalfHead,
    Storm::Garbage,
    Storm::CloseAtOnce,
    Storm::PostThenClose,
];

async fn storm_client(addr: SocketAddr, kind: Storm) -> Result<&'static str, String> {
    if let Storm::Get = kind {
        return match good_client(addr).await {
            Outcome::Ok => Ok("ok"),
            o => Err(format!("{kind:?}: {}", o.name())),
        };
    }
    let mut s = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("{kind:?}: connect: {e}"))?;
    match kind {
        Storm::Get => unreachable!(),
        Storm::HalfHead => {
            let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: fau").await;
            Ok("head cut off by a close")
        }
        Storm::Garbage => {
            let _ = s.write_all(b"\x01\x02 not http at all\r\n\r\n").await;
            match read_to_close(&mut s, SLACK).await {
                Some((got, _)) if status_of(&got) == Some(400) => Ok("garbage: 400"),
                other => Err(format!("{kind:?}: {other:?}")),
            }
        }
        Storm::CloseAtOnce => Ok("connected and closed at once"),
        Storm::PostThenClose => {
            let _ = s
                .write_all(b"POST /echo HTTP/1.1\r\nHost: f\r\nContent-Length: 100000\r\n\r\nabc")
                .await;
            Ok("body cut off by a close")
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_storm_against_the_proxy_leaves_no_descriptor_behind() {
    within(Duration::from_secs(120), "test", async {
        let sock = sock_path("proxy-storm");
        let app = serve_child(&sock, &[]).await;
        let (proxy, addr) = proxy_child(&format!("unix:{}", sock.display()), &[]).await;
        for _ in 0..3 {
            assert_eq!(good_client(addr).await, Outcome::Ok);
        }
        let proxy_base = fd_count(proxy.pid);
        let app_base = fd_count(app.pid);
        let mut tally = Tally::new(
            "connection storm against uwire proxy",
            "600 connections in 3 waves of 200: whole GETs, heads and bodies cut off by a close, garbage, connections closed at once",
        );
        let mut peak = proxy_base;
        for wave in 0..3 {
            let tasks: Vec<_> = (0..200)
                .map(|i| tokio::spawn(storm_client(addr, STORM[(wave * 200 + i) % STORM.len()])))
                .collect();
            peak = peak.max(fd_count(proxy.pid));
            for t in tasks {
                match t.await.unwrap() {
                    Ok("ok") => tally.ok(),
                    Ok(kind) => tally.expected(kind),
                    Err(e) => tally.lost(&e),
                }
            }
        }
        // Up to the pool's size of upstream connections may stay pooled.
        let pool = uwire::client::DEFAULT_MAX_CONNECTIONS_PER_UPSTREAM - 1;
        wait_fds_at_most(proxy.pid, proxy_base + pool, SLACK * 2, "proxy after the storm").await;
        wait_fds_at_most(app.pid, app_base + pool, SLACK * 2, "serve after the storm").await;
        println!(
            "proxy storm: proxy descriptors baseline {proxy_base}, peak seen {peak}, settled {}; \
             serve baseline {app_base}, settled {}",
            fd_count(proxy.pid),
            fd_count(app.pid)
        );
        match good_client(addr).await {
            Outcome::Ok => tally.ok(),
            o => tally.lost(&format!("after the storm: {}", o.name())),
        }
        tally.report();
    })
    .await
}
