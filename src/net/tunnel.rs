//! A stream whose upgrade was accepted (PROTOCOL.md section 7.5), as a
//! byte stream: [`Tunnel`] implements tokio's `AsyncRead` and `AsyncWrite`
//! over the stream's two halves, so anything that speaks over a socket
//! (a WebSocket library, `tokio::io::copy_bidirectional`) speaks over it.
//!
//! Bytes go out as DATA under the stream's flow control (a write waits
//! once 128 KiB wait for credit); credit goes back as
//! bytes are read. `shutdown` ends our half (END_STREAM), and a read
//! returns 0 bytes once the peer ended its half: half-closes pass through.
//! Dropping a tunnel whose stream is still open in either direction resets
//! it with `CANCEL`. [`TunnelLimits`] bound how long a tunnel may sit idle
//! and how long it may live at all; past either, the stream is reset with
//! `TIMEOUT` and the pending read or write fails with `TimedOut`.

use std::future::Future as _;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use super::{Error, RecvStream, SendStream};
use crate::frame::{Reason, StreamId};

/// Default longest time a tunnel may carry no byte in either direction
/// before it is reset: 10 minutes (WebSocket clients and servers that
/// want longer idle periods send pings).
pub const DEFAULT_TUNNEL_IDLE_TIMEOUT: Duration = Duration::from_secs(600);
/// Default longest life of a tunnel, busy or not: 24 hours.
pub const DEFAULT_TUNNEL_MAX_DURATION: Duration = Duration::from_secs(24 * 3600);

/// How long a tunnel may live. `None` disables a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TunnelLimits {
    /// No byte either way for this long: reset with `TIMEOUT`. Default
    /// [`DEFAULT_TUNNEL_IDLE_TIMEOUT`].
    pub idle_timeout: Option<Duration>,
    /// The tunnel has been open this long: reset with `TIMEOUT`. Default
    /// [`DEFAULT_TUNNEL_MAX_DURATION`].
    pub max_duration: Option<Duration>,
}

impl Default for TunnelLimits {
    fn default() -> TunnelLimits {
        TunnelLimits {
            idle_timeout: Some(DEFAULT_TUNNEL_IDLE_TIMEOUT),
            max_duration: Some(DEFAULT_TUNNEL_MAX_DURATION),
        }
    }
}

impl TunnelLimits {
    /// No limit at all.
    pub fn unlimited() -> TunnelLimits {
        TunnelLimits {
            idle_timeout: None,
            max_duration: None,
        }
    }

    /// Checks the values: a limit, when set, must be above zero.
    pub fn validate(&self) -> Result<(), String> {
        if self.idle_timeout.is_some_and(|d| d.is_zero()) {
            return Err("tunnel idle timeout must be > 0 (or off)".into());
        }
        if self.max_duration.is_some_and(|d| d.is_zero()) {
            return Err("tunnel max duration must be > 0 (or off)".into());
        }
        Ok(())
    }
}

/// Enforces [`TunnelLimits`] for one tunnel. The timer is armed at the
/// first deadline and moved only when it fires early (activity since), so
/// busy tunnels cost no timer work per byte.
#[derive(Debug)]
pub(crate) struct LimitTimer {
    limits: TunnelLimits,
    started: Instant,
    last_activity: Instant,
    sleep: Option<Pin<Box<Sleep>>>,
    expired: bool,
}

impl LimitTimer {
    /// Must be called inside a tokio runtime when a limit is set (the timer
    /// binds to it; polling later works from any thread).
    pub(crate) fn new(limits: TunnelLimits) -> LimitTimer {
        let now = Instant::now();
        let mut t = LimitTimer {
            limits,
            started: now,
            last_activity: now,
            sleep: None,
            expired: false,
        };
        if let Some(d) = t.deadline() {
            t.sleep = Some(Box::pin(tokio::time::sleep_until(d)));
        }
        t
    }

    fn deadline(&self) -> Option<Instant> {
        let idle = self.limits.idle_timeout.map(|d| self.last_activity + d);
        let total = self.limits.max_duration.map(|d| self.started + d);
        match (idle, total) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Bytes moved: the idle clock restarts.
    pub(crate) fn activity(&mut self) {
        if self.limits.idle_timeout.is_some() {
            self.last_activity = Instant::now();
        }
    }

    /// Registers for the deadline; `true` once it has passed.
    pub(crate) fn poll_expired(&mut self, cx: &mut Context<'_>) -> bool {
        if self.expired {
            return true;
        }
        loop {
            let Some(sleep) = self.sleep.as_mut() else {
                return false;
            };
            if sleep.as_mut().poll(cx).is_pending() {
                return false;
            }
            let Some(d) = self.deadline() else {
                return false;
            };
            if Instant::now() >= d {
                self.expired = true;
                return true;
            }
            if let Some(sleep) = self.sleep.as_mut() {
                sleep.as_mut().reset(d);
            }
        }
    }
}

fn io_error(e: Error) -> io::Error {
    let kind = if e.is_reset() {
        io::ErrorKind::ConnectionReset
    } else if e.is_closed() {
        io::ErrorKind::ConnectionAborted
    } else {
        io::ErrorKind::Other
    };
    io::Error::new(kind, e)
}

fn timed_out() -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        "tunnel idle or lifetime limit reached",
    )
}

/// An accepted upgrade's stream as a byte stream (see the module docs).
#[derive(Debug)]
pub struct Tunnel {
    send: SendStream,
    recv: RecvStream,
    /// Part of the last chunk not yet read.
    leftover: Bytes,
    read_eof: bool,
    timer: LimitTimer,
    bytes_read: u64,
    bytes_written: u64,
}

impl Tunnel {
    /// Joins the two halves of one stream. Must be called inside a tokio
    /// runtime when `limits` sets a limit.
    pub fn new(send: SendStream, recv: RecvStream, limits: TunnelLimits) -> Tunnel {
        debug_assert_eq!(send.id(), recv.id());
        Tunnel {
            send,
            recv,
            leftover: Bytes::new(),
            read_eof: false,
            timer: LimitTimer::new(limits),
            bytes_read: 0,
            bytes_written: 0,
        }
    }

    /// The stream id.
    pub fn id(&self) -> StreamId {
        self.send.id()
    }

    /// Bytes read from the peer so far.
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read
    }

    /// Bytes written to the peer so far.
    pub fn bytes_written(&self) -> u64 {
        self.bytes_written
    }

    /// Whether the peer ended its half (a read returned 0 bytes).
    pub fn is_read_closed(&self) -> bool {
        self.read_eof
    }

    /// Whether a limit of [`TunnelLimits`] ended the tunnel.
    pub fn is_timed_out(&self) -> bool {
        self.timer.expired
    }

    /// Resets the stream with `reason` (both directions end at once).
    pub fn reset(mut self, reason: Reason) {
        self.read_eof = true;
        self.recv.reset_in_place(reason);
    }

    fn expire(&mut self) -> io::Error {
        if !self.read_eof || !self.send.is_finished() {
            self.read_eof = true;
            self.recv.reset_in_place(Reason::TIMEOUT);
        }
        timed_out()
    }
}

impl Drop for Tunnel {
    fn drop(&mut self) {
        // Half open in either direction: the peer would wait forever.
        if !self.read_eof || !self.send.is_finished() {
            self.recv.reset_in_place(Reason::CANCEL);
        }
    }
}

impl AsyncRead for Tunnel {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.timer.expired {
            return Poll::Ready(Err(timed_out()));
        }
        if this.leftover.is_empty() && !this.read_eof {
            match this.recv.poll_data(cx) {
                Poll::Ready(Some(Ok(chunk))) => {
                    this.bytes_read += chunk.len() as u64;
                    this.timer.activity();
                    this.leftover = chunk;
                }
                Poll::Ready(Some(Err(e))) => {
                    this.read_eof = true;
                    return Poll::Ready(Err(io_error(e)));
                }
                Poll::Ready(None) => this.read_eof = true,
                Poll::Pending => {
                    if this.timer.poll_expired(cx) {
                        return Poll::Ready(Err(this.expire()));
                    }
                    return Poll::Pending;
                }
            }
        }
        let n = this.leftover.len().min(buf.remaining());
        buf.put_slice(&this.leftover[..n]);
        this.leftover.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Tunnel {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.timer.expired {
            return Poll::Ready(Err(timed_out()));
        }
        match this.send.poll_send_slice(cx, data) {
            Poll::Ready(Ok(n)) => {
                this.bytes_written += n as u64;
                if n > 0 {
                    this.timer.activity();
                }
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(io_error(e))),
            Poll::Pending => {
                if this.timer.poll_expired(cx) {
                    return Poll::Ready(Err(this.expire()));
                }
                Poll::Pending
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Written bytes are queued on the connection, whose driver sends
        // them as credit allows: like a socket's send buffer, nothing to
        // flush here.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.send.finish_now().map_err(io_error))
    }
}
