//! Request and response heads, and bare header blocks, on arbitrary bytes.
//!
//! The same bytes are decoded as a REQUEST payload, a RESPONSE payload and a
//! TRAILERS payload (a bare header block). Checks:
//!
//! * a decoded head encodes to `encoded_len()` bytes and decodes back equal;
//! * every header pair the block iterator yields is valid (non-empty token
//!   name, no NUL/CR/LF in the value), the count matches `len()`, and
//!   rebuilding the block from the pairs gives the same bytes; a block
//!   refused as a TRAILERS payload is invalid by a plain reference walk;
//! * differential: uwire's hand-written protobuf decoding agrees with
//!   prost-derive on the same schema (messages below mirror
//!   `proto/uwire/v1/uwire.proto`): prost rejects exactly the inputs uwire
//!   calls `invalid_protobuf`, and otherwise every field is equal.
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use prost::Message;
use uwire::codec::Codec;
use uwire::frame::Limits;
use uwire::frame::{ErrorClass, Frame, HeaderBlock, RequestHead, ResponseHead, MAX_PAYLOAD_LEN};

/// `uwire.v1.RequestHead`, as prost-derive decodes it.
#[derive(Clone, PartialEq, Message)]
struct RefRequestHead {
    #[prost(bytes = "bytes", tag = "1")]
    method: Bytes,
    #[prost(bytes = "bytes", tag = "2")]
    scheme: Bytes,
    #[prost(bytes = "bytes", tag = "3")]
    authority: Bytes,
    #[prost(bytes = "bytes", tag = "4")]
    path: Bytes,
    #[prost(bytes = "bytes", optional, tag = "5")]
    query: Option<Bytes>,
    #[prost(int32, tag = "6")]
    version: i32,
    #[prost(bytes = "bytes", tag = "7")]
    headers: Bytes,
    #[prost(bytes = "bytes", tag = "8")]
    client_addr: Bytes,
    #[prost(uint32, tag = "9")]
    client_port: u32,
    #[prost(bytes = "bytes", tag = "10")]
    server_name: Bytes,
    #[prost(uint32, tag = "11")]
    server_port: u32,
    #[prost(bool, tag = "12")]
    tls: bool,
    #[prost(bytes = "bytes", tag = "13")]
    params: Bytes,
    #[prost(uint64, optional, tag = "14")]
    body_length: Option<u64>,
    #[prost(bytes = "bytes", optional, tag = "15")]
    upgrade: Option<Bytes>,
}

/// `uwire.v1.ResponseHead`, as prost-derive decodes it.
#[derive(Clone, PartialEq, Message)]
struct RefResponseHead {
    #[prost(uint32, tag = "1")]
    status: u32,
    #[prost(bytes = "bytes", optional, tag = "2")]
    reason: Option<Bytes>,
    #[prost(bytes = "bytes", tag = "3")]
    headers: Bytes,
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn check_block(block: &HeaderBlock) {
    let mut n = 0;
    for (name, value) in block {
        assert!(
            !name.is_empty() && name.iter().all(|&b| is_tchar(b)),
            "{name:?}"
        );
        assert!(
            !value.iter().any(|&b| b == 0 || b == b'\r' || b == b'\n'),
            "{value:?}"
        );
        n += 1;
        // Lookup by the same name (any case) finds a value.
        assert!(block.get(&name.to_ascii_uppercase()).is_some());
    }
    assert_eq!(n, block.len());
    assert_eq!(block.is_empty(), n == 0);
    let rebuilt = HeaderBlock::try_from_pairs(block.iter()).expect("valid pairs rebuild");
    assert_eq!(&rebuilt, block);
    assert_eq!(rebuilt.as_bytes(), block.as_bytes());
}

fn request(data: &Bytes) {
    let ours = RequestHead::decode_unbounded(data.clone());
    let theirs = RefRequestHead::decode(data.clone());
    match (&ours, &theirs) {
        (Ok(h), Ok(r)) => {
            assert_eq!(h.method, r.method);
            assert_eq!(h.scheme, r.scheme);
            assert_eq!(h.authority, r.authority);
            assert_eq!(h.path, r.path);
            assert_eq!(h.query, r.query);
            assert_eq!(h.version.0, r.version);
            assert_eq!(h.headers.as_bytes(), &r.headers);
            assert_eq!(h.client_addr, r.client_addr);
            assert_eq!(u32::from(h.client_port), r.client_port);
            assert_eq!(h.server_name, r.server_name);
            assert_eq!(u32::from(h.server_port), r.server_port);
            assert_eq!(h.tls, r.tls);
            assert_eq!(h.params.as_bytes(), &r.params);
            assert_eq!(h.body_length, r.body_length);
            assert_eq!(h.upgrade, r.upgrade);
        }
        (Err(e), Ok(_)) => assert_ne!(e.class(), ErrorClass::InvalidProtobuf, "{e}"),
        (Err(e), Err(_)) => assert_eq!(e.class(), ErrorClass::InvalidProtobuf, "{e}"),
        (Ok(h), Err(e)) => panic!("uwire accepted {h:?}, prost rejected: {e}"),
    }
    let Ok(head) = ours else { return };
    check_block(&head.headers);
    check_block(&head.params);
    let mut wire = Vec::new();
    head.encode(&mut wire);
    assert_eq!(wire.len(), head.encoded_len());
    // prost agrees on the encoding too.
    assert_eq!(wire, theirs.unwrap().encode_to_vec());
    let back = RequestHead::decode_unbounded(Bytes::from(wire)).expect("re-decodes");
    assert_eq!(back, head);
}

fn response(data: &Bytes) {
    let ours = ResponseHead::decode_unbounded(data.clone());
    let theirs = RefResponseHead::decode(data.clone());
    match (&ours, &theirs) {
        (Ok(h), Ok(r)) => {
            assert_eq!(u32::from(h.status), r.status);
            assert_eq!(h.reason, r.reason);
            assert_eq!(h.headers.as_bytes(), &r.headers);
        }
        (Err(e), Ok(_)) => assert_ne!(e.class(), ErrorClass::InvalidProtobuf, "{e}"),
        (Err(e), Err(_)) => assert_eq!(e.class(), ErrorClass::InvalidProtobuf, "{e}"),
        (Ok(h), Err(e)) => panic!("uwire accepted {h:?}, prost rejected: {e}"),
    }
    let Ok(head) = ours else { return };
    assert!((100..=999).contains(&head.status));
    check_block(&head.headers);
    let mut wire = Vec::new();
    head.encode(&mut wire);
    assert_eq!(wire.len(), head.encoded_len());
    assert_eq!(wire, theirs.unwrap().encode_to_vec());
    let back = ResponseHead::decode_unbounded(Bytes::from(wire)).expect("re-decodes");
    assert_eq!(back, head);
}

/// The bytes as the payload of a TRAILERS frame on stream 1: a bare block.
fn trailers(data: &[u8]) {
    if data.len() > MAX_PAYLOAD_LEN as usize {
        return;
    }
    let len = (data.len() as u32).to_be_bytes();
    let mut wire = BytesMut::new();
    wire.extend_from_slice(&[len[1], len[2], len[3], 0x03, 0x01, 0, 0, 0, 1]);
    wire.extend_from_slice(data);
    let mut limits = Limits::default();
    limits
        .max_head_size(MAX_PAYLOAD_LEN)
        .max_header_count(u32::MAX);
    match Codec::without_preface(limits).decode_frame_eof(&mut wire) {
        Ok(Some(Frame::Trailers(t))) => {
            check_block(t.fields());
            assert_eq!(t.fields().as_bytes(), data);
        }
        Ok(other) => panic!("TRAILERS decoded as {other:?}"),
        Err(e) => {
            assert!(
                matches!(
                    e.class(),
                    ErrorClass::InvalidHeaderBlock | ErrorClass::TooManyHeaders
                ),
                "{e}"
            );
            // Differential for rejections: the decoder validates with AVX2
            // field checks (frame::scan) where the CPU allows; a block the
            // obvious definition accepts must not be refused.
            assert!(!reference_valid(data), "valid block refused: {e}");
        }
    }
}

/// The header-block rules of PROTOCOL.md (section 5.10), written the
/// obvious way: the entries' names and values, then a table of
/// `u16be name_len, u32be value_len` per entry, then a `u32be` count; the
/// lengths cover the data exactly, names are non-empty `tchar`s, values
/// have no NUL, CR or LF. The empty block is zero bytes, and only it has
/// no entries.
fn reference_valid(block: &[u8]) -> bool {
    const TCHAR_PUNCT: &[u8] = b"!#$%&'*+-.^_`|~";
    if block.is_empty() {
        return true;
    }
    let Some((rest, count)) = block.split_last_chunk::<4>() else {
        return false;
    };
    let count = u32::from_be_bytes(*count);
    if count == 0 {
        return false; // no entries is the empty block
    }
    let Some(table_len) = (count as usize).checked_mul(6) else {
        return false;
    };
    let Some(data_len) = rest.len().checked_sub(table_len) else {
        return false;
    };
    let (mut data, table) = rest.split_at(data_len);
    for e in table.chunks_exact(6) {
        let n = u16::from_be_bytes([e[0], e[1]]) as usize;
        let v = u32::from_be_bytes([e[2], e[3], e[4], e[5]]) as usize;
        let Some((name, rest)) = data.split_at_checked(n) else {
            return false;
        };
        let Some((value, rest)) = rest.split_at_checked(v) else {
            return false;
        };
        let name_ok = !name.is_empty()
            && name
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || TCHAR_PUNCT.contains(b));
        if !name_ok || value.iter().any(|&b| b == 0 || b == b'\r' || b == b'\n') {
            return false;
        }
        data = rest;
    }
    data.is_empty()
}

fuzz_target!(|data: &[u8]| {
    let bytes = Bytes::copy_from_slice(data);
    request(&bytes);
    response(&bytes);
    trailers(data);
});
