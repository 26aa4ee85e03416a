//! [`Connection`]: construction, queries, timers and the shared state
//! transitions. Local actions are in `actions.rs`, inbound frames in
//! `recv.rs`, the transmit scheduler in `send.rs`.

use std::collections::VecDeque;
use std::time::Instant;

use bytes::Bytes;

use super::config::{
    Config, DEFAULT_INITIAL_CONNECTION_WINDOW, DEFAULT_INITIAL_STREAM_WINDOW,
    DEFAULT_MAX_CONCURRENT_STREAMS,
};
use super::error::{ConnError, ConnErrorClass};
use super::flow::{RecvWindow, SendWindow};
use super::guard::{Budget, ControlQueue, Origin};
use super::sched::Scheduler;
use super::stream::{Recent, RecvState, Stream, StreamTable};
use super::{Event, Role};
use crate::frame::Limits;
use crate::frame::{Frame, GoAway, Ping, Reason, Reset, Settings, StreamId, WindowUpdate};

/// A PING we sent and have not seen answered.
#[derive(Debug, Clone, Copy)]
pub(super) struct PendingPing {
    pub(super) payload: [u8; 8],
    pub(super) sent: Instant,
    pub(super) keepalive: bool,
    /// The PING of a two-step drain (see `Connection::go_away_gracefully`):
    /// its answer triggers the final GOAWAY and is not reported as an event.
    pub(super) drain: bool,
}

/// The state of one uwire/1 connection (sans-IO). See the [module
/// docs](super) for how the I/O glue drives it.
#[derive(Debug)]
pub struct Connection {
    pub(super) role: Role,
    pub(super) config: Config,
    pub(super) peer_settings: Option<Settings>,
    /// What the peer accepts (defaults until its SETTINGS arrive).
    pub(super) peer_limits: Limits,
    pub(super) peer_stream_window: u32,
    pub(super) peer_max_streams: u32,
    pub(super) streams: StreamTable,
    /// Client: the id the next stream gets (u64 so exhaustion is visible).
    pub(super) next_stream_id: u64,
    /// Server: the highest REQUEST id seen.
    pub(super) highest_peer_id: StreamId,
    pub(super) conn_send: SendWindow,
    pub(super) conn_recv: RecvWindow,
    pub(super) control: ControlQueue,
    /// Streams with a WINDOW_UPDATE due (each at most once, see
    /// `Stream::update_queued`).
    pub(super) updates: VecDeque<StreamId>,
    pub(super) sched: Scheduler,
    pub(super) events: VecDeque<Event>,
    /// Client: when streams must have their final RESPONSE
    /// ([`Connection::set_response_deadline`]), earliest first. The front
    /// entry's stream still awaits its head (entries of streams answered
    /// or gone are dropped when they reach the front); the rest may be
    /// stale, and are swept when they outnumber the open streams.
    pub(super) head_deadlines: VecDeque<(Instant, StreamId)>,
    /// `None` when the configured timeout is too large to represent.
    pub(super) settings_deadline: Option<Instant>,
    pub(super) last_recv: Instant,
    pub(super) pings: VecDeque<PendingPing>,
    pub(super) keepalive_seq: u32,
    pub(super) local_goaway: Option<Reason>,
    pub(super) peer_goaway: Option<StreamId>,
    pub(super) drain_deadline: Option<Instant>,
    /// A drain notice (GOAWAY with the largest id, then a PING) is out and
    /// its PING unanswered: the final GOAWAY follows the answer, or this
    /// deadline (`Config::drain_notice_timeout` after the notice).
    pub(super) drain_notice: Option<Instant>,
    pub(super) closed: bool,
    /// Rapid-reset budget (`max_peer_resets`).
    pub(super) reset_budget: Budget,
    /// PING budget (`max_peer_pings`).
    pub(super) ping_budget: Budget,
    /// Useless-frame budget (`max_useless_frames`).
    pub(super) useless_budget: Budget,
}

impl Connection {
    /// A new connection. Queues our SETTINGS as the first frame to transmit
    /// (the preface bytes are written by the I/O glue, not the engine).
    /// Out-of-range `config` values are clamped (see [`Config::validate`]).
    pub fn new(role: Role, config: Config, now: Instant) -> Connection {
        let config = config.sanitized();
        let mut control = ControlQueue::default();
        control.push_back(Frame::Settings(config.settings()));
        Connection {
            role,
            peer_settings: None,
            peer_limits: Limits::default(),
            peer_stream_window: DEFAULT_INITIAL_STREAM_WINDOW,
            peer_max_streams: DEFAULT_MAX_CONCURRENT_STREAMS,
            streams: StreamTable::new(config.max_reset_streams),
            next_stream_id: 1,
            highest_peer_id: StreamId::ZERO,
            conn_send: SendWindow::new(DEFAULT_INITIAL_CONNECTION_WINDOW),
            conn_recv: RecvWindow::new(config.initial_connection_window),
            control,
            updates: VecDeque::new(),
            sched: Scheduler::default(),
            events: VecDeque::new(),
            head_deadlines: VecDeque::new(),
            settings_deadline: now.checked_add(config.settings_timeout),
            last_recv: now,
            pings: VecDeque::new(),
            keepalive_seq: 0,
            local_goaway: None,
            peer_goaway: None,
            drain_deadline: None,
            drain_notice: None,
            closed: false,
            reset_budget: Budget::default(),
            ping_budget: Budget::default(),
            useless_budget: Budget::default(),
            config,
        }
    }

    /// Which end this is.
    pub fn role(&self) -> Role {
        self.role
    }

    // ------------------------------------------------------------------
    // Queries
    // ------------------------------------------------------------------

    /// Whether the peer's SETTINGS arrived.
    pub fn is_ready(&self) -> bool {
        self.peer_settings.is_some()
    }

    /// Client: whether [`Connection::open_stream`] would succeed now for a
    /// valid head (ready, not going away, under the peer's limit, ids left).
    pub fn can_open_stream(&self) -> bool {
        self.role == Role::Client
            && !self.closed
            && self.is_ready()
            && !self.going_away()
            && self.streams.len() < self.peer_max_streams as usize
            && self.next_stream_id <= u64::from(StreamId::MAX.get())
    }

    /// Streams with at least one half still open.
    pub fn active_streams(&self) -> usize {
        self.streams.len()
    }

    /// Body bytes queued on `id` and not yet emitted (0 if unknown).
    pub fn send_buffered(&self, id: StreamId) -> usize {
        self.streams.get(id).map_or(0, |s| s.buffered)
    }

    /// Send credit available to `id` now: min(stream, connection) window
    /// (0 if unknown).
    pub fn send_window(&self, id: StreamId) -> usize {
        self.streams.get(id).map_or(0, |s| {
            s.send_window.available().min(self.conn_send.available()) as usize
        })
    }

    /// The peer's SETTINGS, once received.
    pub fn peer_settings(&self) -> Option<&Settings> {
        self.peer_settings.as_ref()
    }

    /// Nothing more to do: the glue flushes the remaining
    /// [`Connection::poll_transmit`] frames and closes the socket.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Whether [`Connection::poll_transmit`] has a frame now.
    pub fn has_pending_transmit(&self) -> bool {
        !self.control.is_empty()
            || (!self.closed
                && (self.sched.has_work(self.conn_send.available() > 0)
                    || self.conn_recv.update_due()
                    || !self.updates.is_empty()))
    }

    // ------------------------------------------------------------------
    // Outputs and time
    // ------------------------------------------------------------------

    /// The next event for the application.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Connection::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.closed {
            return None;
        }
        let mut t: Option<Instant> = None;
        let mut at = |i: Instant| t = Some(t.map_or(i, |t| t.min(i)));
        if let (None, Some(d)) = (&self.peer_settings, self.settings_deadline) {
            at(d);
        }
        if let Some(d) = self.ping_deadline() {
            at(d);
        }
        if let Some(k) = self.keepalive_due() {
            at(k);
        }
        if let (true, Some(d)) = (
            self.draining() || self.drain_notice.is_some(),
            self.drain_deadline,
        ) {
            at(d);
        }
        if let Some(d) = self.drain_notice {
            at(d);
        }
        if let Some(&(d, _)) = self.head_deadlines.front() {
            at(d);
        }
        t
    }

    /// Fires the timers due at `now`: settings timeout, ping timeout, drain
    /// deadline, response deadlines, keepalive PING. Calling it early (or
    /// twice) is harmless: only what is due fires.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.closed {
            return;
        }
        // "If the peer's SETTINGS does not arrive within settings_timeout
        // (default 10 s) -> GOAWAY(SETTINGS_TIMEOUT)."
        if self.peer_settings.is_none() && self.settings_deadline.is_some_and(|d| now >= d) {
            let e = ConnError::new(
                ConnErrorClass::SettingsTimeout,
                StreamId::ZERO,
                "peer SETTINGS did not arrive in time",
            );
            return self.fail(e);
        }
        // "no ACK within ping_timeout -> connection error (TIMEOUT)."
        if self.ping_deadline().is_some_and(|d| now >= d) {
            let e = ConnError::new(
                ConnErrorClass::PingTimeout,
                StreamId::ZERO,
                "PING not acknowledged in time",
            );
            return self.fail(e);
        }
        if self.drain_notice.is_some_and(|d| now >= d)
            && self.drain_deadline.is_none_or(|d| now < d)
        {
            // The notice's PING is unanswered (a peer that is slow or no
            // longer polled): a request sent before the notice has had a
            // whole second to arrive; the final GOAWAY goes out now.
            self.drain_notice = None;
            self.go_away(Reason::NO_ERROR, Bytes::new(), now);
            if self.closed {
                return;
            }
        }
        if let (true, Some(d)) = (
            self.draining() || self.drain_notice.is_some(),
            self.drain_deadline,
        ) {
            if now >= d {
                if self.drain_notice.is_some() && self.local_goaway.is_none() {
                    // The notice's PING is unanswered: the final GOAWAY
                    // still says which streams were processed, so later
                    // ones are known to be safe to retry.
                    self.drain_notice = None;
                    self.local_goaway = Some(Reason::NO_ERROR);
                    let last = self.last_peer_stream_id();
                    self.control
                        .push_back(GoAway::new(last, Reason::NO_ERROR, Bytes::new()).into());
                }
                // Each open stream is cancelled, to the peer and to the
                // application alike.
                for id in self.streams.sorted_ids() {
                    self.control
                        .push_back(Reset::new(id, Reason::CANCEL).into());
                }
                self.reset_all(Reason::CANCEL, false);
                return self.close(None);
            }
        }
        self.expire_response_deadlines(now);
        if self.closed {
            return;
        }
        // "Optional keepalive: after keepalive_interval of silence send PING"
        if self.keepalive_due().is_some_and(|k| now >= k) {
            self.keepalive_seq = self.keepalive_seq.wrapping_add(1);
            let mut payload = *b"uwka\0\0\0\0";
            payload[4..].copy_from_slice(&self.keepalive_seq.to_be_bytes());
            self.pings.push_back(PendingPing {
                payload,
                sent: now,
                keepalive: true,
                drain: false,
            });
            self.control.push_back(Ping::new(payload).into());
        }
    }

    /// The transport reported a decode error. Queues GOAWAY(`err.reason()`,
    /// debug = the error text) and closes; open streams get
    /// `StreamReset { reason: err.reason(), remote: false }`.
    pub fn handle_decode_error(&mut self, err: &crate::frame::DecodeError) {
        if err.class() == crate::frame::ErrorClass::BadPreface {
            // Section 3.1: "The receiver MUST close the connection. It
            // SHOULD NOT send anything (the peer is not known to speak
            // uwire)." Not even the SETTINGS queued at the start.
            self.control.clear();
            self.reset_all(Reason::PROTOCOL_ERROR, false);
            self.close(Some(ConnError::from(err)));
            return;
        }
        self.fail(ConnError::from(err));
    }

    /// The transport closed. Every open stream gets
    /// `Event::StreamReset { reason: Reason::INTERNAL_ERROR, remote: true }`
    /// (not retry-safe: the peer may have processed it), then
    /// `Event::Closed { error: Some(unexpected_eof) }`. Nothing is left to
    /// transmit.
    pub fn handle_eof(&mut self) {
        self.control.clear();
        if self.closed {
            return;
        }
        self.reset_all(Reason::INTERNAL_ERROR, true);
        self.close(Some(ConnError::new(
            ConnErrorClass::UnexpectedEof,
            StreamId::ZERO,
            "transport closed",
        )));
    }

    // ------------------------------------------------------------------
    // Shared helpers
    // ------------------------------------------------------------------

    /// Either side sent or received GOAWAY: no new local streams.
    pub(super) fn going_away(&self) -> bool {
        self.local_goaway.is_some() || self.peer_goaway.is_some()
    }

    /// A graceful drain is in progress (ours or the peer's).
    fn draining(&self) -> bool {
        self.local_goaway == Some(Reason::NO_ERROR) || self.peer_goaway.is_some()
    }

    /// When the oldest unanswered PING times out.
    fn ping_deadline(&self) -> Option<Instant> {
        let p = self.pings.front()?;
        p.sent.checked_add(self.config.ping_timeout)
    }

    /// When the next keepalive PING is due, if one is.
    fn keepalive_due(&self) -> Option<Instant> {
        let iv = self.config.keepalive_interval?;
        let outstanding = self.pings.iter().any(|p| p.keepalive);
        if !self.is_ready() || outstanding {
            return None;
        }
        self.last_recv.checked_add(iv)
    }

    /// The last_stream_id we put in our GOAWAY.
    pub(super) fn last_peer_stream_id(&self) -> StreamId {
        match self.role {
            Role::Server => self.highest_peer_id,
            Role::Client => StreamId::ZERO,
        }
    }

    /// A connection error we detected: GOAWAY, reset events, close.
    pub(super) fn fail(&mut self, err: ConnError) {
        if self.closed {
            return;
        }
        let debug = Bytes::from(err.to_string());
        self.control
            .push_back(GoAway::new(self.last_peer_stream_id(), err.reason(), debug).into());
        self.reset_all(err.reason(), false);
        self.close(Some(err));
    }

    /// Removes every open stream with a `StreamReset` event (no frames).
    pub(super) fn reset_all(&mut self, reason: Reason, remote: bool) {
        for id in self.streams.sorted_ids() {
            self.remove_stream(id, Recent::Reset);
            self.events
                .push_back(Event::StreamReset { id, reason, remote });
        }
    }

    pub(super) fn close(&mut self, error: Option<ConnError>) {
        if self.closed {
            return;
        }
        self.closed = true;
        self.sched = Scheduler::default();
        self.head_deadlines.clear();
        self.updates.clear();
        self.pings.clear();
        self.events.push_back(Event::Closed { error });
    }

    /// Removes an open stream (and its transmit queue entry).
    pub(super) fn remove_stream(&mut self, id: StreamId, how: Recent) -> Option<Stream> {
        let s = self.streams.remove(id, how)?;
        if let Some(which) = s.sched {
            self.sched.forget(which, &self.streams);
        }
        self.settle_response_deadline(id);
        Some(s)
    }

    /// Whether `id` is an open stream still waiting for its final RESPONSE.
    pub(super) fn awaits_head(&self, id: StreamId) -> bool {
        self.streams
            .get(id)
            .is_some_and(|s| s.recv == RecvState::AwaitHead)
    }

    /// Stream `id` stopped waiting for its final RESPONSE (it came, or the
    /// stream is gone): if its deadline is the first one, that entry and
    /// the stale ones behind it go. Answers mostly come in request order,
    /// so the queue stays as short as the streams in flight.
    pub(super) fn settle_response_deadline(&mut self, id: StreamId) {
        if self.head_deadlines.front().is_some_and(|&(_, f)| f == id) {
            self.head_deadlines.pop_front();
            while let Some(&(_, f)) = self.head_deadlines.front() {
                if self.awaits_head(f) {
                    break;
                }
                self.head_deadlines.pop_front();
            }
        }
    }

    /// Resets every stream whose response deadline has passed at `now`
    /// (RESET `CANCEL`, [`Event::ResponseTimeout`]).
    fn expire_response_deadlines(&mut self, now: Instant) {
        while let Some(&(at, id)) = self.head_deadlines.front() {
            let waiting = self.awaits_head(id);
            if waiting && now < at {
                break;
            }
            self.head_deadlines.pop_front();
            if waiting {
                // The event first: a drain that the reset ends closes the
                // connection (its `Closed` is the last event, and the
                // queue is cleared, which ends this loop). The stream is
                // known and the connection open, so the reset succeeds.
                self.events.push_back(Event::ResponseTimeout { id });
                let _ = self.reset_stream(id, Reason::CANCEL);
            }
        }
    }

    /// A stream error caused by a peer frame: RESET(`reason`) for `id`,
    /// `StreamReset { remote: false }` if the application knew the stream.
    /// The RESET counts against the rapid-reset budget and the reply
    /// backlog.
    pub(super) fn stream_error(&mut self, id: StreamId, reason: Reason) -> Result<(), ConnError> {
        if self.remove_stream(id, Recent::Reset).is_some() {
            self.events.push_back(Event::StreamReset {
                id,
                reason,
                remote: false,
            });
        } else {
            self.streams.remember(id, Recent::Reset);
        }
        self.queue_reply_reset(id, reason)?;
        self.maybe_finish_drain();
        Ok(())
    }

    /// Queues a RESET in reply to a peer frame: counts it against
    /// `max_peer_resets` and `max_pending_resets`.
    pub(super) fn queue_reply_reset(
        &mut self,
        id: StreamId,
        reason: Reason,
    ) -> Result<(), ConnError> {
        self.control
            .push_reply(Reset::new(id, reason).into(), Origin::Reset);
        self.charge_reset(id)?;
        if self.control.pending_resets() > self.config.max_pending_resets {
            return Err(ConnError::new(
                ConnErrorClass::TransmitBacklog,
                id,
                "too many RESETs in reply to peer frames waiting for transmit",
            ));
        }
        Ok(())
    }

    /// Counts one reset against `max_peer_resets` (at the time of the frame
    /// being handled).
    pub(super) fn charge_reset(&mut self, id: StreamId) -> Result<(), ConnError> {
        let (max, window) = (self.config.max_peer_resets, self.config.abuse_window);
        if self.reset_budget.spend(self.last_recv, max, window) {
            return Ok(());
        }
        Err(ConnError::new(
            ConnErrorClass::RapidReset,
            id,
            "too many stream resets in the abuse window",
        ))
    }

    /// Counts one frame that does no useful work against
    /// `max_useless_frames`.
    pub(super) fn charge_useless(
        &mut self,
        id: StreamId,
        what: &'static str,
    ) -> Result<(), ConnError> {
        let (max, window) = (self.config.max_useless_frames, self.config.abuse_window);
        if self.useless_budget.spend(self.last_recv, max, window) {
            return Ok(());
        }
        Err(ConnError::new(ConnErrorClass::FrameFlood, id, what))
    }

    /// Closes `id` normally if both halves are done.
    pub(super) fn maybe_close(&mut self, id: StreamId) {
        if self.streams.get(id).is_some_and(Stream::is_done) {
            self.remove_stream(id, Recent::Closed);
            self.events.push_back(Event::StreamClosed { id });
            self.maybe_finish_drain();
        }
    }

    /// "closes when all streams are done"
    pub(super) fn maybe_finish_drain(&mut self) {
        if !self.closed && self.draining() && self.streams.is_empty() {
            self.close(None);
        }
    }

    /// Queues a connection WINDOW_UPDATE if the batching rule says so.
    pub(super) fn flush_connection_update(&mut self) {
        // Produced by `poll_transmit` when due, so the credit is given only
        // as the frame leaves (section 8.3).
    }

    /// Queues a stream WINDOW_UPDATE if the batching rule says so and the
    /// peer may still send on the stream.
    pub(super) fn flush_stream_update(&mut self, id: StreamId) {
        let Some(s) = self.streams.get_mut(id) else {
            return;
        };
        if s.recv == RecvState::Closed {
            return;
        }
        if !s.update_queued && s.recv_window.update_due() {
            s.update_queued = true;
            self.updates.push_back(id);
        }
    }

    /// The next WINDOW_UPDATE due (connection first), taking its credit
    /// into account now that it is being sent.
    pub(super) fn poll_window_update(&mut self) -> Option<Frame> {
        if let Some(inc) = self.conn_recv.take_update() {
            return Some(WindowUpdate::new(StreamId::ZERO, inc).into());
        }
        while let Some(id) = self.updates.pop_front() {
            let Some(s) = self.streams.get_mut(id) else {
                continue;
            };
            s.update_queued = false;
            if s.recv == RecvState::Closed {
                continue;
            }
            if let Some(inc) = s.recv_window.take_update() {
                return Some(WindowUpdate::new(id, inc).into());
            }
        }
        None
    }
}
