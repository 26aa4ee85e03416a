//! GOAWAY (kind 0x07): the sender will start no new streams past a point.

use bytes::{BufMut, Bytes};
use prost::Message;

use super::{check_flags, check_payload_len, require_connection};
use super::{DecodeError, EncodeError, ErrorClass, FrameHeader, Kind, Reason, StreamId};
use crate::pb;

/// Announces shutdown: streams up to and including `last_stream_id` may
/// complete; later ones were not and will not be processed (safe to retry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoAway {
    last_stream_id: StreamId,
    reason: Reason,
    debug: Bytes,
}

impl GoAway {
    /// A GOAWAY frame.
    pub fn new(last_stream_id: StreamId, reason: Reason, debug: Bytes) -> GoAway {
        GoAway {
            last_stream_id,
            reason,
            debug,
        }
    }

    fn to_pb(&self) -> pb::GoAway {
        pb::GoAway {
            last_stream_id: self.last_stream_id.get(),
            code: self.reason.0,
            debug: self.debug.clone(),
        }
    }

    pub(crate) fn load(header: FrameHeader, payload: Bytes) -> Result<GoAway, DecodeError> {
        require_connection(&header)?;
        check_flags(&header, 0)?;
        let m = pb::GoAway::decode(payload).map_err(|_| {
            header.error(
                ErrorClass::InvalidProtobuf,
                "GOAWAY payload is not a valid GoAway message",
            )
        })?;
        let last = StreamId::try_new(m.last_stream_id).ok_or_else(|| {
            header.error(
                ErrorClass::ReservedBit,
                "GOAWAY last_stream_id exceeds 31 bits",
            )
        })?;
        Ok(GoAway {
            last_stream_id: last,
            reason: Reason(m.code),
            debug: m.debug,
        })
    }

    /// Encoded payload length.
    pub fn encoded_len(&self) -> usize {
        self.to_pb().encoded_len()
    }

    /// Writes header and payload.
    pub fn encode<B: BufMut>(&self, dst: &mut B) -> Result<(), EncodeError> {
        let m = self.to_pb();
        let len = check_payload_len(Kind::GOAWAY, m.encoded_len())?;
        FrameHeader::new(len, Kind::GOAWAY, 0, StreamId::ZERO).encode(dst);
        m.encode_raw(dst);
        Ok(())
    }

    /// Last stream id the sender processed or will process.
    pub fn last_stream_id(&self) -> StreamId {
        self.last_stream_id
    }

    /// Reason code.
    pub fn reason(&self) -> Reason {
        self.reason
    }

    /// Diagnostic text.
    pub fn debug_data(&self) -> &Bytes {
        &self.debug
    }
}
