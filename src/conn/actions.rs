//! Local actions on a [`Connection`]: opening streams, sending heads,
//! bodies, trailers, resets, PINGs and GOAWAY, returning receive credit.

use std::time::Instant;

use bytes::Bytes;

use super::engine::{Connection, PendingPing};
use super::error::{ConnError, UserError};
use super::stream::{Recent, RecvState, SendState, Stream};
use super::Role;
use crate::frame::{
    GoAway, HeaderBlock, Ping, Reason, Request, RequestHead, Reset, Response, ResponseHead,
    StreamId,
};

/// Stale response deadlines tolerated beyond twice the open streams before
/// a sweep (see [`Connection::set_response_deadline`]).
pub(super) const DEADLINE_SWEEP_MARGIN: usize = 32;

impl Connection {
    /// Client only: opens a stream with `head`; `end_stream` when the request
    /// has no body. Needs the peer's SETTINGS, respects its
    /// `max_concurrent_streams`, and is refused after a GOAWAY either way.
    pub fn open_stream(
        &mut self,
        head: RequestHead,
        end_stream: bool,
    ) -> Result<StreamId, UserError> {
        self.require_role(Role::Client)?;
        // "A client MUST NOT open streams before it has received the server's SETTINGS"
        self.require_open()?;
        // "streams > last were not processed" / "refuses later REQUESTs":
        // no new streams once either side sent GOAWAY.
        if self.going_away() {
            return Err(UserError::GoingAway);
        }
        // "max_concurrent_streams: Streams the sender lets the peer have open at once."
        if self.streams.len() >= self.peer_max_streams as usize {
            return Err(UserError::StreamLimit {
                max: self.peer_max_streams,
            });
        }
        let id = StreamId::try_new(u32::try_from(self.next_stream_id).unwrap_or(u32::MAX))
            .ok_or(UserError::StreamIdsExhausted)?;
        // "Method empty/non-token, path empty, port > 65535 -> invalid_head."
        if !crate::frame::is_valid_name(&head.method) {
            return Err(UserError::InvalidHead("method is empty or not a token"));
        }
        if head.path.is_empty() {
            return Err(UserError::InvalidHead("path is empty"));
        }
        // "A REQUEST that offers an upgrade MUST NOT carry END_STREAM."
        let upgrade = head.upgrade.is_some();
        if upgrade && end_stream {
            return Err(UserError::InvalidHead(
                "an upgrade offer cannot end the request stream",
            ));
        }
        self.check_block(&head.headers)?;
        self.check_block(&head.params)?;
        let payload_len = head.encoded_len();
        self.check_head_len(payload_len)?;
        self.next_stream_id += 2;
        let send = if end_stream {
            SendState::Done
        } else {
            SendState::Open
        };
        let mut stream = Stream::new(
            RecvState::AwaitHead,
            send,
            self.config.initial_stream_window,
            self.peer_stream_window,
        );
        stream.upgrade = upgrade;
        self.streams.insert(id, stream);
        self.control
            .push_back(Request::with_payload_len(id, head, end_stream, payload_len).into());
        Ok(id)
    }

    /// Server only: sends a response head on `id`. Interim (1xx) heads may
    /// precede the final one and cannot carry `end_stream`. On a stream
    /// whose REQUEST offered an upgrade, `101` is final: it accepts the
    /// offer, and DATA then carries the tunnel both ways.
    pub fn send_response(
        &mut self,
        id: StreamId,
        head: ResponseHead,
        end_stream: bool,
    ) -> Result<(), UserError> {
        self.require_role(Role::Server)?;
        self.require_not_closed()?;
        // "RESPONSE: prost uwire.v1.ResponseHead (status 100..=999 else invalid_head)."
        if !(100..=999).contains(&head.status) {
            return Err(UserError::InvalidHead("status outside 100..=999"));
        }
        if head
            .reason
            .as_ref()
            .is_some_and(|r| !crate::frame::is_valid_value(r))
        {
            return Err(UserError::InvalidHead(
                "reason phrase contains NUL, CR or LF",
            ));
        }
        // "an interim 1xx RESPONSE must not have it [END_STREAM], else
        // bad_flags" -- a 101, interim or not, never carries it on the wire.
        if head.is_informational() && end_stream {
            return Err(UserError::InterimWithEndStream);
        }
        self.check_block(&head.headers)?;
        let payload_len = head.encoded_len();
        self.check_head_len(payload_len)?;
        let stream = self.open_stream_mut(id)?;
        let interim = head.is_interim(stream.upgrade);
        // "Server sends RESPONSE (1xx interim* then final), then DATA*, then
        // optional TRAILERS."
        if stream.send != SendState::AwaitHead {
            return Err(UserError::ResponseAlreadySent(id));
        }
        if !interim {
            stream.send = if end_stream {
                SendState::Done
            } else {
                SendState::Open
            };
        }
        self.control
            .push_back(Response::with_payload_len(id, head, end_stream, payload_len).into());
        if end_stream {
            self.maybe_close(id);
        }
        Ok(())
    }

    /// Queues body bytes on `id`. Emitted by [`Connection::poll_transmit`]
    /// as the send windows allow, split at the peer's `max_frame_size`. An
    /// empty `data` with `end_stream` just ends the stream. The queue is
    /// bounded only by the caller (see [`Connection::send_buffered`]).
    pub fn send_data(
        &mut self,
        id: StreamId,
        data: Bytes,
        end_stream: bool,
    ) -> Result<(), UserError> {
        self.require_not_closed()?;
        let stream = self.open_stream_mut(id)?;
        match stream.send {
            SendState::AwaitHead => return Err(UserError::ResponseNotSent(id)),
            SendState::Ending | SendState::Done => return Err(UserError::SendClosed(id)),
            SendState::Open => {}
        }
        stream.push_data(data);
        if end_stream {
            stream.send = SendState::Ending;
        }
        self.schedule(id);
        Ok(())
    }

    /// Queues trailers on `id`; they are sent (with END_STREAM) after the
    /// queued data drains.
    pub fn send_trailers(&mut self, id: StreamId, fields: HeaderBlock) -> Result<(), UserError> {
        self.require_not_closed()?;
        self.check_block(&fields)?;
        self.check_head_len(fields.encoded_len())?;
        let stream = self.open_stream_mut(id)?;
        match stream.send {
            SendState::AwaitHead => return Err(UserError::ResponseNotSent(id)),
            SendState::Ending | SendState::Done => return Err(UserError::SendClosed(id)),
            SendState::Open => {}
        }
        stream.trailers = Some(Box::new(fields));
        stream.send = SendState::Ending;
        self.schedule(id);
        Ok(())
    }

    /// Client: gives stream `id` until `at` for its final RESPONSE. If it
    /// has not arrived by then, [`Connection::handle_timeout`] resets the
    /// stream (RESET with `CANCEL`) and emits
    /// [`Event::ResponseTimeout`](crate::conn::Event::ResponseTimeout).
    /// Every deadline is served by the connection's one timer
    /// ([`Connection::poll_timeout`]): a stream costs a queue entry, not a
    /// timer of its own. Ignored for a stream that is unknown or already
    /// has its final head; of several deadlines for one stream, the
    /// earliest applies.
    pub fn set_response_deadline(&mut self, id: StreamId, at: Instant) {
        if self.role != Role::Client || self.closed || !self.awaits_head(id) {
            return;
        }
        // Every entry is behind a stream that was open when it was added:
        // sweeping the stale ones once they outnumber the open streams
        // (plus a margin) keeps the queue within twice the streams, at a
        // cost spread over the insertions since the last sweep.
        if self.head_deadlines.len() >= 2 * self.streams.len() + DEADLINE_SWEEP_MARGIN {
            let mut q = std::mem::take(&mut self.head_deadlines);
            q.retain(|&(_, s)| self.awaits_head(s));
            self.head_deadlines = q;
        }
        // In deadline order; with one timeout per client the new one is
        // almost always the latest.
        let at_or_before = self.head_deadlines.iter().rposition(|&(t, _)| t <= at);
        let i = at_or_before.map_or(0, |i| i + 1);
        self.head_deadlines.insert(i, (at, id));
    }

    /// Resets `id`: drops its queued data and sends RESET(`reason`). No
    /// [`Event::StreamReset`](crate::conn::Event::StreamReset) is emitted for it.
    pub fn reset_stream(&mut self, id: StreamId, reason: Reason) -> Result<(), UserError> {
        self.require_not_closed()?;
        if self.remove_stream(id, Recent::Reset).is_none() {
            return Err(UserError::UnknownStream(id));
        }
        self.control.push_back(Reset::new(id, reason).into());
        self.maybe_finish_drain();
        Ok(())
    }

    /// The application consumed `n` received bytes of `id`. Returns credit
    /// to the peer, batching WINDOW_UPDATEs for the stream and the
    /// connection. Fine to call after the stream closed or was reset: then
    /// only the connection is credited. Every byte delivered in
    /// [`Event::Data`](crate::conn::Event::Data) should be released exactly once, even after a reset,
    /// or the connection window shrinks; over-release is clamped.
    pub fn release_capacity(&mut self, id: StreamId, n: usize) {
        if self.closed || n == 0 {
            return;
        }
        // "Receivers return credit only as the application consumes data
        // (release_capacity), batching updates"
        let n = self.conn_recv.release(n) as usize;
        self.flush_connection_update();
        if let Some(stream) = self.streams.get_mut(id) {
            stream.recv_window.release(n);
            self.flush_stream_update(id);
        }
    }

    /// Sends a PING with `payload`. Its answer comes as [`Event::PingAck`](crate::conn::Event::PingAck);
    /// no answer within `ping_timeout` fails the connection.
    pub fn send_ping(&mut self, payload: [u8; 8], now: Instant) -> Result<(), UserError> {
        self.require_not_closed()?;
        self.pings.push_back(PendingPing {
            payload,
            sent: now,
            keepalive: false,
            drain: false,
        });
        self.control.push_back(Ping::new(payload).into());
        Ok(())
    }

    /// Starts a graceful drain in two steps, so that no REQUEST already on
    /// its way when the drain starts is refused (PROTOCOL.md 11.2, the way
    /// HTTP/2 servers do it): GOAWAY(NO_ERROR, last = 2^31-1) tells the
    /// client to open no new streams, and a PING follows it. The PING's
    /// answer comes after every REQUEST the client sent before it read the
    /// GOAWAY, so at that moment the final GOAWAY(NO_ERROR, last = highest
    /// REQUEST id) goes out as by [`Connection::go_away`], which refuses
    /// nothing the client still believed accepted. A client that never
    /// answers delays the final GOAWAY by `Config::drain_notice_timeout` (1 s) at
    /// most, and the drain deadline still applies. On a
    /// client, and once a GOAWAY of ours is out, this is
    /// `go_away(NO_ERROR)`.
    pub fn go_away_gracefully(&mut self, now: Instant) {
        if self.closed || self.drain_notice.is_some() {
            return;
        }
        if self.role != Role::Server
            || self.local_goaway.is_some()
            || !self.is_ready()
            || self.config.drain_notice_timeout.is_zero()
        {
            return self.go_away(Reason::NO_ERROR, Bytes::new(), now);
        }
        self.drain_notice = Some(now + self.config.drain_notice_timeout);
        self.control
            .push_back(GoAway::new(StreamId::MAX, Reason::NO_ERROR, Bytes::new()).into());
        let payload = *b"uwdrain\0";
        self.pings.push_back(PendingPing {
            payload,
            sent: now,
            keepalive: false,
            drain: true,
        });
        self.control.push_back(Ping::new(payload).into());
    }

    /// Starts shutdown. `Reason::NO_ERROR` is a graceful drain: GOAWAY(last
    /// = highest peer stream id seen, 0 on a client) is sent, new peer
    /// streams are refused with RESET(REFUSED_STREAM), no new local streams
    /// open, and the connection closes once no streams remain (or at the
    /// drain deadline). Any other reason closes right away after the GOAWAY;
    /// open streams get `StreamReset { reason, remote: false }`.
    pub fn go_away(&mut self, reason: Reason, debug: Bytes, _now: Instant) {
        if self.closed {
            return;
        }
        let last = self.last_peer_stream_id();
        // "Graceful shutdown: server sends GOAWAY(NO_ERROR, last = highest
        // REQUEST id received), refuses later REQUESTs with
        // RESET(REFUSED_STREAM), closes when all streams are done or a drain
        // deadline passes. After sending GOAWAY for an error, the sender
        // closes."
        if reason == Reason::NO_ERROR {
            if self.local_goaway.is_some() {
                return;
            }
            self.local_goaway = Some(reason);
            self.control
                .push_back(GoAway::new(last, reason, debug).into());
            self.maybe_finish_drain();
        } else {
            self.local_goaway = Some(reason);
            self.control
                .push_back(GoAway::new(last, reason, debug).into());
            self.reset_all(reason, false);
            self.close(Some(ConnError::local_go_away(reason)));
        }
    }

    /// During a graceful drain (ours or the peer's GOAWAY(NO_ERROR)): at
    /// `deadline`, remaining streams are reset with `Reason::CANCEL` and the
    /// connection closes (`Closed { error: None }`). May be called before
    /// [`Connection::go_away`]; it takes effect once draining.
    pub fn set_drain_deadline(&mut self, deadline: Instant) {
        self.drain_deadline = Some(deadline);
    }

    // ------------------------------------------------------------------
    // Checks
    // ------------------------------------------------------------------

    fn require_role(&self, expected: Role) -> Result<(), UserError> {
        if self.role == expected {
            Ok(())
        } else {
            Err(UserError::WrongRole { expected })
        }
    }

    fn require_not_closed(&self) -> Result<(), UserError> {
        if self.closed {
            Err(UserError::Closed)
        } else {
            Ok(())
        }
    }

    fn require_open(&self) -> Result<(), UserError> {
        self.require_not_closed()?;
        if self.is_ready() {
            Ok(())
        } else {
            Err(UserError::NotReady)
        }
    }

    fn open_stream_mut(&mut self, id: StreamId) -> Result<&mut Stream, UserError> {
        self.streams.get_mut(id).ok_or(UserError::UnknownStream(id))
    }

    fn check_block(&self, block: &HeaderBlock) -> Result<(), UserError> {
        let max = self.peer_limits.max_header_count;
        if block.len() > max as usize {
            return Err(UserError::TooManyHeaders {
                count: block.len(),
                max,
            });
        }
        Ok(())
    }

    fn check_head_len(&self, len: usize) -> Result<(), UserError> {
        let max = self.peer_limits.max_head_size;
        if len > max as usize {
            return Err(UserError::HeadTooLarge { len, max });
        }
        Ok(())
    }
}
