//! Request and response heads: the structured payloads of REQUEST and
//! RESPONSE frames, carried as prost messages with compact header blocks.

use std::ops::Range;

use bytes::{Buf, BufMut, Bytes};
use prost::encoding::{
    decode_key, decode_varint, encode_key, encode_varint, encoded_len_varint, key_len, skip_field,
    DecodeContext, WireType,
};

use super::header_block::{BlockError, HeaderBlock};
use super::ErrorClass;

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

#[inline(always)]
fn block(buf: Bytes, max_count: u32) -> Result<HeaderBlock, HeadError> {
    HeaderBlock::parse(buf, max_count).map_err(|e| match e {
        BlockError::Invalid(why) => (ErrorClass::InvalidHeaderBlock, why),
        BlockError::TooMany => (
            ErrorClass::TooManyHeaders,
            "header block has more entries than max_header_count",
        ),
    })
}

/// The header block of a head: the payload itself, cut down to the
/// block's `range`. A frame's payload is dropped once its head is read, so
/// handing it on saves the refcount increment of one more slice and the
/// decrement of that drop (two atomic operations per head).
#[inline(always)]
fn cut(mut payload: Bytes, range: Range<usize>) -> Bytes {
    payload.truncate(range.end);
    payload.advance(range.start);
    payload
}

fn port(p: u32) -> Result<u16, HeadError> {
    u16::try_from(p).map_err(|_| (ErrorClass::InvalidHead, "port exceeds 65535"))
}

// The heads are decoded and encoded by hand rather than through the
// prost-generated `pb::RequestHead`/`pb::ResponseHead` types: the generated
// path costs a `Bytes` refcount clone per field on every encode (three times
// per frame: `encoded_len`, `encode` and the codec's `encoded_len`) and a
// generic `Buf` merge loop on decode. Wire compatibility is exact: the key,
// varint and unknown-field routines are prost's own (`prost::encoding`, the
// same functions the generated code calls), fields are written in tag order
// with proto3 default omission, exactly as prost writes them, and the tests
// below check both directions against the generated types.

/// Reads fields of one protobuf message, handing out `bytes` fields as
/// zero-copy slices of the payload.
struct Reader<'a> {
    payload: &'a Bytes,
    rest: &'a [u8],
}

/// A malformed protobuf message (the detail is not kept: every case maps to
/// `invalid_protobuf`).
struct PbError;

impl From<prost::DecodeError> for PbError {
    fn from(_: prost::DecodeError) -> PbError {
        PbError
    }
}

impl<'a> Reader<'a> {
    fn new(payload: &'a Bytes) -> Reader<'a> {
        Reader {
            payload,
            rest: payload,
        }
    }

    /// The next field key, `None` at the end of the message.
    #[inline(always)]
    fn key(&mut self) -> Result<Option<(u32, WireType)>, PbError> {
        match self.rest {
            [] => Ok(None),
            // Every field of the heads has a one-byte key (tags 1 to 15):
            // decoded here with prost's checks (tag not 0, a known wire
            // type); longer keys go to prost.
            [k, rest @ ..] if *k < 0x80 => {
                let wire_type = WireType::try_from(u64::from(k & 7)).map_err(|_| PbError)?;
                if k >> 3 == 0 {
                    return Err(PbError);
                }
                self.rest = rest;
                Ok(Some((u32::from(k >> 3), wire_type)))
            }
            _ => Ok(Some(decode_key(&mut self.rest)?)),
        }
    }

    /// A varint, with the cases of one to three bytes inline (lengths,
    /// statuses, ports, versions, booleans) and the rest from prost. Like
    /// prost, a value written longer than it needs (`80 00` for 0) reads
    /// as its value.
    #[inline(always)]
    fn raw_varint(&mut self) -> Result<u64, PbError> {
        match self.rest {
            [b, rest @ ..] if *b < 0x80 => {
                self.rest = rest;
                Ok(u64::from(*b))
            }
            [b0, b1, rest @ ..] if *b1 < 0x80 => {
                self.rest = rest;
                Ok(u64::from(b0 & 0x7f) | u64::from(*b1) << 7)
            }
            [b0, b1, b2, rest @ ..] if *b2 < 0x80 => {
                self.rest = rest;
                Ok(u64::from(b0 & 0x7f) | u64::from(b1 & 0x7f) << 7 | u64::from(*b2) << 14)
            }
            _ => Ok(decode_varint(&mut self.rest)?),
        }
    }

    /// A `bytes` field (as `prost::encoding::bytes::merge`).
    #[inline(always)]
    fn bytes(&mut self, wire_type: WireType) -> Result<Bytes, PbError> {
        let b = self.bytes_raw(wire_type)?;
        Ok(self.share(b))
    }

    /// The value of a `bytes` field as a borrowed slice of the payload.
    #[inline(always)]
    fn bytes_raw(&mut self, wire_type: WireType) -> Result<&'a [u8], PbError> {
        if wire_type != WireType::LengthDelimited {
            return Err(PbError);
        }
        self.value()
    }

    /// A `bytes` field whose value is usually one of `common` (see
    /// [`Reader::common_or_share`]).
    #[inline(always)]
    fn bytes_common(
        &mut self,
        wire_type: WireType,
        common: &[&'static [u8]],
    ) -> Result<Bytes, PbError> {
        let b = self.bytes_raw(wire_type)?;
        Ok(self.common_or_share(b, common))
    }

    /// The range in the payload of a `bytes` field.
    #[inline(always)]
    fn range(&mut self, wire_type: WireType) -> Result<Range<usize>, PbError> {
        let b = self.bytes_raw(wire_type)?;
        Ok(self.range_of(b))
    }

    /// Consumes the next byte if it is the one-byte field key `key`.
    #[inline(always)]
    fn eat(&mut self, key: u8) -> bool {
        match self.rest {
            [k, rest @ ..] if *k == key => {
                self.rest = rest;
                true
            }
            _ => false,
        }
    }

    /// The value of the length-delimited field whose key was just read.
    #[inline(always)]
    fn value(&mut self) -> Result<&'a [u8], PbError> {
        let len = self.raw_varint()?;
        if len > self.rest.len() as u64 {
            return Err(PbError);
        }
        let (b, rest) = self.rest.split_at(len as usize);
        self.rest = rest;
        Ok(b)
    }

    /// Where `b`, the value just read, lies in the payload.
    #[inline(always)]
    fn range_of(&self, b: &[u8]) -> Range<usize> {
        // `b` ends where `rest` starts, within the payload.
        let end = self.payload.len() - self.rest.len();
        end - b.len()..end
    }

    /// A shared slice of the payload for `b`, the value just read.
    #[inline(always)]
    fn share(&self, b: &[u8]) -> Bytes {
        self.payload.slice(self.range_of(b))
    }

    /// `b`, the value just read, as a static `Bytes` when it is one of
    /// `common`, saving the atomic refcount increment (and the later
    /// decrement) that slicing the shared payload costs; else a slice.
    #[inline(always)]
    fn common_or_share(&self, b: &[u8], common: &[&'static [u8]]) -> Bytes {
        match common.iter().find(|c| **c == b) {
            Some(c) => Bytes::from_static(c),
            None => self.share(b),
        }
    }

    /// The `bytes` field `key` if it comes next, else `None`.
    #[inline(always)]
    fn field_bytes(&mut self, key: u8) -> Result<Option<Bytes>, PbError> {
        if !self.eat(key) {
            return Ok(None);
        }
        let b = self.value()?;
        Ok(Some(self.share(b)))
    }

    /// The `bytes` field `key` if it comes next, else empty; its value is
    /// usually one of `common` (see [`Reader::common_or_share`]).
    #[inline(always)]
    fn field_common(&mut self, key: u8, common: &[&'static [u8]]) -> Result<Bytes, PbError> {
        if !self.eat(key) {
            return Ok(Bytes::new());
        }
        let b = self.value()?;
        Ok(self.common_or_share(b, common))
    }

    /// The range in the payload of the `bytes` field `key` if it comes
    /// next, else `None`.
    #[inline(always)]
    fn field_range(&mut self, key: u8) -> Result<Option<Range<usize>>, PbError> {
        if !self.eat(key) {
            return Ok(None);
        }
        let b = self.value()?;
        Ok(Some(self.range_of(b)))
    }

    /// The varint field `key` if it comes next, else `None`.
    #[inline(always)]
    fn field_varint(&mut self, key: u8) -> Result<Option<u64>, PbError> {
        if !self.eat(key) {
            return Ok(None);
        }
        Ok(Some(self.raw_varint()?))
    }

    /// A varint field (`int32`, `uint32`, `uint64`, `bool`): the raw value,
    /// which the caller truncates as prost does.
    #[inline(always)]
    fn varint(&mut self, wire_type: WireType) -> Result<u64, PbError> {
        if wire_type != WireType::Varint {
            return Err(PbError);
        }
        self.raw_varint()
    }

    /// Skips a field this version does not know (unknown fields are ignored).
    fn skip(&mut self, wire_type: WireType, tag: u32) -> Result<(), PbError> {
        Ok(skip_field(
            wire_type,
            tag,
            &mut self.rest,
            DecodeContext::default(),
        )?)
    }
}

/// Encoded length of a proto3 `bytes` field (absent when empty).
#[inline]
fn bytes_len(tag: u32, v: &[u8]) -> usize {
    if v.is_empty() {
        0
    } else {
        opt_bytes_len(tag, v)
    }
}

/// Encoded length of a present `optional bytes` field.
#[inline]
fn opt_bytes_len(tag: u32, v: &[u8]) -> usize {
    key_len(tag) + encoded_len_varint(v.len() as u64) + v.len()
}

/// Encoded length of a proto3 varint field (absent when zero).
#[inline]
fn varint_len(tag: u32, v: u64) -> usize {
    if v == 0 {
        0
    } else {
        key_len(tag) + encoded_len_varint(v)
    }
}

#[inline]
fn put_bytes<B: BufMut>(tag: u32, v: &[u8], dst: &mut B) {
    if !v.is_empty() {
        put_opt_bytes(tag, v, dst);
    }
}

#[inline]
fn put_opt_bytes<B: BufMut>(tag: u32, v: &[u8], dst: &mut B) {
    encode_key(tag, WireType::LengthDelimited, dst);
    encode_varint(v.len() as u64, dst);
    dst.put_slice(v);
}

#[inline]
fn put_varint<B: BufMut>(tag: u32, v: u64, dst: &mut B) {
    if v != 0 {
        put_opt_varint(tag, v, dst);
    }
}

#[inline]
fn put_opt_varint<B: BufMut>(tag: u32, v: u64, dst: &mut B) {
    encode_key(tag, WireType::Varint, dst);
    encode_varint(v, dst);
}

/// Everything the application needs to know about a request except its body.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RequestHead {
    /// Method as sent, e.g. `GET`. Non-empty token.
    pub method: Bytes,
    /// `http` or `https`.
    pub scheme: Bytes,
    /// Host\[:port\] the client asked for.
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
    /// Present when the client offers to turn the stream into a tunnel
    /// (PROTOCOL.md section 7.5): the protocol the end client asked to
    /// switch to, e.g. `websocket` (an HTTP/1.1 `Upgrade` field, or the
    /// `:protocol` of an HTTP/2 extended CONNECT). A REQUEST carrying it
    /// never has END_STREAM.
    pub upgrade: Option<Bytes>,
}

impl RequestHead {
    /// Decodes a REQUEST payload. `payload` is sliced, not copied: the
    /// head's fields share its buffer (the header block takes the payload
    /// itself, cut down to the block).
    pub(crate) fn decode(payload: Bytes, max_header_count: u32) -> Result<RequestHead, HeadError> {
        RequestHead::decode_then(payload, max_header_count, |head| head)
    }

    /// [`decode`](Self::decode) into a box allocated up front, so that the
    /// head is written where it stays instead of being built on the stack
    /// and copied into its box (a REQUEST frame keeps its head boxed).
    pub(crate) fn decode_boxed(
        payload: Bytes,
        max_header_count: u32,
    ) -> Result<Box<RequestHead>, HeadError> {
        let mut slot = Box::<RequestHead>::new_uninit();
        RequestHead::decode_then(payload, max_header_count, move |head| {
            slot.write(head);
            // SAFETY: `write` has just initialized the box's value. (This
            // is `Box::write`, which is newer than the crate's MSRV.)
            #[allow(unsafe_code)]
            unsafe {
                slot.assume_init()
            }
        })
    }

    /// The decode itself; `place` receives the head.
    ///
    /// The head is built in one struct expression once every check has
    /// passed, from fields read into locals: none is written twice (an
    /// overwritten `Bytes` is dropped through its vtable) and the checks
    /// see plain values, not a head in memory.
    #[inline(always)]
    fn decode_then<T>(
        payload: Bytes,
        max_header_count: u32,
        place: impl FnOnce(RequestHead) -> T,
    ) -> Result<T, HeadError> {
        let raw = read_request(&payload).map_err(|PbError| {
            (
                ErrorClass::InvalidProtobuf,
                "REQUEST payload is not a valid RequestHead message",
            )
        })?;
        if raw.method.is_empty() || !super::scan::is_valid_name(&raw.method) {
            return Err((ErrorClass::InvalidHead, "method is empty or not a token"));
        }
        if raw.path.is_empty() {
            return Err((ErrorClass::InvalidHead, "path is empty"));
        }
        let headers = block(cut(payload, raw.headers), max_header_count)?;
        let client_port = port(raw.client_port)?;
        let server_port = port(raw.server_port)?;
        let params = block(raw.params, max_header_count)?;
        Ok(place(RequestHead {
            method: raw.method,
            scheme: raw.scheme,
            authority: raw.authority,
            path: raw.path,
            query: raw.query,
            version: HttpVersion(raw.version),
            headers,
            client_addr: raw.client_addr,
            client_port,
            server_name: raw.server_name,
            server_port,
            tls: raw.tls,
            params,
            body_length: raw.body_length,
            upgrade: raw.upgrade,
        }))
    }

    /// Decodes a REQUEST payload with no header-count limit beyond the
    /// payload size (for tools and fuzzing).
    pub fn decode_unbounded(payload: Bytes) -> Result<RequestHead, super::DecodeError> {
        RequestHead::decode(payload, u32::MAX).map_err(|(c, d)| {
            super::DecodeError::new(c, Some(super::Kind::REQUEST), super::StreamId::ZERO, d)
        })
    }

    /// Encoded payload length.
    pub fn encoded_len(&self) -> usize {
        bytes_len(1, &self.method)
            + bytes_len(2, &self.scheme)
            + bytes_len(3, &self.authority)
            + bytes_len(4, &self.path)
            + self.query.as_ref().map_or(0, |q| opt_bytes_len(5, q))
            + varint_len(6, self.version.0 as u64)
            + bytes_len(7, self.headers.as_bytes())
            + bytes_len(8, &self.client_addr)
            + varint_len(9, self.client_port.into())
            + bytes_len(10, &self.server_name)
            + varint_len(11, self.server_port.into())
            + varint_len(12, self.tls.into())
            + bytes_len(13, self.params.as_bytes())
            + self
                .body_length
                .map_or(0, |n| key_len(14) + encoded_len_varint(n))
            + self.upgrade.as_ref().map_or(0, |u| opt_bytes_len(15, u))
    }

    /// Writes the payload (no frame header).
    pub fn encode<B: BufMut>(&self, dst: &mut B) {
        put_bytes(1, &self.method, dst);
        put_bytes(2, &self.scheme, dst);
        put_bytes(3, &self.authority, dst);
        put_bytes(4, &self.path, dst);
        if let Some(q) = &self.query {
            put_opt_bytes(5, q, dst);
        }
        // int32: negative values are sign-extended to ten bytes, as prost does.
        put_varint(6, self.version.0 as u64, dst);
        put_bytes(7, self.headers.as_bytes(), dst);
        put_bytes(8, &self.client_addr, dst);
        put_varint(9, self.client_port.into(), dst);
        put_bytes(10, &self.server_name, dst);
        put_varint(11, self.server_port.into(), dst);
        put_varint(12, self.tls.into(), dst);
        put_bytes(13, self.params.as_bytes(), dst);
        if let Some(n) = self.body_length {
            put_opt_varint(14, n, dst);
        }
        if let Some(u) = &self.upgrade {
            put_opt_bytes(15, u, dst);
        }
    }

    /// Whether the request offers an upgrade (see [`RequestHead::upgrade`]).
    pub fn is_upgrade(&self) -> bool {
        self.upgrade.is_some()
    }

    /// Whether `response` accepts this request's upgrade offer, turning the
    /// stream into a tunnel (PROTOCOL.md section 7.5): `101 Switching
    /// Protocols` for an offer made with any method but `CONNECT`, a 2xx
    /// for an extended `CONNECT`. Always false without an offer.
    pub fn upgrade_accepted_by(&self, response: &ResponseHead) -> bool {
        self.upgrade.is_some() && accepts_upgrade(&self.method, response.status)
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

/// Whether a response with `status` accepts an upgrade offered by a
/// request with `method` (PROTOCOL.md section 7.5): a 2xx for `CONNECT`
/// (HTTP/2 and HTTP/3 extended CONNECT), `101` for any other method.
pub fn accepts_upgrade(method: &[u8], status: u16) -> bool {
    if method == b"CONNECT" {
        (200..300).contains(&status)
    } else {
        status == 101
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

    /// Whether this is a 1xx head. Interim, except a `101` answering an
    /// upgrade offer (see [`ResponseHead::is_interim`]).
    pub fn is_informational(&self) -> bool {
        (100..200).contains(&self.status)
    }

    /// Whether this head is interim on a stream whose REQUEST did
    /// (`upgrade_offered`) or did not offer an upgrade: every 1xx is, except
    /// a `101` answering an offer, which is final (PROTOCOL.md section 7.5).
    pub fn is_interim(&self, upgrade_offered: bool) -> bool {
        self.is_informational() && !(upgrade_offered && self.status == 101)
    }

    pub(crate) fn decode(payload: Bytes, max_header_count: u32) -> Result<ResponseHead, HeadError> {
        // In tag order first, then the general loop, as `read_request`.
        let mut r = Reader::new(&payload);
        let parsed: Result<_, PbError> = (|| {
            use WireType::{LengthDelimited as Len, Varint};
            let mut status = r.field_varint(key(1, Varint))?.unwrap_or(0) as u32;
            let mut reason = r.field_bytes(key(2, Len))?;
            let mut headers = r.field_range(key(3, Len))?.unwrap_or_default();
            while let Some((tag, wt)) = r.key()? {
                match tag {
                    1 => status = r.varint(wt)? as u32,
                    2 => reason = Some(r.bytes(wt)?),
                    3 => headers = r.range(wt)?,
                    _ => r.skip(wt, tag)?,
                }
            }
            Ok((status, reason, headers))
        })();
        let (status, reason, headers) = parsed.map_err(|PbError| {
            (
                ErrorClass::InvalidProtobuf,
                "RESPONSE payload is not a valid ResponseHead message",
            )
        })?;
        if !(100..=999).contains(&status) {
            return Err((ErrorClass::InvalidHead, "status outside 100..=999"));
        }
        if let Some(r) = &reason {
            if !super::scan::is_valid_value(r) {
                return Err((
                    ErrorClass::InvalidHead,
                    "reason phrase contains NUL, CR or LF",
                ));
            }
        }
        Ok(ResponseHead {
            status: status as u16,
            reason,
            headers: block(cut(payload, headers), max_header_count)?,
        })
    }

    /// Decodes a RESPONSE payload with no header-count limit (tools, fuzzing).
    pub fn decode_unbounded(payload: Bytes) -> Result<ResponseHead, super::DecodeError> {
        ResponseHead::decode(payload, u32::MAX).map_err(|(c, d)| {
            super::DecodeError::new(c, Some(super::Kind::RESPONSE), super::StreamId::ZERO, d)
        })
    }

    /// Encoded payload length.
    pub fn encoded_len(&self) -> usize {
        varint_len(1, self.status.into())
            + self.reason.as_ref().map_or(0, |r| opt_bytes_len(2, r))
            + bytes_len(3, self.headers.as_bytes())
    }

    /// Writes the payload (no frame header).
    pub fn encode<B: BufMut>(&self, dst: &mut B) {
        put_varint(1, self.status.into(), dst);
        if let Some(r) = &self.reason {
            put_opt_bytes(2, r, dst);
        }
        put_bytes(3, self.headers.as_bytes(), dst);
    }
}

/// Methods decoded without touching the payload's refcount.
const COMMON_METHODS: &[&[u8]] = &[
    b"GET", b"POST", b"HEAD", b"PUT", b"DELETE", b"OPTIONS", b"PATCH",
];
/// Schemes decoded without touching the payload's refcount.
const COMMON_SCHEMES: &[&[u8]] = &[b"https", b"http"];

/// The fields of a `uwire.v1.RequestHead` message as read, before the
/// checks that give them their types.
struct RawRequest {
    method: Bytes,
    scheme: Bytes,
    authority: Bytes,
    path: Bytes,
    query: Option<Bytes>,
    version: i32,
    /// Where the header block lies in the payload (it is cut from the
    /// payload itself once the rest is read: see [`RequestHead::decode`]).
    headers: Range<usize>,
    client_addr: Bytes,
    client_port: u32,
    server_name: Bytes,
    server_port: u32,
    tls: bool,
    params: Bytes,
    body_length: Option<u64>,
    upgrade: Option<Bytes>,
}

/// The one-byte key of field `tag` (1 to 15) with `wire_type`, as it
/// stands on the wire: `tag << 3 | wire type`.
const fn key(tag: u8, wire_type: WireType) -> u8 {
    assert!(tag >= 1 && tag <= 15);
    tag << 3 | wire_type as u8
}

/// One-byte keys of the fields of a `uwire.v1.RequestHead`, in tag order.
mod request_key {
    use super::key;
    use prost::encoding::WireType::{LengthDelimited as Len, Varint};

    pub(super) const METHOD: u8 = key(1, Len);
    pub(super) const SCHEME: u8 = key(2, Len);
    pub(super) const AUTHORITY: u8 = key(3, Len);
    pub(super) const PATH: u8 = key(4, Len);
    pub(super) const QUERY: u8 = key(5, Len);
    pub(super) const VERSION: u8 = key(6, Varint);
    pub(super) const HEADERS: u8 = key(7, Len);
    pub(super) const CLIENT_ADDR: u8 = key(8, Len);
    pub(super) const CLIENT_PORT: u8 = key(9, Varint);
    pub(super) const SERVER_NAME: u8 = key(10, Len);
    pub(super) const SERVER_PORT: u8 = key(11, Varint);
    pub(super) const TLS: u8 = key(12, Varint);
    pub(super) const PARAMS: u8 = key(13, Len);
    pub(super) const BODY_LENGTH: u8 = key(14, Varint);
    pub(super) const UPGRADE: u8 = key(15, Len);
}

/// Reads a `uwire.v1.RequestHead` message with prost's semantics: last
/// value wins for a repeated scalar field, unknown fields are skipped, a
/// known field with the wrong wire type is an error, varints are truncated
/// to the field width.
///
/// Every encoder writes the fields in tag order (prost does, and so does
/// [`RequestHead::encode`]), so they are first read in that order, each
/// behind one well-predicted test of its key byte: no jump table indexed
/// by the tag, and no field written twice. Whatever is left (fields out of
/// order or repeated, unknown fields, keys of a wrong wire type) goes
/// through the general loop, which assigns in the order met, so the result
/// is the same as reading everything that way.
#[inline(always)]
fn read_request(payload: &Bytes) -> Result<RawRequest, PbError> {
    use request_key as k;
    let mut r = Reader::new(payload);
    let mut m = RawRequest {
        method: r.field_common(k::METHOD, COMMON_METHODS)?,
        scheme: r.field_common(k::SCHEME, COMMON_SCHEMES)?,
        authority: r.field_bytes(k::AUTHORITY)?.unwrap_or_default(),
        path: r.field_bytes(k::PATH)?.unwrap_or_default(),
        query: r.field_bytes(k::QUERY)?,
        version: r.field_varint(k::VERSION)?.unwrap_or(0) as i32,
        headers: r.field_range(k::HEADERS)?.unwrap_or_default(),
        client_addr: r.field_bytes(k::CLIENT_ADDR)?.unwrap_or_default(),
        client_port: r.field_varint(k::CLIENT_PORT)?.unwrap_or(0) as u32,
        server_name: r.field_bytes(k::SERVER_NAME)?.unwrap_or_default(),
        server_port: r.field_varint(k::SERVER_PORT)?.unwrap_or(0) as u32,
        tls: r.field_varint(k::TLS)?.is_some_and(|v| v != 0),
        params: r.field_bytes(k::PARAMS)?.unwrap_or_default(),
        body_length: r.field_varint(k::BODY_LENGTH)?,
        upgrade: r.field_bytes(k::UPGRADE)?,
    };
    while let Some((tag, wt)) = r.key()? {
        match tag {
            1 => m.method = r.bytes_common(wt, COMMON_METHODS)?,
            2 => m.scheme = r.bytes_common(wt, COMMON_SCHEMES)?,
            3 => m.authority = r.bytes(wt)?,
            4 => m.path = r.bytes(wt)?,
            5 => m.query = Some(r.bytes(wt)?),
            6 => m.version = r.varint(wt)? as i32,
            7 => m.headers = r.range(wt)?,
            8 => m.client_addr = r.bytes(wt)?,
            9 => m.client_port = r.varint(wt)? as u32,
            10 => m.server_name = r.bytes(wt)?,
            11 => m.server_port = r.varint(wt)? as u32,
            12 => m.tls = r.varint(wt)? != 0,
            13 => m.params = r.bytes(wt)?,
            14 => m.body_length = Some(r.varint(wt)?),
            15 => m.upgrade = Some(r.bytes(wt)?),
            _ => r.skip(wt, tag)?,
        }
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb;
    use proptest::prelude::*;
    use prost::Message;

    fn to_pb(h: &RequestHead) -> pb::RequestHead {
        pb::RequestHead {
            method: h.method.clone(),
            scheme: h.scheme.clone(),
            authority: h.authority.clone(),
            path: h.path.clone(),
            query: h.query.clone(),
            version: h.version.0,
            headers: h.headers.as_bytes().clone(),
            client_addr: h.client_addr.clone(),
            client_port: h.client_port.into(),
            server_name: h.server_name.clone(),
            server_port: h.server_port.into(),
            tls: h.tls,
            params: h.params.as_bytes().clone(),
            body_length: h.body_length,
            upgrade: h.upgrade.clone(),
        }
    }

    /// The message's fields as read, before any check.
    type Raw = RawRequest;

    fn read_raw(payload: &Bytes) -> Result<Raw, PbError> {
        read_request(payload)
    }

    fn raw_eq_pb(payload: &Bytes, raw: &Raw, m: &pb::RequestHead) -> bool {
        raw.method == m.method
            && raw.scheme == m.scheme
            && raw.authority == m.authority
            && raw.path == m.path
            && raw.query == m.query
            && raw.version == m.version
            && payload[raw.headers.clone()] == m.headers
            && raw.client_addr == m.client_addr
            && raw.client_port == m.client_port
            && raw.server_name == m.server_name
            && raw.server_port == m.server_port
            && raw.tls == m.tls
            && raw.params == m.params
            && raw.body_length == m.body_length
            && raw.upgrade == m.upgrade
    }

    fn bytes(max: usize) -> impl Strategy<Value = Bytes> {
        proptest::collection::vec(any::<u8>(), 0..max).prop_map(Bytes::from)
    }

    fn block() -> impl Strategy<Value = HeaderBlock> {
        proptest::collection::vec(("[A-Za-z0-9!#$%&'*+.^_`|~-]{1,12}", "[ -~]{0,20}"), 0..6)
            .prop_map(|v| HeaderBlock::try_from_pairs(v).unwrap())
    }

    prop_compose! {
        fn request_head()(
            method in bytes(8), scheme in bytes(6), authority in bytes(10), path in bytes(10),
            query in proptest::option::of(bytes(6)), version in any::<i32>(), headers in block(),
            client_addr in bytes(6), client_port in any::<u16>(), server_name in bytes(6),
            server_port in any::<u16>(), tls in any::<bool>(), params in block(),
            body_length in proptest::option::of(any::<u64>()),
            upgrade in proptest::option::of(bytes(10)),
        ) -> RequestHead {
            RequestHead {
                method, scheme, authority, path, query, version: HttpVersion(version), headers,
                client_addr, client_port, server_name, server_port, tls, params, body_length,
                upgrade,
            }
        }
    }

    prop_compose! {
        fn response_head()(
            status in any::<u16>(), reason in proptest::option::of(bytes(6)), headers in block(),
        ) -> ResponseHead {
            ResponseHead { status, reason, headers }
        }
    }

    /// Protobuf-shaped noise: valid fields of every wire type (known and
    /// unknown tags, right and wrong wire types), plus raw garbage.
    fn pb_noise() -> impl Strategy<Value = Vec<u8>> {
        let field = prop_oneof![
            (1u32..20, any::<u64>()).prop_map(|(t, v)| {
                let mut b = Vec::new();
                prost::encoding::uint64::encode(t, &v, &mut b);
                b
            }),
            (1u32..20, bytes(12)).prop_map(|(t, v)| {
                let mut b = Vec::new();
                prost::encoding::bytes::encode(t, &v, &mut b);
                b
            }),
            (1u32..20, any::<u32>()).prop_map(|(t, v)| {
                let mut b = Vec::new();
                prost::encoding::fixed32::encode(t, &v, &mut b);
                b
            }),
            (1u32..20, any::<u64>()).prop_map(|(t, v)| {
                let mut b = Vec::new();
                prost::encoding::fixed64::encode(t, &v, &mut b);
                b
            }),
            (16u32..21).prop_map(|t| {
                // An (empty or nested) group of an unknown field.
                let mut b = Vec::new();
                encode_key(t, WireType::StartGroup, &mut b);
                prost::encoding::uint32::encode(1, &7, &mut b);
                encode_key(t, WireType::EndGroup, &mut b);
                b
            }),
            proptest::collection::vec(any::<u8>(), 0..4),
        ];
        proptest::collection::vec(field, 0..8).prop_map(|v| v.concat())
    }

    #[test]
    fn varints_read_as_prost_reads_them() {
        let mut cases: Vec<Vec<u8>> = vec![
            // Written longer than needed, and cut short.
            vec![0x80, 0x00],
            vec![0xff, 0x7f],
            vec![0x80, 0x80, 0x00],
            vec![0xff, 0xff, 0x7f],
            vec![0x80],
            vec![0xff, 0xff],
            vec![0xff, 0xff, 0xff],
        ];
        for v in [
            0,
            1,
            127,
            128,
            200,
            8080,
            16_383,
            16_384,
            65_535,
            (1 << 21) - 1,
            1 << 21,
            1 << 32,
            u64::MAX,
        ] {
            let mut b = Vec::new();
            prost::encoding::encode_varint(v, &mut b);
            cases.push(b);
        }
        for case in cases {
            for tail in [&[][..], &[0x05, 0x80][..]] {
                let buf = Bytes::from([&case[..], tail].concat());
                let mut ours = Reader::new(&buf);
                let got = ours.raw_varint().ok();
                let mut theirs = &buf[..];
                let want = prost::encoding::decode_varint(&mut theirs).ok();
                assert_eq!(got, want, "{case:02x?} then {tail:02x?}");
                if want.is_some() {
                    assert_eq!(ours.rest, theirs, "{case:02x?} then {tail:02x?}");
                }
            }
        }
    }

    proptest! {
        #[test]
        fn request_encode_matches_prost(h in request_head()) {
            let mut ours = Vec::new();
            h.encode(&mut ours);
            prop_assert_eq!(ours.len(), h.encoded_len());
            prop_assert_eq!(ours, to_pb(&h).encode_to_vec());
        }

        #[test]
        fn response_encode_matches_prost(h in response_head()) {
            let mut ours = Vec::new();
            h.encode(&mut ours);
            prop_assert_eq!(ours.len(), h.encoded_len());
            let m = pb::ResponseHead {
                status: h.status.into(),
                reason: h.reason.clone(),
                headers: h.headers.as_bytes().clone(),
            };
            prop_assert_eq!(ours, m.encode_to_vec());
        }

        #[test]
        fn request_decode_matches_prost(h in request_head(), noise in pb_noise(), at in any::<prop::sample::Index>()) {
            // Valid message, noise spliced in at a field boundary or anywhere.
            let mut wire = Vec::new();
            h.encode(&mut wire);
            let i = at.index(wire.len() + 1);
            wire.splice(i..i, noise);
            let payload = Bytes::from(wire);
            let ours = read_raw(&payload);
            let theirs = pb::RequestHead::decode(payload.clone());
            match (ours, theirs) {
                (Ok(a), Ok(b)) => prop_assert!(raw_eq_pb(&payload, &a, &b)),
                (Err(PbError), Err(_)) => {}
                (a, b) => prop_assert!(false, "ours ok={} prost ok={}", a.is_ok(), b.is_ok()),
            }
        }

        #[test]
        fn request_decode_matches_prost_on_noise(noise in pb_noise()) {
            let payload = Bytes::from(noise);
            let ours = read_raw(&payload);
            let theirs = pb::RequestHead::decode(payload.clone());
            match (ours, theirs) {
                (Ok(a), Ok(b)) => prop_assert!(raw_eq_pb(&payload, &a, &b)),
                (Err(PbError), Err(_)) => {}
                (a, b) => prop_assert!(false, "ours ok={} prost ok={}", a.is_ok(), b.is_ok()),
            }
        }

        #[test]
        fn response_decode_matches_prost(noise in pb_noise()) {
            let payload = Bytes::from(noise);
            let ours = ResponseHead::decode(payload.clone(), u32::MAX);
            match pb::ResponseHead::decode(payload) {
                Ok(m) => {
                    if let Ok(h) = ours {
                        prop_assert_eq!(u32::from(h.status), m.status);
                        prop_assert_eq!(h.reason, m.reason);
                        prop_assert_eq!(h.headers.as_bytes(), &m.headers);
                    } else {
                        prop_assert_ne!(ours.unwrap_err().0, ErrorClass::InvalidProtobuf);
                    }
                }
                Err(_) => prop_assert_eq!(ours.unwrap_err().0, ErrorClass::InvalidProtobuf),
            }
        }

        #[test]
        fn request_round_trip(mut h in request_head(), method in "[A-Z]{1,7}", path in "/[ -~]{0,12}") {
            // Only heads that pass validation round-trip.
            h.method = method.into();
            h.path = path.into();
            let mut wire = Vec::new();
            h.encode(&mut wire);
            prop_assert_eq!(RequestHead::decode(Bytes::from(wire), u32::MAX).unwrap(), h);
        }
    }

    /// The keys the in-order pass tests for are the bytes prost writes (a
    /// wrong one would not fail the decode tests: the general loop would
    /// read the field instead, only slower).
    #[test]
    fn in_order_keys_are_prost_keys() {
        use request_key as k;
        let prost_key = |tag: u32, wt: WireType| {
            let mut b = Vec::new();
            encode_key(tag, wt, &mut b);
            assert_eq!(b.len(), 1);
            b[0]
        };
        let (len, varint) = (WireType::LengthDelimited, WireType::Varint);
        let keys = [
            (k::METHOD, 1, len),
            (k::SCHEME, 2, len),
            (k::AUTHORITY, 3, len),
            (k::PATH, 4, len),
            (k::QUERY, 5, len),
            (k::VERSION, 6, varint),
            (k::HEADERS, 7, len),
            (k::CLIENT_ADDR, 8, len),
            (k::CLIENT_PORT, 9, varint),
            (k::SERVER_NAME, 10, len),
            (k::SERVER_PORT, 11, varint),
            (k::TLS, 12, varint),
            (k::PARAMS, 13, len),
            (k::BODY_LENGTH, 14, varint),
            (k::UPGRADE, 15, len),
        ];
        for (ours, tag, wt) in keys {
            assert_eq!(ours, prost_key(tag, wt), "field {tag}");
        }
        // Fields 1 to 3 of a ResponseHead.
        assert_eq!(key(1, varint), prost_key(1, varint));
        assert_eq!(key(2, len), prost_key(2, len));
        assert_eq!(key(3, len), prost_key(3, len));
    }

    #[test]
    fn overlong_varint_and_groups_are_rejected_like_prost() {
        let cases: &[&[u8]] = &[
            // 11-byte varint for field 9.
            &[
                0x48, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
            ],
            // 10-byte varint whose last byte overflows 64 bits.
            &[
                0x48, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02,
            ],
            // Stray end-group (unknown field 16).
            &[0x84, 0x01],
            // Unterminated group.
            &[0x83, 0x01, 0x08, 0x01],
            // Tag 0.
            &[0x00, 0x01],
            // Wire types 6 and 7.
            &[0x0e],
            &[0x0f],
            // Known field with the wrong wire type.
            &[0x0d, 0, 0, 0, 0],
            // Length past the end.
            &[0x0a, 0x05, b'a'],
        ];
        for c in cases {
            let p = Bytes::from_static(c);
            assert!(read_raw(&p).is_err(), "{c:?}");
            assert!(pb::RequestHead::decode(p).is_err(), "{c:?}");
        }
        // Deeply nested unknown groups hit prost's recursion limit either way.
        let mut deep = Vec::new();
        for _ in 0..200 {
            encode_key(16, WireType::StartGroup, &mut deep);
        }
        for _ in 0..200 {
            encode_key(16, WireType::EndGroup, &mut deep);
        }
        let p = Bytes::from(deep);
        assert_eq!(read_raw(&p).is_err(), pb::RequestHead::decode(p).is_err());
    }
}
