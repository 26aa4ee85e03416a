//! Handlers whose work runs on a blocking thread (a WSGI app on a Python
//! thread, a synchronous library): they read the request body with
//! `std::io::Read` through a [`BlockingBody`] and stream their response
//! through a [`BodySender`]. Neither touches the async runtime's threads
//! while it waits, and both stop promptly when the peer goes away.
//!
//! ```
//! use std::io::Read;
//! use uwire::server::{handler_fn, Request, Response, ResponseBody};
//!
//! let upper = handler_fn(|req: Request| async move {
//!     let (_, _, body) = req.into_parts();
//!     let mut input = body.into_blocking();
//!     let (tx, body) = ResponseBody::channel(4);
//!     tokio::task::spawn_blocking(move || {
//!         let mut buf = [0u8; 8192];
//!         loop {
//!             match input.read(&mut buf) {
//!                 Ok(0) => break,
//!                 Ok(n) => {
//!                     let chunk = bytes::Bytes::copy_from_slice(&buf[..n].to_ascii_uppercase());
//!                     // Fails once nobody reads the response any more.
//!                     if tx.blocking_send(chunk).is_err() {
//!                         return;
//!                     }
//!                 }
//!                 Err(e) => return tx.blocking_abort(e),
//!             }
//!         }
//!     });
//!     Ok::<_, std::convert::Infallible>(Response::new(body))
//! });
//! # let _ = upper;
//! ```

use std::io::{self, BufRead, Read};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http_body::{Body as HttpBody, Frame};
use tokio::sync::mpsc;

use super::handler::{Body, BodyError, BoxError, ResponseBody};

/// A request body read from a blocking thread; see the module docs. Each
/// read waits (off the runtime) for the next chunk the protocol delivers,
/// returning its flow-control credit as it goes, exactly as
/// [`Body::data`] does.
#[derive(Debug)]
pub struct BlockingBody {
    body: Body,
    chunk: Bytes,
    runtime: tokio::runtime::Handle,
    failed: Option<io::ErrorKind>,
}

impl Body {
    /// This body for code on a blocking thread. Call it inside the runtime
    /// (in the handler's `call`), then move the result to the blocking
    /// thread; reading it on a runtime thread would block that thread.
    pub fn into_blocking(self) -> BlockingBody {
        BlockingBody {
            body: self,
            chunk: Bytes::new(),
            runtime: tokio::runtime::Handle::current(),
            failed: None,
        }
    }
}

impl BlockingBody {
    /// The next chunk as the protocol delivered it (`None` at the end).
    /// Blocks the calling thread; must not be called on a runtime thread.
    pub fn next_chunk(&mut self) -> Option<Result<Bytes, BodyError>> {
        if !self.chunk.is_empty() {
            return Some(Ok(std::mem::take(&mut self.chunk)));
        }
        let body = &mut self.body;
        self.runtime.block_on(body.data())
    }

    /// Bytes read so far.
    pub fn bytes_read(&self) -> u64 {
        self.body.bytes_read() - self.chunk.len() as u64
    }

    /// Refills the current chunk; false at the end of the body.
    fn fill(&mut self) -> io::Result<bool> {
        if let Some(kind) = self.failed {
            return Err(io::Error::new(kind, "request body failed earlier"));
        }
        while self.chunk.is_empty() {
            let body = &mut self.body;
            match self.runtime.block_on(body.data()) {
                None => return Ok(false),
                Some(Ok(c)) => self.chunk = c,
                Some(Err(e)) => {
                    let kind = match e {
                        BodyError::TooLarge { .. } => io::ErrorKind::InvalidData,
                        BodyError::Incomplete { .. } => io::ErrorKind::UnexpectedEof,
                        _ => io::ErrorKind::ConnectionAborted,
                    };
                    self.failed = Some(kind);
                    return Err(io::Error::new(kind, e));
                }
            }
        }
        Ok(true)
    }
}

impl Read for BlockingBody {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() || !self.fill()? {
            return Ok(0);
        }
        let n = buf.len().min(self.chunk.len());
        self.chunk.copy_to_slice(&mut buf[..n]);
        Ok(n)
    }
}

impl BufRead for BlockingBody {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.fill()?;
        Ok(&self.chunk)
    }

    fn consume(&mut self, amt: usize) {
        self.chunk.advance(amt.min(self.chunk.len()));
    }
}

/// Feeds a [`ResponseBody::channel`] from any thread. Dropping it ends the
/// body; [`abort`](BodySender::abort) fails it instead (the stream is reset
/// rather than ended cleanly).
#[derive(Debug)]
pub struct BodySender {
    tx: mpsc::Sender<Result<Bytes, BoxError>>,
}

/// The receiver went away: nobody reads the response any more (the peer
/// reset the stream, or the request deadline passed).
#[derive(Debug, thiserror::Error)]
#[error("the response is no longer read")]
pub struct ResponseClosed;

impl BodySender {
    /// Sends a chunk, waiting while the channel is full (backpressure).
    pub async fn send(&self, chunk: Bytes) -> Result<(), ResponseClosed> {
        self.tx.send(Ok(chunk)).await.map_err(|_| ResponseClosed)
    }

    /// Sends a chunk from a blocking thread, waiting while the channel is
    /// full. Must not be called on a runtime thread.
    pub fn blocking_send(&self, chunk: Bytes) -> Result<(), ResponseClosed> {
        self.tx.blocking_send(Ok(chunk)).map_err(|_| ResponseClosed)
    }

    /// Fails the body with `error` (from a blocking thread): the response is
    /// cut short instead of ending normally.
    pub fn blocking_abort(self, error: impl Into<BoxError>) {
        let _ = self.tx.blocking_send(Err(error.into()));
    }

    /// Fails the body with `error`.
    pub async fn abort(self, error: impl Into<BoxError>) {
        let _ = self.tx.send(Err(error.into())).await;
    }

    /// Whether the response is no longer read: a producer can stop early.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

impl ResponseBody {
    /// A body fed through a channel holding up to `capacity` chunks (at
    /// least 1), for a producer on another task or a blocking thread.
    pub fn channel(capacity: usize) -> (BodySender, ResponseBody) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (BodySender { tx }, ResponseBody::new(ChannelBody { rx }))
    }
}

/// The receiving side of [`ResponseBody::channel`].
struct ChannelBody {
    rx: mpsc::Receiver<Result<Bytes, BoxError>>,
}

impl HttpBody for ChannelBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.rx.poll_recv(cx).map(|o| o.map(|r| r.map(Frame::data)))
    }
}
