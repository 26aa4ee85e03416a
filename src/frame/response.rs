//! RESPONSE (kind 0x02): a response head, interim (1xx) or final.

use bytes::{BufMut, Bytes};

use super::Limits;
use super::{check_flags, encode_stream_header, require_stream};
use super::{DecodeError, EncodeError, FrameHeader, Kind, ResponseHead, StreamId, FLAG_END_STREAM};

/// A response head on `stream_id`. Flags: END_STREAM (0x01) when the
/// response has no body. An interim (1xx) head must not carry END_STREAM.
#[derive(Debug, Clone)]
pub struct Response {
    stream_id: StreamId,
    head: ResponseHead,
    end_stream: bool,
    /// The head's encoded length, counted once for a frame made to be
    /// sent (the engine checks it, the encoder reserves and writes it);
    /// `None` for a decoded one (its wire length may differ: unknown
    /// fields, non-canonical varints), counted if it is ever re-encoded.
    payload_len: Option<usize>,
}

impl PartialEq for Response {
    fn eq(&self, other: &Response) -> bool {
        self.stream_id == other.stream_id
            && self.end_stream == other.end_stream
            && self.head == other.head
    }
}

impl Eq for Response {}

impl Response {
    /// A RESPONSE frame.
    pub fn new(stream_id: StreamId, head: ResponseHead, end_stream: bool) -> Response {
        let payload_len = head.encoded_len();
        Response::with_payload_len(stream_id, head, end_stream, payload_len)
    }

    /// [`new`](Self::new) with the head's encoded length counted already.
    pub(crate) fn with_payload_len(
        stream_id: StreamId,
        head: ResponseHead,
        end_stream: bool,
        payload_len: usize,
    ) -> Response {
        debug_assert_eq!(payload_len, head.encoded_len());
        Response {
            stream_id,
            head,
            end_stream,
            payload_len: Some(payload_len),
        }
    }

    pub(crate) fn load(
        header: FrameHeader,
        payload: Bytes,
        limits: &Limits,
    ) -> Result<Response, DecodeError> {
        require_stream(&header)?;
        check_flags(&header, FLAG_END_STREAM)?;
        let head = ResponseHead::decode(payload, limits.max_header_count)
            .map_err(|(c, d)| header.error(c, d))?;
        // "An interim (1xx) RESPONSE MUST NOT carry END_STREAM." (PROTOCOL.md, RESPONSE)
        if head.is_informational() && header.has_flag(FLAG_END_STREAM) {
            return Err(header.error(
                super::ErrorClass::BadFlags,
                "interim 1xx RESPONSE with END_STREAM",
            ));
        }
        Ok(Response {
            stream_id: header.stream_id(),
            head,
            end_stream: header.has_flag(FLAG_END_STREAM),
            payload_len: None,
        })
    }

    /// Writes header and payload.
    pub fn encode<B: BufMut>(&self, dst: &mut B) -> Result<(), EncodeError> {
        encode_stream_header(
            dst,
            Kind::RESPONSE,
            self.stream_id,
            self.end_stream,
            self.payload_len(),
        )?;
        self.head.encode(dst);
        Ok(())
    }

    /// The head's encoded length (the frame's payload when encoded).
    pub fn payload_len(&self) -> usize {
        self.payload_len.unwrap_or_else(|| self.head.encoded_len())
    }

    /// Stream id.
    pub fn stream_id(&self) -> StreamId {
        self.stream_id
    }

    /// The head.
    pub fn head(&self) -> &ResponseHead {
        &self.head
    }

    /// Takes the head.
    pub fn into_head(self) -> ResponseHead {
        self.head
    }

    /// Whether the response has no body.
    pub fn is_end_stream(&self) -> bool {
        self.end_stream
    }
}
