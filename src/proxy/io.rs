//! The downstream connection's byte stream: [`Rewind`](crate::net::Rewind) (bytes read ahead
//! by the PROXY protocol reader go first), [`Stream`] (plain TCP or TLS),
//! and [`TimedIo`], which enforces the connection-level timeouts hyper does
//! not (or not the way a front needs):
//!
//! * **idle**: no request in flight and no byte of a new one for the
//!   first-byte timeout (a fresh connection: this runs before hyper's
//!   HTTP/1-vs-HTTP/2 detection, which reads through this type) or the
//!   keep-alive timeout (after a response) closes the connection quietly;
//! * **request head** (HTTP/1): once the first byte of a head has arrived,
//!   the whole head must arrive within the header-read timeout, else the
//!   client gets `408 Request Timeout` and the connection closes;
//! * **send**: a write that makes no progress for the send timeout (the
//!   client stopped reading) fails the connection.
//!
//! It also ends hyper's part of an idle HTTP/1 connection without closing
//! it: once the connection has been idle for the release delay, or when
//! the server drains, a read answers end-of-stream while the socket stays
//! open ([`ConnActivity::releases`] counts the releases). The connection
//! loop then takes the socket back from hyper, which frees hyper's read and
//! write buffers, and waits for the next request with no buffer at all
//! (see `conn`). Bytes read ahead while waiting go back in front of
//! the stream ([`TimedIo::set_prefix`]).
//!
//! Whether a request is in flight comes from [`ConnActivity`], which the
//! request handler updates through [`InFlight`] guards. For HTTP/1 the
//! bytes of each request head are kept (bounded) so the handler can check
//! framing fields hyper folds away before it sees them (see
//! [`ConnActivity::take_head`]).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use crate::net::Rewind;
use bytes::{Buf, Bytes};
use futures_util::task::AtomicWaker;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

/// The answer to a request head that did not arrive in time.
const RESPONSE_408: &[u8] = b"HTTP/1.1 408 Request Timeout\r\n\
content-type: text/plain; charset=utf-8\r\n\
content-length: 59\r\n\
connection: close\r\n\
\r\n\
408 Request Timeout\nthe request head did not arrive in time\n";

/// Most bytes one read takes while a connection waits with no buffer
/// (more stay in the socket for hyper's own reads).
const READ_AHEAD: usize = 4096;

/// Start of the HTTP/2 connection preface.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0";

/// A downstream connection: plain TCP or TLS over TCP.
pub(crate) enum Stream {
    Plain(Rewind<TcpStream>),
    Tls(Box<tokio_rustls::server::TlsStream<Rewind<TcpStream>>>),
}

macro_rules! delegate {
    ($self:ident, $s:ident => $e:expr) => {
        match $self.get_mut() {
            Stream::Plain($s) => {
                let $s = Pin::new($s);
                $e
            }
            Stream::Tls($s) => {
                let $s = Pin::new($s.as_mut());
                $e
            }
        }
    };
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        delegate!(self, s => s.poll_read(cx, buf))
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, s => s.poll_write(cx, buf))
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, s => s.poll_write_vectored(cx, bufs))
    }
    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => s.poll_flush(cx))
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => s.poll_shutdown(cx))
    }
}

/// What the request handler tells the connection's [`TimedIo`].
#[derive(Debug, Default)]
pub(crate) struct ConnActivity {
    in_flight: AtomicUsize,
    /// Bumped each time the last in-flight request finishes (the reader
    /// starts an idle phase when it sees it move).
    epoch: AtomicU64,
    /// When the last in-flight request finished: the idle phase's
    /// deadlines count from here.
    idle_since: Mutex<Option<Instant>>,
    /// The reader, woken when the server starts draining.
    reader: AtomicWaker,
    /// HTTP/1: the bytes read while no request was in flight (the next
    /// request head, bounded).
    head: Mutex<Vec<u8>>,
    /// The server drains: an idle connection ends at its next read, and
    /// responses say `Connection: close`.
    draining: AtomicBool,
    /// How many times a read answered end-of-stream to release hyper's
    /// state, not because the connection ended.
    releases: AtomicU64,
    /// Where the connection goes once hyper has written a `101` that
    /// accepts an upgrade: to the tunnel task (see [`ConnActivity::expect_upgrade`]).
    upgrade: Mutex<Option<tokio::sync::oneshot::Sender<TimedIo<Stream>>>>,
}

impl ConnActivity {
    /// Marks a request in flight until the guard drops. Called when the
    /// service is called (not later, in its future): the reader reads the
    /// head, and then, with the request in flight, keeps a check-back
    /// timer instead of being woken when it ends (see [`InFlight`]'s
    /// drop). A request that started and ended between two reads that
    /// both saw the connection idle would leave the timer at the earlier
    /// phase's deadline (a later release or close, never none).
    pub(crate) fn start(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(self.clone())
    }

    /// The raw bytes the current request head arrived in (HTTP/1, possibly
    /// followed by body bytes); empty when unknown. Clears them.
    pub(crate) fn take_head(&self) -> Vec<u8> {
        std::mem::take(&mut *self.head.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Starts draining (see [`ConnActivity::is_draining`]) and wakes the
    /// connection's reader, so that an idle connection ends now.
    pub(crate) fn drain(&self) {
        self.draining.store(true, Ordering::Release);
        self.reader.wake();
    }

    /// Whether the server drains: no new request should start on this
    /// connection.
    pub(crate) fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// How many times the connection released hyper's state while idle: an
    /// end-of-stream hyper saw was a release (the socket still open and
    /// idle) when this count moved meanwhile.
    pub(crate) fn releases(&self) -> u64 {
        self.releases.load(Ordering::Acquire)
    }

    /// The request being answered offers an upgrade that the app accepted:
    /// once hyper has written the `101`, the connection (with any bytes
    /// hyper read past the head) goes to the returned receiver.
    pub(crate) fn expect_upgrade(&self) -> tokio::sync::oneshot::Receiver<TimedIo<Stream>> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        *self.upgrade.lock().unwrap_or_else(|e| e.into_inner()) = Some(tx);
        rx
    }

    /// The waiting tunnel of [`ConnActivity::expect_upgrade`], if any.
    pub(crate) fn take_upgrade(&self) -> Option<tokio::sync::oneshot::Sender<TimedIo<Stream>>> {
        self.upgrade
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }
}

/// A request in flight on its connection (see [`ConnActivity::start`]).
#[derive(Debug)]
pub(crate) struct InFlight(Arc<ConnActivity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            // The reader is not woken to arm the idle deadline: it keeps a
            // check-back timer while requests are in flight (see
            // `TimedIo::poll_read`). A wake-up here would poll the
            // connection once more per request for nothing: HTTP/1 has its
            // read of the connection parked by then (hyper's end-of-stream
            // watch while the request runs), and would only park it again.
            *self.0.idle_since.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
            self.0.epoch.fetch_add(1, Ordering::AcqRel);
            if self.0.is_draining() {
                // The connection ends now (`poll_read`), not at the check-back.
                self.0.reader.wake();
            }
        }
    }
}

/// The timeouts [`TimedIo`] enforces.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IoTimeouts {
    pub(crate) first_byte: Duration,
    pub(crate) header: Duration,
    pub(crate) keepalive: Duration,
    pub(crate) send: Duration,
    /// Bound of the kept head bytes.
    pub(crate) max_head: usize,
    /// HTTP/1: how long a connection stays idle before hyper's state is
    /// released (`None`: never).
    pub(crate) release: Option<Duration>,
}

impl IoTimeouts {
    /// How long an idle phase lasts at most before its first deadline (a
    /// release, or the keep-alive close).
    fn check_back(&self) -> Duration {
        self.release
            .map_or(self.keepalive, |r| r.min(self.keepalive))
    }
}

/// A tokio [`Sleep`] that is not polled again by the task it already
/// wakes. The reader polls its timer on every read that finds no bytes,
/// twice per request (in flight, then idle), and a poll takes the timer
/// wheel's waker slot each time; while the deadline stands and the same
/// task polls, a look at whether it fired says the same.
struct ReadTimer {
    sleep: Pin<Box<Sleep>>,
    /// The waker of the last poll that found the timer pending, until the
    /// deadline moves.
    armed_for: Option<Waker>,
}

impl ReadTimer {
    fn new(at: Instant) -> ReadTimer {
        ReadTimer {
            sleep: Box::pin(tokio::time::sleep_until(at)),
            armed_for: None,
        }
    }

    fn deadline(&self) -> Instant {
        self.sleep.deadline()
    }

    fn is_elapsed(&self) -> bool {
        self.sleep.is_elapsed()
    }

    fn reset(&mut self, at: Instant) {
        self.sleep.as_mut().reset(at);
        self.armed_for = None;
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let armed = self
            .armed_for
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()));
        if armed && !self.sleep.is_elapsed() {
            return Poll::Pending;
        }
        // A poll made with the task's budget spent answers `Pending`
        // without taking the waker slot: only one made with budget left
        // counts as arming the timer.
        let registers = tokio::task::coop::has_budget_remaining();
        let p = self.sleep.as_mut().poll(cx);
        match p {
            Poll::Pending if registers && !armed => self.armed_for = Some(cx.waker().clone()),
            Poll::Pending => {}
            Poll::Ready(()) => self.armed_for = None,
        }
        p
    }
}

/// Enforces the connection timeouts (see the module docs).
pub(crate) struct TimedIo<T> {
    inner: T,
    /// Bytes read ahead (while waiting with no buffer), read before `inner`.
    prefix: Bytes,
    act: Arc<ConnActivity>,
    t: IoTimeouts,
    /// Known HTTP/2 (ALPN or the preface), known HTTP/1, or not yet known.
    h2: Option<bool>,
    sniffed: usize,
    epoch: u64,
    /// How far ahead the check-back timer is set while requests are in
    /// flight: the check-back delay at first, doubled each time it fires
    /// before they end (up to the keep-alive timeout), so a long response
    /// (a stream of events) wakes the reader a few times, not every
    /// check-back; back to the delay when the connection idles.
    busy_wait: Duration,
    /// The read timer fires no later than a check-back set now would
    /// (`now + busy_wait`): set from an earlier time with the current
    /// `busy_wait` or less. The busy path then leaves it alone without
    /// reading the clock.
    busy_armed: bool,
    /// When this idle phase's deadlines count from.
    phase_start: Instant,
    /// A byte of the next request head has arrived in this idle phase.
    head_started: bool,
    /// The kept head bytes reach the end of the head (or the bound).
    head_complete: bool,
    read_deadline: Option<Instant>,
    /// When this idle phase releases hyper's state (HTTP/1).
    release_deadline: Option<Instant>,
    read_timer: ReadTimer,
    write_deadline: Option<Instant>,
    write_timer: Pin<Box<Sleep>>,
}

impl<T> std::fmt::Debug for TimedIo<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TimedIo")
            .field("h2", &self.h2)
            .field("prefix", &self.prefix.len())
            .finish_non_exhaustive()
    }
}

impl<T> TimedIo<T> {
    pub(crate) fn new(inner: T, act: Arc<ConnActivity>, t: IoTimeouts, h2: Option<bool>) -> Self {
        let now = Instant::now();
        TimedIo {
            inner,
            prefix: Bytes::new(),
            act,
            t,
            h2,
            sniffed: 0,
            epoch: 0,
            busy_wait: t.check_back(),
            busy_armed: false,
            phase_start: now,
            head_started: false,
            head_complete: false,
            read_deadline: None,
            release_deadline: None,
            read_timer: ReadTimer::new(now),
            write_deadline: None,
            write_timer: Box::pin(tokio::time::sleep_until(now)),
        }
    }

    /// Puts `bytes` back in front of the stream: the next reads return
    /// them first (they were seen by this type already).
    pub(crate) fn set_prefix(&mut self, bytes: Bytes) {
        debug_assert!(self.prefix.is_empty());
        self.prefix = bytes;
    }

    /// Known HTTP/2 (ALPN or the preface), known HTTP/1, or not yet known.
    pub(crate) fn is_h2(&self) -> Option<bool> {
        self.h2
    }

    /// What the request handler tells this connection.
    pub(crate) fn activity(&self) -> &Arc<ConnActivity> {
        &self.act
    }

    /// Between requests: no byte of a new head has come, and no write waits
    /// for the client. While a write waits, the end of the last response
    /// may still sit in hyper's buffer, and ending hyper's part (a release,
    /// the drain) would drop it.
    fn between_requests(&self) -> bool {
        !self.head_started && self.write_deadline.is_none()
    }

    fn note_bytes(&mut self, bytes: &[u8], idle: bool) {
        if self.h2.is_none() {
            // The preface decides; HTTP/1 can never start with it.
            let want = &H2_PREFACE[self.sniffed..];
            let n = want.len().min(bytes.len());
            if bytes[..n] != want[..n] {
                self.h2 = Some(false);
            } else {
                self.sniffed += n;
                if self.sniffed == H2_PREFACE.len() {
                    self.h2 = Some(true);
                    // HTTP/2: an idle connection is one without streams;
                    // frames (PING, SETTINGS) do not make it busy.
                    self.read_deadline = Some(Instant::now() + self.t.keepalive);
                }
            }
        }
        if self.h2 == Some(true) || !idle {
            return;
        }
        if !self.head_started {
            self.head_started = true;
            // The head timeout starts with its first byte; a head that
            // arrives whole in this read needs none (hyper dispatches it
            // now), which spares a clock read per request.
            if !self.keep_head(bytes) {
                self.read_deadline = Some(Instant::now() + self.t.header);
            }
            return;
        }
        if !self.head_complete {
            self.keep_head(bytes);
        }
    }

    /// Keeps `bytes` of the request head for the framing checks (up to
    /// its end, within the bound). Whether the head's end was found.
    fn keep_head(&mut self, bytes: &[u8]) -> bool {
        let mut head = self.act.head.lock().unwrap_or_else(|e| e.into_inner());
        let mut bytes = bytes;
        if head.is_empty() {
            // The head kept starts with the request line: empty lines
            // before it are skipped, and their line feeds do not count as
            // its end.
            bytes = super::conformance::skip_empty_lines(bytes);
            if bytes.is_empty() {
                return false;
            }
        }
        let room = self.t.max_head.saturating_sub(head.len());
        let bytes = &bytes[..bytes.len().min(room)];
        // Keep nothing past the end of the head: the body bytes read with
        // it (up to a whole read buffer of a POST) are not needed.
        let end = head_end(&head[head.len().saturating_sub(2)..], bytes);
        head.extend_from_slice(&bytes[..end.unwrap_or(bytes.len())]);
        if end.is_some() || head.len() >= self.t.max_head {
            self.head_complete = true;
        }
        end.is_some()
    }
}

/// Where in `bytes` the blank line that ends a head ends (the index just
/// past its last line feed), if it is there; `before` holds the bytes that
/// came just before `bytes` (the end of the head so far, two are enough).
/// A blank line is `\n\n` or `\n\r\n` (which `\r\n\r\n` contains).
fn head_end(before: &[u8], bytes: &[u8]) -> Option<usize> {
    // A request read whole ends with its blank line: no scan for that one.
    // (Should an earlier blank line be in it too, keeping the rest does no
    // harm: the framing check stops at the first.)
    if bytes.ends_with(b"\n\r\n") || bytes.ends_with(b"\n\n") {
        return Some(bytes.len());
    }
    let at = |i: usize, back: usize| match i.checked_sub(back) {
        Some(j) => bytes.get(j).copied(),
        None => before.len().checked_sub(back - i).map(|j| before[j]),
    };
    memchr::memchr_iter(b'\n', bytes)
        .find(|&i| match at(i, 1) {
            Some(b'\n') => true,
            Some(b'\r') => at(i, 2) == Some(b'\n'),
            _ => false,
        })
        .map(|i| i + 1)
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncRead for TimedIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.prefix.is_empty() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix[..n]);
            if n == this.prefix.len() {
                // Drop the allocation with the last byte, not later.
                this.prefix = Bytes::new();
            } else {
                this.prefix.advance(n);
            }
            return Poll::Ready(Ok(()));
        }
        let idle = this.act.in_flight.load(Ordering::Acquire) == 0;
        if idle {
            let epoch = this.act.epoch.load(Ordering::Acquire);
            if epoch != this.epoch {
                this.epoch = epoch;
                let check_back = this.t.check_back();
                if this.busy_wait != check_back {
                    // Shorter again: a timer set with the longer wait may
                    // fire too late for it.
                    this.busy_wait = check_back;
                    this.busy_armed = false;
                }
                this.head_started = false;
                this.head_complete = false;
                this.read_deadline = None;
            }
            if this.read_deadline.is_none() {
                let wait = if epoch == 0 && this.h2 != Some(true) {
                    this.t.first_byte
                } else {
                    this.t.keepalive
                };
                // From when the last request finished: the reader may see
                // the idle phase only at its check-back.
                let since = *this
                    .act
                    .idle_since
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                let now = since.filter(|_| epoch != 0).unwrap_or_else(Instant::now);
                this.phase_start = now;
                this.read_deadline = Some(now + wait);
                // Released once per idle phase, and only between requests.
                this.release_deadline = this.t.release.filter(|r| *r < wait).map(|r| now + r);
            }
            if this.h2 != Some(true) && this.between_requests() && this.act.is_draining() {
                // Draining: no new request starts here.
                return Poll::Ready(Ok(()));
            }
        }
        // While a request is in flight no read deadline applies here: its
        // body has its own timeout.
        this.act.reader.register(cx.waker());
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let filled = buf.filled().len();
                if filled > before {
                    this.note_bytes(&buf.filled()[before..filled], idle);
                }
                return Poll::Ready(Ok(()));
            }
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => {}
        }
        let Some(close_at) = this.read_deadline.filter(|_| idle) else {
            // Requests in flight: no deadline applies, but a timer stays
            // armed so that the reader looks again no later than an idle
            // phase starting now would end (or release), since the last
            // request to finish does not wake it. Under load the timer set
            // earlier already fires before that: it is left alone, and only
            // re-armed when it fires (or would fire too late).
            let fired = this.read_timer.is_elapsed();
            if fired {
                this.busy_wait = (this.busy_wait * 2).min(this.t.keepalive);
            }
            if fired || !this.busy_armed {
                let limit = Instant::now() + this.busy_wait;
                if fired || this.read_timer.deadline() > limit {
                    this.read_timer.reset(limit);
                }
                this.busy_armed = true;
            }
            // Fired before any request finished: looked at again on its
            // next poll, which this wake-up makes.
            if this.read_timer.poll(cx).is_ready() {
                cx.waker().wake_by_ref();
            }
            return Poll::Pending;
        };
        // The release applies to a known HTTP/1 connection between requests.
        let release_at = this
            .release_deadline
            .filter(|_| this.h2 == Some(false) && this.between_requests());
        let deadline = release_at.map_or(close_at, |r| r.min(close_at));
        if this.read_timer.deadline() != deadline {
            this.read_timer.reset(deadline);
        }
        // An idle phase's first deadline is at most a check-back from its
        // start (`check_back`): the busy path that follows (the request
        // this phase's bytes start) then needs no timer of its own.
        this.busy_armed = deadline <= this.phase_start + this.busy_wait;
        if this.read_timer.poll(cx).is_pending() {
            return Poll::Pending;
        }
        if release_at.is_some_and(|r| r < close_at) {
            // The socket stays open: end-of-stream for hyper only.
            this.release_deadline = None;
            this.act.releases.fetch_add(1, Ordering::AcqRel);
            return Poll::Ready(Ok(()));
        }
        if this.head_started && this.h2 == Some(false) {
            // Best effort: the 408 is tiny and the socket buffer empty.
            let _ = Pin::new(&mut this.inner).poll_write(cx, RESPONSE_408);
            let _ = Pin::new(&mut this.inner).poll_flush(cx);
            tracing::debug!("request head timeout: 408");
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "request head not received in time",
            )));
        }
        // Idle too long: end of stream, a quiet close.
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> TimedIo<T> {
    /// Waits for the next bytes holding no buffer meanwhile: they are read
    /// into the stack, under this type's timeouts, and appended to the
    /// prefix. `Ready(Ok(false))` at end of stream (or a timeout's quiet
    /// close, or the drain).
    pub(crate) fn poll_read_ahead(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        let kept = std::mem::take(&mut self.prefix);
        let mut stack = [std::mem::MaybeUninit::<u8>::uninit(); READ_AHEAD];
        let mut buf = ReadBuf::uninit(&mut stack);
        let polled = Pin::new(&mut *self).poll_read(cx, &mut buf);
        let got = buf.filled();
        self.prefix = match (&polled, got.is_empty(), kept.is_empty()) {
            (Poll::Ready(Ok(())), false, true) => Bytes::copy_from_slice(got),
            (Poll::Ready(Ok(())), false, false) => [&kept[..], got].concat().into(),
            _ => kept,
        };
        polled.map_ok(|()| !got.is_empty())
    }

    /// Whether bytes read ahead wait in front of the stream.
    pub(crate) fn has_prefix(&self) -> bool {
        !self.prefix.is_empty()
    }
}

impl<T: AsyncWrite + Unpin> TimedIo<T> {
    fn on_write<R>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<R>>,
    ) -> Poll<io::Result<R>> {
        match polled {
            Poll::Ready(r) => {
                if self.write_deadline.take().is_some() {
                    // A stalled write moved on: poll again, so that a read
                    // that put off the release or the drain for it (see
                    // `between_requests`) looks again.
                    cx.waker().wake_by_ref();
                }
                Poll::Ready(r)
            }
            Poll::Pending => {
                let deadline = *self
                    .write_deadline
                    .get_or_insert_with(|| Instant::now() + self.t.send);
                if self.write_timer.deadline() != deadline {
                    self.write_timer.as_mut().reset(deadline);
                }
                match self.write_timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "client did not accept response bytes in time",
                    ))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncWrite for TimedIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.on_write(cx, polled)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.on_write(cx, polled)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_flush(cx);
        this.on_write(cx, polled)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.on_write(cx, polled)
    }
}

#[cfg(test)]
mod tests {
    use super::{head_end, ReadTimer};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::{Context, Wake, Waker};
    use std::time::Duration;
    use tokio::time::Instant;

    /// A waker that counts its wake-ups.
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[tokio::test]
    async fn a_read_timer_wakes_the_task_that_polled_it_last() {
        let (a, b) = (
            Arc::new(Count(AtomicUsize::new(0))),
            Arc::new(Count(AtomicUsize::new(0))),
        );
        let (wa, wb) = (Waker::from(a.clone()), Waker::from(b.clone()));
        let (mut ca, mut cb) = (Context::from_waker(&wa), Context::from_waker(&wb));
        let soon = || Instant::now() + Duration::from_millis(30);
        let mut t = ReadTimer::new(soon());
        assert!(t.poll(&mut ca).is_pending());
        assert!(t.poll(&mut ca).is_pending());
        // Another task polls it: that one is woken, not the first.
        assert!(t.poll(&mut cb).is_pending());
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert_eq!(b.0.load(Ordering::SeqCst), 1);
        assert_eq!(a.0.load(Ordering::SeqCst), 0);
        assert!(t.poll(&mut cb).is_ready());
        assert!(t.poll(&mut cb).is_ready());
        // Moved: armed again by the next poll.
        t.reset(soon());
        assert!(t.poll(&mut ca).is_pending());
        assert!(t.poll(&mut ca).is_pending());
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert_eq!(a.0.load(Ordering::SeqCst), 1);
        assert!(t.poll(&mut ca).is_ready());
        // Moved while armed, before it fired.
        t.reset(soon() + Duration::from_secs(60));
        assert!(t.poll(&mut ca).is_pending());
        t.reset(soon());
        assert!(t.poll(&mut ca).is_pending());
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert_eq!(a.0.load(Ordering::SeqCst), 2);
        assert!(t.poll(&mut ca).is_ready());
    }

    /// `head_end` on `bytes` with nothing before them.
    fn end(bytes: &[u8]) -> Option<usize> {
        head_end(b"", bytes)
    }

    #[test]
    fn head_end_finds_every_blank_line_form() {
        assert_eq!(end(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"), Some(27));
        assert_eq!(end(b"GET / HTTP/1.1\nHost: a\n\n"), Some(24));
        assert_eq!(end(b"Host: a\n\r\n"), Some(10));
        assert_eq!(end(b"\r\n\r\nbody"), Some(4));
        assert_eq!(end(b"GET / HTTP/1.1\r\nHost: a\r\n"), None);
        assert_eq!(end(b"Host: a\r\n\r"), None);
        assert_eq!(end(b"\n\r"), None);
        assert_eq!(end(b""), None);
        // The blank line at the very end, or before other bytes.
        assert_eq!(end(b"\n\r\n"), Some(3));
        assert_eq!(end(b"\n\n"), Some(2));
        assert_eq!(end(b"\r\n"), None);
        assert_eq!(end(b"GET / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n"), Some(18));
        // A POST read with its body: the head ends before the body.
        let post = b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\n0123456789";
        assert_eq!(end(post), Some(post.len() - 10));
    }

    #[test]
    fn head_end_sees_blank_lines_split_across_reads() {
        // Every split of a head (with a body after it) finds the same end.
        for head in [
            &b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"[..],
            b"GET / HTTP/1.1\nHost: a\n\n",
            b"GET / HTTP/1.1\nHost: a\n\r\n",
        ] {
            let all = [head, b"0123456789"].concat();
            for cut in 1..all.len() {
                let (a, b) = all.split_at(cut);
                let found = end(a)
                    .or_else(|| head_end(&a[a.len().saturating_sub(2)..], b).map(|e| cut + e));
                assert_eq!(found, Some(head.len()), "cut at {cut} of {all:?}");
            }
        }
    }
}
