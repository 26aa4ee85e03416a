//! Decode and encode errors of the wire layer.

use std::borrow::Cow;
use std::fmt;

use super::{Kind, Reason, StreamId};

/// The class of a decode error: a stable, language-neutral name used by the
/// shared test vectors (`tests/vectors/`) and by every client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorClass {
    /// The stream ended in the middle of a preface, frame header or payload.
    Truncated,
    /// The connection did not start with the uwire preface.
    BadPreface,
    /// The preface names a protocol version this implementation does not speak.
    UnsupportedVersion,
    /// A DATA (or extension) frame's declared length exceeds `max_frame_size`.
    FrameTooLarge,
    /// A REQUEST/RESPONSE/TRAILERS frame's declared length exceeds `max_head_size`.
    HeadTooLarge,
    /// A SETTINGS or GOAWAY frame's declared length exceeds `max_control_size`.
    ControlTooLarge,
    /// A frame kind in the critical range (0x00..=0x7F) that is not defined.
    UnknownKind,
    /// A must-understand flag bit (0x0F) that the frame kind does not define,
    /// or a flag the kind requires is missing.
    BadFlags,
    /// A stream id of 0 where a stream is required, or non-zero on a
    /// connection-level frame.
    BadStreamId,
    /// The reserved high bit of a stream id or window increment is set.
    ReservedBit,
    /// A fixed-size frame (RESET, PING, WINDOW_UPDATE) with the wrong length.
    BadLength,
    /// A protobuf payload that does not decode.
    InvalidProtobuf,
    /// A compact header block that is malformed (lengths run past the block,
    /// empty or invalid name, forbidden byte in a value).
    InvalidHeaderBlock,
    /// A header block with more entries than `max_header_count`.
    TooManyHeaders,
    /// A head whose fields decode but violate the protocol (empty method or
    /// path, port over 65535, status outside 100..=999, ...).
    InvalidHead,
    /// A WINDOW_UPDATE with an increment of zero.
    ZeroWindowIncrement,
    /// A SETTINGS value outside its valid range.
    InvalidSettings,
}

impl ErrorClass {
    /// The stable snake_case name used in the test vectors.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Truncated => "truncated",
            ErrorClass::BadPreface => "bad_preface",
            ErrorClass::UnsupportedVersion => "unsupported_version",
            ErrorClass::FrameTooLarge => "frame_too_large",
            ErrorClass::HeadTooLarge => "head_too_large",
            ErrorClass::ControlTooLarge => "control_too_large",
            ErrorClass::UnknownKind => "unknown_kind",
            ErrorClass::BadFlags => "bad_flags",
            ErrorClass::BadStreamId => "bad_stream_id",
            ErrorClass::ReservedBit => "reserved_bit",
            ErrorClass::BadLength => "bad_length",
            ErrorClass::InvalidProtobuf => "invalid_protobuf",
            ErrorClass::InvalidHeaderBlock => "invalid_header_block",
            ErrorClass::TooManyHeaders => "too_many_headers",
            ErrorClass::InvalidHead => "invalid_head",
            ErrorClass::ZeroWindowIncrement => "zero_window_increment",
            ErrorClass::InvalidSettings => "invalid_settings",
        }
    }

    /// The reason code a receiver puts in the GOAWAY it sends before closing
    /// the connection because of this error.
    pub fn reason(self) -> Reason {
        match self {
            ErrorClass::FrameTooLarge | ErrorClass::HeadTooLarge | ErrorClass::ControlTooLarge => {
                Reason::FRAME_SIZE_ERROR
            }
            ErrorClass::UnsupportedVersion => Reason::VERSION_MISMATCH,
            ErrorClass::TooManyHeaders => Reason::LIMIT_EXCEEDED,
            ErrorClass::ZeroWindowIncrement => Reason::FLOW_CONTROL_ERROR,
            _ => Reason::PROTOCOL_ERROR,
        }
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A frame that could not be decoded. Names the frame kind, the stream and
/// the reason. Every decode error is a connection error: the receiver sends
/// GOAWAY with [`DecodeError::reason`] and closes the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    class: ErrorClass,
    kind: Option<Kind>,
    stream: StreamId,
    detail: Cow<'static, str>,
}

impl DecodeError {
    /// Creates an error for a frame of `kind` on `stream`.
    pub fn new(
        class: ErrorClass,
        kind: Option<Kind>,
        stream: StreamId,
        detail: impl Into<Cow<'static, str>>,
    ) -> Self {
        DecodeError {
            class,
            kind,
            stream,
            detail: detail.into(),
        }
    }

    /// An error that is not tied to a frame (preface, truncation).
    pub(crate) fn connection(class: ErrorClass, detail: &'static str) -> Self {
        DecodeError::new(class, None, StreamId::ZERO, detail)
    }

    /// The error class (stable across implementations).
    pub fn class(&self) -> ErrorClass {
        self.class
    }

    /// The kind of the frame that failed, when the header was read.
    pub fn kind(&self) -> Option<Kind> {
        self.kind
    }

    /// The stream id of the frame that failed (0 for connection-level).
    pub fn stream_id(&self) -> StreamId {
        self.stream
    }

    /// Human-readable detail.
    pub fn detail(&self) -> &str {
        &self.detail
    }

    /// The reason code to send in GOAWAY.
    pub fn reason(&self) -> Reason {
        self.class.reason()
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            Some(kind) => write!(
                f,
                "{} in {} frame on stream {}: {}",
                self.class, kind, self.stream, self.detail
            ),
            None => write!(f, "{}: {}", self.class, self.detail),
        }
    }
}

impl std::error::Error for DecodeError {}

/// A frame or head that cannot be encoded: a local misuse, never a peer fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The payload does not fit the 24-bit length field (16 MiB - 1).
    #[error("{kind} payload of {len} bytes exceeds the wire maximum of 16777215")]
    PayloadTooLarge {
        /// Frame kind.
        kind: Kind,
        /// Payload length that was attempted.
        len: usize,
    },
    /// A header name longer than 65535 bytes.
    #[error("header name of {0} bytes exceeds 65535")]
    NameTooLong(usize),
    /// A header value longer than 4 GiB - 1.
    #[error("header value of {0} bytes exceeds 4294967295")]
    ValueTooLong(usize),
    /// A header name that is empty or not an RFC 9110 token.
    #[error("invalid header name {0:?}")]
    InvalidName(String),
    /// A header value containing NUL, CR or LF.
    #[error("header value for {0:?} contains NUL, CR or LF")]
    InvalidValue(String),
    /// A stream id that does not fit 31 bits, or 0 where a stream is needed.
    #[error("invalid stream id {0}")]
    InvalidStreamId(u32),
}
