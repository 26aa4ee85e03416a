//! A hostile peer against a busy app: tiny DATA frames on a stream whose
//! handler has not read its body yet, each written together with a DATA
//! frame of nearly 8 KiB on another stream that the app does consume, so
//! that the two arrive in one read. Each tiny payload used to keep its
//! whole read buffer alive (about 8 KiB for one byte of window): the
//! 20,000 of this test held some 160 MiB. Small payloads that arrive
//! behind unread ones are now copied out (`src/net/recvq.rs`), and memory
//! stays near what the window allows. Real Unix socket, real runtime; the
//! process's resident memory is read from /proc (this file holds one test,
//! so it runs alone in its process).
#![cfg(all(feature = "net", target_os = "linux"))]

use bytes::Bytes;
use tokio::net::UnixStream;
use uwire::conn::Config;
use uwire::frame::{RequestHead, ResponseHead};
use uwire::net;

const TINY_FRAMES: usize = 20_000;
/// With its frame header and the tiny frame's, under the driver's 8 KiB
/// read: both frames come in one read into the stack buffer.
const FILLER: usize = 7_900;

fn rss_kib() -> u64 {
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

#[tokio::test]
async fn tiny_frames_behind_an_unread_body_do_not_pin_read_buffers() {
    let test = async {
        let (a, b) = UnixStream::pair().unwrap();
        let (sender, conn) = net::client(a, Config::default());
        tokio::spawn(conn);
        let (mut incoming, conn) = net::server(b, Config::default());
        tokio::spawn(conn);

        // The app: `/hold` leaves its body unread until told, `/echo`
        // sends every chunk back as it comes.
        let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
        let (held_tx, held_rx) = tokio::sync::oneshot::channel::<usize>();
        tokio::spawn(async move {
            let mut release = Some(release_rx);
            let mut held = Some(held_tx);
            while let Some(mut req) = incoming.accept().await {
                if &req.head.path[..] == b"/hold" {
                    let (release, held) = (release.take().unwrap(), held.take().unwrap());
                    tokio::spawn(async move {
                        // Kept: a responder dropped unanswered resets the
                        // stream.
                        let _responder = req.responder;
                        let _ = release.await;
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

        let (mut hold, _hold_response) = sender.send_request(head("/hold"), false).await.unwrap();
        let (mut echo, echo_response) = sender.send_request(head("/echo"), false).await.unwrap();
        let filler = Bytes::from(vec![b'f'; FILLER]);
        // Warm up the allocator and the connection before measuring.
        echo.send_data(filler.clone(), false).await.unwrap();
        let (_, mut echoed) = echo_response.await.unwrap();
        let mut got = 0;
        while got < FILLER {
            got += echoed.data().await.unwrap().unwrap().len();
        }

        let before = rss_kib();
        for _ in 0..TINY_FRAMES {
            hold.send_data(Bytes::from_static(b"x"), false)
                .await
                .unwrap();
            echo.send_data(filler.clone(), false).await.unwrap();
            // Wait for the echo, so that the next pair is a read of its own.
            let mut got = 0;
            while got < FILLER {
                got += echoed.data().await.unwrap().unwrap().len();
            }
        }
        let grown = rss_kib().saturating_sub(before);
        println!(
            "{TINY_FRAMES} one-byte frames waiting behind an unread body: resident memory grew {grown} KiB"
        );

        // Every byte is still there, in order, once the app reads.
        hold.send_data(Bytes::new(), true).await.unwrap();
        release_tx.send(()).unwrap();
        assert_eq!(held_rx.await.unwrap(), TINY_FRAMES);
        // Pinned, they took about 8 KiB each (160 MiB); gathered, about
        // their window. 32 MiB leaves room for the allocator's own slack.
        assert!(
            grown < 32 * 1024,
            "{TINY_FRAMES} one-byte frames cost {grown} KiB of resident memory"
        );
    };
    tokio::time::timeout(std::time::Duration::from_secs(120), test)
        .await
        .expect("the test took over 120 s");
}
