//! Upgrades in handlers (PROTOCOL.md section 7.5), in the manner of
//! hyper's `upgrade::on`: a handler takes [`Request::upgrade`](crate::server::Request::upgrade) (an
//! [`OnUpgrade`] future), returns a response accepting the offer (`101
//! Switching Protocols`, or a 2xx to an extended `CONNECT`), and the future
//! resolves to the [`Upgraded`] byte stream once that head has gone out.
//! Spawn the work on it: the handler must return its response first.
//!
//! ```no_run
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//! use uwire::server::{handler_fn, Request, Response, ResponseBody};
//! let echo = handler_fn(|mut req: Request| async move {
//!     let Some(on) = req.upgrade() else {
//!         return Ok::<_, std::convert::Infallible>(Response::new("upgrade to echo\n".into()));
//!     };
//!     tokio::spawn(async move {
//!         let Ok(mut io) = on.await else { return };
//!         let mut buf = [0u8; 4096];
//!         while let Ok(n @ 1..) = io.read(&mut buf).await {
//!             if io.write_all(&buf[..n]).await.is_err() { return; }
//!         }
//!         let _ = io.shutdown().await;
//!     });
//!     let mut resp = Response::new(ResponseBody::empty());
//!     *resp.status_mut() = http::StatusCode::SWITCHING_PROTOCOLS;
//!     resp.headers_mut().insert("upgrade", "echo".parse().unwrap());
//!     resp.headers_mut().insert("connection", "upgrade".parse().unwrap());
//!     Ok(resp)
//! });
//! # let _ = echo;
//! ```
//!
//! Over uwire/1 the stream becomes a [`Tunnel`]; over classic uwsgi (nginx
//! `uwsgi_pass`, which switches to tunnelling when it reads a `101` for a
//! request that carried `Upgrade`) the connection itself. Either way the
//! server's [`TunnelLimits`] bound idle time and
//! lifetime. [`websocket`](super::websocket) builds a WebSocket on top.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::oneshot;

use super::metrics::Metrics;
use crate::net::{LimitTimer, Socket, Tunnel, TunnelLimits};

/// Why an [`OnUpgrade`] did not yield a byte stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UpgradeError {
    /// The handler's response did not accept the offer (any status but
    /// `101`, or a 2xx to `CONNECT`), or the exchange ended before the
    /// accepting head could go out (the peer went away, the deadline
    /// passed).
    #[error("the upgrade was not accepted, or the exchange ended before it was")]
    NotAccepted,
}

/// Resolves to the [`Upgraded`] byte stream once the response accepting
/// the offer has gone out; see the [module docs](self).
#[derive(Debug)]
#[must_use = "an accepted upgrade is served only through this future"]
pub struct OnUpgrade {
    rx: oneshot::Receiver<Upgraded>,
}

impl Future for OnUpgrade {
    type Output = Result<Upgraded, UpgradeError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx)
            .poll(cx)
            .map(|r| r.map_err(|_| UpgradeError::NotAccepted))
    }
}

/// The runtime's end of an upgrade offer.
#[derive(Debug)]
pub(crate) struct Offer {
    tx: oneshot::Sender<Upgraded>,
    /// The request's method, which decides what accepts the offer.
    method: Bytes,
}

impl Offer {
    /// An offer made by a request with `method`, and the handler's future.
    pub(crate) fn new(method: Bytes) -> (Offer, OnUpgrade) {
        let (tx, rx) = oneshot::channel();
        (Offer { tx, method }, OnUpgrade { rx })
    }

    /// Whether a response with `status` accepts it.
    pub(crate) fn accepted_by(&self, status: u16) -> bool {
        crate::frame::accepts_upgrade(&self.method, status)
    }

    /// Whether the handler still holds the [`OnUpgrade`] (or a task it
    /// spawned does): an accepting response without it would open a tunnel
    /// nobody serves.
    pub(crate) fn is_taken(&self) -> bool {
        !self.tx.is_closed()
    }

    /// Hands the byte stream over.
    pub(crate) fn complete(self, up: Upgraded) {
        // A handler that dropped its future after all: the stream drops
        // (and resets) here.
        let _ = self.tx.send(up);
    }
}

/// The upgrade an HTTP/1.1 request head offers (RFC 9110 7.8): the
/// `Upgrade` field's value, when a `Connection` field lists `upgrade`.
/// This is how a classic uwsgi request (nginx passes both fields as
/// `HTTP_UPGRADE` and `HTTP_CONNECTION`) makes an offer.
pub(crate) fn http1_offer(headers: &crate::frame::HeaderBlock) -> Option<Bytes> {
    let listed = headers.get_all(b"connection").any(|v| {
        v.split(|b| *b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"upgrade"))
    });
    let value = headers.get(b"upgrade")?.trim_ascii();
    (listed && !value.is_empty()).then(|| Bytes::copy_from_slice(value))
}

enum Io {
    /// A uwire/1 stream.
    Tunnel(Tunnel),
    /// A classic uwsgi connection after its `101` head.
    Socket {
        sock: Socket,
        timer: LimitTimer,
        read: u64,
        written: u64,
    },
}

/// The byte stream of an accepted upgrade: `AsyncRead` + `AsyncWrite`.
/// `shutdown` ends our direction (END_STREAM over uwire/1, a socket
/// half-close over classic uwsgi); a read of 0 bytes means the peer ended
/// its own. Dropping it before both directions ended resets the stream
/// (`CANCEL`) or closes the connection. Past the server's tunnel idle or
/// lifetime limit, reads and writes fail with `TimedOut` and the stream is
/// reset (`TIMEOUT`).
pub struct Upgraded {
    io: Io,
    metrics: Option<Arc<Metrics>>,
}

impl std::fmt::Debug for Upgraded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.io {
            Io::Tunnel(_) => "uwire",
            Io::Socket { .. } => "uwsgi",
        };
        f.debug_struct("Upgraded").field("over", &kind).finish()
    }
}

impl Upgraded {
    pub(crate) fn tunnel(t: Tunnel, metrics: Option<Arc<Metrics>>) -> Upgraded {
        Upgraded::counted(Io::Tunnel(t), metrics)
    }

    /// Must be called inside a tokio runtime when `limits` sets a limit.
    pub(crate) fn socket(
        sock: Socket,
        limits: TunnelLimits,
        metrics: Option<Arc<Metrics>>,
    ) -> Upgraded {
        Upgraded::counted(
            Io::Socket {
                sock,
                timer: LimitTimer::new(limits),
                read: 0,
                written: 0,
            },
            metrics,
        )
    }

    fn counted(io: Io, metrics: Option<Arc<Metrics>>) -> Upgraded {
        if let Some(m) = &metrics {
            m.tunnel_opened();
        }
        Upgraded { io, metrics }
    }

    /// Bytes read from the peer so far.
    pub fn bytes_read(&self) -> u64 {
        match &self.io {
            Io::Tunnel(t) => t.bytes_read(),
            Io::Socket { read, .. } => *read,
        }
    }

    /// Bytes written to the peer so far.
    pub fn bytes_written(&self) -> u64 {
        match &self.io {
            Io::Tunnel(t) => t.bytes_written(),
            Io::Socket { written, .. } => *written,
        }
    }

    /// Whether the stream runs over a uwire/1 connection (else over a
    /// classic uwsgi one).
    pub fn is_uwire(&self) -> bool {
        matches!(self.io, Io::Tunnel(_))
    }
}

impl Drop for Upgraded {
    fn drop(&mut self) {
        if let Some(m) = &self.metrics {
            m.tunnel_closed();
        }
    }
}

fn timed_out() -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        "tunnel idle or lifetime limit reached",
    )
}

/// An expired classic uwsgi tunnel: the connection is cut (reset).
fn expire(sock: &Socket) -> io::Error {
    let _ = sock.set_abortive_close();
    timed_out()
}

impl AsyncRead for Upgraded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.io {
            Io::Tunnel(t) => Pin::new(t).poll_read(cx, buf),
            Io::Socket {
                sock, timer, read, ..
            } => {
                let before = buf.filled().len();
                match Pin::new(&mut *sock).poll_read(cx, buf) {
                    Poll::Ready(Ok(())) => {
                        let n = buf.filled().len() - before;
                        *read += n as u64;
                        if n > 0 {
                            timer.activity();
                        }
                        Poll::Ready(Ok(()))
                    }
                    Poll::Pending if timer.poll_expired(cx) => Poll::Ready(Err(expire(sock))),
                    other => other,
                }
            }
        }
    }
}

impl AsyncWrite for Upgraded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.io {
            Io::Tunnel(t) => Pin::new(t).poll_write(cx, data),
            Io::Socket {
                sock,
                timer,
                written,
                ..
            } => match Pin::new(&mut *sock).poll_write(cx, data) {
                Poll::Ready(Ok(n)) => {
                    *written += n as u64;
                    if n > 0 {
                        timer.activity();
                    }
                    Poll::Ready(Ok(n))
                }
                Poll::Pending if timer.poll_expired(cx) => Poll::Ready(Err(expire(sock))),
                other => other,
            },
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.io {
            Io::Tunnel(t) => Pin::new(t).poll_flush(cx),
            Io::Socket { sock, .. } => Pin::new(sock).poll_flush(cx),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.io {
            Io::Tunnel(t) => Pin::new(t).poll_shutdown(cx),
            Io::Socket { sock, .. } => Pin::new(sock).poll_shutdown(cx),
        }
    }
}
