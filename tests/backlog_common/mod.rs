//! A hostile peer against a busy app, shared by `net_backlog*.rs`: DATA
//! frames on streams whose handler has not read its body yet, each written
//! together with DATA on another stream that the app does consume, so that
//! they arrive in one read. A payload queued behind unread bytes used to
//! keep its whole read buffer alive. Real Unix socket, real runtime; the
//! process's resident memory is read from /proc, so each test file holds
//! one test and runs alone in its process.
#![allow(dead_code)] // each test binary uses a different subset

use bytes::Bytes;
use tokio::net::UnixStream;
use uwire::conn::Config;
use uwire::frame::{RequestHead, ResponseHead};
use uwire::net;

/// What the peer sends.
pub struct Attack {
    /// Streams whose bodies the app leaves unread.
    pub held_streams: usize,
    /// Frames sent on each of them.
    pub frames_per_stream: usize,
    /// Payload of each of those frames.
    pub frame_len: usize,
    /// Bytes sent on the consumed stream with each frame (before it).
    pub filler: usize,
}

/// The process's resident memory, KiB.
pub fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn head(path: &str) -> RequestHead {
    RequestHead {
        method: "POST".into(),
        path: Bytes::copy_from_slice(path.as_bytes()),
        ..Default::default()
    }
}

/// Runs `attack` on a fresh connection and returns how much resident
/// memory grew while the frames waited, KiB; checks that the app then
/// reads every held byte, in order.
pub async fn run(attack: Attack) -> u64 {
    let test = async {
        let (a, b) = UnixStream::pair().unwrap();
        let (sender, conn) = net::client(a, Config::default());
        tokio::spawn(conn);
        let (mut incoming, conn) = net::server(b, Config::default());
        tokio::spawn(conn);

        // The app: `/hold` leaves its body unread until told, then reports
        // how many bytes it read; `/echo` sends every chunk back as it
        // comes.
        let (release_tx, release_rx) = tokio::sync::watch::channel(false);
        let (held_tx, mut held_rx) = tokio::sync::mpsc::unbounded_channel::<usize>();
        tokio::spawn(async move {
            while let Some(mut req) = incoming.accept().await {
                if &req.head.path[..] == b"/hold" {
                    let (mut release, held) = (release_rx.clone(), held_tx.clone());
                    tokio::spawn(async move {
                        // Kept: a responder dropped unanswered resets the
                        // stream.
                        let _responder = req.responder;
                        let _ = release.wait_for(|r| *r).await;
                        let mut n = 0;
                        while let Some(chunk) = req.body.data().await {
                            let chunk = chunk.unwrap();
                            assert!(chunk.iter().all(|&b| b == b'x'));
                            n += chunk.len();
                        }
                        let _ = held.send(n);
                    });
                } else {
                    tokio::spawn(async move {
                        let mut out = req
                            .responder
                            .send_response(ResponseHead::new(200), false)
                            .unwrap();
                        while let Some(chunk) = req.body.data().await {
                            out.send_data(chunk.unwrap(), false).await.unwrap();
                        }
                        out.send_data(Bytes::new(), true).await.unwrap();
                    });
                }
            }
        });

        let mut held = Vec::new();
        for _ in 0..attack.held_streams {
            let (body, response) = sender.send_request(head("/hold"), false).await.unwrap();
            held.push((body, response));
        }
        let (mut echo, echo_response) = sender.send_request(head("/echo"), false).await.unwrap();
        let filler = Bytes::from(vec![b'f'; attack.filler]);
        // Warm up the allocator and the connection before measuring.
        echo.send_data(filler.clone(), false).await.unwrap();
        let (_, mut echoed) = echo_response.await.unwrap();
        let mut got = 0;
        while got < attack.filler {
            got += echoed.data().await.unwrap().unwrap().len();
        }

        let frame = Bytes::from(vec![b'x'; attack.frame_len]);
        let before = rss_kib();
        for _ in 0..attack.frames_per_stream {
            for (body, _) in &mut held {
                echo.send_data(filler.clone(), false).await.unwrap();
                body.send_data(frame.clone(), false).await.unwrap();
                // Wait for the echo, so that the next pair is a read of
                // its own.
                let mut got = 0;
                while got < attack.filler {
                    got += echoed.data().await.unwrap().unwrap().len();
                }
            }
        }
        let grown = rss_kib().saturating_sub(before);

        // Every byte is still there, in order, once the app reads.
        for (body, _) in &mut held {
            body.send_data(Bytes::new(), true).await.unwrap();
        }
        release_tx.send(true).unwrap();
        for _ in 0..attack.held_streams {
            assert_eq!(
                held_rx.recv().await.unwrap(),
                attack.frames_per_stream * attack.frame_len
            );
        }
        grown
    };
    tokio::time::timeout(std::time::Duration::from_secs(120), test)
        .await
        .expect("the test took over 120 s")
}

/// Runs `attack` and checks that resident memory grew by less than the
/// bytes left waiting plus 4 MiB (the streams' state and the allocator's
/// slack); a payload that kept a streaming read buffer alive (about
/// 124 KiB written of 192 KiB) fails it many times over.
pub async fn run_within_window(attack: Attack) {
    let held_kib =
        (attack.held_streams * attack.frames_per_stream * attack.frame_len / 1024) as u64;
    let (streams, frame) = (attack.held_streams, attack.frame_len);
    let grown = run(attack).await;
    println!(
        "{held_kib} KiB in {frame}-byte frames waiting on {streams} unread bodies: resident memory grew {grown} KiB"
    );
    assert!(
        grown < held_kib + 4 * 1024,
        "{held_kib} KiB of waiting frames cost {grown} KiB of resident memory"
    );
}
