//! REQUEST (kind 0x01): a request head that opens a stream.

use bytes::{BufMut, Bytes};

use super::Limits;
use super::{check_flags, encode_stream_header, require_stream};
use super::{
    DecodeError, EncodeError, ErrorClass, FrameHeader, Kind, RequestHead, StreamId, FLAG_END_STREAM,
};

/// A request head opening stream `stream_id` (odd, client-chosen). Flags:
/// END_STREAM (0x01) when the request has no body.
#[derive(Debug, Clone)]
pub struct Request {
    stream_id: StreamId,
    /// Boxed: a head is some 340 bytes, and frames, events and requests
    /// move many times on their way to a handler; a pointer moves cheaply.
    head: Box<RequestHead>,
    end_stream: bool,
    /// The head's encoded length, counted once for a frame made to be
    /// sent (the engine checks it, the encoder reserves and writes it);
    /// `None` for a decoded one (its wire length may differ: unknown
    /// fields, non-canonical varints), counted if it is ever re-encoded.
    payload_len: Option<usize>,
}

impl PartialEq for Request {
    fn eq(&self, other: &Request) -> bool {
        self.stream_id == other.stream_id
            && self.end_stream == other.end_stream
            && self.head == other.head
    }
}

impl Eq for Request {}

impl Request {
    /// A REQUEST frame.
    pub fn new(stream_id: StreamId, head: RequestHead, end_stream: bool) -> Request {
        let payload_len = head.encoded_len();
        Request::with_payload_len(stream_id, head, end_stream, payload_len)
    }

    /// [`new`](Self::new) with the head's encoded length counted already.
    pub(crate) fn with_payload_len(
        stream_id: StreamId,
        head: RequestHead,
        end_stream: bool,
        payload_len: usize,
    ) -> Request {
        debug_assert_eq!(payload_len, head.encoded_len());
        Request {
            stream_id,
            head: Box::new(head),
            end_stream,
            payload_len: Some(payload_len),
        }
    }

    pub(crate) fn load(
        header: FrameHeader,
        payload: Bytes,
        limits: &Limits,
    ) -> Result<Request, DecodeError> {
        require_stream(&header)?;
        // "Streams are opened only by the client, with odd ids." (PROTOCOL.md, Streams)
        if !header.stream_id().is_client_initiated() {
            return Err(header.error(ErrorClass::BadStreamId, "REQUEST on an even stream id"));
        }
        check_flags(&header, FLAG_END_STREAM)?;
        let head = RequestHead::decode_boxed(payload, limits.max_header_count)
            .map_err(|(c, d)| header.error(c, d))?;
        // "A REQUEST that offers an upgrade MUST NOT carry END_STREAM: the
        // client's half carries the tunnel." (PROTOCOL.md, Upgrades and tunnels)
        if head.upgrade.is_some() && header.has_flag(FLAG_END_STREAM) {
            return Err(header.error(ErrorClass::BadFlags, "upgrade REQUEST with END_STREAM"));
        }
        Ok(Request {
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
            Kind::REQUEST,
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
    pub fn head(&self) -> &RequestHead {
        &self.head
    }

    /// Takes the head.
    pub fn into_head(self) -> RequestHead {
        *self.head
    }

    /// Takes the head without moving it out of its box.
    pub fn into_boxed_head(self) -> Box<RequestHead> {
        self.head
    }

    /// Whether the request has no body.
    pub fn is_end_stream(&self) -> bool {
        self.end_stream
    }
}
