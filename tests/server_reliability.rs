//! Regression tests for timeout and resource gaps an outside probe found in
//! the runtime (issue 13): flow-control credit given only as it is written,
//! send-progress timeouts per stream and per connection for uwire/1 and
//! classic uwsgi, and the NUL defence on both protocols.
#![cfg(feature = "cli")]

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uwire::codec::Codec;
use uwire::frame::{Data, Frame, Limits, Reason, Request, StreamId};
use uwire::server::{
    handler_fn, BoxError, ErrorKind, Request as AppRequest, Response, ServerConfig,
};

/// A handler that reads and counts every body byte (returning credit as it
/// goes) and answers once the body ends.
fn counting_sink(total: Arc<AtomicU64>) -> impl uwire::server::Handler {
    handler_fn(move |mut req: AppRequest| {
        let total = total.clone();
        async move {
            let body = req.body_mut();
            while let Some(chunk) = body.data().await {
                total.fetch_add(chunk?.len() as u64, Ordering::SeqCst);
            }
            Ok::<_, BoxError>(Response::new("done".into()))
        }
    })
}

/// PROTOCOL.md 8.3 and 15.4: credit returned by WINDOW_UPDATE counts only
/// once the frame is written. A client that never reads, and sends DATA
/// regardless of credit, must hit a flow-control error after at most the
/// credit it was actually sent: the server may not keep accepting on
/// credit stuck in its own queues.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credit_counts_only_once_written_to_a_peer_that_never_reads() {
    bounded(async {
        let total = Arc::new(AtomicU64::new(0));
        let mut config = ServerConfig {
            protocol: uwire::server::ProtocolMode::Uwire,
            ..ServerConfig::default()
        };
        // Small windows: every KiB read returns credit, so the server has
        // a lot of WINDOW_UPDATEs to send to a client that reads none.
        config.conn.initial_connection_window = 2048;
        config.conn.initial_stream_window = 2048;
        config.conn.write_timeout = None;
        let srv = TestServer::start("credit", config, counting_sink(total.clone())).await;
        let mut raw = Raw::connect(&srv.path).await;
        raw.send(Request::new(sid(1), head("POST", "/sink"), false))
            .await;
        // Write DATA, ignoring credit, until the server gives up on us. A
        // server that counted queued credit as given accepts without end
        // (the bound below fails the test).
        let chunk = Bytes::from(vec![b'x'; 1024]);
        let mut frame = BytesMut::new();
        Frame::from(Data::new(sid(1), chunk.clone(), false))
            .encode(&mut frame)
            .unwrap();
        let mut sent: u64 = 0;
        let limit: u64 = 512 << 20;
        while sent < limit {
            match tokio::time::timeout(Duration::from_secs(5), raw.io.write_all(&frame)).await {
                Ok(Ok(())) => sent += chunk.len() as u64,
                // Closed (after a GOAWAY), or blocked: the server stopped
                // reading us.
                Ok(Err(_)) | Err(_) => break,
            }
        }
        assert!(
            sent < limit,
            "the server accepted {sent} bytes without enforcing credit"
        );
        // Now read everything the server wrote: the credit it really gave,
        // and the error that ended it.
        let mut codec = Codec::new(Limits::default());
        let mut buf = BytesMut::new();
        let _ = within(Duration::from_secs(10), "drain", async {
            loop {
                buf.reserve(64 << 10);
                match raw.io.read_buf(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        })
        .await;
        let mut conn_credit: u64 = 2048;
        let mut flow_error = false;
        while let Ok(Some(f)) = codec.decode_frame(&mut buf) {
            match f {
                Frame::WindowUpdate(w) if w.stream_id() == StreamId::ZERO => {
                    conn_credit += u64::from(w.increment())
                }
                Frame::Reset(r) if r.reason() == Reason::FLOW_CONTROL_ERROR => flow_error = true,
                Frame::GoAway(g) if g.reason() == Reason::FLOW_CONTROL_ERROR => flow_error = true,
                _ => {}
            }
        }
        let accepted = total.load(Ordering::SeqCst);
        assert!(flow_error, "no FLOW_CONTROL_ERROR after {sent} bytes");
        assert!(
            accepted <= conn_credit,
            "accepted {accepted} bytes on {conn_credit} bytes of credit actually sent"
        );
        // The server keeps serving others.
        assert_eq!(get(&srv.client().await, "/x").await.unwrap().1, "done");
    })
    .await
}

fn send_timeout_config(t: Duration) -> ServerConfig {
    let mut c = ServerConfig {
        send_timeout: Some(t),
        ..ServerConfig::default()
    };
    c.conn.write_timeout = Some(t);
    c
}

/// A response whose reader returns no credit is reset after the send
/// timeout, and what it held is released; the connection's other streams
/// keep flowing meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_uwire_reader_is_reset_after_the_send_timeout() {
    bounded(async {
        let srv = TestServer::start(
            "stall-uwire",
            send_timeout_config(Duration::from_millis(400)),
            app(),
        )
        .await;
        let c = srv.client().await;
        let (_send, resp) = c
            .send_request(head("GET", "/zeros/104857600"), true)
            .await
            .unwrap();
        let (h, mut body) = resp.await.unwrap();
        assert_eq!(h.status, 200);
        // Read one chunk, then stop reading (no credit goes back).
        body.data().await.unwrap().unwrap();
        // Other streams on the same connection are unaffected.
        for _ in 0..3 {
            assert_eq!(get(&c, "/hello").await.unwrap().1, "hello");
        }
        let s = settle(&srv.metrics, |s| s.error(ErrorKind::SendTimeout) == 1).await;
        assert_eq!(s.error(ErrorKind::SendTimeout), 1, "{:?}", s.errors);
        // The stalled stream is gone: reading on finds the reset.
        let e = within(Duration::from_secs(5), "the reset", async {
            loop {
                match body.data().await {
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => return e,
                    None => panic!("a 100 MiB body ended"),
                }
            }
        })
        .await;
        assert!(e.is_reset(), "{e}");
        assert_eq!(e.reason(), Some(Reason::TIMEOUT), "{e}");
        let s = settle(&srv.metrics, |s| s.streams_active == 0).await;
        assert_eq!(s.streams_active, 0);
    })
    .await
}

/// A classic uwsgi peer that stops reading gets an abortive close after
/// the send timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_uwsgi_reader_is_cut_off_after_the_send_timeout() {
    bounded(async {
        let srv = TestServer::start(
            "stall-uwsgi",
            send_timeout_config(Duration::from_millis(400)),
            app(),
        )
        .await;
        let mut packet = BytesMut::new();
        uwire::uwsgi::encode_packet(
            0,
            0,
            &[
                ("REQUEST_METHOD", "GET"),
                ("REQUEST_URI", "/zeros/104857600"),
                ("PATH_INFO", "/zeros/104857600"),
                ("SERVER_PROTOCOL", "HTTP/1.1"),
            ],
            &uwire::uwsgi::UwsgiLimits::default(),
            &mut packet,
        )
        .unwrap();
        let mut conn = tokio::net::UnixStream::connect(&srv.path).await.unwrap();
        conn.write_all(&packet).await.unwrap();
        let mut head = [0u8; 16];
        conn.read_exact(&mut head).await.unwrap();
        assert_eq!(&head[..15], b"HTTP/1.1 200 OK");
        // Stop reading.
        let s = settle(&srv.metrics, |s| {
            s.error(ErrorKind::SendTimeout) == 1 && s.connections_active == 0
        })
        .await;
        assert_eq!(s.error(ErrorKind::SendTimeout), 1, "{:?}", s.errors);
        assert_eq!(s.connections_active, 0);
        // Reading on ends early: never the whole 100 MiB.
        let mut rest = Vec::new();
        let _ = conn.read_to_end(&mut rest).await;
        assert!(rest.len() < 100 << 20, "{}", rest.len());
    })
    .await
}

/// A uwire/1 peer that reads nothing at all (not even control frames) has
/// its connection closed after the write timeout, freeing everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_whose_peer_reads_nothing_is_closed_after_the_write_timeout() {
    bounded(async {
        let config = ServerConfig {
            protocol: uwire::server::ProtocolMode::Uwire,
            ..send_timeout_config(Duration::from_millis(400))
        };
        let srv = TestServer::start("stall-conn", config, app()).await;
        let mut raw = Raw::connect(&srv.path).await;
        for i in 0..4u32 {
            raw.send(Request::new(
                sid(2 * i + 1),
                head("GET", "/zeros/8388608"),
                true,
            ))
            .await;
        }
        // Never read. The per-stream timeouts reset the streams; the
        // connection timeout closes the connection.
        let s = settle(&srv.metrics, |s| {
            s.connections_active == 0 && s.streams_active == 0
        })
        .await;
        assert_eq!((s.connections_active, s.streams_active), (0, 0), "{s:?}");
        assert_eq!(get(&srv.client().await, "/hello").await.unwrap().1, "hello");
    })
    .await
}

/// The NUL defence holds on both protocols: a target that decodes to a NUL
/// is refused with 400 whether it came as a uwire REQUEST or as a classic
/// uwsgi REQUEST_URI (which nginx sends raw, next to a decoded PATH_INFO).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nul_in_the_target_is_refused_on_both_protocols() {
    bounded(async {
        let srv = TestServer::start("nul-both", ServerConfig::default(), app()).await;
        let c = srv.client().await;
        assert_eq!(get(&c, "/hello%00x").await.unwrap().0, 400);
        for (uri, path_info) in [
            ("/hello%00x", "/hello\0x"),
            ("/hello%00", "/hello"),
            ("/hello\0", "/hello"),
            ("/hello", "/hello\0"),
        ] {
            let mut packet = BytesMut::new();
            uwire::uwsgi::encode_packet(
                0,
                0,
                &[
                    ("REQUEST_METHOD", "GET"),
                    ("REQUEST_URI", uri),
                    ("PATH_INFO", path_info),
                    ("SERVER_PROTOCOL", "HTTP/1.1"),
                ],
                &uwire::uwsgi::UwsgiLimits::default(),
                &mut packet,
            )
            .unwrap();
            let mut conn = tokio::net::UnixStream::connect(&srv.path).await.unwrap();
            conn.write_all(&packet).await.unwrap();
            let mut out = Vec::new();
            conn.read_to_end(&mut out).await.unwrap();
            let text = String::from_utf8_lossy(&out).into_owned();
            assert!(
                text.starts_with("HTTP/1.1 400 "),
                "REQUEST_URI {uri:?} PATH_INFO {path_info:?}: {text}"
            );
        }
    })
    .await
}
