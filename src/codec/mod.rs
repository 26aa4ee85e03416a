//! A `tokio_util` codec for uwire/1 frames.
//!
//! The codec holds only its [`Limits`] and a small decode state. A declared
//! length is checked against its limit as soon as the 9-byte header is read
//! and before any memory is reserved for the payload. `Ok(None)` means "need
//! more bytes". Payloads are split off the read buffer and frozen, so frame
//! payloads and head fields share the read buffer's memory.
//!
//! ```
//! use bytes::BytesMut;
//! use tokio_util::codec::{Decoder, Encoder};
//! use uwire::codec::Codec;
//! use uwire::frame::{preface, Frame, Ping};
//!
//! let mut wire = BytesMut::from(&preface::PREFACE[..]);
//! Codec::without_preface(Default::default()).encode(Frame::from(Ping::new([7; 8])), &mut wire).unwrap();
//! let mut rx = Codec::new(Default::default());
//! assert_eq!(rx.decode(&mut wire).unwrap(), Some(Frame::Ping(Ping::new([7; 8]))));
//! ```

use std::io;

use bytes::{Buf, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use crate::frame::{
    preface, DecodeError, EncodeError, ErrorClass, Frame, FrameHeader, Limits, HEADER_LEN,
};

/// Errors of the codec layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The peer sent bytes that are not valid uwire/1.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// A frame could not be encoded (local misuse).
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// The underlying transport failed.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
}

impl Error {
    /// The decode error, if this is one.
    pub fn as_decode(&self) -> Option<&DecodeError> {
        match self {
            Error::Decode(e) => Some(e),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum State {
    Preface,
    Head,
    Payload(FrameHeader),
    Failed,
}

/// Decoder and encoder of uwire/1 frames.
#[derive(Debug, Clone)]
pub struct Codec {
    limits: Limits,
    state: State,
    /// The peer's preface was read and accepted.
    greeted: bool,
}

impl Codec {
    /// A codec whose decoder first expects the 8-byte preface.
    pub fn new(limits: Limits) -> Codec {
        Codec {
            limits,
            state: State::Preface,
            greeted: false,
        }
    }

    /// A codec that decodes frames straight away (the preface was handled
    /// elsewhere, e.g. by protocol auto-detection).
    pub fn without_preface(limits: Limits) -> Codec {
        Codec {
            limits,
            state: State::Head,
            greeted: true,
        }
    }

    /// The decode limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Replaces the decode limits (takes effect from the next frame header).
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// Whether the peer's preface has been read and accepted (always true
    /// for a codec made [`without_preface`](Codec::without_preface)).
    pub fn preface_received(&self) -> bool {
        self.greeted
    }

    /// Writes the preface to `dst`.
    pub fn encode_preface(dst: &mut BytesMut) {
        dst.extend_from_slice(&preface::PREFACE);
    }

    /// Decodes one frame, the pure function under `Decoder::decode`.
    pub fn decode_frame(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, DecodeError> {
        loop {
            match self.state {
                State::Failed => {
                    return Err(DecodeError::new(
                        ErrorClass::Truncated,
                        None,
                        Default::default(),
                        "decoder used after an error",
                    ))
                }
                State::Preface => {
                    let done = preface::check(src).inspect_err(|_| self.state = State::Failed)?;
                    if !done {
                        return Ok(None);
                    }
                    src.advance(preface::PREFACE_LEN);
                    self.state = State::Head;
                    self.greeted = true;
                }
                State::Head => {
                    let header = match FrameHeader::parse(src) {
                        Ok(Some(h)) => h,
                        Ok(None) => return Ok(None),
                        Err(e) => {
                            self.state = State::Failed;
                            return Err(e);
                        }
                    };
                    // The limit is checked before a single payload byte is reserved.
                    header
                        .check(&self.limits)
                        .inspect_err(|_| self.state = State::Failed)?;
                    src.advance(HEADER_LEN);
                    self.state = State::Payload(header);
                }
                State::Payload(header) => {
                    let len = header.length() as usize;
                    if src.len() < len {
                        return Ok(None);
                    }
                    let payload = src.split_to(len).freeze();
                    self.state = State::Head;
                    return Frame::load(header, payload, &self.limits)
                        .inspect_err(|_| self.state = State::Failed)
                        .map(Some);
                }
            }
        }
    }

    /// How many more bytes the frame in progress needs, given the
    /// `buffered` bytes [`Codec::decode_frame`] left undecoded: the rest
    /// of the preface or of a frame header, or, once a header is read (and
    /// its length checked against the limits), the rest of its payload. A
    /// reader makes room for that many before its next read; the decoder
    /// reserves nothing itself, so that the reader decides how (the
    /// connection driver moves a cut frame to a fresh buffer rather than
    /// growing one whose front its earlier frames still share).
    pub fn awaiting(&self, buffered: usize) -> usize {
        let whole = match self.state {
            State::Preface => preface::PREFACE_LEN,
            State::Head => HEADER_LEN,
            State::Payload(header) => header.length() as usize,
            State::Failed => return 0,
        };
        whole.saturating_sub(buffered)
    }

    /// Like [`Codec::decode_frame`] at end of input: leftover bytes are a
    /// `truncated` error.
    pub fn decode_frame_eof(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, DecodeError> {
        match self.decode_frame(src)? {
            Some(f) => Ok(Some(f)),
            None => {
                let mid = match self.state {
                    State::Payload(_) => true,
                    State::Preface | State::Head => !src.is_empty(),
                    State::Failed => false,
                };
                if mid {
                    self.state = State::Failed;
                    Err(DecodeError::new(
                        ErrorClass::Truncated,
                        None,
                        Default::default(),
                        "input ended inside a preface or frame",
                    ))
                } else {
                    Ok(None)
                }
            }
        }
    }
}

impl Decoder for Codec {
    type Item = Frame;
    type Error = Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, Error> {
        let frame = self.decode_frame(src)?;
        if frame.is_none() {
            // Room for the rest of the frame in progress (its length was
            // checked against the limits before any is reserved).
            src.reserve(self.awaiting(src.len()));
        }
        Ok(frame)
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, Error> {
        Ok(self.decode_frame_eof(src)?)
    }
}

impl Encoder<Frame> for Codec {
    type Error = Error;

    fn encode(&mut self, frame: Frame, dst: &mut BytesMut) -> Result<(), Error> {
        self.encode(&frame, dst)
    }
}

impl Encoder<&Frame> for Codec {
    type Error = Error;

    fn encode(&mut self, frame: &Frame, dst: &mut BytesMut) -> Result<(), Error> {
        dst.reserve(frame.encoded_len());
        frame.encode(dst)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::*;
    use bytes::Bytes;

    fn enc(f: &Frame) -> BytesMut {
        let mut b = BytesMut::new();
        f.encode(&mut b).unwrap();
        b
    }

    #[test]
    fn read_frames_byte_by_byte() {
        let frames: Vec<Frame> = vec![
            Data::new(StreamId::new(1), Bytes::from_static(b"abc"), false).into(),
            Ping::new([1; 8]).into(),
            WindowUpdate::new(StreamId::ZERO, 1000).into(),
            Reset::new(StreamId::new(3), Reason::CANCEL).into(),
        ];
        let mut wire = BytesMut::from(&preface::PREFACE[..]);
        for f in &frames {
            wire.extend_from_slice(&enc(f));
        }
        let mut codec = Codec::new(Limits::default());
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for b in wire.iter() {
            buf.extend_from_slice(&[*b]);
            while let Some(f) = codec.decode_frame(&mut buf).unwrap() {
                out.push(f);
            }
        }
        assert_eq!(out, frames);
        assert_eq!(codec.decode_frame_eof(&mut buf).unwrap(), None);
    }

    #[test]
    fn read_oversize_rejected_before_payload() {
        let mut limits = Limits::default();
        limits.max_frame_size(1024);
        let mut codec = Codec::without_preface(limits);
        // Header claims 1025 bytes; only the header is present.
        let mut buf = BytesMut::from(&[0x00, 0x04, 0x01, 0x00, 0x00, 0, 0, 0, 1][..]);
        let e = codec.decode_frame(&mut buf).unwrap_err();
        assert_eq!(e.class(), ErrorClass::FrameTooLarge);
        assert_eq!(e.kind(), Some(Kind::DATA));
        // Exactly at the limit is fine.
        let mut codec = Codec::without_preface(limits);
        let mut buf = enc(&Data::new(StreamId::new(1), Bytes::from(vec![0u8; 1024]), true).into());
        assert!(codec.decode_frame(&mut buf).unwrap().is_some());
    }

    #[test]
    fn read_truncated_at_eof() {
        let mut codec = Codec::without_preface(Limits::default());
        let mut buf = BytesMut::from(&enc(&Ping::new([0; 8]).into())[..12]);
        assert_eq!(codec.decode_frame(&mut buf).unwrap(), None);
        assert_eq!(
            codec.decode_frame_eof(&mut buf).unwrap_err().class(),
            ErrorClass::Truncated
        );
    }
}
