//! WINDOW_UPDATE (kind 0x08): flow-control credit.

use bytes::{Buf, BufMut, Bytes};

use super::check_flags;
use super::{DecodeError, EncodeError, ErrorClass, FrameHeader, Kind, StreamId};

/// Grants the peer `increment` more bytes of DATA on `stream_id`, or on the
/// whole connection when `stream_id` is 0. Payload: 4 bytes, the high bit
/// reserved, the increment 1..=2^31-1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowUpdate {
    stream_id: StreamId,
    increment: u32,
}

impl WindowUpdate {
    /// A WINDOW_UPDATE frame.
    pub fn new(stream_id: StreamId, increment: u32) -> WindowUpdate {
        WindowUpdate {
            stream_id,
            increment,
        }
    }

    pub(crate) fn load(
        header: FrameHeader,
        mut payload: Bytes,
    ) -> Result<WindowUpdate, DecodeError> {
        check_flags(&header, 0)?;
        let raw = payload.get_u32();
        if raw & 0x8000_0000 != 0 {
            return Err(header.error(
                ErrorClass::ReservedBit,
                "reserved high bit of the window increment is set",
            ));
        }
        // "An increment of 0 is a connection error (zero_window_increment)."
        if raw == 0 {
            return Err(header.error(ErrorClass::ZeroWindowIncrement, "window increment of 0"));
        }
        Ok(WindowUpdate {
            stream_id: header.stream_id(),
            increment: raw,
        })
    }

    /// Writes header and payload.
    pub fn encode<B: BufMut>(&self, dst: &mut B) -> Result<(), EncodeError> {
        if self.increment == 0 || self.increment > 0x7FFF_FFFF {
            return Err(EncodeError::InvalidStreamId(self.increment));
        }
        FrameHeader::new(4, Kind::WINDOW_UPDATE, 0, self.stream_id).encode(dst);
        dst.put_u32(self.increment);
        Ok(())
    }

    /// Stream id (0 = connection).
    pub fn stream_id(&self) -> StreamId {
        self.stream_id
    }

    /// Credit in bytes.
    pub fn increment(&self) -> u32 {
        self.increment
    }
}
