//! TRAILERS (kind 0x03): trailer fields that end the sender's half.

use bytes::{BufMut, Bytes};

use super::header_block::BlockError;
use super::Limits;
use super::{check_flags, encode_stream_header, require_stream};
use super::{
    DecodeError, EncodeError, ErrorClass, FrameHeader, HeaderBlock, Kind, StreamId, FLAG_END_STREAM,
};

/// Trailer fields. The payload is a bare header block. END_STREAM (0x01)
/// is mandatory: trailers always end the sender's half of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trailers {
    stream_id: StreamId,
    fields: HeaderBlock,
}

impl Trailers {
    /// A TRAILERS frame.
    pub fn new(stream_id: StreamId, fields: HeaderBlock) -> Trailers {
        Trailers { stream_id, fields }
    }

    pub(crate) fn load(
        header: FrameHeader,
        payload: Bytes,
        limits: &Limits,
    ) -> Result<Trailers, DecodeError> {
        require_stream(&header)?;
        check_flags(&header, FLAG_END_STREAM)?;
        // "A TRAILERS frame MUST carry END_STREAM." (PROTOCOL.md, TRAILERS)
        if !header.has_flag(FLAG_END_STREAM) {
            return Err(header.error(ErrorClass::BadFlags, "TRAILERS without END_STREAM"));
        }
        let fields = HeaderBlock::parse(payload, limits.max_header_count).map_err(|e| match e {
            BlockError::Invalid(d) => header.error(ErrorClass::InvalidHeaderBlock, d),
            BlockError::TooMany => header.error(
                ErrorClass::TooManyHeaders,
                "trailer block has more entries than max_header_count",
            ),
        })?;
        Ok(Trailers {
            stream_id: header.stream_id(),
            fields,
        })
    }

    /// Writes header and payload.
    pub fn encode<B: BufMut>(&self, dst: &mut B) -> Result<(), EncodeError> {
        encode_stream_header(
            dst,
            Kind::TRAILERS,
            self.stream_id,
            true,
            self.fields.encoded_len(),
        )?;
        dst.put_slice(self.fields.as_bytes());
        Ok(())
    }

    /// Stream id.
    pub fn stream_id(&self) -> StreamId {
        self.stream_id
    }

    /// Trailer fields.
    pub fn fields(&self) -> &HeaderBlock {
        &self.fields
    }

    /// Takes the trailer fields.
    pub fn into_fields(self) -> HeaderBlock {
        self.fields
    }
}
