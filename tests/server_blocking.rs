//! A handler whose work runs on plain OS threads (the shape of a WSGI app on
//! Python threads) goes through the same pipeline as any async handler:
//! it reads the body with `std::io::Read`, sends its head from the thread,
//! streams chunks from the thread with backpressure, and learns promptly
//! when the peer goes away. Over uwire/1 and classic uwsgi alike.
#![cfg(feature = "cli")]

mod common;

use std::io::Read;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;
use uwire::frame::Reason;
use uwire::server::{
    BlockingBody, BodySender, BoxError, BoxFuture, ErrorKind, Handler, Request, Response,
    ResponseBody, ServerConfig,
};

/// One unit of work for the thread pool.
struct Job {
    path: String,
    body: BlockingBody,
    head: oneshot::Sender<u16>,
    out: BodySender,
}

/// A handler backed by a fixed pool of OS threads fed by a channel, like a
/// WSGI server's worker threads. Counts how many producers stopped because
/// nobody read their response any more.
struct ThreadPool {
    jobs: Mutex<std_mpsc::Sender<Job>>,
    abandoned: Arc<AtomicUsize>,
}

impl ThreadPool {
    fn new(threads: usize) -> ThreadPool {
        let (tx, rx) = std_mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let abandoned = Arc::new(AtomicUsize::new(0));
        for _ in 0..threads {
            let rx = rx.clone();
            let abandoned = abandoned.clone();
            std::thread::spawn(move || loop {
                let job = match rx.lock().unwrap().recv() {
                    Ok(j) => j,
                    Err(_) => return,
                };
                run(job, &abandoned);
            });
        }
        ThreadPool {
            jobs: Mutex::new(tx),
            abandoned,
        }
    }
}

/// What a job does, on its thread.
fn run(mut job: Job, abandoned: &AtomicUsize) {
    match job.path.as_str() {
        "/upper" => {
            let _ = job.head.send(200);
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                match job.body.read(&mut buf) {
                    Ok(0) => return,
                    Ok(n) => {
                        let chunk = Bytes::from(buf[..n].to_ascii_uppercase());
                        if job.out.blocking_send(chunk).is_err() {
                            abandoned.fetch_add(1, Ordering::SeqCst);
                            return;
                        }
                    }
                    Err(e) => return job.out.blocking_abort(e),
                }
            }
        }
        "/sum" => {
            // Reads everything first, answers with a known length.
            let mut all = Vec::new();
            match job.body.read_to_end(&mut all) {
                Ok(_) => {
                    let _ = job.head.send(200);
                    let sum: u64 = all.iter().map(|&b| u64::from(b)).sum();
                    let _ = job
                        .out
                        .blocking_send(Bytes::from(format!("{} {sum}\n", all.len())));
                }
                Err(e) => {
                    let _ = job.head.send(400);
                    let _ = job.out.blocking_send(Bytes::from(format!("{e}\n")));
                }
            }
        }
        "/forever" => {
            let _ = job.head.send(200);
            for i in 0u64.. {
                if job
                    .out
                    .blocking_send(Bytes::from(format!("tick {i}\n")))
                    .is_err()
                {
                    abandoned.fetch_add(1, Ordering::SeqCst);
                    return;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        _ => {
            let _ = job.head.send(404);
        }
    }
}

impl Handler for ThreadPool {
    fn call(&self, req: Request) -> BoxFuture<Result<Response, BoxError>> {
        let (head, _environ, body) = req.into_parts();
        let path = String::from_utf8_lossy(&head.path).into_owned();
        let (head_tx, head_rx) = oneshot::channel();
        let (out, body_out) = ResponseBody::channel(2);
        let job = Job {
            path,
            body: body.into_blocking(),
            head: head_tx,
            out,
        };
        let sent = self.jobs.lock().unwrap().send(job);
        Box::pin(async move {
            sent.map_err(|_| "thread pool is gone")?;
            let status = head_rx
                .await
                .map_err(|_| "worker thread dropped the request")?;
            let mut resp = Response::new(body_out);
            *resp.status_mut() = http::StatusCode::from_u16(status)?;
            Ok(resp)
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_threads_stream_both_ways_over_uwire() {
    bounded(async {
        let srv = TestServer::start(
            "blocking-uwire",
            ServerConfig::default(),
            ThreadPool::new(2),
        )
        .await;
        let c = srv.client().await;
        // 3 MiB through a 2-chunk channel: backpressure, not buffering.
        let input: Vec<u8> = (0..3 * 1024 * 1024).map(|i| b"abcxyz"[i % 6]).collect();
        let (status, out) = stream_exchange(&c, head("POST", "/upper"), input.clone().into())
            .await
            .unwrap();
        assert_eq!(status, 200);
        assert_eq!(out.len(), input.len());
        assert_eq!(&out[..], &input.to_ascii_uppercase()[..]);
        let (status, out) = request(
            &c,
            head("POST", "/sum"),
            Some(Bytes::from_static(b"\x01\x02\x03")),
        )
        .await
        .unwrap();
        assert_eq!((status, &out[..]), (200, &b"3 6\n"[..]));
        assert_eq!(get(&c, "/missing").await.unwrap().0, 404);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_stops_the_producing_thread() {
    bounded(async {
        let pool = ThreadPool::new(2);
        let abandoned = pool.abandoned.clone();
        let srv = TestServer::start("blocking-reset", ServerConfig::default(), pool).await;
        let c = srv.client().await;
        let (_send, resp) = c.send_request(head("GET", "/forever"), true).await.unwrap();
        let (h, mut body) = resp.await.unwrap();
        assert_eq!(h.status, 200);
        let first = body.data().await.unwrap().unwrap();
        assert!(first.starts_with(b"tick 0"), "{first:?}");
        drop(body); // RESET(CANCEL)
        let s = settle(&srv.metrics, |s| s.streams_active == 0).await;
        assert_eq!(s.error(ErrorKind::PeerReset), 1, "{:?}", s.errors);
        within(Duration::from_secs(5), "the thread notices", async {
            while abandoned.load(Ordering::SeqCst) == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        // The pool still serves.
        assert_eq!(get(&c, "/missing").await.unwrap().0, 404);
    })
    .await
}

/// A classic uwsgi request packet (what nginx's `uwsgi_params` send).
fn uwsgi_packet(method: &str, path: &str, body: &[u8]) -> Vec<u8> {
    let len = body.len().to_string();
    let mut packet = bytes::BytesMut::new();
    uwire::uwsgi::encode_packet(
        0,
        0,
        &[
            ("REQUEST_METHOD", method),
            ("REQUEST_URI", path),
            ("PATH_INFO", path),
            ("SERVER_PROTOCOL", "HTTP/1.1"),
            ("CONTENT_LENGTH", if body.is_empty() { "" } else { &len }),
        ],
        &uwire::uwsgi::UwsgiLimits::default(),
        &mut packet,
    )
    .unwrap();
    packet.extend_from_slice(body);
    packet.to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_threads_over_classic_uwsgi() {
    bounded(async {
        let srv = TestServer::start(
            "blocking-uwsgi",
            ServerConfig::default(),
            ThreadPool::new(2),
        )
        .await;
        let input: Vec<u8> = (0..512 * 1024).map(|i| b"hello"[i % 5]).collect();
        let mut conn = tokio::net::UnixStream::connect(&srv.path).await.unwrap();
        conn.write_all(&uwsgi_packet("POST", "/upper", &input))
            .await
            .unwrap();
        let mut out = Vec::new();
        conn.read_to_end(&mut out).await.unwrap();
        let text = String::from_utf8_lossy(&out[..40.min(out.len())]).into_owned();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        let body_at = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        assert_eq!(&out[body_at..], &input.to_ascii_uppercase()[..]);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uwsgi_short_body_is_a_bad_request_not_a_truncated_answer() {
    bounded(async {
        let srv = TestServer::start(
            "blocking-short",
            ServerConfig::default(),
            ThreadPool::new(2),
        )
        .await;
        // Announces 10 bytes, sends 4, then half-closes.
        let mut packet = uwsgi_packet("POST", "/sum", b"0123456789");
        packet.truncate(packet.len() - 6);
        let mut conn = tokio::net::UnixStream::connect(&srv.path).await.unwrap();
        conn.write_all(&packet).await.unwrap();
        conn.shutdown().await.unwrap();
        let mut out = Vec::new();
        within(
            Duration::from_secs(10),
            "an answer",
            conn.read_to_end(&mut out),
        )
        .await
        .unwrap();
        let text = String::from_utf8_lossy(&out).into_owned();
        assert!(text.starts_with("HTTP/1.1 400 "), "got {:?}", text);
        assert!(text.contains("4 of 10 bytes"), "{text}");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uwsgi_short_body_left_open_is_bounded_by_the_deadline() {
    bounded(async {
        let config = ServerConfig {
            request_deadline: Some(Duration::from_millis(500)),
            ..ServerConfig::default()
        };
        let srv = TestServer::start("blocking-short-open", config, ThreadPool::new(2)).await;
        let mut packet = uwsgi_packet("POST", "/upper", b"0123456789");
        packet.truncate(packet.len() - 6);
        let mut conn = tokio::net::UnixStream::connect(&srv.path).await.unwrap();
        conn.write_all(&packet).await.unwrap();
        // The connection stays open: the deadline must still end it.
        let mut out = Vec::new();
        within(
            Duration::from_secs(10),
            "an answer",
            conn.read_to_end(&mut out),
        )
        .await
        .unwrap();
        let text = String::from_utf8_lossy(&out).into_owned();
        assert!(text.starts_with("HTTP/1.1 504 "), "{text}");
        let s = settle(&srv.metrics, |s| s.streams_active == 0).await;
        assert_eq!(s.error(ErrorKind::Deadline), 1, "{:?}", s.errors);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_body_reset_mid_echo_counts_as_peer_reset_on_both_protocols() {
    bounded(async {
        let config = ServerConfig {
            uwsgi_read_ahead: 64 * 1024,
            ..ServerConfig::default()
        };
        let srv = TestServer::start("blocking-abort", config, ThreadPool::new(2)).await;
        // uwire/1: the proxy resets the stream while the response streams.
        let c = srv.client().await;
        let (mut send, resp) = c.send_request(head("POST", "/upper"), false).await.unwrap();
        send.send_data(Bytes::from_static(b"abc"), false)
            .await
            .unwrap();
        let (h, mut body) = resp.await.unwrap();
        assert_eq!(h.status, 200);
        assert_eq!(&body.data().await.unwrap().unwrap()[..], b"ABC");
        send.reset(Reason::CANCEL);
        let s = settle(&srv.metrics, |s| s.streams_active == 0).await;
        assert_eq!(s.error(ErrorKind::PeerReset), 1, "{:?}", s.errors);
        assert_eq!(s.error(ErrorKind::HandlerError), 0, "{:?}", s.errors);

        // Classic uwsgi: the peer stops mid-body (past the read-ahead, so
        // the head is already out) and closes its end.
        let declared = vec![b'x'; 1024 * 1024];
        let mut packet = uwsgi_packet("POST", "/upper", &declared);
        packet.truncate(packet.len() - declared.len() / 2);
        let conn = tokio::net::UnixStream::connect(&srv.path).await.unwrap();
        let (mut rd, mut wr) = conn.into_split();
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            let _ = rd.read_to_end(&mut got).await;
            got
        });
        wr.write_all(&packet).await.unwrap();
        wr.shutdown().await.unwrap();
        let got = within(Duration::from_secs(10), "the connection ends", reader)
            .await
            .unwrap();
        // Whatever arrived is a started response, never a complete one.
        assert!(got.len() < declared.len(), "{}", got.len());
        let s = settle(&srv.metrics, |s| s.streams_active == 0).await;
        assert_eq!(s.error(ErrorKind::PeerReset), 2, "{:?}", s.errors);
        assert_eq!(s.error(ErrorKind::HandlerError), 0, "{:?}", s.errors);
    })
    .await
}
