//! The connection driver: a future that owns the socket, moves bytes
//! between it and the sans-IO engine, and hands the engine's events to the
//! stream slots (see `shared`).
//!
//! One `poll` reads and writes as far as the socket allows, so two peers
//! that are both writing can never deadlock on full socket buffers. It
//! takes frames from the engine only while little waits to be written
//! (`STAGE_LIMIT`), so a peer that stops reading gets no further
//! flow-control credit and makes nothing here grow: what it can still make
//! the engine queue (PING answers, RESET replies) is capped by the engine's
//! abuse budgets. Bytes waiting with none leaving for `write_timeout` end
//! the connection.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Sleep;

use super::error::Error;
use super::shared::{now, End, Inner, Shared};
use super::wqueue::{WriteQueue, MAX_SLICES};
use crate::codec::Codec;
use crate::conn::Role;
use crate::frame::{preface, Frame, Reason};

/// Frames are taken from the engine only while fewer than this many bytes
/// wait to be written. What the engine has not handed out has not happened
/// yet: a WINDOW_UPDATE still in the engine has given the peer no credit
/// (PROTOCOL.md 8.3).
const STAGE_LIMIT: usize = 256 * 1024;
/// The most write buffer a connection keeps once everything is written.
/// Body payloads are queued, not copied (see `wqueue`), so the buffer
/// holds frame headers and small frames: a busy connection reuses it, and
/// one left idle after a burst of large heads gives the rest back.
const IDLE_WRITE_BUFFER: usize = 16 * 1024;
/// Rounds of read/write/engine work per `poll` before yielding to other
/// tasks.
const POLL_BUDGET: usize = 32;
/// A read with no partial frame buffered (on the stack, see
/// `poll_read_some`).
const READ_CHUNK: usize = 8 * 1024;
/// Room made for a read that continues a partial frame.
const BIG_READ: usize = 64 * 1024;
/// DATA payloads shorter than this, cut from a buffer made for large reads,
/// are copied out of it (see `State::decode`).
const SMALL_DATA: usize = 4 * 1024;
/// A DATA payload cut from a buffer made for large reads, and not awaited
/// by a parked reader, is copied out of it when the buffer is more than
/// this many times its size (see `State::decode`).
const PINNED_RATIO: usize = 8;
/// The buffer a read of a streaming body lands in (see
/// `poll_read_some`): with the default 64 KiB frames, a read of up to
/// 128 KiB and room behind it for the rest of a frame it cuts.
const STREAM_BUFFER: usize = 192 * 1024;
/// How long a closing connection keeps reading (and discarding) after its
/// last write, waiting for the peer to close first. Closing a socket with
/// unread input makes the kernel reset it, and a reset can destroy what
/// the peer has not read yet: the last responses and the GOAWAY that tells
/// it which of its new streams to retry (nginx's "lingering close").
const LINGER_TIMEOUT: Duration = Duration::from_secs(2);

pub(crate) struct Driver<T> {
    io: T,
    shared: Arc<Shared>,
    st: State,
}

/// Everything the driver keeps besides the socket and the shared state.
struct State {
    codec: Codec,
    rbuf: BytesMut,
    /// A read that started on a frame boundary brought at least
    /// [`READ_CHUNK`] bytes: a body is streaming in, so the next read goes
    /// straight to the heap in large chunks even when it starts on a frame
    /// boundary.
    streaming: bool,
    /// The capacity `rbuf` was made with for large reads (a cut frame's
    /// rest, a streaming body); 0 for a small buffer. A DATA payload cut
    /// from a large buffer may get its own allocation (`State::decode`),
    /// so that a peer cannot make each byte of unread body it is allowed
    /// keep a whole large buffer alive.
    large: usize,
    /// Room kept free behind a streaming read for the rest of the frame it
    /// may cut: the largest frame the codec accepts (at most half of
    /// [`STREAM_BUFFER`]).
    headroom: usize,
    wbuf: WriteQueue,
    /// Our preface is out (a server sends it only once the client's is in).
    greeted: bool,
    read_open: bool,
    /// Every handle is gone: GOAWAY sent, finishing what is in flight.
    orphaned: bool,
    write_timeout: Option<Duration>,
    /// Armed while bytes wait to be written and none leave.
    stall: Option<Pin<Box<Sleep>>>,
    /// The engine's next deadline.
    timer: Option<(tokio::time::Instant, Pin<Box<Sleep>>)>,
    /// A transport failure (kept whole for the connection's result).
    failure: Option<std::io::Error>,
    /// Lingering close: everything is said and the write side shut; input
    /// is read and dropped until the peer closes or this fires.
    linger: Option<Pin<Box<Sleep>>>,
    done: bool,
    /// Set while waiting for the end of the scheduler's turn before
    /// writing (`Config::write_batch`): tokio's `yield_now`, which wakes
    /// the task once every task ready now has run.
    turn_end: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
}

impl<T> Driver<T> {
    pub(crate) fn new(
        io: T,
        shared: Arc<Shared>,
        role: Role,
        config: &crate::conn::Config,
    ) -> Self {
        let mut wbuf = WriteQueue::new();
        // The client speaks first. A server answers only once the client's
        // preface is in: to a peer that turns out not to speak uwire it
        // sends nothing at all (section 3.1).
        let greeted = role == Role::Client;
        if greeted {
            wbuf.extend_from_slice(&preface::PREFACE);
        }
        Driver {
            io,
            shared,
            st: State {
                codec: Codec::new(config.limits),
                rbuf: BytesMut::new(),
                streaming: false,
                large: 0,
                headroom: (config.limits.max_frame_size as usize + crate::frame::HEADER_LEN)
                    .min(STREAM_BUFFER / 2),
                wbuf,
                greeted,
                read_open: true,
                orphaned: false,
                write_timeout: config.write_timeout,
                stall: None,
                timer: None,
                failure: None,
                linger: None,
                done: false,
                turn_end: None,
            },
        }
    }
}

impl State {
    /// Engine work: events to slots, frames to the write buffer. Returns
    /// true once the connection is over.
    fn step_engine(&mut self, shared: &Arc<Shared>, g: &mut Inner) -> bool {
        g.dispatch_events(shared);
        if !self.orphaned && shared.orphaned() {
            // Every handle is gone: finish what is in flight, then close.
            self.orphaned = true;
            g.accepting = false;
            g.engine
                .go_away(Reason::NO_ERROR, bytes::Bytes::new(), now());
            g.dispatch_events(shared);
        }
        // Greet once the peer's preface is in, or when the engine has
        // something to say regardless (GOAWAY(VERSION_MISMATCH) for a
        // preface of another major version, section 3.4).
        if !self.greeted
            && (self.codec.preface_received()
                || (g.engine.is_closed() && g.engine.has_pending_transmit()))
        {
            self.greeted = true;
            self.wbuf.push_front(Bytes::from_static(&preface::PREFACE));
        }
        if self.greeted {
            while self.wbuf.len() < STAGE_LIMIT {
                let Some(frame) = g.engine.poll_transmit() else {
                    break;
                };
                if let Err(e) = self.wbuf.push_frame(&frame) {
                    // Engine-produced frames are always encodable.
                    tracing::error!(error = %e, "dropping a frame the engine produced but the codec cannot encode");
                }
            }
        }
        g.wake_senders();
        if !self.read_open && !g.engine.is_closed() && self.wbuf.is_empty() {
            // The peer is gone and we have nothing left to say.
            g.engine.handle_eof();
            g.dispatch_events(shared);
        }
        g.engine.is_closed() && self.wbuf.is_empty() && !g.engine.has_pending_transmit()
    }

    /// Decodes every complete frame in `rbuf` into the engine.
    fn decode(&mut self, g: &mut Inner) {
        // Every frame of one read arrived at the same moment: one clock
        // read for all of them, taken at the first.
        let mut arrived = None;
        loop {
            match self.codec.decode_frame(&mut self.rbuf) {
                Ok(Some(mut frame)) => {
                    if self.large > 0 {
                        if let Frame::Data(d) = &mut frame {
                            // Cut from a large buffer, a payload keeps all
                            // of it alive until it is read: 48 times its
                            // size for 4 KiB in a streaming buffer, and a
                            // peer may leave one on every stream. So one
                            // under 4 KiB always gets its own allocation,
                            // and so does one the buffer is more than
                            // PINNED_RATIO times the size of, unless a
                            // reader is parked on its stream: that one is
                            // taken at once (a body streaming to a reader
                            // that keeps up is not copied).
                            let unawaited = SMALL_DATA.max(self.large.div_ceil(PINNED_RATIO));
                            let len = d.payload().len();
                            // The stream is looked up only where its
                            // reader decides.
                            let awaited = (SMALL_DATA..unawaited).contains(&len)
                                && g.slots
                                    .get(&d.stream_id())
                                    .is_some_and(|s| s.recv_waker.is_some());
                            d.detach_small(if awaited { SMALL_DATA } else { unawaited });
                        }
                    }
                    if let Err(e) = g
                        .engine
                        .handle_frame(frame, *arrived.get_or_insert_with(now))
                    {
                        tracing::debug!(error = %e, "closing the connection: peer broke the protocol");
                        self.read_open = false;
                        return;
                    }
                }
                Ok(None) => return,
                Err(e) => {
                    tracing::debug!(error = %e, "closing the connection: undecodable frame");
                    g.engine.handle_decode_error(&e);
                    self.read_open = false;
                    return;
                }
            }
        }
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> Driver<T> {
    fn fail_io(&mut self, e: std::io::Error) {
        use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset};
        // A peer that closed its socket while we still had something to say
        // (a pool dropping an idle connection, a probe) surfaces here as a
        // failed write or a reset read: it left, nothing failed.
        let peer_left = matches!(e.kind(), BrokenPipe | ConnectionReset | ConnectionAborted);
        let mut g = self.shared.lock();
        g.engine.handle_eof();
        g.dispatch_events(&self.shared);
        if !peer_left {
            g.end = Some(End::Io(e.kind(), e.to_string()));
        }
        drop(g);
        if !peer_left && self.st.failure.is_none() {
            self.st.failure = Some(e);
        }
    }

    /// Ends the connection: tells every handle, returns the result.
    fn finish(&mut self, cx: &mut Context<'_>) -> Result<(), Error> {
        self.st.done = true;
        let _ = Pin::new(&mut self.io).poll_shutdown(cx);
        let mut g = self.shared.lock();
        g.dispatch_events(&self.shared);
        g.finish(End::Closed);
        let end = g.end.clone();
        drop(g);
        self.shared.closed.store(true, Ordering::Release);
        self.shared.going_away.store(true, Ordering::Release);
        if let Some(e) = self.st.failure.take() {
            return Err(e.into());
        }
        match end {
            None | Some(End::Closed) => Ok(()),
            Some(end) => Err(end.to_error()),
        }
    }

    /// A round of the lingering close: drop input until the peer closes
    /// (or fails, or the linger time is up), then end.
    fn linger(&mut self, cx: &mut Context<'_>) -> Result<bool, Result<(), Error>> {
        loop {
            self.st.rbuf.clear();
            if self.st.rbuf.capacity() < READ_CHUNK {
                self.st.rbuf.reserve(READ_CHUNK);
            }
            match tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.st.rbuf) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Err(self.finish(cx)),
                Poll::Ready(Ok(_)) => continue,
                Poll::Pending => break,
            }
        }
        match self.st.linger.as_mut().map(|t| t.as_mut().poll(cx)) {
            Some(Poll::Ready(())) | None => Err(self.finish(cx)),
            Some(Poll::Pending) => Ok(false),
        }
    }

    /// Writes what waits: every queued piece in one vectored write when
    /// the transport takes them, else the first piece.
    fn poll_write_some(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<usize>> {
        let io = Pin::new(&mut self.io);
        if self.st.wbuf.is_segmented() && io.is_write_vectored() {
            let mut slices = [std::io::IoSlice::new(&[]); MAX_SLICES];
            let n = self.st.wbuf.chunks_vectored(&mut slices);
            return io.poll_write_vectored(cx, &slices[..n]);
        }
        io.poll_write(cx, self.st.wbuf.chunk())
    }

    /// Reads what has arrived into the read buffer. With no partial frame
    /// buffered, the read lands on the stack first and only the bytes that
    /// came are copied to the heap: a connection waiting for its next frame
    /// (an idle pooled connection, most of the time) holds no read buffer.
    /// A partial frame (a large body arriving) is read into the buffer
    /// directly.
    ///
    /// Once a read on a frame boundary fills the stack chunk, a body is
    /// streaming in, frame after frame: the reads that start on a boundary
    /// then go straight to a fresh heap buffer (one read, not a small one
    /// on the stack and a copy), and stop short of its end by the largest
    /// frame, so that the frame a read cuts is completed in place rather
    /// than copied to a larger buffer. A small read on a boundary ends the
    /// streaming.
    fn poll_read_some(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<usize>> {
        let io = Pin::new(&mut self.io);
        let st = &mut self.st;
        if !st.rbuf.is_empty() {
            // A frame was cut: make room for the rest of it (and a large
            // read) unless there is. The cut frame's bytes move to a fresh
            // buffer, a copy of less than a frame; growing this one would
            // copy the frames before it too, which the engine may still
            // hold.
            let need = st.codec.awaiting(st.rbuf.len()).max(1);
            if st.rbuf.capacity() - st.rbuf.len() < need.max(READ_CHUNK / 2) {
                let mut fresh = BytesMut::with_capacity(st.rbuf.len() + need.max(BIG_READ));
                fresh.extend_from_slice(&st.rbuf);
                st.rbuf = fresh;
                st.large = st.rbuf.capacity();
            }
            let spare = st.rbuf.capacity() - st.rbuf.len();
            // Streaming: past the cut frame, read on only while room for a
            // whole frame stays behind (else the frame the read cuts next
            // would move).
            let room = if st.streaming {
                need.max(spare.saturating_sub(st.headroom))
            } else {
                spare
            };
            let r = tokio_util::io::poll_read_buf(io, cx, &mut (&mut st.rbuf).limit(room));
            if matches!(r, Poll::Ready(Ok(n)) if n >= READ_CHUNK) {
                st.streaming = true;
            }
            return r;
        }
        if st.streaming {
            st.rbuf.reserve(STREAM_BUFFER);
            st.large = st.rbuf.capacity();
            let room = st.rbuf.capacity() - st.headroom;
            let r = tokio_util::io::poll_read_buf(io, cx, &mut (&mut st.rbuf).limit(room));
            if let Poll::Ready(Ok(n)) = r {
                st.streaming = n >= READ_CHUNK;
            }
            return r;
        }
        let mut stack = [std::mem::MaybeUninit::<u8>::uninit(); READ_CHUNK];
        let mut buf = tokio::io::ReadBuf::uninit(&mut stack);
        match io.poll_read(cx, &mut buf) {
            Poll::Ready(Ok(())) => {
                let got = buf.filled();
                st.rbuf.extend_from_slice(got);
                st.large = 0;
                st.streaming = got.len() == READ_CHUNK;
                Poll::Ready(Ok(got.len()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }

    /// One round: engine, writes, reads, timers, handles. Returns whether
    /// anything moved, or the connection's end.
    fn round(&mut self, cx: &mut Context<'_>) -> Result<bool, Result<(), Error>> {
        if self.st.linger.is_some() {
            return self.linger(cx);
        }
        let mut progress = false;
        let over = {
            let mut g = self.shared.lock();
            let over = self.st.step_engine(&self.shared, &mut g);
            // Arm the timer for the engine's next deadline. It is only ever
            // moved earlier: the deadline moves later all the time (the
            // keep-alive after each read, the first response deadline as
            // each answer comes), and moving the timer with it would take
            // it out of tokio's timer wheel and put it back every round. A
            // timer that fires early costs one look (`handle_timeout` does
            // only what is due), then it is armed again. With no deadline
            // left it goes: a timer kept is polled every round.
            match g.engine.poll_timeout().map(tokio::time::Instant::from_std) {
                Some(at) => match &mut self.st.timer {
                    Some((t, sleep)) if at < *t => {
                        sleep.as_mut().reset(at);
                        *t = at;
                    }
                    Some(_) => {}
                    None => self.st.timer = Some((at, Box::pin(tokio::time::sleep_until(at)))),
                },
                None => self.st.timer = None,
            }
            over
        };
        if over {
            if self.st.read_open && self.st.failure.is_none() {
                self.shared.going_away.store(true, Ordering::Release);
                let _ = Pin::new(&mut self.io).poll_shutdown(cx);
                self.st.linger = Some(Box::pin(tokio::time::sleep(LINGER_TIMEOUT)));
                return Ok(true);
            }
            return Err(self.finish(cx));
        }

        // Write as much as the socket takes.
        while !self.st.wbuf.is_empty() {
            match self.poll_write_some(cx) {
                Poll::Ready(Ok(0)) => {
                    self.fail_io(std::io::ErrorKind::WriteZero.into());
                    return Err(self.finish(cx));
                }
                Poll::Ready(Ok(n)) => {
                    self.st.wbuf.advance(n);
                    self.st.stall = None;
                    progress = true;
                }
                Poll::Ready(Err(e)) => {
                    self.fail_io(e);
                    return Err(self.finish(cx));
                }
                Poll::Pending => break,
            }
        }
        self.st.wbuf.shrink_idle(IDLE_WRITE_BUFFER);

        // Read what has arrived.
        if self.st.read_open {
            match self.poll_read_some(cx) {
                Poll::Ready(Ok(0)) => {
                    self.st.read_open = false;
                    let mut g = self.shared.lock();
                    if let Err(e) = self.st.codec.decode_frame_eof(&mut self.st.rbuf) {
                        g.engine.handle_decode_error(&e);
                    }
                    g.engine.handle_eof();
                    progress = true;
                }
                Poll::Ready(Ok(_)) => {
                    let mut g = self.shared.lock();
                    self.st.decode(&mut g);
                    progress = true;
                }
                Poll::Ready(Err(e)) => {
                    self.fail_io(e);
                    return Err(self.finish(cx));
                }
                Poll::Pending => {}
            }
            if self.st.rbuf.is_empty() {
                // Every frame is out (their payloads may still share the
                // allocation): the next read starts on the stack again.
                self.st.rbuf = BytesMut::new();
                self.st.large = 0;
            }
        }

        // Timers.
        if let Some((_, sleep)) = &mut self.st.timer {
            if sleep.as_mut().poll(cx).is_ready() {
                self.st.timer = None;
                self.shared.lock().engine.handle_timeout(now());
                progress = true;
            }
        }
        if self.st.wbuf.is_empty() {
            self.st.stall = None;
        } else if let Some(t) = self.st.write_timeout {
            let stall = self
                .st
                .stall
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(t)));
            if stall.as_mut().poll(cx).is_ready() {
                tracing::debug!(
                    waiting = self.st.wbuf.len(),
                    "the peer took no bytes within the write timeout; closing"
                );
                self.fail_io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the peer read nothing within the write timeout",
                ));
                return Err(self.finish(cx));
            }
        }

        // Handles that queued work.
        if self.shared.poll_notified(cx) {
            progress = true;
        }
        Ok(progress)
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> Future for Driver<T> {
    type Output = Result<(), Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if this.st.done {
            return Poll::Ready(Ok(()));
        }
        if let Some(mut turn_end) = this.st.turn_end.take() {
            // Woken: by the turn's end, a full batch or the socket.
            let _ = turn_end.as_mut().poll(cx);
            this.shared.undefer();
        } else if this.st.wbuf.is_empty() && this.shared.should_defer() {
            // Handles queued work: let the other ready tasks queue theirs
            // too, and write it all at once. (Tokio wakes a yielded task
            // once it ran out of ready tasks and polled its I/O driver;
            // outside a tokio runtime, `yield_now` wakes it at once.)
            let mut turn_end: Pin<Box<dyn Future<Output = ()> + Send>> =
                Box::pin(tokio::task::yield_now());
            if turn_end.as_mut().poll(cx).is_pending() {
                this.st.turn_end = Some(turn_end);
                this.shared.defer(cx);
                return Poll::Pending;
            }
        }
        for _ in 0..POLL_BUDGET {
            match this.round(cx) {
                Ok(true) => continue,
                Ok(false) => return Poll::Pending,
                Err(result) => return Poll::Ready(result),
            }
        }
        // Busy: let other tasks run, come back soon.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl<T> Drop for Driver<T> {
    fn drop(&mut self) {
        if !self.st.done {
            // Dropped mid-way (the task was aborted): every handle must
            // still learn that the connection is gone.
            let mut g = self.shared.lock();
            g.finish(End::Closed);
            drop(g);
            self.shared.closed.store(true, Ordering::Release);
            self.shared.going_away.store(true, Ordering::Release);
        }
    }
}
