//! The classic uwsgi codec (`uwire::uwsgi`) on arbitrary bytes.
//!
//! Input: one control byte, then the data.
//!
//! * control bits 0-3: feeding piece size minus 1 (1..=16 bytes), 15 meaning
//!   "all at once" for the split run;
//! * bit 4: the response answers a HEAD request;
//! * bits 5-6: limits variant (0 default, 1 small block/vars/body limits,
//!   2 small response head, 3 all small).
//!
//! The data goes to the request decoder and, separately, to the response
//! head parser (and the dechunker when the head says chunked). Checks:
//!
//! * fed whole and fed in pieces, every decoder gives the same result (the
//!   same request/response and leftover bytes, or the same error class);
//! * a decoded request re-encodes to exactly the bytes consumed, and
//!   decoding those again gives the same vars;
//! * a request that converts to a head: the environ builder and the proxy
//!   encoder do not panic, and head → vars → head → vars is stable after
//!   the first round;
//! * a parsed response head that can be written re-parses to the same
//!   status and headers.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use uwire::environ::{build, EnvironConfig};
use uwire::uwsgi::{
    encode_packet, encode_request, encode_response_head, request_vars, BodyKind, ChunkedDecoder,
    Dechunked, ResponseHeadParser, UwsgiDecoder, UwsgiError, UwsgiLimits, UwsgiRequest,
    UwsgiResponse,
};

fn limits(variant: u8) -> UwsgiLimits {
    let mut l = UwsgiLimits::default();
    if variant & 1 != 0 {
        l.max_block_size = 64;
        l.max_vars = 4;
        l.max_body_size = Some(100);
    }
    if variant & 2 != 0 {
        l.max_response_head = 64;
    }
    l
}

type Outcome<T> = (Result<Option<T>, String>, Vec<u8>);

fn class(e: UwsgiError) -> String {
    e.class().to_owned()
}

/// Request decoding, fed in `step`-byte pieces, then end of input.
fn decode_request(data: &[u8], step: usize, l: UwsgiLimits) -> Outcome<UwsgiRequest> {
    let mut dec = UwsgiDecoder::new(l);
    let mut buf = BytesMut::new();
    for (i, piece) in data.chunks(step).enumerate() {
        buf.extend_from_slice(piece);
        match dec.decode(&mut buf) {
            Ok(None) => {}
            r => {
                let fed = ((i + 1) * step).min(data.len());
                return (r.map_err(class), [&buf[..], &data[fed..]].concat());
            }
        }
    }
    (dec.decode_eof(&mut buf).map_err(class), buf.to_vec())
}

/// Response head parsing (then dechunking), fed in `step`-byte pieces.
fn parse_response(
    data: &[u8],
    step: usize,
    l: UwsgiLimits,
    head_request: bool,
) -> Outcome<(UwsgiResponse, Option<Vec<u8>>)> {
    let mut p = ResponseHeadParser::new(&l);
    p.head_request(head_request);
    let mut buf = BytesMut::new();
    let mut pieces = data.chunks(step);
    let mut fed = 0;
    let resp = loop {
        match p.parse(&mut buf) {
            Ok(Some(r)) => break r,
            Ok(None) => {}
            Err(e) => return (Err(class(e)), Vec::new()),
        }
        match pieces.next() {
            Some(piece) => {
                buf.extend_from_slice(piece);
                fed += piece.len();
            }
            None => match p.parse_eof(&mut buf) {
                Ok(Some(r)) => break r,
                Ok(None) => unreachable!("parse_eof never returns Ok(None)"),
                Err(e) => return (Err(class(e)), Vec::new()),
            },
        }
    };
    let rest = [&buf[..], &data[fed..]].concat();
    if resp.body != BodyKind::Chunked {
        return (Ok(Some((resp, None))), rest);
    }
    let mut dec = ChunkedDecoder::new(&l);
    let mut buf = BytesMut::new();
    let mut pieces = rest.chunks(step);
    let mut fed = 0;
    let mut body = Vec::new();
    loop {
        let r = match dec.decode(&mut buf) {
            Ok(None) => match pieces.next() {
                Some(piece) => {
                    buf.extend_from_slice(piece);
                    fed += piece.len();
                    continue;
                }
                None => dec.decode_eof(&mut buf),
            },
            r => r,
        };
        match r {
            Ok(Some(Dechunked::Data(d))) => {
                assert!(!d.is_empty(), "empty data piece");
                body.extend_from_slice(&d);
            }
            Ok(Some(Dechunked::End)) => break,
            Ok(None) => unreachable!("decode_eof never returns Ok(None)"),
            Err(e) => return (Err(class(e)), Vec::new()),
        }
    }
    let after = [&buf[..], &rest[fed..]].concat();
    (Ok(Some((resp, Some(body)))), after)
}

fn check_request(data: &[u8], step: usize, l: UwsgiLimits) {
    let whole = decode_request(data, data.len().max(1), l);
    let split = decode_request(data, step, l);
    assert_eq!(whole, split, "request: whole and split differ");
    let (Ok(Some(req)), rest) = whole else {
        return;
    };

    // Re-encoding the vars gives back the consumed bytes, which decode again.
    let consumed = &data[..data.len() - rest.len()];
    let mut again = BytesMut::new();
    let vars: Vec<_> = req.vars().collect();
    encode_packet(0, req.header.modifier2, &vars, &l, &mut again).expect("re-encode");
    assert_eq!(&again[..], consumed, "re-encoded packet differs");
    let (again, left) = decode_request(&again, again.len().max(1), l);
    assert!(left.is_empty());
    let again = again.expect("decode again").expect("complete");
    assert!(again.vars().eq(req.vars()), "vars differ after re-encoding");

    let Ok(head) = req.to_request_head() else {
        return;
    };
    let _ = build(&head, &EnvironConfig::default());
    let Ok(vars1) = request_vars(&head, head.body_length) else {
        return;
    };
    let mut wire = BytesMut::new();
    if encode_request(&head, head.body_length, &UwsgiLimits::default(), &mut wire).is_err() {
        return;
    }
    let (r, _) = decode_request(&wire, wire.len(), UwsgiLimits::default());
    let head2 = r
        .expect("own packet decodes")
        .expect("complete")
        .to_request_head()
        .expect("own packet converts");
    let vars2 = request_vars(&head2, head2.body_length).expect("encodes again");
    assert_eq!(vars1, vars2, "head -> vars -> head -> vars is not stable");
}

fn check_response(data: &[u8], step: usize, l: UwsgiLimits, head_request: bool) {
    let whole = parse_response(data, data.len().max(1), l, head_request);
    let split = parse_response(data, step, l, head_request);
    assert_eq!(whole, split, "response: whole and split differ");
    let (Ok(Some((resp, _))), _) = whole else {
        return;
    };
    let mut out = BytesMut::new();
    if encode_response_head(&resp.head, &mut out).is_err() {
        assert!(
            (resp.head.is_informational() && resp.head.status != 101) || resp.head.reason.is_some()
        );
        return;
    }
    let again = ResponseHeadParser::new(&UwsgiLimits {
        max_response_head: usize::MAX,
        ..l
    })
    .parse(&mut out)
    .expect("own head parses")
    .expect("complete");
    assert_eq!(again.head.status, resp.head.status);
    assert_eq!(again.head.headers, resp.head.headers);
    if resp.head.reason.is_some() {
        assert_eq!(again.head.reason, resp.head.reason);
    }
}

fuzz_target!(|input: &[u8]| {
    let Some((&control, data)) = input.split_first() else {
        return;
    };
    let step = match control & 0x0F {
        15 => data.len().max(1),
        n => usize::from(n) + 1,
    };
    let head_request = control & 0x10 != 0;
    let l = limits((control >> 5) & 3);
    check_request(data, step, l);
    check_response(data, step, l, head_request);
});
