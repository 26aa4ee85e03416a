//! Inbound frames: [`Connection::handle_frame`] and one handler per kind.

use std::time::Instant;

use super::config::{
    DEFAULT_INITIAL_CONNECTION_WINDOW, DEFAULT_INITIAL_STREAM_WINDOW,
    DEFAULT_MAX_CONCURRENT_STREAMS,
};
use super::engine::Connection;
use super::error::{ConnError, ConnErrorClass};
use super::flow::SendWindow;
use super::guard::Origin;
use super::stream::{Recent, RecvState, SendState, Stream};
use super::{Event, Role};
use crate::frame::Limits;
use crate::frame::{
    Data, DecodeError, ErrorClass, Frame, GoAway, Kind, Ping, Reason, Request, Reset, Response,
    Settings, StreamId, Trailers, WindowUpdate,
};

/// Connection WINDOW_UPDATE increments below this (or below half the
/// peer's announced connection window, if smaller) count as useless frames.
const TINY_WINDOW_INCREMENT: u32 = 1024;

/// Where a stream id stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lookup {
    /// In the stream table.
    Open,
    /// Never opened.
    Idle,
    /// Recently closed or reset.
    Recent(Recent),
    /// Closed long ago and forgotten.
    Forgotten,
}

fn err(class: ConnErrorClass, id: StreamId, detail: &'static str) -> ConnError {
    ConnError::new(class, id, detail)
}

/// A decode-class error for frames built by hand (the codec rejects these
/// before they reach the engine).
fn malformed(class: ErrorClass, kind: Kind, id: StreamId, detail: &'static str) -> ConnError {
    ConnError::from(DecodeError::new(class, Some(kind), id, detail))
}

impl Connection {
    /// Feeds one frame received from the peer. `Err` means the connection
    /// is dead: a GOAWAY carrying [`ConnError::reason`] has been queued for
    /// transmit, open streams got [`Event::StreamReset`] and
    /// [`Event::Closed`] was emitted. Stream-level errors (RESET) are not
    /// errors here. Frames fed after the connection closed are ignored.
    pub fn handle_frame(&mut self, frame: Frame, now: Instant) -> Result<(), ConnError> {
        if self.closed {
            return Ok(());
        }
        self.last_recv = now;
        let result = self.recv_frame(frame, now);
        if let Err(e) = &result {
            self.fail(e.clone());
        }
        result
    }

    fn recv_frame(&mut self, frame: Frame, now: Instant) -> Result<(), ConnError> {
        if self.peer_settings.is_none() {
            // "Any other frame before the peer's SETTINGS -> connection error
            // (settings_not_first)."
            return match frame {
                Frame::Settings(s) => self.recv_settings(s),
                f => Err(err(
                    ConnErrorClass::SettingsNotFirst,
                    f.stream_id(),
                    "first frame from the peer is not SETTINGS",
                )),
            };
        }
        match frame {
            // "A second SETTINGS -> connection error."
            Frame::Settings(_) => Err(err(
                ConnErrorClass::DuplicateSettings,
                StreamId::ZERO,
                "second SETTINGS frame",
            )),
            Frame::Request(f) => self.recv_request(f),
            Frame::Response(f) => self.recv_response(f),
            Frame::Data(f) => self.recv_data(f),
            Frame::Trailers(f) => self.recv_trailers(f),
            Frame::Reset(f) => self.recv_reset(f),
            Frame::Ping(f) => self.recv_ping(f, now),
            Frame::GoAway(f) => {
                self.recv_goaway(f);
                Ok(())
            }
            Frame::WindowUpdate(f) => self.recv_window_update(f),
            // "0x80-0xFF: extension range, unknown -> ignored"
            Frame::Unknown(f) => self.charge_useless(f.stream_id(), "too many extension frames"),
        }
    }

    fn recv_settings(&mut self, s: Settings) -> Result<(), ConnError> {
        // "out of range -> invalid_settings" (the codec checks too; this
        // covers frames built by hand).
        s.validate().map_err(|d| {
            malformed(
                ErrorClass::InvalidSettings,
                Kind::SETTINGS,
                StreamId::ZERO,
                d,
            )
        })?;
        self.peer_limits = Limits::from_settings(&s);
        self.peer_stream_window = s
            .initial_stream_window
            .unwrap_or(DEFAULT_INITIAL_STREAM_WINDOW);
        self.conn_send = SendWindow::new(
            s.initial_connection_window
                .unwrap_or(DEFAULT_INITIAL_CONNECTION_WINDOW),
        );
        self.peer_max_streams = s
            .max_concurrent_streams
            .unwrap_or(DEFAULT_MAX_CONCURRENT_STREAMS);
        self.peer_settings = Some(s);
        self.events.push_back(Event::Ready);
        Ok(())
    }

    fn lookup(&self, id: StreamId) -> Lookup {
        if self.streams.get(id).is_some() {
            return Lookup::Open;
        }
        // Only the client opens streams, with odd ids; an even id or one
        // above every id opened so far was never opened.
        let idle = !id.is_client_initiated()
            || match self.role {
                Role::Server => id > self.highest_peer_id,
                Role::Client => u64::from(id.get()) >= self.next_stream_id,
            };
        if idle {
            Lookup::Idle
        } else {
            self.streams
                .recent(id)
                .map_or(Lookup::Forgotten, Lookup::Recent)
        }
    }

    /// A frame for a stream that is not open.
    fn not_open(&mut self, id: StreamId, at: Lookup, kind: Kind) -> Result<(), ConnError> {
        match at {
            // "DATA/TRAILERS on an idle stream (id above highest seen) ->
            // connection error (frame_on_idle_stream)."
            Lookup::Idle => Err(err(
                ConnErrorClass::FrameOnIdleStream,
                id,
                "frame on a stream that was never opened",
            )),
            // "DATA after the peer's END_STREAM on a stream still known ->
            // stream error RESET(STREAM_CLOSED)."
            Lookup::Recent(Recent::Closed)
                if matches!(kind, Kind::DATA | Kind::TRAILERS | Kind::RESPONSE) =>
            {
                self.stream_error(id, Reason::STREAM_CLOSED)
            }
            // "Frames for a stream we reset ourselves (recently) are ignored
            // [...]. Frames for a long-closed, forgotten stream are ignored
            // likewise."
            _ => Ok(()),
        }
    }

    /// Returns ignored DATA bytes to the connection window.
    fn discard(&mut self, len: usize) {
        self.conn_recv.release(len);
        self.flush_connection_update();
    }

    fn refuse(&mut self, id: StreamId) -> Result<(), ConnError> {
        self.streams.remember(id, Recent::Reset);
        self.queue_reply_reset(id, Reason::REFUSED_STREAM)
    }

    fn recv_request(&mut self, f: Request) -> Result<(), ConnError> {
        let id = f.stream_id();
        // "RESPONSE received by a server or REQUEST received by a client ->
        // connection error."
        if self.role == Role::Client {
            return Err(err(
                ConnErrorClass::UnexpectedFrame,
                id,
                "REQUEST received by a client",
            ));
        }
        // "REQUEST needs odd id" (codec-level; frames built by hand).
        if !id.is_client_initiated() {
            return Err(malformed(
                ErrorClass::BadStreamId,
                Kind::REQUEST,
                id,
                "REQUEST on an even stream id",
            ));
        }
        // The codec refuses an upgrade REQUEST with END_STREAM (bad_flags);
        // a frame built by hand gets the same answer here.
        if f.head().upgrade.is_some() && f.is_end_stream() {
            return Err(malformed(
                ErrorClass::BadFlags,
                Kind::REQUEST,
                id,
                "upgrade REQUEST with END_STREAM",
            ));
        }
        // "A REQUEST whose id is <= the highest id seen -> connection error
        // stream_id_reuse (PROTOCOL_ERROR)."
        if id <= self.highest_peer_id {
            return Err(err(
                ConnErrorClass::StreamIdReuse,
                id,
                "REQUEST id not above the highest id seen",
            ));
        }
        self.highest_peer_id = id;
        // "Graceful shutdown: server sends GOAWAY(NO_ERROR, last = highest
        // REQUEST id received), refuses later REQUESTs with
        // RESET(REFUSED_STREAM)"
        if self.local_goaway.is_some() {
            return self.refuse(id);
        }
        // "REQUEST beyond our max_concurrent_streams -> RESET(REFUSED_STREAM)
        // for that stream only (safe to retry)."
        if self.streams.len() >= self.config.max_concurrent_streams as usize {
            return self.refuse(id);
        }
        let end_stream = f.is_end_stream();
        let recv = if end_stream {
            RecvState::Closed
        } else {
            RecvState::Body
        };
        let mut stream = Stream::new(
            recv,
            SendState::AwaitHead,
            self.config.initial_stream_window,
            self.peer_stream_window,
        );
        stream.upgrade = f.head().upgrade.is_some();
        self.streams.insert(id, stream);
        self.events.push_back(Event::Request {
            id,
            head: f.into_boxed_head(),
            end_stream,
        });
        Ok(())
    }

    fn recv_response(&mut self, f: Response) -> Result<(), ConnError> {
        let id = f.stream_id();
        // "RESPONSE received by a server or REQUEST received by a client ->
        // connection error."
        if self.role == Role::Server {
            return Err(err(
                ConnErrorClass::UnexpectedFrame,
                id,
                "RESPONSE received by a server",
            ));
        }
        let end_stream = f.is_end_stream();
        let head = f.into_head();
        // "an interim 1xx RESPONSE must not have it, else bad_flags"
        if head.is_informational() && end_stream {
            return Err(malformed(
                ErrorClass::BadFlags,
                Kind::RESPONSE,
                id,
                "interim 1xx RESPONSE with END_STREAM",
            ));
        }
        let at = self.lookup(id);
        let Some(s) = self.streams.get_mut(id) else {
            return self.not_open(id, at, Kind::RESPONSE);
        };
        match s.recv {
            RecvState::Closed => {
                return self.stream_error(id, Reason::STREAM_CLOSED);
            }
            // "Server sends RESPONSE (1xx interim* then final), then DATA*,
            // then optional TRAILERS."
            RecvState::Body => {
                return Err(err(
                    ConnErrorClass::UnexpectedFrame,
                    id,
                    "RESPONSE after the final RESPONSE",
                ))
            }
            RecvState::AwaitHead => {}
        }
        // "RESPONSE(1xx)* then exactly one final RESPONSE"; a 101 answering
        // an upgrade offer is final (section 7.5).
        let is_final = !head.is_interim(s.upgrade);
        if is_final {
            s.recv = if end_stream {
                RecvState::Closed
            } else {
                RecvState::Body
            };
        }
        self.events.push_back(Event::Response {
            id,
            head,
            end_stream,
        });
        if is_final {
            self.settle_response_deadline(id);
        }
        if end_stream {
            self.maybe_close(id);
        }
        Ok(())
    }

    fn recv_data(&mut self, f: Data) -> Result<(), ConnError> {
        let id = f.stream_id();
        let end_stream = f.is_end_stream();
        let data = f.into_payload();
        let len = data.len();
        let at = self.lookup(id);
        if at == Lookup::Idle {
            return self.not_open(id, at, Kind::DATA);
        }
        if len == 0 && !end_stream {
            self.charge_useless(id, "too many empty DATA frames without END_STREAM")?;
        }
        // "DATA payload bytes count against the per-stream and
        // per-connection windows" / "Receiving more DATA than the window
        // allows -> FLOW_CONTROL_ERROR (stream window: RESET; connection
        // window: GOAWAY)."
        if self.conn_recv.receive(len).is_err() {
            return Err(err(
                ConnErrorClass::FlowControlViolation,
                id,
                "DATA exceeds the connection receive window",
            ));
        }
        let Some(s) = self.streams.get_mut(id) else {
            // "(but DATA still counts against and is credited back to the
            // connection window)"
            self.discard(len);
            return self.not_open(id, at, Kind::DATA);
        };
        let stream_reset = match s.recv {
            // "Server sends RESPONSE (1xx interim* then final), then DATA*"
            RecvState::AwaitHead => {
                return Err(err(
                    ConnErrorClass::UnexpectedFrame,
                    id,
                    "DATA before the final RESPONSE",
                ))
            }
            // "DATA after the peer's END_STREAM on a stream still known ->
            // stream error RESET(STREAM_CLOSED)."
            RecvState::Closed => Some(Reason::STREAM_CLOSED),
            RecvState::Body if s.recv_window.receive(len).is_err() => {
                Some(Reason::FLOW_CONTROL_ERROR)
            }
            RecvState::Body => None,
        };
        if let Some(reason) = stream_reset {
            self.discard(len);
            return self.stream_error(id, reason);
        }
        if len == 0 && !end_stream {
            // Nothing to deliver.
            return Ok(());
        }
        if end_stream {
            s.recv = RecvState::Closed;
        }
        self.events.push_back(Event::Data {
            id,
            data,
            end_stream,
        });
        // "or when a stream's window hits 0"
        self.flush_stream_update(id);
        self.flush_connection_update();
        if end_stream {
            self.maybe_close(id);
        }
        Ok(())
    }

    fn recv_trailers(&mut self, f: Trailers) -> Result<(), ConnError> {
        let id = f.stream_id();
        let at = self.lookup(id);
        let Some(s) = self.streams.get_mut(id) else {
            return self.not_open(id, at, Kind::TRAILERS);
        };
        match s.recv {
            // "then DATA*, then optional TRAILERS"
            RecvState::AwaitHead => Err(err(
                ConnErrorClass::UnexpectedFrame,
                id,
                "TRAILERS before the final RESPONSE",
            )),
            // "END_STREAM closes the sender's half."
            RecvState::Closed => self.stream_error(id, Reason::STREAM_CLOSED),
            RecvState::Body => {
                s.recv = RecvState::Closed;
                self.events.push_back(Event::Trailers {
                    id,
                    fields: f.into_fields(),
                });
                self.maybe_close(id);
                Ok(())
            }
        }
    }

    fn recv_reset(&mut self, f: Reset) -> Result<(), ConnError> {
        let id = f.stream_id();
        match self.lookup(id) {
            // "RESET closes both halves at once."
            Lookup::Open => {
                // Rapid reset (CVE-2023-44487): a stream the peer opened and
                // reset before we sent its final response head cost us work
                // for nothing.
                let early = self.role == Role::Server
                    && self
                        .streams
                        .get(id)
                        .is_some_and(|s| s.send == SendState::AwaitHead);
                self.remove_stream(id, Recent::Reset);
                self.events.push_back(Event::StreamReset {
                    id,
                    reason: f.reason(),
                    remote: true,
                });
                if early {
                    self.charge_reset(id)?;
                }
                self.maybe_finish_drain();
                Ok(())
            }
            Lookup::Recent(_) => {
                self.streams.remember(id, Recent::Reset);
                Ok(())
            }
            at => self.not_open(id, at, Kind::RESET),
        }
    }

    fn recv_ping(&mut self, f: Ping, now: Instant) -> Result<(), ConnError> {
        let payload = f.payload();
        if !f.is_ack() {
            let (max, window) = (self.config.max_peer_pings, self.config.abuse_window);
            if !self.ping_budget.spend(now, max, window) {
                return Err(err(
                    ConnErrorClass::PingFlood,
                    StreamId::ZERO,
                    "too many PINGs in the abuse window",
                ));
            }
            // "PING without ACK is answered by PING with ACK and the same
            // payload, immediately."
            self.control
                .push_reply(Ping::pong(payload).into(), Origin::Pong);
            if self.control.pending_pongs() > self.config.max_pending_pongs {
                return Err(err(
                    ConnErrorClass::PingFlood,
                    StreamId::ZERO,
                    "too many PING ACKs waiting for transmit",
                ));
            }
            return Ok(());
        }
        let Some(p) = self
            .pings
            .iter()
            .position(|p| p.payload == payload)
            .and_then(|i| self.pings.remove(i))
        else {
            return Err(err(
                ConnErrorClass::UnexpectedPingAck,
                StreamId::ZERO,
                "PING ACK answers no PING we sent",
            ));
        };
        if p.drain {
            // Every REQUEST sent before the drain notice was read is in.
            self.drain_notice = None;
            self.go_away(Reason::NO_ERROR, bytes::Bytes::new(), now);
            return Ok(());
        }
        self.events.push_back(Event::PingAck {
            payload,
            rtt: Some(now.saturating_duration_since(p.sent)),
        });
        Ok(())
    }

    fn recv_goaway(&mut self, f: GoAway) {
        let (last, reason, debug) = (f.last_stream_id(), f.reason(), f.debug_data().clone());
        let effective = self.peer_goaway.map_or(last, |prev| prev.min(last));
        self.peer_goaway = Some(effective);
        self.events.push_back(Event::GoAway {
            last_stream_id: last,
            reason,
            debug: debug.clone(),
        });
        // "streams > last were not processed and the client treats them as
        // REFUSED_STREAM (safe retry)."
        if self.role == Role::Client {
            for id in self.streams.sorted_ids() {
                if id > effective {
                    self.remove_stream(id, Recent::Reset);
                    self.events.push_back(Event::StreamReset {
                        id,
                        reason: Reason::REFUSED_STREAM,
                        remote: true,
                    });
                }
            }
        }
        if reason != Reason::NO_ERROR {
            // "After sending GOAWAY for an error, the sender closes."
            self.reset_all(reason, true);
            self.close(Some(ConnError::remote_go_away(reason, &debug)));
        } else {
            self.maybe_finish_drain();
        }
    }

    fn recv_window_update(&mut self, f: WindowUpdate) -> Result<(), ConnError> {
        let id = f.stream_id();
        // "WINDOW_UPDATE that makes a window exceed 2^31-1 ->
        // FLOW_CONTROL_ERROR (stream: RESET; connection: GOAWAY)."
        if id.is_zero() {
            // A tiny connection increment grants next to nothing; a peer
            // batching as section 8.2 says never sends one.
            let peer_window = self
                .peer_settings
                .as_ref()
                .and_then(|s| s.initial_connection_window)
                .unwrap_or(DEFAULT_INITIAL_CONNECTION_WINDOW);
            if f.increment() < (peer_window / 2).min(TINY_WINDOW_INCREMENT) {
                self.charge_useless(id, "too many tiny connection WINDOW_UPDATEs")?;
            }
            return self.conn_send.grant(f.increment()).map_err(|_| {
                err(
                    ConnErrorClass::WindowOverflow,
                    id,
                    "WINDOW_UPDATE overflows the connection send window",
                )
            });
        }
        let at = self.lookup(id);
        let Some(s) = self.streams.get_mut(id) else {
            return self.not_open(id, at, Kind::WINDOW_UPDATE);
        };
        if s.send_window.grant(f.increment()).is_err() {
            return self.stream_error(id, Reason::FLOW_CONTROL_ERROR);
        }
        self.schedule(id);
        Ok(())
    }
}
