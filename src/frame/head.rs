//! Request and response heads: the structured payloads of REQUEST and
//! RESPONSE frames, carried as prost messages with compact header blocks.

use bytes::{BufMut, Bytes};
use prost::Message;

use super::header_block::{BlockError, HeaderBlock};
use super::ErrorClass;
use crate::pb;

/// The HTTP version the proxy received the request with. A newtype over the
/// wire value so versions added later survive a round trip.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct HttpVersion(pub i32);

impl HttpVersion {
    /// Not stated.
    pub const UNSPECIFIED: HttpVersion = HttpVersion(0);
    /// HTTP/1.0
    pub const HTTP_10: HttpVersion = HttpVersion(1);
    /// HTTP/1.1
    pub const HTTP_11: HttpVersion = HttpVersion(2);
    /// HTTP/2
    pub const HTTP_2: HttpVersion = HttpVersion(3);
    /// HTTP/3
    pub const HTTP_3: HttpVersion = HttpVersion(4);
    /// HTTP/0.9
    pub const HTTP_09: HttpVersion = HttpVersion(5);

    /// The `SERVER_PROTOCOL` spelling, e.g. `"HTTP/1.1"`.
    pub fn as_protocol_str(self) -> &'static str {
        match self {
            HttpVersion::HTTP_10 => "HTTP/1.0",
            HttpVersion::HTTP_11 => "HTTP/1.1",
            HttpVersion::HTTP_2 => "HTTP/2",
            HttpVersion::HTTP_3 => "HTTP/3",
            HttpVersion::HTTP_09 => "HTTP/0.9",
            _ => "HTTP/1.1",
        }
    }
}

/// Why a head failed to decode (mapped to a frame-level [`super::DecodeError`]).
pub(crate) type HeadError = (ErrorClass, &'static str);

fn block(buf: Bytes, max_count: u32) -> Result<HeaderBlock, HeadError> {
    HeaderBlock::parse(buf, max_count).map_err(|e| match e {
        BlockError::Invalid(why) => (ErrorClass::InvalidHeaderBlock, why),
        BlockError::TooMany => (
            ErrorClass::TooManyHeaders,
            "header block has more entries than max_header_count",
        ),
    })
}

fn port(p: u32) -> Result<u16, HeadError> {
    u16::try_from(p).map_err(|_| (ErrorClass::InvalidHead, "port exceeds 65535"))
}

/// Everything the application needs to know about a request except its body.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RequestHead {
    /// Method as sent, e.g. `GET`. Non-empty token.
    pub method: Bytes,
    /// `http` or `https`.
    pub scheme: Bytes,
    /// Host[:port] the client asked for.
    pub authority: Bytes,
    /// Path, still percent-encoded, without the query. Non-empty.
    pub path: Bytes,
    /// Query without the `?`; `None` when the target had no `?`.
    pub query: Option<Bytes>,
    /// HTTP version of the client's request.
    pub version: HttpVersion,
    /// Ordered header fields with raw names.
    pub headers: HeaderBlock,
    /// End client address as text, may be empty.
    pub client_addr: Bytes,
    /// End client port (0 if unknown).
    pub client_port: u16,
    /// Server name the request was received on.
    pub server_name: Bytes,
    /// Server port the request was received on.
    pub server_port: u16,
    /// Whether the client connection used TLS.
    pub tls: bool,
    /// Extra CGI variables set by the proxy (like `uwsgi_param`).
    pub params: HeaderBlock,
    /// Body length if known in advance; a hint only.
    pub body_length: Option<u64>,
}

impl RequestHead {
    /// Decodes a REQUEST payload. `payload` is sliced, not copied.
    pub(crate) fn decode(payload: Bytes, max_header_count: u32) -> Result<RequestHead, HeadError> {
        let m = pb::RequestHead::decode(payload).map_err(|_| {
            (
                ErrorClass::InvalidProtobuf,
                "REQUEST payload is not a valid RequestHead message",
            )
        })?;
        if m.method.is_empty() || !super::header_block::is_valid_name(&m.method) {
            return Err((ErrorClass::InvalidHead, "method is empty or not a token"));
        }
        if m.path.is_empty() {
            return Err((ErrorClass::InvalidHead, "path is empty"));
        }
        Ok(RequestHead {
            method: m.method,
            scheme: m.scheme,
            authority: m.authority,
            path: m.path,
            query: m.query,
            version: HttpVersion(m.version),
            headers: block(m.headers, max_header_count)?,
            client_addr: m.client_addr,
            client_port: port(m.client_port)?,
            server_name: m.server_name,
            server_port: port(m.server_port)?,
            tls: m.tls,
            params: block(m.params, max_header_count)?,
            body_length: m.body_length,
        })
    }

    /// Decodes a REQUEST payload with no header-count limit beyond the
    /// payload size (for tools and fuzzing).
    pub fn decode_unbounded(payload: Bytes) -> Result<RequestHead, super::DecodeError> {
        RequestHead::decode(payload, u32::MAX).map_err(|(c, d)| {
            super::DecodeError::new(c, Some(super::Kind::REQUEST), super::StreamId::ZERO, d)
        })
    }

    fn to_pb(&self) -> pb::RequestHead {
        pb::RequestHead {
            method: self.method.clone(),
            scheme: self.scheme.clone(),
            authority: self.authority.clone(),
            path: self.path.clone(),
            query: self.query.clone(),
            version: self.version.0,
            headers: self.headers.as_bytes().clone(),
            client_addr: self.client_addr.clone(),
            client_port: self.client_port.into(),
            server_name: self.server_name.clone(),
            server_port: self.server_port.into(),
            tls: self.tls,
            params: self.params.as_bytes().clone(),
            body_length: self.body_length,
        }
    }

    /// Encoded payload length.
    pub fn encoded_len(&self) -> usize {
        self.to_pb().encoded_len()
    }

    /// Writes the payload (no frame header).
    pub fn encode<B: BufMut>(&self, dst: &mut B) {
        self.to_pb().encode_raw(dst)
    }

    /// The request target as it appears in `REQUEST_URI`: path, then `?`
    /// and the query when there was one.
    pub fn request_uri(&self) -> Vec<u8> {
        let mut v = self.path.to_vec();
        if let Some(q) = &self.query {
            v.push(b'?');
            v.extend_from_slice(q);
        }
        v
    }
}

/// A response head: status, optional reason and header fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    /// Status code, 100..=999. 1xx heads are interim.
    pub status: u16,
    /// Reason phrase; `None` means the standard phrase.
    pub reason: Option<Bytes>,
    /// Ordered header fields with raw names.
    pub headers: HeaderBlock,
}

impl Default for ResponseHead {
    fn default() -> ResponseHead {
        ResponseHead {
            status: 200,
            reason: None,
            headers: HeaderBlock::new(),
        }
    }
}

impl ResponseHead {
    /// A head with `status` and no headers.
    pub fn new(status: u16) -> ResponseHead {
        ResponseHead {
            status,
            ..ResponseHead::default()
        }
    }

    /// Whether this is an interim (1xx) head.
    pub fn is_informational(&self) -> bool {
        (100..200).contains(&self.status)
    }

    pub(crate) fn decode(payload: Bytes, max_header_count: u32) -> Result<ResponseHead, HeadError> {
        let m = pb::ResponseHead::decode(payload).map_err(|_| {
            (
                ErrorClass::InvalidProtobuf,
                "RESPONSE payload is not a valid ResponseHead message",
            )
        })?;
        if !(100..=999).contains(&m.status) {
            return Err((ErrorClass::InvalidHead, "status outside 100..=999"));
        }
        if let Some(r) = &m.reason {
            if !super::header_block::is_valid_value(r) {
                return Err((
                    ErrorClass::InvalidHead,
                    "reason phrase contains NUL, CR or LF",
                ));
            }
        }
        Ok(ResponseHead {
            status: m.status as u16,
            reason: m.reason,
            headers: block(m.headers, max_header_count)?,
        })
    }

    /// Decodes a RESPONSE payload with no header-count limit (tools, fuzzing).
    pub fn decode_unbounded(payload: Bytes) -> Result<ResponseHead, super::DecodeError> {
        ResponseHead::decode(payload, u32::MAX).map_err(|(c, d)| {
            super::DecodeError::new(c, Some(super::Kind::RESPONSE), super::StreamId::ZERO, d)
        })
    }

    fn to_pb(&self) -> pb::ResponseHead {
        pb::ResponseHead {
            status: self.status.into(),
            reason: self.reason.clone(),
            headers: self.headers.as_bytes().clone(),
        }
    }

    /// Encoded payload length.
    pub fn encoded_len(&self) -> usize {
        self.to_pb().encoded_len()
    }

    /// Writes the payload (no frame header).
    pub fn encode<B: BufMut>(&self, dst: &mut B) {
        self.to_pb().encode_raw(dst)
    }
}
