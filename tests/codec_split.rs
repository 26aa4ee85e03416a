//! Byte-literal codec tests in the style of tokio-util's own codec tests:
//! `read_*` feed literal bytes (whole, split, or one byte at a time) and
//! check what comes out; `write_*` encode frames and compare the exact
//! bytes.

use bytes::{BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};
use uwire::codec::Codec;
use uwire::frame::Data;
use uwire::frame::Limits;
use uwire::frame::{
    preface, ErrorClass, Frame, GoAway, HeaderBlock, HttpVersion, Kind, Ping, Reason, Request,
    RequestHead, Reset, Response, ResponseHead, Settings, StreamId, Trailers, Unknown,
    WindowUpdate,
};

const PREFACE: &[u8] = b"\x9aUW1\xff\xff\r\n";

// DATA, END_STREAM, stream 1, "hello".
const DATA_HELLO: &[u8] = b"\x00\x00\x05\x00\x01\x00\x00\x00\x01hello";
// PING, no ACK, payload 01..08.
const PING_1_8: &[u8] = b"\x00\x00\x08\x06\x00\x00\x00\x00\x00\x01\x02\x03\x04\x05\x06\x07\x08";
// WINDOW_UPDATE, connection, increment 65535.
const WU_CONN_65535: &[u8] = b"\x00\x00\x04\x08\x00\x00\x00\x00\x00\x00\x00\xff\xff";
// SETTINGS {max_concurrent_streams: 0, max_frame_size: 16384}.
const SETTINGS_0_16K: &[u8] = b"\x00\x00\x06\x05\x00\x00\x00\x00\x00\x08\x00\x20\x80\x80\x01";
// REQUEST, END_STREAM, stream 1:
// {method "GET", authority "a", path "/", version HTTP_1_1, headers [Host: a]}.
const REQUEST_GET: &[u8] = b"\x00\x00\x1e\x01\x01\x00\x00\x00\x01\
    \x0a\x03GET\
    \x1a\x01a\
    \x22\x01/\
    \x30\x02\
    \x3a\x0fHosta\x00\x04\x00\x00\x00\x01\x00\x00\x00\x01";

fn no_preface() -> Codec {
    Codec::without_preface(Limits::default())
}

fn with_limits(f: impl FnOnce(&mut Limits)) -> Codec {
    let mut l = Limits::default();
    f(&mut l);
    Codec::without_preface(l)
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn encode(f: impl Into<Frame>) -> Vec<u8> {
    let mut buf = BytesMut::new();
    f.into().encode(&mut buf).unwrap();
    buf.to_vec()
}

fn data(stream: u32, payload: &'static [u8], end: bool) -> Frame {
    Data::new(StreamId::new(stream), Bytes::from_static(payload), end).into()
}

fn request_get() -> Request {
    let head = RequestHead {
        method: Bytes::from_static(b"GET"),
        authority: Bytes::from_static(b"a"),
        path: Bytes::from_static(b"/"),
        version: HttpVersion::HTTP_11,
        headers: HeaderBlock::try_from_pairs([("Host", "a")]).unwrap(),
        ..RequestHead::default()
    };
    Request::new(StreamId::new(1), head, true)
}

/// Decodes everything in `buf`, then signals EOF.
fn decode_all(codec: &mut Codec, buf: &mut BytesMut) -> Vec<Frame> {
    let mut out = Vec::new();
    while let Some(f) = codec.decode_frame(buf).unwrap() {
        out.push(f);
    }
    while let Some(f) = codec.decode_frame_eof(buf).unwrap() {
        out.push(f);
    }
    out
}

// ---------------------------------------------------------------------------
// read_*
// ---------------------------------------------------------------------------

#[test]
fn read_data_whole() {
    let mut buf = BytesMut::from(DATA_HELLO);
    let f = no_preface().decode_frame(&mut buf).unwrap();
    assert_eq!(f, Some(data(1, b"hello", true)));
    assert!(buf.is_empty());
}

#[test]
fn read_data_split_every_byte() {
    let mut codec = no_preface();
    let mut buf = BytesMut::new();
    for (i, b) in DATA_HELLO.iter().enumerate() {
        buf.put_u8(*b);
        let got = codec.decode_frame(&mut buf).unwrap();
        if i + 1 < DATA_HELLO.len() {
            assert_eq!(got, None, "frame decoded early after {} bytes", i + 1);
        } else {
            assert_eq!(got, Some(data(1, b"hello", true)));
        }
    }
    assert!(buf.is_empty());
    assert_eq!(codec.decode_frame_eof(&mut buf).unwrap(), None);
}

#[test]
fn read_data_split_at_every_point() {
    for at in 0..=DATA_HELLO.len() {
        let mut codec = no_preface();
        let mut buf = BytesMut::from(&DATA_HELLO[..at]);
        let first = codec.decode_frame(&mut buf).unwrap();
        buf.extend_from_slice(&DATA_HELLO[at..]);
        let got = match first {
            Some(f) => f,
            None => codec.decode_frame(&mut buf).unwrap().expect("frame"),
        };
        assert_eq!(got, data(1, b"hello", true), "split at {at}");
    }
}

#[test]
fn read_two_frames_one_buffer() {
    let mut buf = BytesMut::from(&cat(&[PING_1_8, WU_CONN_65535])[..]);
    let mut codec = no_preface();
    assert_eq!(
        codec.decode_frame(&mut buf).unwrap(),
        Some(Ping::new([1, 2, 3, 4, 5, 6, 7, 8]).into())
    );
    assert_eq!(
        codec.decode_frame(&mut buf).unwrap(),
        Some(WindowUpdate::new(StreamId::ZERO, 65535).into())
    );
    assert_eq!(codec.decode_frame(&mut buf).unwrap(), None);
    assert_eq!(codec.decode_frame_eof(&mut buf).unwrap(), None);
}

#[test]
fn read_frame_leaves_following_bytes_in_buffer() {
    let mut buf = BytesMut::from(&cat(&[DATA_HELLO, &PING_1_8[..3]])[..]);
    let mut codec = no_preface();
    assert!(codec.decode_frame(&mut buf).unwrap().is_some());
    assert_eq!(&buf[..], &PING_1_8[..3]);
    assert_eq!(codec.decode_frame(&mut buf).unwrap(), None);
    buf.extend_from_slice(&PING_1_8[3..]);
    assert!(matches!(
        codec.decode_frame(&mut buf).unwrap(),
        Some(Frame::Ping(_))
    ));
}

#[test]
fn read_partial_header_is_not_an_error() {
    for n in 0..9 {
        let mut buf = BytesMut::from(&PING_1_8[..n]);
        assert_eq!(no_preface().decode_frame(&mut buf).unwrap(), None);
        assert_eq!(buf.len(), n, "partial header must stay buffered");
    }
}

#[test]
fn read_preface_then_settings() {
    let wire = cat(&[PREFACE, SETTINGS_0_16K]);
    let want: Frame = Settings {
        max_concurrent_streams: Some(0),
        max_frame_size: Some(16384),
        ..Settings::default()
    }
    .into();
    // Split inside the preface, at its end, and inside the frame header.
    for at in [1, 3, 4, 7, 8, 9, 12, 16, wire.len()] {
        let mut codec = Codec::new(Limits::default());
        let mut buf = BytesMut::from(&wire[..at]);
        let mut got = codec.decode_frame(&mut buf).unwrap();
        buf.extend_from_slice(&wire[at..]);
        if got.is_none() {
            got = codec.decode_frame(&mut buf).unwrap();
        }
        assert_eq!(got.as_ref(), Some(&want), "split at {at}");
        assert!(buf.is_empty());
    }
}

#[test]
fn read_preface_only_is_a_clean_end() {
    let mut buf = BytesMut::from(PREFACE);
    let mut codec = Codec::new(Limits::default());
    assert_eq!(codec.decode_frame_eof(&mut buf).unwrap(), None);
    assert!(buf.is_empty());
}

#[test]
fn read_empty_input_is_a_clean_end() {
    let mut buf = BytesMut::new();
    assert_eq!(
        Codec::new(Limits::default())
            .decode_frame_eof(&mut buf)
            .unwrap(),
        None
    );
    assert_eq!(no_preface().decode_frame_eof(&mut buf).unwrap(), None);
}

#[test]
fn read_truncated_preface_at_eof() {
    let mut buf = BytesMut::from(&PREFACE[..5]);
    let mut codec = Codec::new(Limits::default());
    assert_eq!(codec.decode_frame(&mut buf).unwrap(), None);
    let e = codec.decode_frame_eof(&mut buf).unwrap_err();
    assert_eq!(e.class(), ErrorClass::Truncated);
}

#[test]
fn read_bad_preface_fails_on_first_byte() {
    let mut buf = BytesMut::from(&b"G"[..]);
    let e = Codec::new(Limits::default())
        .decode_frame(&mut buf)
        .unwrap_err();
    assert_eq!(e.class(), ErrorClass::BadPreface);
    assert_eq!(e.kind(), None);
}

#[test]
fn read_classic_uwsgi_packet_is_bad_preface() {
    // modifier1 0, datasize 16 (LE), modifier2 0, then "PATH_INFO" = "/".
    let pkt = b"\x00\x10\x00\x00\x09\x00PATH_INFO\x01\x00/";
    let mut buf = BytesMut::from(&pkt[..]);
    let e = Codec::new(Limits::default())
        .decode_frame(&mut buf)
        .unwrap_err();
    assert_eq!(e.class(), ErrorClass::BadPreface);
    assert!(!preface::is_uwire_first_byte(pkt[0]));
    assert!(preface::is_uwire_first_byte(PREFACE[0]));
}

#[test]
fn read_unsupported_version_fails_at_version_byte() {
    let mut buf = BytesMut::from(&b"\x9aUW2"[..]);
    let e = Codec::new(Limits::default())
        .decode_frame(&mut buf)
        .unwrap_err();
    assert_eq!(e.class(), ErrorClass::UnsupportedVersion);
    assert_eq!(e.reason(), Reason::VERSION_MISMATCH);
}

#[test]
fn read_oversize_fails_before_payload_arrives() {
    // DATA declaring 65537 bytes (default limit 65536): only the header.
    let mut buf = BytesMut::from(&b"\x01\x00\x01\x00\x00\x00\x00\x00\x01"[..]);
    let cap_before = buf.capacity();
    let e = no_preface().decode_frame(&mut buf).unwrap_err();
    assert_eq!(e.class(), ErrorClass::FrameTooLarge);
    assert_eq!(e.kind(), Some(Kind::DATA));
    assert_eq!(e.stream_id(), StreamId::new(1));
    assert_eq!(e.reason(), Reason::FRAME_SIZE_ERROR);
    // Nothing was reserved for the payload.
    assert_eq!(buf.capacity(), cap_before);
}

#[test]
fn read_oversize_over_lowered_limit() {
    let mut codec = with_limits(|l| {
        l.max_frame_size(1024);
    });
    // 1025 bytes declared.
    let mut buf = BytesMut::from(&b"\x00\x04\x01\x00\x00\x00\x00\x00\x03"[..]);
    let e = codec.decode_frame(&mut buf).unwrap_err();
    assert_eq!(e.class(), ErrorClass::FrameTooLarge);
    // 1024 declared: accepted, waits for the payload.
    let mut codec = with_limits(|l| {
        l.max_frame_size(1024);
    });
    let mut buf = BytesMut::from(&b"\x00\x04\x00\x00\x00\x00\x00\x00\x03"[..]);
    assert_eq!(codec.decode_frame(&mut buf).unwrap(), None);
    buf.extend_from_slice(&[0xAB; 1024]);
    assert!(codec.decode_frame(&mut buf).unwrap().is_some());
}

#[test]
fn read_head_too_large_fails_before_payload_arrives() {
    let mut codec = with_limits(|l| {
        l.max_head_size(1024);
    });
    let mut buf = BytesMut::from(&b"\x00\x04\x01\x01\x01\x00\x00\x00\x01"[..]);
    let e = codec.decode_frame(&mut buf).unwrap_err();
    assert_eq!(e.class(), ErrorClass::HeadTooLarge);
    assert_eq!(e.kind(), Some(Kind::REQUEST));
}

#[test]
fn read_control_too_large_fails_before_payload_arrives() {
    // SETTINGS declaring 16385 bytes (default control limit 16384).
    let mut buf = BytesMut::from(&b"\x00\x40\x01\x05\x00\x00\x00\x00\x00"[..]);
    let e = no_preface().decode_frame(&mut buf).unwrap_err();
    assert_eq!(e.class(), ErrorClass::ControlTooLarge);
    assert_eq!(e.kind(), Some(Kind::SETTINGS));
}

#[test]
fn read_bad_length_fails_at_header() {
    // PING declaring 16 MiB - 1.
    let mut buf = BytesMut::from(&b"\xff\xff\xff\x06\x00\x00\x00\x00\x00"[..]);
    let e = no_preface().decode_frame(&mut buf).unwrap_err();
    assert_eq!(e.class(), ErrorClass::BadLength);
    // RESET declaring 3.
    let mut buf = BytesMut::from(&b"\x00\x00\x03\x04\x00\x00\x00\x00\x01"[..]);
    let e = no_preface().decode_frame(&mut buf).unwrap_err();
    assert_eq!(e.class(), ErrorClass::BadLength);
}

#[test]
fn read_reserved_bit_fails_at_header() {
    let mut buf = BytesMut::from(&b"\x00\x00\x05\x00\x00\x80\x00\x00\x01"[..]);
    let e = no_preface().decode_frame(&mut buf).unwrap_err();
    assert_eq!(e.class(), ErrorClass::ReservedBit);
    assert_eq!(e.stream_id(), StreamId::new(1));
}

#[test]
fn read_unknown_critical_kind_fails_at_header() {
    let mut buf = BytesMut::from(&b"\x00\x00\x00\x09\x00\x00\x00\x00\x00"[..]);
    let e = no_preface().decode_frame(&mut buf).unwrap_err();
    assert_eq!(e.class(), ErrorClass::UnknownKind);
    assert_eq!(e.kind(), Some(Kind(0x09)));
}

#[test]
fn read_extension_frame_then_data() {
    let wire = cat(&[b"\x00\x00\x03\x80\xff\x00\x00\x00\x00ext", DATA_HELLO]);
    let mut buf = BytesMut::from(&wire[..]);
    let frames = decode_all(&mut no_preface(), &mut buf);
    assert_eq!(
        frames,
        vec![
            Unknown::new(Kind(0x80), 0xFF, StreamId::ZERO, Bytes::from_static(b"ext")).into(),
            data(1, b"hello", true),
        ]
    );
}

#[test]
fn read_extension_flag_bits_ignored() {
    // DATA with flags 0xF1: END_STREAM plus extension bits.
    let mut buf = BytesMut::from(&b"\x00\x00\x01\x00\xf1\x00\x00\x00\x01x"[..]);
    assert_eq!(
        no_preface().decode_frame(&mut buf).unwrap(),
        Some(data(1, b"x", true))
    );
}

#[test]
fn read_request_head_fields() {
    let mut buf = BytesMut::from(REQUEST_GET);
    let Some(Frame::Request(r)) = no_preface().decode_frame(&mut buf).unwrap() else {
        panic!("not a REQUEST");
    };
    assert_eq!(r.stream_id(), StreamId::new(1));
    assert!(r.is_end_stream());
    let h = r.head();
    assert_eq!(&h.method[..], b"GET");
    assert_eq!(&h.authority[..], b"a");
    assert_eq!(&h.path[..], b"/");
    assert_eq!(h.query, None);
    assert_eq!(h.version, HttpVersion::HTTP_11);
    assert_eq!(h.headers.get(b"host"), Some(&b"a"[..]));
    assert_eq!(h.headers.len(), 1);
    assert_eq!(h.body_length, None);
    assert_eq!(r, request_get());
}

#[test]
fn read_data_payload_shares_read_buffer() {
    let mut buf = BytesMut::from(DATA_HELLO);
    let start = buf.as_ptr();
    let Some(Frame::Data(d)) = no_preface().decode_frame(&mut buf).unwrap() else {
        panic!("not DATA");
    };
    assert_eq!(
        d.payload().as_ptr(),
        start.wrapping_add(9),
        "payload was copied"
    );
}

#[test]
fn read_truncated_payload_at_eof() {
    let mut buf = BytesMut::from(&DATA_HELLO[..12]);
    let mut codec = no_preface();
    assert_eq!(codec.decode_frame(&mut buf).unwrap(), None);
    let e = codec.decode_frame_eof(&mut buf).unwrap_err();
    assert_eq!(e.class(), ErrorClass::Truncated);
}

#[test]
fn read_truncated_header_at_eof() {
    let mut buf = BytesMut::from(&DATA_HELLO[..4]);
    let e = no_preface().decode_frame_eof(&mut buf).unwrap_err();
    assert_eq!(e.class(), ErrorClass::Truncated);
}

#[test]
fn read_truncated_after_complete_frame_at_eof() {
    let wire = cat(&[DATA_HELLO, b"\x00\x00"]);
    let mut buf = BytesMut::from(&wire[..]);
    let mut codec = no_preface();
    // decode_eof still yields the complete frame first.
    assert_eq!(
        codec.decode_frame_eof(&mut buf).unwrap(),
        Some(data(1, b"hello", true))
    );
    assert_eq!(
        codec.decode_frame_eof(&mut buf).unwrap_err().class(),
        ErrorClass::Truncated
    );
}

#[test]
fn read_after_error_keeps_failing() {
    let mut buf = BytesMut::from(&b"\x00\x00\x00\x09\x00\x00\x00\x00\x00"[..]);
    let mut codec = no_preface();
    assert!(codec.decode_frame(&mut buf).is_err());
    // Even a valid frame is refused afterwards: the connection is dead.
    buf.clear();
    buf.extend_from_slice(PING_1_8);
    assert!(codec.decode_frame(&mut buf).is_err());
}

#[test]
fn read_payload_error_after_complete_payload() {
    // TRAILERS without END_STREAM is only detected once the frame is whole;
    // before that the decoder just waits.
    let wire = b"\x00\x00\x00\x03\x00\x00\x00\x00\x01";
    let mut codec = no_preface();
    let mut buf = BytesMut::from(&wire[..8]);
    assert_eq!(codec.decode_frame(&mut buf).unwrap(), None);
    buf.extend_from_slice(&wire[8..]);
    let e = codec.decode_frame(&mut buf).unwrap_err();
    assert_eq!(e.class(), ErrorClass::BadFlags);
    assert_eq!(e.kind(), Some(Kind::TRAILERS));
}

#[test]
fn read_new_limits_apply_from_next_header() {
    let wire = cat(&[DATA_HELLO, DATA_HELLO]);
    let mut buf = BytesMut::from(&wire[..]);
    let mut codec = no_preface();
    assert!(codec.decode_frame(&mut buf).unwrap().is_some());
    let mut l = Limits::default();
    l.max_header_count(1);
    codec.set_limits(l);
    assert_eq!(codec.limits().max_header_count, 1);
    assert!(codec.decode_frame(&mut buf).unwrap().is_some());
}

#[test]
fn read_via_decoder_trait() {
    let mut codec = Codec::new(Limits::default());
    let wire = cat(&[PREFACE, PING_1_8, &DATA_HELLO[..3]]);
    let mut buf = BytesMut::from(&wire[..]);
    assert_eq!(
        Decoder::decode(&mut codec, &mut buf).unwrap(),
        Some(Ping::new([1, 2, 3, 4, 5, 6, 7, 8]).into())
    );
    assert_eq!(Decoder::decode(&mut codec, &mut buf).unwrap(), None);
    let e = Decoder::decode_eof(&mut codec, &mut buf).unwrap_err();
    assert_eq!(
        e.as_decode().map(|d| d.class()),
        Some(ErrorClass::Truncated)
    );
}

// ---------------------------------------------------------------------------
// write_*
// ---------------------------------------------------------------------------

#[test]
fn write_preface_bytes() {
    let mut buf = BytesMut::new();
    Codec::encode_preface(&mut buf);
    assert_eq!(&buf[..], PREFACE);
    assert_eq!(&preface::PREFACE[..], PREFACE);
}

#[test]
fn write_data_bytes() {
    assert_eq!(encode(data(1, b"hello", true)), DATA_HELLO);
    assert_eq!(
        encode(data(0x7FFF_FFFF, b"", false)),
        b"\x00\x00\x00\x00\x00\x7f\xff\xff\xff"
    );
}

#[test]
fn write_data_header_only() {
    let d = Data::new(StreamId::new(1), Bytes::from_static(b"hello"), true);
    let mut buf = BytesMut::new();
    d.encode_header(&mut buf).unwrap();
    assert_eq!(&buf[..], &DATA_HELLO[..9]);
}

#[test]
fn write_request_head_bytes() {
    assert_eq!(encode(request_get()), REQUEST_GET);
}

#[test]
fn write_request_query_and_body_length_presence() {
    // Present-but-empty query and a zero body_length are both emitted.
    let head = RequestHead {
        method: Bytes::from_static(b"GET"),
        path: Bytes::from_static(b"/"),
        query: Some(Bytes::new()),
        body_length: Some(0),
        ..RequestHead::default()
    };
    let got = encode(Request::new(StreamId::new(3), head, false));
    assert_eq!(
        got,
        b"\x00\x00\x0c\x01\x00\x00\x00\x00\x03\x0a\x03GET\x22\x01/\x2a\x00\x70\x00"
    );
}

#[test]
fn write_response_bytes() {
    let head = ResponseHead {
        status: 200,
        reason: None,
        headers: HeaderBlock::try_from_pairs([("Content-Type", "text/plain")]).unwrap(),
    };
    assert_eq!(
        encode(Response::new(StreamId::new(3), head, false)),
        b"\x00\x00\x25\x02\x00\x00\x00\x00\x03\
          \x08\xc8\x01\
          \x1a\x20Content-Typetext/plain\x00\x0c\x00\x00\x00\x0a\x00\x00\x00\x01"
    );
}

#[test]
fn write_interim_response_bytes() {
    let head = ResponseHead {
        status: 103,
        reason: None,
        headers: HeaderBlock::try_from_pairs([("Link", "</a>")]).unwrap(),
    };
    assert_eq!(
        encode(Response::new(StreamId::new(3), head, false)),
        b"\x00\x00\x16\x02\x00\x00\x00\x00\x03\x08\x67\x1a\x12\
          Link</a>\x00\x04\x00\x00\x00\x04\x00\x00\x00\x01"
    );
}

#[test]
fn write_response_with_empty_reason() {
    let head = ResponseHead {
        status: 204,
        reason: Some(Bytes::new()),
        headers: HeaderBlock::new(),
    };
    assert_eq!(
        encode(Response::new(StreamId::new(1), head, true)),
        b"\x00\x00\x05\x02\x01\x00\x00\x00\x01\x08\xcc\x01\x12\x00"
    );
}

#[test]
fn write_trailers_bytes() {
    let fields = HeaderBlock::try_from_pairs([("grpc-status", "0")]).unwrap();
    // TRAILERS always carry END_STREAM.
    assert_eq!(
        encode(Trailers::new(StreamId::new(3), fields)),
        b"\x00\x00\x16\x03\x01\x00\x00\x00\x03\
          grpc-status0\x00\x0b\x00\x00\x00\x01\x00\x00\x00\x01"
    );
}

#[test]
fn write_reset_bytes() {
    assert_eq!(
        encode(Reset::new(StreamId::new(5), Reason::CANCEL)),
        b"\x00\x00\x04\x04\x00\x00\x00\x00\x05\x00\x00\x00\x08"
    );
}

#[test]
fn write_settings_bytes() {
    let s = Settings {
        max_concurrent_streams: Some(0),
        max_frame_size: Some(16384),
        ..Settings::default()
    };
    assert_eq!(encode(s), SETTINGS_0_16K);
    assert_eq!(
        encode(Settings::default()),
        b"\x00\x00\x00\x05\x00\x00\x00\x00\x00"
    );
}

#[test]
fn write_ping_ack_bytes() {
    assert_eq!(
        encode(Ping::pong(*b"abcdefgh")),
        b"\x00\x00\x08\x06\x01\x00\x00\x00\x00abcdefgh"
    );
    assert_eq!(encode(Ping::new([1, 2, 3, 4, 5, 6, 7, 8])), PING_1_8);
}

#[test]
fn write_goaway_bytes() {
    assert_eq!(
        encode(GoAway::new(
            StreamId::new(5),
            Reason::INTERNAL_ERROR,
            Bytes::from_static(b"oops")
        )),
        b"\x00\x00\x0a\x07\x00\x00\x00\x00\x00\x08\x05\x10\x02\x1a\x04oops"
    );
    // All defaults: empty payload.
    assert_eq!(
        encode(GoAway::new(StreamId::ZERO, Reason::NO_ERROR, Bytes::new())),
        b"\x00\x00\x00\x07\x00\x00\x00\x00\x00"
    );
}

#[test]
fn write_window_update_bytes() {
    assert_eq!(
        encode(WindowUpdate::new(StreamId::ZERO, 65535)),
        WU_CONN_65535
    );
    assert_eq!(
        encode(WindowUpdate::new(StreamId::new(7), 0x7FFF_FFFF)),
        b"\x00\x00\x04\x08\x00\x00\x00\x00\x07\x7f\xff\xff\xff"
    );
}

#[test]
fn write_unknown_bytes() {
    let u = Unknown::new(
        Kind(0xA0),
        0x0F,
        StreamId::new(9),
        Bytes::from_static(b"\x01\x02"),
    );
    assert_eq!(encode(u), b"\x00\x00\x02\xa0\x0f\x00\x00\x00\x09\x01\x02");
}

#[test]
fn write_via_encoder_trait() {
    let mut codec = no_preface();
    let mut buf = BytesMut::new();
    let f = data(1, b"hello", true);
    Encoder::<&Frame>::encode(&mut codec, &f, &mut buf).unwrap();
    Encoder::<Frame>::encode(
        &mut codec,
        Ping::new([1, 2, 3, 4, 5, 6, 7, 8]).into(),
        &mut buf,
    )
    .unwrap();
    assert_eq!(&buf[..], &cat(&[DATA_HELLO, PING_1_8])[..]);
}

#[test]
fn write_encoded_len_matches_bytes() {
    let frames: Vec<Frame> = vec![
        data(1, b"hello", true),
        request_get().into(),
        Settings::default().into(),
        GoAway::new(StreamId::new(5), Reason(77), Bytes::from_static(b"x")).into(),
        Ping::new([0; 8]).into(),
        Reset::new(StreamId::new(1), Reason::CANCEL).into(),
        WindowUpdate::new(StreamId::ZERO, 1).into(),
    ];
    for f in frames {
        assert_eq!(f.encoded_len(), encode(f.clone()).len(), "{f:?}");
    }
}

#[test]
fn write_data_stream_zero_fails() {
    let mut buf = BytesMut::new();
    assert!(data(0, b"x", false).encode(&mut buf).is_err());
    assert!(Frame::from(Reset::new(StreamId::ZERO, Reason::CANCEL))
        .encode(&mut buf)
        .is_err());
    assert!(buf.is_empty(), "nothing written on error");
}

#[test]
fn write_window_update_zero_increment_fails() {
    let mut buf = BytesMut::new();
    assert!(Frame::from(WindowUpdate::new(StreamId::ZERO, 0))
        .encode(&mut buf)
        .is_err());
    assert!(Frame::from(WindowUpdate::new(StreamId::ZERO, 0x8000_0000))
        .encode(&mut buf)
        .is_err());
    assert!(buf.is_empty());
}

#[test]
fn write_then_read_round_trip_with_preface() {
    let frames = vec![
        Frame::from(Settings::default()),
        request_get().into(),
        data(1, b"hello", true),
    ];
    let mut buf = BytesMut::new();
    Codec::encode_preface(&mut buf);
    let mut tx = no_preface();
    for f in &frames {
        Encoder::<&Frame>::encode(&mut tx, f, &mut buf).unwrap();
    }
    let got = decode_all(&mut Codec::new(Limits::default()), &mut buf);
    assert_eq!(got, frames);
}
