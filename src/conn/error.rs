//! Errors of the connection layer: [`ConnError`] for faults that end the
//! connection, [`UserError`] for local misuse of the API.

use std::borrow::Cow;
use std::fmt;

use bytes::Bytes;

use super::Role;
use crate::frame::{DecodeError, ErrorClass, Reason, StreamId};

/// The class of a connection error: a stable, language-neutral name used by
/// the engine test vectors (`tests/vectors/engine_*.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConnErrorClass {
    /// A frame failed to decode; the name is the decode error class.
    Decode(ErrorClass),
    /// The peer's first frame was not SETTINGS.
    SettingsNotFirst,
    /// The peer sent a second SETTINGS.
    DuplicateSettings,
    /// A REQUEST whose id is not above every id seen before.
    StreamIdReuse,
    /// DATA, TRAILERS, RESPONSE, RESET or WINDOW_UPDATE on a stream that was
    /// never opened.
    FrameOnIdleStream,
    /// A frame the receiver's role or the stream's state does not allow:
    /// REQUEST to a client, RESPONSE to a server, DATA or TRAILERS before
    /// the final RESPONSE, a second final RESPONSE.
    UnexpectedFrame,
    /// DATA beyond the connection receive window.
    FlowControlViolation,
    /// A WINDOW_UPDATE that pushes the connection send window past 2^31-1.
    WindowOverflow,
    /// A PING with ACK that answers no PING we sent.
    UnexpectedPingAck,
    /// The peer's SETTINGS did not arrive within `settings_timeout`.
    SettingsTimeout,
    /// A PING we sent stayed unanswered for `ping_timeout`.
    PingTimeout,
    /// The peer sent GOAWAY with an error reason and is closing.
    RemoteGoAway,
    /// We closed the connection with [`go_away`](super::Connection::go_away)
    /// and an error reason.
    LocalGoAway,
    /// The transport closed while the connection was still in use.
    UnexpectedEof,
    /// The peer reset (or made us refuse or reset) more streams per
    /// `abuse_window` than `max_peer_resets` allows (CVE-2023-44487 class).
    RapidReset,
    /// More PINGs per `abuse_window` than `max_peer_pings`, or more PING
    /// ACKs waiting for transmit than `max_pending_pongs`.
    PingFlood,
    /// More frames that do no useful work per `abuse_window` than
    /// `max_useless_frames` (empty DATA without END_STREAM, extension
    /// frames, tiny connection WINDOW_UPDATEs).
    FrameFlood,
    /// More RESETs in reply to peer frames waiting for transmit than
    /// `max_pending_resets`.
    TransmitBacklog,
}

impl ConnErrorClass {
    /// The stable snake_case name used in the test vectors. A decode error
    /// uses its [`ErrorClass`] name.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnErrorClass::Decode(c) => c.as_str(),
            ConnErrorClass::SettingsNotFirst => "settings_not_first",
            ConnErrorClass::DuplicateSettings => "duplicate_settings",
            ConnErrorClass::StreamIdReuse => "stream_id_reuse",
            ConnErrorClass::FrameOnIdleStream => "frame_on_idle_stream",
            ConnErrorClass::UnexpectedFrame => "unexpected_frame",
            ConnErrorClass::FlowControlViolation => "flow_control_violation",
            ConnErrorClass::WindowOverflow => "window_overflow",
            ConnErrorClass::UnexpectedPingAck => "unexpected_ping_ack",
            ConnErrorClass::SettingsTimeout => "settings_timeout",
            ConnErrorClass::PingTimeout => "ping_timeout",
            ConnErrorClass::RemoteGoAway => "remote_go_away",
            ConnErrorClass::LocalGoAway => "local_go_away",
            ConnErrorClass::UnexpectedEof => "unexpected_eof",
            ConnErrorClass::RapidReset => "rapid_reset",
            ConnErrorClass::PingFlood => "ping_flood",
            ConnErrorClass::FrameFlood => "frame_flood",
            ConnErrorClass::TransmitBacklog => "transmit_backlog",
        }
    }

    /// The reason code we send in GOAWAY for an error of this class. For
    /// [`RemoteGoAway`](Self::RemoteGoAway) and [`LocalGoAway`](Self::LocalGoAway)
    /// the error carries the actual reason instead.
    pub fn default_reason(self) -> Reason {
        match self {
            ConnErrorClass::Decode(c) => c.reason(),
            ConnErrorClass::FlowControlViolation | ConnErrorClass::WindowOverflow => {
                Reason::FLOW_CONTROL_ERROR
            }
            ConnErrorClass::SettingsTimeout => Reason::SETTINGS_TIMEOUT,
            ConnErrorClass::PingTimeout => Reason::TIMEOUT,
            ConnErrorClass::UnexpectedEof | ConnErrorClass::LocalGoAway => Reason::INTERNAL_ERROR,
            ConnErrorClass::RapidReset
            | ConnErrorClass::PingFlood
            | ConnErrorClass::FrameFlood
            | ConnErrorClass::TransmitBacklog => Reason::ENHANCE_YOUR_CALM,
            _ => Reason::PROTOCOL_ERROR,
        }
    }
}

impl fmt::Display for ConnErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A connection error: the connection is dead. When we detected it, a
/// GOAWAY carrying [`ConnError::reason`] has been queued for transmit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnError {
    class: ConnErrorClass,
    reason: Reason,
    stream: StreamId,
    detail: Cow<'static, str>,
}

impl ConnError {
    /// An error of `class` (with its default reason) about `stream`
    /// (0 when not tied to a stream).
    pub fn new(
        class: ConnErrorClass,
        stream: StreamId,
        detail: impl Into<Cow<'static, str>>,
    ) -> ConnError {
        ConnError {
            class,
            reason: class.default_reason(),
            stream,
            detail: detail.into(),
        }
    }

    /// The peer's GOAWAY with an error reason.
    pub(crate) fn remote_go_away(reason: Reason, debug: &Bytes) -> ConnError {
        let mut e = ConnError::new(
            ConnErrorClass::RemoteGoAway,
            StreamId::ZERO,
            format!(
                "peer sent GOAWAY({reason}): {}",
                String::from_utf8_lossy(debug)
            ),
        );
        e.reason = reason;
        e
    }

    /// Our own GOAWAY with an error reason.
    pub(crate) fn local_go_away(reason: Reason) -> ConnError {
        let mut e = ConnError::new(
            ConnErrorClass::LocalGoAway,
            StreamId::ZERO,
            format!("closed locally with GOAWAY({reason})"),
        );
        e.reason = reason;
        e
    }

    /// The error class (stable across implementations).
    pub fn class(&self) -> ConnErrorClass {
        self.class
    }

    /// The reason code carried by the GOAWAY.
    pub fn reason(&self) -> Reason {
        self.reason
    }

    /// The stream the offending frame was on (0 for connection-level).
    pub fn stream_id(&self) -> StreamId {
        self.stream
    }

    /// Human-readable detail (also sent as GOAWAY debug data).
    pub fn detail(&self) -> &str {
        &self.detail
    }
}

impl fmt::Display for ConnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.class {
            // The detail is the decode error's own full text.
            ConnErrorClass::Decode(_) => f.write_str(&self.detail),
            c if self.stream.is_zero() => write!(f, "{c}: {}", self.detail),
            c => write!(f, "{c} on stream {}: {}", self.stream, self.detail),
        }
    }
}

impl std::error::Error for ConnError {}

impl From<DecodeError> for ConnError {
    fn from(e: DecodeError) -> ConnError {
        ConnError::from(&e)
    }
}

impl From<&DecodeError> for ConnError {
    fn from(e: &DecodeError) -> ConnError {
        ConnError {
            class: ConnErrorClass::Decode(e.class()),
            reason: e.reason(),
            stream: e.stream_id(),
            detail: e.to_string().into(),
        }
    }
}

/// Local misuse of the connection API. Never caused by the peer; the
/// connection is unaffected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UserError {
    /// The operation belongs to the other role (e.g. a server opening a
    /// stream, a client sending a response).
    #[error("operation requires the {expected:?} role")]
    WrongRole {
        /// The role the operation needs.
        expected: Role,
    },
    /// The peer's SETTINGS has not arrived yet; streams cannot be opened.
    #[error("peer SETTINGS not received yet")]
    NotReady,
    /// A GOAWAY was sent or received: no new streams.
    #[error("connection is going away; no new streams")]
    GoingAway,
    /// The connection is closed.
    #[error("connection is closed")]
    Closed,
    /// The peer's `max_concurrent_streams` is reached.
    #[error("peer allows at most {max} concurrent streams")]
    StreamLimit {
        /// The peer's limit.
        max: u32,
    },
    /// Every client stream id up to 2^31-1 has been used.
    #[error("stream ids exhausted")]
    StreamIdsExhausted,
    /// The stream is not open: never opened, closed, or reset.
    #[error("stream {0} is not open (unknown, closed or reset)")]
    UnknownStream(StreamId),
    /// END_STREAM (or trailers) already sent or queued on this stream.
    #[error("stream {0}: END_STREAM already sent or queued")]
    SendClosed(StreamId),
    /// DATA or trailers before the final response head (server).
    #[error("stream {0}: final response head not sent yet")]
    ResponseNotSent(StreamId),
    /// A second final response head (server).
    #[error("stream {0}: final response head already sent")]
    ResponseAlreadySent(StreamId),
    /// An interim 1xx head cannot carry END_STREAM.
    #[error("an interim 1xx response cannot end the stream")]
    InterimWithEndStream,
    /// A head the peer would reject as `invalid_head`.
    #[error("invalid head: {0}")]
    InvalidHead(&'static str),
    /// A head larger than the peer's `max_head_size`.
    #[error("head of {len} bytes exceeds the peer's max_head_size of {max}")]
    HeadTooLarge {
        /// Encoded head length.
        len: usize,
        /// The peer's limit.
        max: u32,
    },
    /// A header block with more entries than the peer's `max_header_count`.
    #[error("header block of {count} entries exceeds the peer's max_header_count of {max}")]
    TooManyHeaders {
        /// Entries in the block.
        count: usize,
        /// The peer's limit.
        max: u32,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_errors_keep_class_and_reason() {
        let d = DecodeError::new(
            ErrorClass::HeadTooLarge,
            Some(crate::frame::Kind::REQUEST),
            StreamId::new(3),
            "too big",
        );
        let e = ConnError::from(&d);
        assert_eq!(e.class().as_str(), "head_too_large");
        assert_eq!(e.reason(), Reason::FRAME_SIZE_ERROR);
        assert_eq!(e.stream_id(), StreamId::new(3));
        assert_eq!(e.to_string(), d.to_string());
    }

    #[test]
    fn class_names_and_reasons() {
        let e = ConnError::new(ConnErrorClass::StreamIdReuse, StreamId::new(5), "x");
        assert_eq!(e.reason(), Reason::PROTOCOL_ERROR);
        assert_eq!(e.to_string(), "stream_id_reuse on stream 5: x");
        assert_eq!(
            ConnErrorClass::SettingsTimeout.default_reason(),
            Reason::SETTINGS_TIMEOUT
        );
        assert_eq!(
            ConnErrorClass::PingTimeout.default_reason(),
            Reason::TIMEOUT
        );
        assert_eq!(
            ConnErrorClass::WindowOverflow.default_reason(),
            Reason::FLOW_CONTROL_ERROR
        );
        for c in [
            ConnErrorClass::RapidReset,
            ConnErrorClass::PingFlood,
            ConnErrorClass::FrameFlood,
            ConnErrorClass::TransmitBacklog,
        ] {
            assert_eq!(c.default_reason(), Reason::ENHANCE_YOUR_CALM);
        }
        assert_eq!(ConnErrorClass::RapidReset.as_str(), "rapid_reset");
        let g = ConnError::remote_go_away(Reason::ENHANCE_YOUR_CALM, &Bytes::from_static(b"x"));
        assert_eq!(g.reason(), Reason::ENHANCE_YOUR_CALM);
        assert_eq!(g.class().as_str(), "remote_go_away");
    }
}
