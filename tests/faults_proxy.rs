//! `uwire proxy` stopped with SIGTERM under load (issue 13, fault
//! injection), the proxy and the app as real child processes. In flight at
//! the signal, 90 requests of three kinds:
//!
//! * uploads still arriving (the app echoing them as they come);
//! * 1 MiB answers the client has only started to read;
//! * requests the proxy has read and passed on (the client got its `100
//!   Continue`), waiting for an app frozen with SIGSTOP, thawed only after
//!   the proxy's SIGTERM.
//!
//! Every one completes with the right body; new connections after the
//! signal are refused; the proxy exits 0. Prints its row of the issue's
//! table (`--nocapture`).
#![cfg(feature = "cli")]

mod faults_common;
mod proxy_common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use faults_common::*;
use http_body_util::BodyExt;
use proxy_common::{channel_body, full, sock_path, within, RawConn};
use tokio::sync::{mpsc, watch};

const PER_KIND: usize = 30;

async fn wait_count(n: &AtomicUsize, want: usize, what: &str) {
    within(Duration::from_secs(30), what, async {
        while n.load(Ordering::SeqCst) < want {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_completes_every_request_in_flight() {
    within(Duration::from_secs(120), "test", async {
        let sock = sock_path("proxy-term");
        let mut app = serve_child(&sock, &[]).await;
        // One upstream connection, opened by the warm-up: requests sent
        // while the app is frozen need no handshake with it.
        let (mut proxy, addr) = proxy_child(
            &format!("unix:{}", sock.display()),
            &["--connections-per-upstream", "1", "--drain-timeout", "30s"],
        )
        .await;
        let mut c = h1(addr).await.unwrap();
        let hello = get_req("/");
        let o = exchange(&mut c, hello, b"Hello from uwire!\n", Duration::from_secs(10)).await;
        assert_eq!(o, Outcome::Ok);
        drop(c);

        let (go_tx, go_rx) = watch::channel(false);
        let started = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();

        // Kind 1: uploads still arriving.
        let mut upload_tx = Vec::new();
        for i in 0..PER_KIND {
            let (tx, rx) = mpsc::channel::<Bytes>(8);
            let first = payload(i, 100);
            tx.send(first.clone()).await.unwrap();
            upload_tx.push(tx);
            let started = started.clone();
            tasks.push(tokio::spawn(async move {
                let mut send = h1(addr).await.unwrap();
                let req = post_req("/echo", channel_body(rx));
                let resp = match send.send_request(req).await {
                    Ok(r) if r.status() == 200 => r,
                    Ok(r) => return Outcome::Status(r.status().as_u16()),
                    Err(_) => return Outcome::NoResponse,
                };
                let mut body = resp.into_body();
                let mut got = Vec::new();
                let mut signalled = false;
                loop {
                    match body.frame().await {
                        None => break,
                        Some(Err(_)) => return Outcome::Aborted,
                        Some(Ok(f)) => {
                            if let Ok(d) = f.into_data() {
                                got.extend_from_slice(&d);
                            }
                            if !signalled && got.len() >= first.len() {
                                signalled = true;
                                started.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                    }
                }
                let mut want = first.to_vec();
                for k in 1..4 {
                    want.extend_from_slice(&payload(i * 10 + k, 1000));
                }
                if got == want {
                    Outcome::Ok
                } else {
                    Outcome::Corrupt
                }
            }));
        }

        // Kind 2: big answers, read a little, then held.
        for i in 0..PER_KIND {
            let started = started.clone();
            let mut go = go_rx.clone();
            tasks.push(tokio::spawn(async move {
                let data = payload(1000 + i, 1 << 20);
                let mut send = h1(addr).await.unwrap();
                let req = post_req("/echo", full(data.clone()));
                let resp = match send.send_request(req).await {
                    Ok(r) if r.status() == 200 => r,
                    Ok(r) => return Outcome::Status(r.status().as_u16()),
                    Err(_) => return Outcome::NoResponse,
                };
                let mut body = resp.into_body();
                let mut got = Vec::new();
                match body.frame().await {
                    Some(Ok(f)) => got.extend_from_slice(&f.into_data().unwrap_or_default()),
                    Some(Err(_)) => return Outcome::Aborted,
                    None => return Outcome::Corrupt,
                }
                started.fetch_add(1, Ordering::SeqCst);
                let _ = go.wait_for(|g| *g).await;
                match body.collect().await {
                    Ok(rest) => got.extend_from_slice(&rest.to_bytes()),
                    Err(_) => return Outcome::Aborted,
                }
                if got == data {
                    Outcome::Ok
                } else {
                    Outcome::Corrupt
                }
            }));
        }
        wait_count(&started, 2 * PER_KIND, "uploads and downloads in flight").await;

        // Kind 3: the app frozen; requests read by the proxy (100 Continue
        // proves it) and passed on, waiting for an answer.
        app.signal(libc::SIGSTOP);
        let continued = Arc::new(AtomicUsize::new(0));
        for i in 0..PER_KIND {
            let continued = continued.clone();
            tasks.push(tokio::spawn(async move {
                let body = format!("expect {i}");
                let mut raw = RawConn::connect(addr).await;
                let head = format!(
                    "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\
                     Expect: 100-continue\r\n\r\n",
                    body.len()
                );
                raw.send(head.as_bytes()).await.unwrap();
                match raw.read_head().await {
                    Ok(Some((100, _))) => {}
                    other => panic!("wanted 100 Continue, got {other:?}"),
                }
                raw.send(body.as_bytes()).await.unwrap();
                continued.fetch_add(1, Ordering::SeqCst);
                match raw.read_response(false).await {
                    Ok(r) if r.status == 200 && r.complete && r.body == body.as_bytes() => {
                        Outcome::Ok
                    }
                    Ok(r) if r.status == 200 => Outcome::Corrupt,
                    Ok(r) => Outcome::Status(r.status),
                    Err(_) => Outcome::NoResponse,
                }
            }));
        }
        wait_count(&continued, PER_KIND, "requests waiting for the frozen app").await;

        proxy.signal(libc::SIGTERM);
        // The listener closes: new connections are refused.
        within(Duration::from_secs(15), "listener closed", async {
            while tokio::net::TcpStream::connect(addr).await.is_ok() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        let mut tally = Tally::new(
            "uwire proxy SIGTERM under load",
            "SIGTERM to uwire proxy with 90 requests in flight (30 uploads arriving, 30 1 MiB answers half read, 30 waiting for an app frozen by SIGSTOP); then 10 new connections",
        );
        for _ in 0..10 {
            match tokio::net::TcpStream::connect(addr).await {
                Err(_) => tally.expected("new connection refused after SIGTERM"),
                Ok(_) => tally.lost("new connection accepted after SIGTERM"),
            }
        }
        app.signal(libc::SIGCONT);
        let _ = go_tx.send(true);
        for (i, tx) in upload_tx.into_iter().enumerate() {
            tokio::spawn(async move {
                for k in 1..4 {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    if tx.send(payload(i * 10 + k, 1000)).await.is_err() {
                        return;
                    }
                }
            });
        }
        for t in tasks {
            let o = within(Duration::from_secs(40), "in-flight request", t)
                .await
                .unwrap();
            match o {
                Outcome::Ok => tally.ok(),
                o => tally.lost(&o.name()),
            }
        }
        tally.report();
        let status = proxy.wait_exit(Duration::from_secs(30)).await;
        assert_eq!(status.code(), Some(0), "{status:?}");
        app.signal(libc::SIGTERM);
        assert_eq!(app.wait_exit(Duration::from_secs(30)).await.code(), Some(0));
    })
    .await
}
