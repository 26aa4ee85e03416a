//! Frames of extension kinds (0x80..=0xFF) that this implementation does not
//! know. They are decoded only so they can be skipped (or relayed).

use bytes::{BufMut, Bytes};

use super::{check_payload_len, EncodeError, FrameHeader, Kind, StreamId};

/// An extension frame a receiver ignores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unknown {
    kind: Kind,
    flags: u8,
    stream_id: StreamId,
    payload: Bytes,
}

impl Unknown {
    /// An extension frame. `kind` should be in 0x80..=0xFF.
    pub fn new(kind: Kind, flags: u8, stream_id: StreamId, payload: Bytes) -> Unknown {
        Unknown {
            kind,
            flags,
            stream_id,
            payload,
        }
    }

    pub(crate) fn load(header: FrameHeader, payload: Bytes) -> Unknown {
        Unknown {
            kind: header.kind(),
            flags: header.flags(),
            stream_id: header.stream_id(),
            payload,
        }
    }

    /// Writes header and payload.
    pub fn encode<B: BufMut>(&self, dst: &mut B) -> Result<(), EncodeError> {
        let len = check_payload_len(self.kind, self.payload.len())?;
        FrameHeader::new(len, self.kind, self.flags, self.stream_id).encode(dst);
        dst.put_slice(&self.payload);
        Ok(())
    }

    /// The kind.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The flags.
    pub fn flags(&self) -> u8 {
        self.flags
    }

    /// Stream id.
    pub fn stream_id(&self) -> StreamId {
        self.stream_id
    }

    /// The payload.
    pub fn payload(&self) -> &Bytes {
        &self.payload
    }
}
