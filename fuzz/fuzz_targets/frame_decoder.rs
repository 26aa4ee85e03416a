//! The frame decoder on arbitrary bytes.
//!
//! Input: one control byte, then the wire bytes.
//!
//! * bits 0-1 choose the decode limits (default; every size 1024 and 4
//!   headers; every limit at its maximum; mixed with 1 header);
//! * bit 2 chooses whether the codec first expects the preface;
//! * bits 3-7 choose how the bytes are cut into chunks.
//!
//! Checks:
//!
//! * decoding the bytes chunk by chunk gives exactly what decoding them at
//!   once gives: the same frames, then the same error (or the same clean end);
//! * every decoded frame encodes to `encoded_len()` bytes and decodes back
//!   to an equal frame;
//! * nothing panics, and no declared length is buffered past its limit.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use uwire::codec::Codec;
use uwire::frame::Limits;
use uwire::frame::{DecodeError, Frame, MAX_PAYLOAD_LEN};

fn limits(variant: u8) -> Limits {
    let mut l = Limits::default();
    match variant & 3 {
        0 => {}
        1 => {
            l.max_frame_size(1024)
                .max_head_size(1024)
                .max_control_size(1024)
                .max_header_count(4);
        }
        2 => {
            l.max_frame_size(MAX_PAYLOAD_LEN)
                .max_head_size(MAX_PAYLOAD_LEN)
                .max_control_size(MAX_PAYLOAD_LEN)
                .max_header_count(u32::MAX);
        }
        _ => {
            l.max_frame_size(1024)
                .max_head_size(4096)
                .max_control_size(1024)
                .max_header_count(1);
        }
    }
    debug_assert!(l.validate().is_ok());
    l
}

fn codec(control: u8) -> Codec {
    if control & 4 != 0 {
        Codec::new(limits(control))
    } else {
        Codec::without_preface(limits(control))
    }
}

/// What a decoder made of the input: the frames, then how it ended.
#[derive(Debug, PartialEq)]
struct Outcome {
    frames: Vec<Frame>,
    error: Option<DecodeError>,
}

/// Drains `buf` through `codec`: frames until it needs more bytes (`true`)
/// or fails (`false`).
fn drain(codec: &mut Codec, buf: &mut BytesMut, out: &mut Outcome) -> bool {
    loop {
        let before = buf.len();
        match codec.decode_frame(buf) {
            Ok(Some(f)) => {
                assert!(buf.len() < before, "a frame consumed no bytes");
                out.frames.push(f);
            }
            Ok(None) => return true,
            Err(e) => {
                out.error = Some(e);
                return false;
            }
        }
    }
}

fn finish(codec: &mut Codec, buf: &mut BytesMut, out: &mut Outcome) {
    loop {
        match codec.decode_frame_eof(buf) {
            Ok(Some(f)) => out.frames.push(f),
            Ok(None) => {
                assert!(buf.is_empty(), "clean end with bytes left over");
                return;
            }
            Err(e) => {
                out.error = Some(e);
                return;
            }
        }
    }
}

fn whole(control: u8, wire: &[u8]) -> Outcome {
    let mut out = Outcome {
        frames: Vec::new(),
        error: None,
    };
    let mut c = codec(control);
    let mut buf = BytesMut::from(wire);
    if drain(&mut c, &mut buf, &mut out) {
        finish(&mut c, &mut buf, &mut out);
    }
    out
}

/// Chunk lengths: a deterministic sequence chosen by the top five bits.
struct Chunks {
    state: u32,
    max: usize,
}

impl Chunks {
    fn new(control: u8, input_len: usize) -> Chunks {
        let pattern = control >> 3;
        let max = match pattern & 7 {
            0 => 1,
            1 => 2,
            2 => 3,
            3 => 9,
            4 => 10,
            5 => 17,
            6 => 100,
            _ => 4096,
        };
        // Byte-sized pieces of a long input only slow the fuzzer down: every
        // boundary case is already reachable with a short one.
        let max = if input_len > 2048 { max.max(64) } else { max };
        Chunks {
            state: 0x9E37_79B9 ^ u32::from(pattern),
            max,
        }
    }

    fn next(&mut self) -> usize {
        // xorshift32: cheap, deterministic, never zero.
        self.state ^= self.state << 13;
        self.state ^= self.state >> 17;
        self.state ^= self.state << 5;
        1 + self.state as usize % self.max
    }
}

fn chunked(control: u8, wire: &[u8]) -> Outcome {
    let mut out = Outcome {
        frames: Vec::new(),
        error: None,
    };
    let mut c = codec(control);
    let l = *c.limits();
    let largest = l
        .max_frame_size
        .max(l.max_head_size)
        .max(l.max_control_size) as usize;
    let mut chunks = Chunks::new(control, wire.len());
    let mut buf = BytesMut::new();
    let mut rest = wire;
    while !rest.is_empty() {
        let n = chunks.next().min(rest.len());
        buf.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
        if !drain(&mut c, &mut buf, &mut out) {
            return out;
        }
        // The decoder reserves at most one frame's declared payload, which
        // is within the limits: an attacker cannot make it buffer more (the
        // slack covers `BytesMut`'s own growth policy).
        assert!(
            buf.capacity() <= (largest + 9).max(wire.len()) * 2 + 128 * 1024,
            "buffer grew to {} for limits {:?}",
            buf.capacity(),
            l
        );
    }
    finish(&mut c, &mut buf, &mut out);
    out
}

fn round_trip(frame: &Frame) {
    let mut wire = BytesMut::new();
    frame.encode(&mut wire).expect("a decoded frame encodes");
    assert_eq!(wire.len(), frame.encoded_len(), "encoded_len of {frame:?}");
    // Re-encoding may be a little longer than the input (a 5-byte negative
    // int32 varint becomes 10 bytes), so decode back with the widest limits.
    let mut c = Codec::without_preface(limits(2));
    let back = c.decode_frame_eof(&mut wire).expect("re-decodes");
    assert_eq!(back.as_ref(), Some(frame));
    assert!(wire.is_empty());
}

fuzz_target!(|data: &[u8]| {
    let Some((&control, wire)) = data.split_first() else {
        return;
    };
    let a = whole(control, wire);
    let b = chunked(control, wire);
    assert_eq!(a, b, "chunked decoding differs from decoding at once");
    for f in &a.frames {
        round_trip(f);
    }
});
