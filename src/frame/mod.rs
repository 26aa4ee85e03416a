//! The uwire/1 wire model: frame header, one type per frame kind, and the
//! [`Frame`] enum that unites them.
//!
//! Every frame is a fixed 9-byte [`FrameHeader`] followed by `length` payload
//! bytes. Each kind has a `load(header, payload)` that validates and decodes
//! a payload (zero-copy: payload slices share the input [`Bytes`]) and an
//! `encode(dst)` that writes header and payload.
//!
//! ```
//! use uwire::frame::{Frame, Ping};
//! let mut buf = bytes::BytesMut::new();
//! Frame::from(Ping::new(*b"12345678")).encode(&mut buf).unwrap();
//! assert_eq!(&buf[..9], &[0, 0, 8, 6, 0, 0, 0, 0, 0]);
//! ```

mod data;
mod error;
mod goaway;
mod head;
mod header;
pub(crate) mod header_block;
mod ids;
mod limits;
mod ping;
pub mod preface;
mod reason;
mod request;
mod reset;
mod response;
pub(crate) mod scan;
mod settings;
mod trailers;
mod unknown;
mod window_update;

use bytes::{BufMut, Bytes};

pub use data::Data;
pub use error::{DecodeError, EncodeError, ErrorClass};
pub use goaway::GoAway;
pub use head::{accepts_upgrade, HttpVersion, RequestHead, ResponseHead};
pub use header::{FrameHeader, HEADER_LEN};
pub use header_block::{HeaderBlock, HeaderBlockBuilder, Iter as HeaderIter};
pub use ids::{Kind, StreamId};
pub use limits::{
    Limits, DEFAULT_MAX_CONTROL_SIZE, DEFAULT_MAX_FRAME_SIZE, DEFAULT_MAX_HEADER_COUNT,
    DEFAULT_MAX_HEAD_SIZE, MAX_PAYLOAD_LEN, MIN_SIZE_LIMIT,
};
pub use ping::Ping;
pub use reason::Reason;
pub use request::Request;
pub use reset::Reset;
pub use response::Response;
pub use scan::{is_valid_name, is_valid_value};
pub use settings::Settings;
pub use trailers::Trailers;
pub use unknown::Unknown;
pub use window_update::WindowUpdate;

/// Flag bit 0x01 on DATA, REQUEST, RESPONSE and TRAILERS: the sender's half
/// of the stream ends with this frame.
pub const FLAG_END_STREAM: u8 = 0x01;
/// Flag bit 0x01 on PING: this PING is the answer to one received.
pub const FLAG_ACK: u8 = 0x01;
/// Flag bits a receiver must understand. A set bit in this mask that the
/// frame kind does not define is a `bad_flags` error. Bits outside it
/// (0xF0) are reserved for extensions: senders set them to 0, receivers
/// ignore them.
pub const MUST_UNDERSTAND_FLAGS: u8 = 0x0F;

/// A decoded uwire/1 frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Body bytes of a stream.
    Data(Data),
    /// A request head, opening a stream.
    Request(Request),
    /// A response head (interim 1xx or final).
    Response(Response),
    /// Trailer fields, ending the sender's half of a stream.
    Trailers(Trailers),
    /// Abrupt end of a stream with a reason.
    Reset(Reset),
    /// The sender's settings.
    Settings(Settings),
    /// Liveness probe or its answer.
    Ping(Ping),
    /// Graceful (or error) shutdown of the connection.
    GoAway(GoAway),
    /// Flow-control credit.
    WindowUpdate(WindowUpdate),
    /// A frame of an extension kind (0x80..=0xFF) this implementation does
    /// not know; receivers ignore it.
    Unknown(Unknown),
}

impl Frame {
    /// Decodes a frame whose header has been parsed and whose payload
    /// (exactly `header.length()` bytes) is available. Checks the header
    /// against `limits` first.
    pub fn load(
        header: FrameHeader,
        payload: Bytes,
        limits: &Limits,
    ) -> Result<Frame, DecodeError> {
        header.check(limits)?;
        debug_assert_eq!(payload.len(), header.length() as usize);
        Ok(match header.kind() {
            Kind::DATA => Data::load(header, payload)?.into(),
            Kind::REQUEST => Request::load(header, payload, limits)?.into(),
            Kind::RESPONSE => Response::load(header, payload, limits)?.into(),
            Kind::TRAILERS => Trailers::load(header, payload, limits)?.into(),
            Kind::RESET => Reset::load(header, payload)?.into(),
            Kind::SETTINGS => Settings::load(header, payload)?.into(),
            Kind::PING => Ping::load(header, payload)?.into(),
            Kind::GOAWAY => GoAway::load(header, payload)?.into(),
            Kind::WINDOW_UPDATE => WindowUpdate::load(header, payload)?.into(),
            _ => Unknown::load(header, payload).into(),
        })
    }

    /// Writes the frame (header and payload) to `dst`.
    pub fn encode<B: BufMut>(&self, dst: &mut B) -> Result<(), EncodeError> {
        match self {
            Frame::Data(f) => f.encode(dst),
            Frame::Request(f) => f.encode(dst),
            Frame::Response(f) => f.encode(dst),
            Frame::Trailers(f) => f.encode(dst),
            Frame::Reset(f) => f.encode(dst),
            Frame::Settings(f) => f.encode(dst),
            Frame::Ping(f) => f.encode(dst),
            Frame::GoAway(f) => f.encode(dst),
            Frame::WindowUpdate(f) => f.encode(dst),
            Frame::Unknown(f) => f.encode(dst),
        }
    }

    /// Number of bytes [`Frame::encode`] writes (header included).
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN
            + match self {
                Frame::Data(f) => f.payload().len(),
                Frame::Request(f) => f.payload_len(),
                Frame::Response(f) => f.payload_len(),
                Frame::Trailers(f) => f.fields().encoded_len(),
                Frame::Reset(_) | Frame::WindowUpdate(_) => 4,
                Frame::Ping(_) => 8,
                Frame::Settings(f) => f.encoded_len(),
                Frame::GoAway(f) => f.encoded_len(),
                Frame::Unknown(f) => f.payload().len(),
            }
    }

    /// The frame's kind.
    pub fn kind(&self) -> Kind {
        match self {
            Frame::Data(_) => Kind::DATA,
            Frame::Request(_) => Kind::REQUEST,
            Frame::Response(_) => Kind::RESPONSE,
            Frame::Trailers(_) => Kind::TRAILERS,
            Frame::Reset(_) => Kind::RESET,
            Frame::Settings(_) => Kind::SETTINGS,
            Frame::Ping(_) => Kind::PING,
            Frame::GoAway(_) => Kind::GOAWAY,
            Frame::WindowUpdate(_) => Kind::WINDOW_UPDATE,
            Frame::Unknown(f) => f.kind(),
        }
    }

    /// The stream the frame belongs to (0 for connection-level frames).
    pub fn stream_id(&self) -> StreamId {
        match self {
            Frame::Data(f) => f.stream_id(),
            Frame::Request(f) => f.stream_id(),
            Frame::Response(f) => f.stream_id(),
            Frame::Trailers(f) => f.stream_id(),
            Frame::Reset(f) => f.stream_id(),
            Frame::WindowUpdate(f) => f.stream_id(),
            Frame::Unknown(f) => f.stream_id(),
            Frame::Settings(_) | Frame::Ping(_) | Frame::GoAway(_) => StreamId::ZERO,
        }
    }
}

macro_rules! impl_from {
    ($($variant:ident),*) => {
        $(impl From<$variant> for Frame {
            fn from(f: $variant) -> Frame {
                Frame::$variant(f)
            }
        })*
    };
}
impl_from!(
    Data,
    Request,
    Response,
    Trailers,
    Reset,
    Settings,
    Ping,
    GoAway,
    WindowUpdate,
    Unknown
);

/// Checks that a payload built for `kind` fits the 24-bit length field.
pub(crate) fn check_payload_len(kind: Kind, len: usize) -> Result<u32, EncodeError> {
    if len > MAX_PAYLOAD_LEN as usize {
        Err(EncodeError::PayloadTooLarge { kind, len })
    } else {
        Ok(len as u32)
    }
}

/// Writes the frame header of a stream frame (REQUEST, RESPONSE, DATA,
/// TRAILERS) whose payload is `len` bytes, refusing stream 0 and payloads
/// over [`MAX_PAYLOAD_LEN`]; the caller writes the payload right after.
pub(crate) fn encode_stream_header<B: BufMut>(
    dst: &mut B,
    kind: Kind,
    stream_id: StreamId,
    end_stream: bool,
    len: usize,
) -> Result<(), EncodeError> {
    if stream_id.is_zero() {
        return Err(EncodeError::InvalidStreamId(0));
    }
    let len = check_payload_len(kind, len)?;
    let flags = if end_stream { FLAG_END_STREAM } else { 0 };
    FrameHeader::new(len, kind, flags, stream_id).encode(dst);
    Ok(())
}

/// Checks the flags of a frame whose kind defines the bits in `defined`.
pub(crate) fn check_flags(header: &FrameHeader, defined: u8) -> Result<(), DecodeError> {
    if header.flags() & MUST_UNDERSTAND_FLAGS & !defined != 0 {
        return Err(header.error(
            ErrorClass::BadFlags,
            "undefined must-understand flag bit set",
        ));
    }
    Ok(())
}

/// Checks that a stream-level frame is not on stream 0.
pub(crate) fn require_stream(header: &FrameHeader) -> Result<(), DecodeError> {
    if header.stream_id().is_zero() {
        return Err(header.error(
            ErrorClass::BadStreamId,
            "frame requires a non-zero stream id",
        ));
    }
    Ok(())
}

/// Checks that a connection-level frame is on stream 0.
pub(crate) fn require_connection(header: &FrameHeader) -> Result<(), DecodeError> {
    if !header.stream_id().is_zero() {
        return Err(header.error(
            ErrorClass::BadStreamId,
            "connection-level frame on a non-zero stream",
        ));
    }
    Ok(())
}
