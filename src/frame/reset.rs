//! RESET (kind 0x04): abrupt end of one stream.

use bytes::{Buf, BufMut, Bytes};

use super::{check_flags, require_stream};
use super::{DecodeError, EncodeError, FrameHeader, Kind, Reason, StreamId};

/// Ends a stream in both directions at once. Payload: a 4-byte reason code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reset {
    stream_id: StreamId,
    reason: Reason,
}

impl Reset {
    /// A RESET frame.
    pub fn new(stream_id: StreamId, reason: Reason) -> Reset {
        Reset { stream_id, reason }
    }

    pub(crate) fn load(header: FrameHeader, mut payload: Bytes) -> Result<Reset, DecodeError> {
        require_stream(&header)?;
        check_flags(&header, 0)?;
        // Length was checked to be exactly 4 by FrameHeader::check.
        Ok(Reset {
            stream_id: header.stream_id(),
            reason: Reason(payload.get_u32()),
        })
    }

    /// Writes header and payload.
    pub fn encode<B: BufMut>(&self, dst: &mut B) -> Result<(), EncodeError> {
        if self.stream_id.is_zero() {
            return Err(EncodeError::InvalidStreamId(0));
        }
        FrameHeader::new(4, Kind::RESET, 0, self.stream_id).encode(dst);
        dst.put_u32(self.reason.0);
        Ok(())
    }

    /// Stream id.
    pub fn stream_id(&self) -> StreamId {
        self.stream_id
    }

    /// Reason code.
    pub fn reason(&self) -> Reason {
        self.reason
    }
}
