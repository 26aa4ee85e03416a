//! Connection storms against a `uwire serve` child process, on both
//! protocols its socket speaks (issue 13, fault injection): 1,000
//! connections, well-behaved and broken (silent, cut off mid-preface,
//! mid-body, mid-vars-block, short bodies, garbage), and afterwards the
//! runtime's descriptors are back to their baseline and it still serves.
//! Prints its row of the table (`--nocapture`).
#![cfg(feature = "cli")]

mod faults_common;
mod proxy_common;

use std::time::Duration;

use bytes::Bytes;
use faults_common::*;
use proxy_common::{sock_path, within};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

/// How long a broken connection may stay open: the runtime's
/// `--uwsgi-head-timeout 1s` (first byte, classic packet) and
/// `--idle-timeout 1s`, plus generous slack for a loaded machine.
const CLOSE_LIMIT: Duration = Duration::from_secs(15);

#[derive(Debug, Clone, Copy)]
enum Kind {
    /// uwire/1: a whole `GET /`, then the connection is dropped.
    UwireGet,
    /// uwire/1: an echo with its body cut off by an abrupt close.
    UwireCutBody,
    /// uwire/1: the preface's first bytes, then an abrupt close.
    UwireHalfPreface,
    /// classic uwsgi: a whole `GET /`.
    UwsgiGet,
    /// classic uwsgi: half a vars block, then an abrupt close.
    UwsgiHalfBlock,
    /// classic uwsgi: a body shorter than CONTENT_LENGTH, then a half-close.
    UwsgiShortBody,
    /// Connects and says nothing; waits for the runtime to close it.
    Silent,
    /// Bytes that are neither protocol, then waits for the close.
    Garbage,
}

const KINDS: [Kind; 8] = [
    Kind::UwireGet,
    Kind::UwireCutBody,
    Kind::UwireHalfPreface,
    Kind::UwsgiGet,
    Kind::UwsgiHalfBlock,
    Kind::UwsgiShortBody,
    Kind::Silent,
    Kind::Garbage,
];

/// Reads until the runtime closes the connection (bounded); what it sent.
async fn read_until_closed(s: &mut UnixStream) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    match tokio::time::timeout(CLOSE_LIMIT, s.read_to_end(&mut out)).await {
        Ok(_) => Some(out),
        Err(_) => None,
    }
}

/// Runs one connection of `kind`; `Ok(kind name)` when it ended as it must.
async fn one(sock: std::path::PathBuf, kind: Kind) -> Result<&'static str, String> {
    let mut s = UnixStream::connect(&sock)
        .await
        .map_err(|e| format!("{kind:?}: connect: {e}"))?;
    match kind {
        Kind::UwireGet => {
            let (send, conn) = uwire::net::client(s, uwire::conn::Config::default());
            let task = tokio::spawn(conn);
            let r = async {
                let (_b, resp) = send.send_request(uwire_head("GET", "/"), true).await?;
                let (h, mut body) = resp.await?;
                Ok::<_, uwire::net::Error>((h.status, body.collect(1 << 20).await?))
            };
            let r = tokio::time::timeout(CLOSE_LIMIT, r).await;
            drop(send);
            task.abort();
            match r {
                Ok(Ok((200, b))) if b == Bytes::from_static(b"Hello from uwire!\n") => Ok("ok"),
                other => Err(format!("{kind:?}: {other:?}")),
            }
        }
        Kind::UwireCutBody => {
            let (send, conn) = uwire::net::client(s, uwire::conn::Config::default());
            let task = tokio::spawn(conn);
            let (mut b, resp) = send
                .send_request(uwire_head("POST", "/echo"), false)
                .await
                .map_err(|e| format!("{kind:?}: {e}"))?;
            b.send_data(Bytes::from_static(b"half a body"), false)
                .await
                .map_err(|e| format!("{kind:?}: {e}"))?;
            let _ = tokio::time::timeout(CLOSE_LIMIT, resp).await;
            // Abrupt: the socket goes away under the stream.
            task.abort();
            Ok("uwire/1 body cut by a close")
        }
        Kind::UwireHalfPreface => {
            let _ = s.write_all(&[0x9A, b'U', b'W']).await;
            Ok("uwire/1 half preface, then close")
        }
        Kind::UwsgiGet => {
            let _ = s.write_all(&uwsgi_packet("GET", "/", 0)).await;
            match read_until_closed(&mut s).await {
                Some(out) if out.starts_with(b"HTTP/1.1 200 OK") && out.ends_with(b"uwire!\n") => {
                    Ok("ok")
                }
                other => Err(format!(
                    "{kind:?}: {:?}",
                    other.map(|o| String::from_utf8_lossy(&o).into_owned())
                )),
            }
        }
        Kind::UwsgiHalfBlock => {
            let p = uwsgi_packet("GET", "/", 0);
            let _ = s.write_all(&p[..p.len() / 2]).await;
            Ok("classic uwsgi half vars block, then close")
        }
        Kind::UwsgiShortBody => {
            let _ = s.write_all(&uwsgi_packet("POST", "/echo", 100)).await;
            let _ = s.write_all(b"only 17 bytes ...").await;
            let _ = s.shutdown().await;
            // Never a 200 passing the truncated echo off as complete.
            match read_until_closed(&mut s).await {
                Some(out) if !out.starts_with(b"HTTP/1.1 200") => {
                    Ok("classic uwsgi short body: refused")
                }
                other => Err(format!(
                    "{kind:?}: {:?}",
                    other.map(|o| String::from_utf8_lossy(&o).into_owned())
                )),
            }
        }
        Kind::Silent => match read_until_closed(&mut s).await {
            Some(out) if out.is_empty() => Ok("silent: closed by the runtime"),
            other => Err(format!("{kind:?}: {other:?}")),
        },
        Kind::Garbage => {
            let _ = s.write_all(&[0x9A; 64]).await;
            match read_until_closed(&mut s).await {
                Some(_) => Ok("garbage: closed by the runtime"),
                None => Err(format!("{kind:?}: not closed")),
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_storms_on_both_protocols_leave_no_descriptor_behind() {
    within(Duration::from_secs(120), "test", async {
        let sock = sock_path("storm");
        let (app, maddr) = serve_child_with_metrics(
            &sock,
            &["--uwsgi-head-timeout", "1s", "--idle-timeout", "1s"],
        )
        .await;
        // Warm-up on both protocols, then the baseline.
        for k in [Kind::UwireGet, Kind::UwsgiGet] {
            assert_eq!(one(sock.clone(), k).await, Ok("ok"));
        }
        wait_metrics(maddr, Duration::from_secs(20), "idle", |m| {
            m.get("uwire_connections_active") == Some(&0.0)
        })
        .await;
        let baseline = fd_count(app.pid);

        const WAVES: usize = 5;
        const PER_WAVE: usize = 200;
        let mut tally = Tally::new(
            "connection storm against uwire serve (uwire/1 and classic uwsgi)",
            "1,000 connections in 5 waves of 200: whole requests on both protocols, cut-off prefaces, bodies and vars blocks, short bodies, silent and garbage peers",
        );
        let mut peak = baseline;
        for wave in 0..WAVES {
            let mut tasks = Vec::new();
            for i in 0..PER_WAVE {
                let kind = KINDS[(wave * PER_WAVE + i) % KINDS.len()];
                tasks.push(tokio::spawn(one(sock.clone(), kind)));
            }
            peak = peak.max(fd_count(app.pid));
            for t in tasks {
                match t.await.unwrap() {
                    Ok("ok") => tally.ok(),
                    Ok(kind) => tally.expected(kind),
                    Err(e) => tally.lost(&e),
                }
            }
        }
        wait_fds_at_most(app.pid, baseline, Duration::from_secs(20), "after the storm").await;
        let m = metrics(maddr).await;
        println!(
            "storm: serve descriptors baseline {baseline}, peak seen {peak}, settled {}; \
             connections total {}",
            fd_count(app.pid),
            m.get("uwire_connections_total").copied().unwrap_or(0.0)
        );
        assert_eq!(m["uwire_connections_active"], 0.0);
        // Still serving, on both protocols.
        for k in [Kind::UwireGet, Kind::UwsgiGet] {
            match one(sock.clone(), k).await {
                Ok("ok") => tally.ok(),
                other => tally.lost(&format!("after the storm: {other:?}")),
            }
        }
        tally.report();
    })
    .await
}
