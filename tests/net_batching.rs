//! Write batching of the connection driver (`Config::write_batch`): frames
//! that several tasks queue in one scheduler turn leave in few writes, a
//! full batch is written without waiting for the turn to end, and a batch
//! of 1 writes each request on its own. And read sizes: a body streaming in
//! is read in large chunks. Real Unix socket, real runtime; the client's
//! transport counts the writes and reads that reach the socket.
#![cfg(feature = "cli")]

mod common;

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use common::*;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::UnixStream;
use uwire::conn::Config;
use uwire::server::ServerConfig;

/// A Unix stream that counts the writes the socket accepted, and the
/// reads that brought bytes (all, and those into a small buffer).
struct Counting {
    io: UnixStream,
    writes: Arc<AtomicUsize>,
    reads: Arc<Reads>,
}

/// Reads seen by [`Counting`].
#[derive(Default)]
struct Reads {
    /// Reads that brought bytes.
    all: AtomicUsize,
    /// Reads into a buffer of 8 KiB: the driver's small read (on the
    /// stack) for a connection between frames, which a streaming body
    /// should not take frame after frame.
    small: AtomicUsize,
}

impl Counting {
    fn count(&self, r: &Poll<io::Result<usize>>) {
        if matches!(r, Poll::Ready(Ok(n)) if *n > 0) {
            self.writes.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl AsyncRead for Counting {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let (before, room) = (buf.filled().len(), buf.remaining());
        let r = Pin::new(&mut self.io).poll_read(cx, buf);
        let got = buf.filled().len() - before;
        if matches!(r, Poll::Ready(Ok(()))) && got > 0 {
            self.reads.all.fetch_add(1, Ordering::Relaxed);
            if room == 8 << 10 {
                self.reads.small.fetch_add(1, Ordering::Relaxed);
            }
        }
        r
    }
}

impl AsyncWrite for Counting {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write(cx, buf);
        self.count(&r);
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.count(&r);
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Writes the client made for `requests` GETs started by as many tasks in
/// one scheduler turn, on a one-worker multi-thread runtime (where a woken
/// task runs right after the one that woke it: without batching, each
/// request wakes the driver and is written alone). The server runs on a
/// runtime of its own, on another thread.
fn writes_for(name: &str, write_batch: usize, requests: usize) -> usize {
    let (path_tx, path_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let name = name.to_string();
    let server = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let server = TestServer::start(&name, ServerConfig::default(), app()).await;
            path_tx.send(server.path.clone()).unwrap();
            let _ = stop_rx.await;
            server.shutdown().await.unwrap();
        });
    });
    let path = path_rx.recv().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let writes = rt.block_on(bounded(async move {
        let writes = Arc::new(AtomicUsize::new(0));
        let io = Counting {
            io: UnixStream::connect(&path).await.unwrap(),
            writes: writes.clone(),
            reads: Arc::default(),
        };
        let mut config = Config::default();
        config.write_batch(write_batch);
        let (c, conn) = uwire::net::client(io, config);
        tokio::spawn(conn);
        // Preface and SETTINGS exchanged, the connection idle.
        assert_eq!(get(&c, "/hello").await.unwrap().0, 200);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let before = writes.load(Ordering::Relaxed);
        // One task starts every request: they are all ready in one turn.
        let tasks = tokio::spawn({
            let c = c.clone();
            async move {
                let all: Vec<_> = (0..requests)
                    .map(|i| {
                        let c = c.clone();
                        tokio::spawn(async move { get(&c, &format!("/id/{i}")).await })
                    })
                    .collect();
                for (i, t) in all.into_iter().enumerate() {
                    let (status, body) = t.await.unwrap().unwrap();
                    assert_eq!((status, body), (200, format!("{i}").into()));
                }
            }
        });
        tasks.await.unwrap();
        writes.load(Ordering::Relaxed) - before
    }));
    stop_tx.send(()).unwrap();
    server.join().unwrap();
    eprintln!("write_batch {write_batch}: {requests} requests, {writes} writes");
    writes
}

#[test]
fn requests_of_one_turn_leave_in_one_write() {
    // A batch larger than the turn: everything waits for the turn's end.
    let n = writes_for("batch-max", usize::MAX, 32);
    assert!(n <= 2, "32 requests of one turn took {n} writes");
}

#[test]
fn a_full_batch_is_written_before_the_turn_ends() {
    let n = writes_for("batch-8", 8, 32);
    assert!(
        (4..=6).contains(&n),
        "32 requests, batches of 8: {n} writes"
    );
}

#[test]
fn a_batch_of_one_writes_each_request_alone() {
    for batch in [0, 1] {
        let n = writes_for(&format!("batch-{batch}"), batch, 32);
        assert!(
            n >= 32,
            "write_batch {batch}: 32 requests took only {n} writes"
        );
    }
}

/// A large response streams in as 64 KiB chunks, frame after frame. The
/// driver reads a connection between frames into a small buffer on the
/// stack (an idle connection holds no read buffer), but once a read fills
/// it, a body is streaming: the next reads go to the heap in large chunks,
/// also when one starts on a frame boundary, and stop where the frame they
/// cut can be completed in place.
#[test]
fn a_streaming_body_is_read_in_large_chunks() {
    const LEN: usize = 16 << 20;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (all, small) = rt.block_on(bounded(async move {
        let server = TestServer::start("big-reads", ServerConfig::default(), app()).await;
        let reads = Arc::new(Reads::default());
        let io = Counting {
            io: UnixStream::connect(&server.path).await.unwrap(),
            writes: Arc::default(),
            reads: reads.clone(),
        };
        let (c, conn) = uwire::net::client(io, Config::default());
        tokio::spawn(conn);
        let (status, body) = get(&c, &format!("/zeros/{LEN}")).await.unwrap();
        // Counted once the body is in: the control frames of the shutdown
        // that follows (GOAWAY) come in a small read of their own.
        let counted = (
            reads.all.load(Ordering::Relaxed),
            reads.small.load(Ordering::Relaxed),
        );
        assert_eq!((status, body.len()), (200, LEN));
        assert!(body.iter().all(|&b| b == 0));
        drop(c);
        server.shutdown().await.unwrap();
        counted
    }));
    let frames = LEN / (64 << 10);
    eprintln!("{LEN} bytes in {frames} DATA frames: {all} reads, {small} small");
    // Before: a small read at about every other frame boundary, 1.5 reads
    // per frame (387 for 256).
    assert!(
        small <= 2,
        "{small} of {all} reads were small ({frames} frames)"
    );
    assert!(all <= frames * 5 / 4, "{all} reads for {frames} frames");
}
