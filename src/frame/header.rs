//! The fixed 9-byte frame header, parsed with `nom`.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-----------------------------------------------+---------------+
//! |                 Length (24)                   |   Kind (8)    |
//! +---------------+-------------------------------+---------------+
//! |   Flags (8)   |R|             Stream Id (31)                  |
//! +---------------+-----------------------------------------------+
//! |                    Payload (Length bytes) ...
//! ```

use bytes::BufMut;
use nom::number::complete::{be_u24, be_u32, u8 as nom_u8};
use nom::{IResult, Parser};

use super::{DecodeError, ErrorClass, Kind, StreamId};
use super::{Limits, MAX_PAYLOAD_LEN};

/// Length of the fixed frame header in bytes.
pub const HEADER_LEN: usize = 9;

/// A parsed frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    length: u32,
    kind: Kind,
    flags: u8,
    stream_id: StreamId,
}

fn parse_fields(input: &[u8]) -> IResult<&[u8], (u32, u8, u8, u32)> {
    (be_u24, nom_u8, nom_u8, be_u32).parse(input)
}

impl FrameHeader {
    /// Builds a header. `length` must not exceed [`MAX_PAYLOAD_LEN`].
    pub fn new(length: u32, kind: Kind, flags: u8, stream_id: StreamId) -> FrameHeader {
        debug_assert!(length <= MAX_PAYLOAD_LEN);
        FrameHeader {
            length,
            kind,
            flags,
            stream_id,
        }
    }

    /// Parses a header from the start of `src`. Returns `Ok(None)` when fewer
    /// than [`HEADER_LEN`] bytes are available.
    ///
    /// "The high bit of the stream id is reserved; a sender MUST set it to 0
    /// and a receiver MUST treat a set bit as a connection error
    /// (`reserved_bit`)." (PROTOCOL.md, Frame header)
    pub fn parse(src: &[u8]) -> Result<Option<FrameHeader>, DecodeError> {
        let (length, kind, flags, raw_id) = match parse_fields(src) {
            Ok((_, fields)) => fields,
            Err(nom::Err::Error(_) | nom::Err::Failure(_) | nom::Err::Incomplete(_)) => {
                return Ok(None)
            }
        };
        let kind = Kind(kind);
        let Some(stream_id) = StreamId::try_new(raw_id) else {
            return Err(DecodeError::new(
                ErrorClass::ReservedBit,
                Some(kind),
                StreamId::new(raw_id & 0x7FFF_FFFF),
                "reserved high bit of the stream id is set",
            ));
        };
        Ok(Some(FrameHeader {
            length,
            kind,
            flags,
            stream_id,
        }))
    }

    /// Checks the declared length and kind against `limits`. Called as soon
    /// as the header is read, before any payload byte is buffered.
    pub fn check(&self, limits: &Limits) -> Result<(), DecodeError> {
        let (max, class) = match self.kind {
            Kind::DATA => (limits.max_frame_size, ErrorClass::FrameTooLarge),
            Kind::REQUEST | Kind::RESPONSE | Kind::TRAILERS => {
                (limits.max_head_size, ErrorClass::HeadTooLarge)
            }
            Kind::SETTINGS | Kind::GOAWAY => (limits.max_control_size, ErrorClass::ControlTooLarge),
            // Fixed-size frames: the exact length is checked by the kind, but
            // anything over 8 bytes is wrong already; refuse before buffering.
            Kind::RESET | Kind::PING | Kind::WINDOW_UPDATE => {
                let want = if self.kind == Kind::PING { 8 } else { 4 };
                if self.length != want {
                    return Err(self.error(
                        ErrorClass::BadLength,
                        "fixed-size frame has the wrong length",
                    ));
                }
                return Ok(());
            }
            k if k.is_extension() => (limits.max_frame_size, ErrorClass::FrameTooLarge),
            _ => {
                return Err(self.error(
                    ErrorClass::UnknownKind,
                    "unknown frame kind in the critical range",
                ));
            }
        };
        if self.length > max {
            return Err(self.error(class, "declared length exceeds the configured limit"));
        }
        Ok(())
    }

    /// Writes the header.
    pub fn encode<B: BufMut>(&self, dst: &mut B) {
        let len = self.length.to_be_bytes();
        dst.put_slice(&len[1..]);
        dst.put_u8(self.kind.0);
        dst.put_u8(self.flags);
        dst.put_u32(self.stream_id.get());
    }

    /// Payload length in bytes.
    pub fn length(&self) -> u32 {
        self.length
    }

    /// Frame kind.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Raw flag bits.
    pub fn flags(&self) -> u8 {
        self.flags
    }

    /// Whether `flag` is set.
    pub fn has_flag(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    /// Stream id.
    pub fn stream_id(&self) -> StreamId {
        self.stream_id
    }

    /// Builds a decode error for this frame.
    pub fn error(&self, class: ErrorClass, detail: &'static str) -> DecodeError {
        DecodeError::new(class, Some(self.kind), self.stream_id, detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_header_fields() {
        let bytes = [0x01, 0x02, 0x03, 0x01, 0x01, 0x00, 0x00, 0x00, 0x05];
        let h = FrameHeader::parse(&bytes).unwrap().unwrap();
        assert_eq!(h.length(), 0x010203);
        assert_eq!(h.kind(), Kind::REQUEST);
        assert_eq!(h.flags(), 1);
        assert_eq!(h.stream_id(), StreamId::new(5));
    }

    #[test]
    fn read_header_needs_nine_bytes() {
        let bytes = [0u8; 9];
        for n in 0..9 {
            assert_eq!(FrameHeader::parse(&bytes[..n]).unwrap(), None);
        }
        assert!(FrameHeader::parse(&bytes).unwrap().is_some());
    }

    #[test]
    fn read_header_reserved_bit() {
        let bytes = [0, 0, 0, 0, 0, 0x80, 0, 0, 1];
        let e = FrameHeader::parse(&bytes).unwrap_err();
        assert_eq!(e.class(), ErrorClass::ReservedBit);
    }

    #[test]
    fn write_header_round_trip() {
        let h = FrameHeader::new(MAX_PAYLOAD_LEN, Kind::GOAWAY, 0xF0, StreamId::MAX);
        let mut buf = Vec::new();
        h.encode(&mut buf);
        assert_eq!(buf.len(), HEADER_LEN);
        assert_eq!(FrameHeader::parse(&buf).unwrap(), Some(h));
    }
}
