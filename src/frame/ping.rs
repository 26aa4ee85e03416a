//! PING (kind 0x06): liveness probe and round-trip measurement.

use bytes::{BufMut, Bytes};

use super::{check_flags, require_connection};
use super::{DecodeError, EncodeError, FrameHeader, Kind, StreamId, FLAG_ACK};

/// A liveness probe with 8 opaque bytes. The receiver of a PING without
/// ACK answers with a PING carrying ACK (0x01) and the same bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ping {
    payload: [u8; 8],
    ack: bool,
}

impl Ping {
    /// A probe.
    pub fn new(payload: [u8; 8]) -> Ping {
        Ping {
            payload,
            ack: false,
        }
    }

    /// The answer to a probe.
    pub fn pong(payload: [u8; 8]) -> Ping {
        Ping { payload, ack: true }
    }

    pub(crate) fn load(header: FrameHeader, payload: Bytes) -> Result<Ping, DecodeError> {
        require_connection(&header)?;
        check_flags(&header, FLAG_ACK)?;
        let mut p = [0u8; 8];
        // Length was checked to be exactly 8 by FrameHeader::check.
        p.copy_from_slice(&payload);
        Ok(Ping {
            payload: p,
            ack: header.has_flag(FLAG_ACK),
        })
    }

    /// Writes header and payload.
    pub fn encode<B: BufMut>(&self, dst: &mut B) -> Result<(), EncodeError> {
        let flags = if self.ack { FLAG_ACK } else { 0 };
        FrameHeader::new(8, Kind::PING, flags, StreamId::ZERO).encode(dst);
        dst.put_slice(&self.payload);
        Ok(())
    }

    /// The opaque bytes.
    pub fn payload(&self) -> [u8; 8] {
        self.payload
    }

    /// Whether this is an answer.
    pub fn is_ack(&self) -> bool {
        self.ack
    }
}
