//! Property tests of the frame codec.
//!
//! 1. `decode(encode(frame)) == frame` for arbitrary valid frames of every
//!    kind.
//! 2. Decoding is independent of how the input is split: for arbitrary
//!    bytes, and for concatenations of valid frames followed by garbage,
//!    truncated or with a byte flipped, decoding in chunks (and one byte at
//!    a time) gives the same frames and the same final result (same error,
//!    or the same clean end) as decoding the whole input at once.
//! 3. Header-block validation agrees with a naive reading of the spec
//!    (name: non-empty RFC 9110 tchars; value: no NUL, CR, LF) for names
//!    and values biased towards the bytes next to the forbidden ones.

use bytes::{Bytes, BytesMut};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::sample::{select, Index};
use uwire::codec::Codec;
use uwire::frame::Limits;
use uwire::frame::{
    preface, Data, DecodeError, Frame, GoAway, HeaderBlock, HttpVersion, Kind, Ping, Reason,
    Request, RequestHead, Reset, Response, ResponseHead, Settings, StreamId, Trailers, Unknown,
    WindowUpdate,
};

const TCHARS: &[u8] =
    b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const MAX_STREAM: u32 = 0x7FFF_FFFF;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 384,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------

fn any_bytes(max: usize) -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..=max).prop_map(Bytes::from)
}

fn nonempty_bytes(max: usize) -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 1..=max).prop_map(Bytes::from)
}

fn token(max: usize) -> impl Strategy<Value = Vec<u8>> {
    vec(select(TCHARS), 1..=max)
}

/// A field value: any byte except NUL, CR and LF.
fn field_value(max: usize) -> impl Strategy<Value = Vec<u8>> {
    vec(
        any::<u8>().prop_map(|b| match b {
            0 | b'\r' | b'\n' => b' ',
            b => b,
        }),
        0..=max,
    )
}

fn header_block(max_entries: usize) -> impl Strategy<Value = HeaderBlock> {
    vec((token(12), field_value(24)), 0..=max_entries)
        .prop_map(|pairs| HeaderBlock::try_from_pairs(pairs).expect("valid pairs"))
}

fn stream_nonzero() -> impl Strategy<Value = StreamId> {
    prop_oneof![1u32..=16, 1u32..=MAX_STREAM].prop_map(StreamId::new)
}

fn stream_any() -> impl Strategy<Value = StreamId> {
    prop_oneof![Just(0u32), 1u32..=16, 0u32..=MAX_STREAM].prop_map(StreamId::new)
}

fn stream_odd() -> impl Strategy<Value = StreamId> {
    (0u32..=MAX_STREAM / 2).prop_map(|n| StreamId::new(n * 2 + 1))
}

fn reason() -> impl Strategy<Value = Reason> {
    prop_oneof![0u32..=12, any::<u32>()].prop_map(Reason)
}

fn version() -> impl Strategy<Value = HttpVersion> {
    prop_oneof![0i32..=5, any::<i32>()].prop_map(HttpVersion)
}

fn request_head() -> impl Strategy<Value = RequestHead> {
    let a = (
        token(8).prop_map(Bytes::from),
        any_bytes(8),
        any_bytes(24),
        nonempty_bytes(32),
        option::of(any_bytes(16)),
        version(),
        header_block(8),
    );
    let b = (
        any_bytes(16),
        any::<u16>(),
        any_bytes(16),
        any::<u16>(),
        any::<bool>(),
        header_block(4),
        option::of(prop_oneof![Just(0u64), any::<u64>()]),
    );
    (a, b, option::of(any_bytes(12))).prop_map(
        |(
            (method, scheme, authority, path, query, version, headers),
            (client_addr, client_port, server_name, server_port, tls, params, body_length),
            upgrade,
        )| RequestHead {
            method,
            scheme,
            authority,
            path,
            query,
            version,
            headers,
            client_addr,
            client_port,
            server_name,
            server_port,
            tls,
            params,
            body_length,
            upgrade,
        },
    )
}

fn response_head() -> impl Strategy<Value = ResponseHead> {
    (
        prop_oneof![100u16..=199, 200u16..=599, 100u16..=999],
        option::of(field_value(16).prop_map(Bytes::from)),
        header_block(8),
    )
        .prop_map(|(status, reason, headers)| ResponseHead {
            status,
            reason,
            headers,
        })
}

fn settings() -> impl Strategy<Value = Settings> {
    let window = prop_oneof![Just(0u32), Just(MAX_STREAM), 0u32..=MAX_STREAM];
    let size = prop_oneof![Just(1024u32), Just(0xFF_FFFF), 1024u32..=0xFF_FFFF];
    (
        option::of(any::<u32>()),
        option::of(window.clone()),
        option::of(window),
        option::of(size.clone()),
        option::of(size),
        option::of(1u32..=u32::MAX),
    )
        .prop_map(|(mcs, isw, icw, mfs, mhs, mhc)| Settings {
            max_concurrent_streams: mcs,
            initial_stream_window: isw,
            initial_connection_window: icw,
            max_frame_size: mfs,
            max_head_size: mhs,
            max_header_count: mhc,
        })
}

fn frame() -> BoxedStrategy<Frame> {
    prop_oneof![
        (stream_nonzero(), any_bytes(300), any::<bool>())
            .prop_map(|(s, p, e)| Data::new(s, p, e).into()),
        (stream_odd(), request_head(), any::<bool>()).prop_map(|(s, h, e)| {
            // An upgrade offer never carries END_STREAM.
            let e = e && h.upgrade.is_none();
            Request::new(s, h, e).into()
        }),
        (stream_nonzero(), response_head(), any::<bool>()).prop_map(|(s, h, e)| {
            // An interim head never carries END_STREAM.
            let e = e && !h.is_informational();
            Response::new(s, h, e).into()
        }),
        (stream_nonzero(), header_block(8)).prop_map(|(s, b)| Trailers::new(s, b).into()),
        (stream_nonzero(), reason()).prop_map(|(s, r)| Reset::new(s, r).into()),
        settings().prop_map(Frame::from),
        (any::<[u8; 8]>(), any::<bool>()).prop_map(|(p, ack)| if ack {
            Ping::pong(p).into()
        } else {
            Ping::new(p).into()
        }),
        (0u32..=MAX_STREAM, reason(), any_bytes(32)).prop_map(|(l, r, d)| GoAway::new(
            StreamId::new(l),
            r,
            d
        )
        .into()),
        (stream_any(), 1u32..=MAX_STREAM).prop_map(|(s, i)| WindowUpdate::new(s, i).into()),
        (0x80u8..=0xFF, any::<u8>(), stream_any(), any_bytes(64))
            .prop_map(|(k, f, s, p)| Unknown::new(Kind(k), f, s, p).into()),
    ]
    .boxed()
}

fn encode_frames(frames: &[Frame]) -> Vec<u8> {
    let mut buf = BytesMut::new();
    for f in frames {
        f.encode(&mut buf).expect("encode");
    }
    buf.to_vec()
}

/// An input for the split property: (expects preface, bytes).
fn split_input() -> impl Strategy<Value = (bool, Vec<u8>)> {
    let garbage = vec(any::<u8>(), 0..24);
    let frames = vec(frame(), 0..6);
    prop_oneof![
        // Arbitrary bytes, with and without the preface expected.
        (any::<bool>(), vec(any::<u8>(), 0..128)),
        // Arbitrary bytes after a correct preface.
        vec(any::<u8>(), 0..64).prop_map(|b| (true, [&preface::PREFACE[..], &b].concat())),
        // Valid frames followed by garbage.
        (any::<bool>(), frames.clone(), garbage).prop_map(|(with_preface, fs, g)| {
            let mut v = if with_preface {
                preface::PREFACE.to_vec()
            } else {
                Vec::new()
            };
            v.extend(encode_frames(&fs));
            v.extend(g);
            (with_preface, v)
        }),
        // Valid frames, truncated at an arbitrary point.
        (frames.clone(), any::<Index>()).prop_map(|(fs, at)| {
            let v = encode_frames(&fs);
            let n = if v.is_empty() {
                0
            } else {
                at.index(v.len() + 1)
            };
            (false, v[..n].to_vec())
        }),
        // Valid frames with one byte replaced.
        (frames, any::<Index>(), any::<u8>()).prop_map(|(fs, at, b)| {
            let mut v = encode_frames(&fs);
            if !v.is_empty() {
                let i = at.index(v.len());
                v[i] = b;
            }
            (false, v)
        }),
    ]
}

/// Bytes biased towards the forbidden ones and their neighbours (also with
/// the high bit set), so word-at-a-time checks meet their edge cases.
fn tricky_byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        3 => select(&[0x00u8, 0x0A, 0x0D][..]),
        6 => select(&[0x01u8, 0x09, 0x0B, 0x0C, 0x0E, 0x20, 0x7F, 0x80, 0x8A, 0x8D, 0xFF][..]),
        6 => select(TCHARS),
        4 => any::<u8>(),
    ]
}

/// A byte string that is mostly one filler byte with a few tricky bytes at
/// arbitrary positions, of a length around the 8-byte word and 128-byte
/// thresholds.
fn tricky_bytes() -> impl Strategy<Value = Vec<u8>> {
    let len = prop_oneof![0usize..=20, 0usize..=300];
    (
        len,
        tricky_byte(),
        vec((any::<Index>(), tricky_byte()), 0..3),
    )
        .prop_map(|(len, fill, spots)| {
            let fill = if matches!(fill, 0 | b'\r' | b'\n') {
                b'v'
            } else {
                fill
            };
            let mut v = vec![fill; len];
            for (at, b) in spots {
                if len > 0 {
                    v[at.index(len)] = b;
                }
            }
            v
        })
}

fn naive_valid_name(n: &[u8]) -> bool {
    !n.is_empty() && n.iter().all(|b| TCHARS.contains(b))
}

fn naive_valid_value(v: &[u8]) -> bool {
    !v.iter().any(|&b| b == 0 || b == b'\r' || b == b'\n')
}

// ---------------------------------------------------------------------------
// Decoding helpers
// ---------------------------------------------------------------------------

#[derive(Debug, PartialEq)]
struct Outcome {
    frames: Vec<Frame>,
    /// `None`: clean end of input.
    end: Option<DecodeError>,
}

fn new_codec(with_preface: bool) -> Codec {
    if with_preface {
        Codec::new(Limits::default())
    } else {
        Codec::without_preface(Limits::default())
    }
}

/// Decodes `chunks` handed over one after another, then signals EOF.
fn decode_chunks<'a>(with_preface: bool, chunks: impl IntoIterator<Item = &'a [u8]>) -> Outcome {
    let mut codec = new_codec(with_preface);
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            match codec.decode_frame(&mut buf) {
                Ok(Some(f)) => frames.push(f),
                Ok(None) => break,
                Err(e) => {
                    return Outcome {
                        frames,
                        end: Some(e),
                    }
                }
            }
        }
    }
    loop {
        match codec.decode_frame_eof(&mut buf) {
            Ok(Some(f)) => frames.push(f),
            Ok(None) => {
                assert!(buf.is_empty(), "clean end with {} bytes left", buf.len());
                return Outcome { frames, end: None };
            }
            Err(e) => {
                return Outcome {
                    frames,
                    end: Some(e),
                }
            }
        }
    }
}

fn split_at_points<'a>(input: &'a [u8], points: &[Index]) -> Vec<&'a [u8]> {
    let mut cuts: Vec<usize> = points.iter().map(|p| p.index(input.len() + 1)).collect();
    cuts.sort_unstable();
    let mut chunks = Vec::with_capacity(cuts.len() + 1);
    let mut start = 0;
    for c in cuts {
        chunks.push(&input[start..c]);
        start = c;
    }
    chunks.push(&input[start..]);
    chunks
}

// ---------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(config())]

    /// Property 1: decode(encode(frame)) == frame, and the encoded length
    /// is what `encoded_len` promised.
    #[test]
    fn round_trip(f in frame()) {
        let bytes = encode_frames(std::slice::from_ref(&f));
        prop_assert_eq!(bytes.len(), f.encoded_len());
        let out = decode_chunks(false, [&bytes[..]]);
        prop_assert_eq!(out.end, None);
        prop_assert_eq!(out.frames, vec![f]);
    }

    /// Property 1 over a sequence with the preface, decoded one byte at a
    /// time.
    #[test]
    fn round_trip_sequence_bytewise(fs in vec(frame(), 0..5)) {
        let mut bytes = preface::PREFACE.to_vec();
        bytes.extend(encode_frames(&fs));
        let out = decode_chunks(true, bytes.chunks(1));
        prop_assert_eq!(out.end, None);
        prop_assert_eq!(out.frames, fs);
    }

    /// Property 2: any split gives the same frames and the same final
    /// result as decoding the whole input.
    #[test]
    fn split_anywhere_same_result(
        (with_preface, input) in split_input(),
        points in vec(any::<Index>(), 0..8),
    ) {
        let whole = decode_chunks(with_preface, [&input[..]]);
        let split = decode_chunks(with_preface, split_at_points(&input, &points));
        prop_assert_eq!(&split, &whole);
        let bytewise = decode_chunks(with_preface, input.chunks(1));
        prop_assert_eq!(&bytewise, &whole);
    }

    /// Property 3: a TRAILERS frame carrying one raw entry decodes iff the
    /// name and value are valid per the spec, and the builder agrees.
    #[test]
    fn header_block_validation_matches_spec(
        name in prop_oneof![token(70), tricky_bytes().prop_map(|mut v| { v.truncate(70); v })],
        value in tricky_bytes(),
    ) {
        let expect_ok = naive_valid_name(&name) && naive_valid_value(&value);
        // The block's wire layout (PROTOCOL.md 5.10): the entry's bytes,
        // its lengths, the count.
        let mut block = Vec::new();
        block.extend_from_slice(&name);
        block.extend_from_slice(&value);
        block.extend_from_slice(&(name.len() as u16).to_be_bytes());
        block.extend_from_slice(&(value.len() as u32).to_be_bytes());
        block.extend_from_slice(&1u32.to_be_bytes());
        let mut wire = Vec::new();
        wire.extend_from_slice(&(block.len() as u32).to_be_bytes()[1..]);
        wire.extend_from_slice(&[0x03, 0x01, 0, 0, 0, 1]);
        wire.extend_from_slice(&block);
        let out = decode_chunks(false, [&wire[..]]);
        if expect_ok {
            prop_assert_eq!(out.end, None);
            prop_assert_eq!(out.frames.len(), 1);
            let Frame::Trailers(t) = &out.frames[0] else {
                return Err(TestCaseError::fail("not TRAILERS"));
            };
            let got: Vec<_> = t.fields().iter().collect();
            prop_assert_eq!(got, vec![(&name[..], &value[..])]);
        } else {
            let e = out.end.expect("invalid entry accepted");
            prop_assert_eq!(e.class().as_str(), "invalid_header_block");
        }
        prop_assert_eq!(
            HeaderBlock::try_from_pairs([(&name, &value)]).is_ok(),
            expect_ok
        );
    }
}
