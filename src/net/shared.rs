//! What a connection's driver and its stream handles share: the sans-IO
//! engine and one slot per stream, behind one lock (h2's design). A handle
//! acts on the engine directly (queues a head, returns credit, resets) and
//! tells the driver there is something to write; the driver feeds the
//! engine from the socket and hands each event to the slot it concerns,
//! waking whoever waits on it. No channel, no task per stream: when the
//! driver and the handles are polled by one task (the runtime's uwire/1
//! connections), a request is answered without waking anything else.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Waker};
use std::time::{Duration, Instant};

use futures_util::task::AtomicWaker;
use rustc_hash::FxHashMap;
use tokio::sync::oneshot;

use super::error::{Error, Kind};
use crate::conn::{ConnError, Connection, Event, Role, UserError};
use crate::frame::{HeaderBlock, Reason, RequestHead, ResponseHead, StreamId};

/// A send completes (the caller may send more) once at most this many bytes
/// of the stream wait in the engine for flow-control credit.
pub(crate) const SEND_LOW_WATER: usize = 128 * 1024;

/// The engine's clock.
pub(crate) fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// The connection state plus the driver's wake-up.
pub(crate) struct Shared {
    inner: Mutex<Inner>,
    /// Set by a handle that queued work for the driver.
    notified: AtomicBool,
    driver: AtomicWaker,
    /// Wake-ups since the driver last looked (see `notify`).
    queued: AtomicUsize,
    /// Set while the driver waits for the end of the scheduler's turn to
    /// write (`Config::write_batch`); it is certain to run then, so a
    /// handle needs to wake it only once a batch is full.
    deferred: AtomicBool,
    /// `Config::write_batch`.
    write_batch: usize,
    /// The peer's max_concurrent_streams once its SETTINGS arrived, else 0.
    pub(crate) peer_max_streams: AtomicU32,
    /// Streams open on the connection right now.
    pub(crate) active_streams: AtomicU32,
    /// Set once the driver stopped.
    pub(crate) closed: AtomicBool,
    /// Set once the peer sent GOAWAY or the connection is shutting down.
    pub(crate) going_away: AtomicBool,
    /// Live user handles (senders, stream halves, responders); the driver
    /// winds the connection down once there are none.
    handles: AtomicUsize,
}

/// A user handle's reference to the connection: counted, so the driver
/// knows when the last one is gone (and is woken then).
pub(crate) struct Handle(Arc<Shared>);

impl Handle {
    pub(crate) fn new(shared: &Arc<Shared>) -> Handle {
        shared.handles.fetch_add(1, Ordering::AcqRel);
        Handle(shared.clone())
    }
}

impl Clone for Handle {
    fn clone(&self) -> Handle {
        Handle::new(&self.0)
    }
}

impl std::ops::Deref for Handle {
    type Target = Arc<Shared>;
    fn deref(&self) -> &Arc<Shared> {
        &self.0
    }
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("net::Handle")
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        if self.0.handles.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.notify();
        }
    }
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("net::Shared")
    }
}

impl Shared {
    pub(crate) fn new(role: Role, config: crate::conn::Config) -> Arc<Shared> {
        let write_batch = config.write_batch;
        Arc::new(Shared {
            inner: Mutex::new(Inner {
                engine: Connection::new(role, config, now()),
                slots: FxHashMap::default(),
                incoming: VecDeque::new(),
                incoming_waker: None,
                accepting: role == Role::Server,
                open_wakers: Vec::new(),
                send_waiters: Vec::new(),
                pings: VecDeque::new(),
                ping_seq: 0,
                end: None,
                goaway_received: false,
            }),
            notified: AtomicBool::new(false),
            driver: AtomicWaker::new(),
            queued: AtomicUsize::new(0),
            deferred: AtomicBool::new(false),
            write_batch,
            peer_max_streams: AtomicU32::new(0),
            active_streams: AtomicU32::new(0),
            closed: AtomicBool::new(false),
            going_away: AtomicBool::new(false),
            handles: AtomicUsize::new(0),
        })
    }

    /// Whether no user handle is left.
    pub(crate) fn orphaned(&self) -> bool {
        self.handles.load(Ordering::Acquire) == 0
    }

    /// The state, locked. Never held across an `.await`.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        // A handle that panicked while holding the lock leaves the state as
        // consistent as any engine call does: keep serving.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wakes the driver: a handle queued something for it. While the
    /// driver waits for the end of the scheduler's turn (`deferred`), only
    /// the wake-up that fills a batch wakes it early.
    pub(crate) fn notify(&self) {
        self.notified.store(true, Ordering::Release);
        // Without batching nothing reads the count: no read-modify-write.
        if self.write_batch > 1 {
            let n = self.queued.fetch_add(1, Ordering::AcqRel) + 1;
            if n < self.write_batch && self.deferred.load(Ordering::Acquire) {
                return;
            }
        }
        self.driver.wake();
    }

    /// Driver side: whether to wait for the end of the scheduler's turn
    /// before writing: handles asked for the driver, fewer times than a
    /// batch, and other streams are in flight. When there are no more open
    /// streams than wake-ups, waiting is not worth its cost (a turn, and
    /// an extra poll of the I/O driver, per write):
    /// - on a server, nothing else can come this turn: only the open
    ///   streams can answer (new ones arrive through this driver's reads);
    /// - on a client, every stream in flight was just opened or woke the
    ///   driver, so the connection was idle: one request at a time (a
    ///   client waiting for each answer) goes out at once, while under
    ///   load, with answers still awaited, new requests gather into one
    ///   write. (Client streams open under the lock and count at once,
    ///   see `SendRequest::poll_open`.)
    pub(crate) fn should_defer(&self) -> bool {
        if self.write_batch <= 1 || !self.notified.load(Ordering::Acquire) {
            return false;
        }
        let queued = self.queued.load(Ordering::Acquire);
        queued < self.write_batch && self.active_streams.load(Ordering::Acquire) as usize > queued
    }

    /// Driver side: the driver waits for the end of the turn (its wake-up
    /// then is registered); the handle that fills the batch wakes it
    /// through `cx` before that.
    pub(crate) fn defer(&self, cx: &mut Context<'_>) {
        self.driver.register(cx.waker());
        self.deferred.store(true, Ordering::Release);
    }

    /// Driver side: the driver runs again.
    pub(crate) fn undefer(&self) {
        self.deferred.store(false, Ordering::Release);
    }

    /// Driver side: registers its waker; true if a handle asked for it
    /// since the last call.
    pub(crate) fn poll_notified(&self, cx: &mut Context<'_>) -> bool {
        self.driver.register(cx.waker());
        self.queued.store(0, Ordering::Release);
        self.notified.swap(false, Ordering::AcqRel)
    }
}

/// How the connection ended, kept so that every handle still waiting can be
/// told (errors are not `Clone`; this is).
#[derive(Debug, Clone)]
pub(crate) enum End {
    /// Closed cleanly (GOAWAY exchange, shutdown, or the handles all gone).
    Closed,
    /// The peer closed the transport without a GOAWAY.
    PeerClosed,
    /// The transport failed.
    Io(std::io::ErrorKind, String),
    /// The peer broke the protocol (or we closed for an error).
    Protocol(ConnError),
}

impl End {
    pub(crate) fn to_error(&self) -> Error {
        match self {
            End::Closed => Error::closed(),
            End::PeerClosed => Error::new(Kind::PeerClosed),
            End::Io(k, m) => Error::new(Kind::Io(std::io::Error::new(*k, m.clone()))),
            End::Protocol(e) => Error::new(Kind::Protocol(e.clone())),
        }
    }
}

/// How a stream ended, from its handles' point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Gone {
    /// Reset, by the peer (`true`) or locally.
    Reset(Reason, bool),
    /// Closed normally on both sides.
    Finished,
    /// Still open when the connection ended.
    Lost,
    /// Reset locally: no response by the request's deadline.
    TimedOut,
}

impl Gone {
    /// Ended abnormally (reset, timed out, or lost with the connection).
    pub(crate) fn is_abnormal(self) -> bool {
        self != Gone::Finished
    }
}

/// One stream's shared state.
#[derive(Debug, Default)]
pub(crate) struct Slot {
    /// Received body bytes not yet read.
    pub(crate) chunks: super::recvq::RecvQueue,
    /// The peer's half ended (END_STREAM or trailers).
    pub(crate) recv_end: bool,
    pub(crate) trailers: Option<HeaderBlock>,
    /// The reader went away without reading to the end: arriving bytes
    /// are discarded and their credit returned at once.
    pub(crate) discard: bool,
    pub(crate) recv_waker: Option<Waker>,
    /// Client: the final response head, until taken.
    pub(crate) response: Option<ResponseHead>,
    pub(crate) response_waker: Option<Waker>,
    /// Set once the stream is no longer open on the connection.
    pub(crate) gone: Option<Gone>,
    /// Server: who waits for the stream to end (`closed()`).
    pub(crate) closed_waker: Option<Waker>,
    /// Who waits for buffered send data to drain below the low-water mark.
    pub(crate) send_waker: Option<Waker>,
    /// Live handles (send half, receive half); the slot goes with the last.
    pub(crate) handles: u8,
    /// Client: the REQUEST offered an upgrade, so a `101` is final.
    pub(crate) upgrade: bool,
}

impl Slot {
    fn with_handles(handles: u8) -> Slot {
        Slot {
            handles,
            ..Slot::default()
        }
    }

    fn wake_all(&mut self) {
        for w in [
            self.recv_waker.take(),
            self.response_waker.take(),
            self.closed_waker.take(),
            self.send_waker.take(),
        ]
        .into_iter()
        .flatten()
        {
            w.wake();
        }
    }
}

/// Stores `cx`'s waker in `slot` unless an equivalent one is there.
pub(crate) fn register(slot: &mut Option<Waker>, cx: &Context<'_>) {
    match slot {
        Some(w) if w.will_wake(cx.waker()) => {}
        _ => *slot = Some(cx.waker().clone()),
    }
}

/// A PING of ours waiting for its ACK.
type PingReply = oneshot::Sender<Result<Duration, Error>>;

/// The locked state.
pub(crate) struct Inner {
    pub(crate) engine: Connection,
    pub(crate) slots: FxHashMap<StreamId, Slot>,
    /// Server: requests not yet accepted (their slots exist; `Incoming`
    /// makes the handles when it hands them out).
    pub(crate) incoming: VecDeque<(StreamId, Box<RequestHead>)>,
    pub(crate) incoming_waker: Option<Waker>,
    /// Server: whether the application still accepts requests.
    pub(crate) accepting: bool,
    /// Client: who waits for room to open a stream.
    pub(crate) open_wakers: Vec<Waker>,
    /// Streams whose sender waits for buffered data to drain.
    pub(crate) send_waiters: Vec<StreamId>,
    /// Our PINGs waiting for their ACKs, with their payloads (the engine's
    /// keepalive PINGs are acknowledged through the same event).
    pub(crate) pings: VecDeque<([u8; 8], PingReply)>,
    pub(crate) ping_seq: u64,
    /// Set once the connection is over.
    pub(crate) end: Option<End>,
    pub(crate) goaway_received: bool,
}

impl Inner {
    /// The error a handle reports once the connection is over (or `Closed`).
    pub(crate) fn conn_error(&self) -> Error {
        self.end.as_ref().map_or_else(Error::closed, End::to_error)
    }

    /// The error of a stream that is gone.
    pub(crate) fn stream_error(&self, slot: Option<&Slot>) -> Error {
        match slot.and_then(|s| s.gone) {
            Some(Gone::Reset(Reason::REFUSED_STREAM, _)) => Error::new(Kind::Refused),
            Some(Gone::Reset(r, remote)) => Error::new(Kind::Reset(r, remote)),
            Some(Gone::TimedOut) => Error::new(Kind::TimedOut),
            Some(Gone::Finished) | Some(Gone::Lost) | None => self.conn_error(),
        }
    }

    /// Creates the slot of a stream just opened (client) or received
    /// (server), with both handles alive.
    pub(crate) fn new_slot(&mut self, id: StreamId, end_stream_received: bool) {
        let mut slot = Slot::with_handles(2);
        slot.recv_end = end_stream_received;
        self.slots.insert(id, slot);
    }

    /// A handle of `id` is gone; the slot goes with the last one.
    pub(crate) fn release_handle(&mut self, id: StreamId) {
        if let Some(s) = self.slots.get_mut(&id) {
            s.handles = s.handles.saturating_sub(1);
            if s.handles == 0 {
                self.slots.remove(&id);
            }
        }
    }

    /// Resets `id` locally: the engine queues RESET(`reason`), every waiter
    /// is told.
    pub(crate) fn reset(&mut self, id: StreamId, reason: Reason) {
        let _ = self.engine.reset_stream(id, reason);
        if let Some(s) = self.slots.get_mut(&id) {
            if s.gone.is_none() {
                s.gone = Some(Gone::Reset(reason, false));
            }
            s.wake_all();
        }
    }

    /// A head or trailers the engine refused (over the peer's limits, or an
    /// interim status with END_STREAM): the peer would wait forever for a
    /// frame that will never come, so the stream is reset instead (PROTOCOL
    /// section 13: "RESET(LIMIT_EXCEEDED)" for heads over the peer's
    /// limits).
    pub(crate) fn reset_unsendable(&mut self, id: StreamId, e: &UserError) {
        let reason = match e {
            UserError::HeadTooLarge { .. } | UserError::TooManyHeaders { .. } => {
                Reason::LIMIT_EXCEEDED
            }
            // Already gone: nothing is waiting.
            UserError::UnknownStream(_) | UserError::Closed => return,
            _ => Reason::INTERNAL_ERROR,
        };
        tracing::warn!(stream = %id, %reason, error = %e, "resetting a stream whose head or trailers cannot be sent");
        self.reset(id, reason);
    }

    /// Queues a PING of ours; the reply comes when its ACK does.
    pub(crate) fn send_ping(&mut self, reply: PingReply) {
        self.ping_seq += 1;
        let payload = self.ping_seq.to_be_bytes();
        match self.engine.send_ping(payload, now()) {
            Ok(()) => self.pings.push_back((payload, reply)),
            Err(e) => {
                let _ = reply.send(Err(e.into()));
            }
        }
    }

    /// Copies the engine's open-stream count to `shared.active_streams`,
    /// where the driver reads it without the lock (`Shared::should_defer`).
    pub(crate) fn publish_active_streams(&self, shared: &Shared) {
        shared
            .active_streams
            .store(self.engine.active_streams() as u32, Ordering::Release);
    }

    /// Hands every engine event to whoever it concerns.
    pub(crate) fn dispatch_events(&mut self, shared: &Arc<Shared>) {
        while let Some(ev) = self.engine.poll_event() {
            self.dispatch(ev, shared);
        }
        if !self.open_wakers.is_empty()
            && (self.engine.can_open_stream() || self.engine.is_closed() || self.goaway_received)
        {
            for w in self.open_wakers.drain(..) {
                w.wake();
            }
        }
        self.publish_active_streams(shared);
        if self.goaway_received || self.engine.is_closed() {
            shared.going_away.store(true, Ordering::Release);
        }
    }

    fn dispatch(&mut self, ev: Event, shared: &Arc<Shared>) {
        match ev {
            Event::Ready => {
                let max = self
                    .engine
                    .peer_settings()
                    .and_then(|s| s.max_concurrent_streams)
                    .unwrap_or(crate::conn::DEFAULT_MAX_CONCURRENT_STREAMS);
                shared.peer_max_streams.store(max.max(1), Ordering::Release);
            }
            Event::Request {
                id,
                head,
                end_stream,
            } => {
                if !self.accepting {
                    // The application stopped accepting: refuse.
                    let _ = self.engine.reset_stream(id, Reason::REFUSED_STREAM);
                    return;
                }
                self.new_slot(id, end_stream);
                self.incoming.push_back((id, head));
                if let Some(w) = self.incoming_waker.take() {
                    w.wake();
                }
            }
            Event::Response {
                id,
                head,
                end_stream,
            } => {
                let Some(s) = self.slots.get_mut(&id) else {
                    return;
                };
                if head.is_interim(s.upgrade) {
                    return;
                }
                s.response = Some(head);
                s.recv_end |= end_stream;
                if let Some(w) = s.response_waker.take() {
                    w.wake();
                }
                if end_stream {
                    if let Some(w) = s.recv_waker.take() {
                        w.wake();
                    }
                }
            }
            Event::Data {
                id,
                data,
                end_stream,
            } => match self.slots.get_mut(&id) {
                Some(s) if !s.discard => {
                    s.chunks.push(data);
                    s.recv_end |= end_stream;
                    if let Some(w) = s.recv_waker.take() {
                        w.wake();
                    }
                }
                // Nobody will read it: give the credit back right away.
                _ => self.engine.release_capacity(id, data.len()),
            },
            Event::Trailers { id, fields } => {
                if let Some(s) = self.slots.get_mut(&id) {
                    s.trailers = Some(fields);
                    s.recv_end = true;
                    if let Some(w) = s.recv_waker.take() {
                        w.wake();
                    }
                }
            }
            Event::StreamReset { id, reason, remote } => {
                if let Some(s) = self.slots.get_mut(&id) {
                    s.gone = Some(Gone::Reset(reason, remote));
                    s.wake_all();
                }
            }
            Event::ResponseTimeout { id } => {
                if let Some(s) = self.slots.get_mut(&id) {
                    s.gone = Some(Gone::TimedOut);
                    s.wake_all();
                }
            }
            Event::StreamClosed { id } => {
                if let Some(s) = self.slots.get_mut(&id) {
                    s.recv_end = true;
                    if s.gone.is_none() {
                        s.gone = Some(Gone::Finished);
                    }
                    s.wake_all();
                }
            }
            Event::PingAck { payload, rtt } => {
                // An ACK of the engine's keepalive matches none of ours.
                if let Some(i) = self.pings.iter().position(|(p, _)| *p == payload) {
                    if let Some((_, tx)) = self.pings.remove(i) {
                        let _ = tx.send(Ok(rtt.unwrap_or_default()));
                    }
                }
            }
            Event::GoAway { .. } => {
                self.goaway_received = true;
            }
            Event::Closed { error } => {
                if self.end.is_none() {
                    self.end = Some(match error {
                        Some(e) if e.class() == crate::conn::ConnErrorClass::UnexpectedEof => {
                            End::PeerClosed
                        }
                        Some(e) => End::Protocol(e),
                        None => End::Closed,
                    });
                }
            }
        }
    }

    /// Wakes senders whose buffered data drained below the low-water mark
    /// (or whose stream is gone).
    pub(crate) fn wake_senders(&mut self) {
        let mut i = 0;
        while i < self.send_waiters.len() {
            let id = self.send_waiters[i];
            let drained = self.engine.send_buffered(id) <= SEND_LOW_WATER;
            match self.slots.get_mut(&id) {
                Some(s) if !drained && s.gone.is_none() && s.send_waker.is_some() => i += 1,
                other => {
                    if let Some(w) = other.and_then(|s| s.send_waker.take()) {
                        w.wake();
                    }
                    self.send_waiters.swap_remove(i);
                }
            }
        }
    }

    /// The connection is over: every waiter is told.
    pub(crate) fn finish(&mut self, end: End) {
        if self.end.is_none() {
            self.end = Some(end);
        }
        for s in self.slots.values_mut() {
            if s.gone.is_none() {
                s.gone = Some(Gone::Lost);
            }
            s.wake_all();
        }
        if let Some(w) = self.incoming_waker.take() {
            w.wake();
        }
        for w in self.open_wakers.drain(..) {
            w.wake();
        }
        for (_, tx) in self.pings.drain(..) {
            let _ = tx.send(Err(Error::closed()));
        }
        self.drop_unaccepted(Reason::REFUSED_STREAM);
    }

    /// Refuses the requests never handed to the application (safe for the
    /// peer to retry: nothing processed them).
    pub(crate) fn drop_unaccepted(&mut self, reason: Reason) {
        while let Some((id, _)) = self.incoming.pop_front() {
            let _ = self.engine.reset_stream(id, reason);
            self.slots.remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared(role: Role) -> Arc<Shared> {
        let mut config = crate::conn::Config::default();
        config.write_batch(8);
        Shared::new(role, config)
    }

    #[test]
    fn a_server_waits_for_the_turn_only_while_other_streams_may_answer() {
        let s = shared(Role::Server);
        assert!(!s.should_defer(), "nothing queued");
        s.active_streams.store(1, Ordering::Release);
        s.notify();
        // The one stream in flight answered: nothing else can come.
        assert!(!s.should_defer());
        s.active_streams.store(3, Ordering::Release);
        assert!(s.should_defer(), "two more streams may answer this turn");
        s.notify();
        s.notify();
        assert!(!s.should_defer(), "each open stream woke the driver");
        s.active_streams.store(64, Ordering::Release);
        for _ in 0..5 {
            s.notify();
        }
        assert!(!s.should_defer(), "a full batch is written at once");
    }

    #[test]
    fn a_client_waits_for_the_turn_only_under_load() {
        let c = shared(Role::Client);
        c.notify();
        assert!(!c.should_defer(), "nothing in flight");
        // One request at a time: the stream just opened is the only one.
        c.active_streams.store(1, Ordering::Release);
        assert!(!c.should_defer());
        // Answers awaited on other streams: more requests may come.
        c.active_streams.store(4, Ordering::Release);
        assert!(c.should_defer());
        for _ in 0..7 {
            c.notify();
        }
        assert!(!c.should_defer(), "a full batch is written at once");
        let mut config = crate::conn::Config::default();
        config.write_batch(1);
        let unbatched = Shared::new(Role::Server, config);
        unbatched.active_streams.store(5, Ordering::Release);
        unbatched.notify();
        assert!(!unbatched.should_defer(), "write_batch 1 never waits");
    }
}
