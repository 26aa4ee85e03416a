//! [`UwsgiDecoder`]: the incremental, sans-IO reader of the one request
//! packet a classic uwsgi connection carries.

use bytes::{Buf, BytesMut};

use super::packet::{PacketHeader, UwsgiRequest, HEADER_LEN};
use super::{UwsgiError, UwsgiLimits};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for the 4-byte header.
    Header,
    /// Header read and checked; waiting for the whole block.
    Block(PacketHeader),
    /// The request was returned, or an error was: nothing more to read.
    Done,
}

/// Reads the request packet of one classic uwsgi connection.
///
/// Feed it the bytes read so far with [`decode`](UwsgiDecoder::decode):
/// it returns `Ok(None)` until the header and the whole vars block are in
/// the buffer, then the [`UwsgiRequest`] once. It consumes the header and
/// the block and nothing else: what follows in the buffer is the start of
/// the raw body, [`UwsgiRequest::body_length`] bytes, which the caller
/// reads itself. After the request (or an error) it is done, and further
/// calls return `Ok(None)` without touching the buffer.
///
/// The header is checked ([`PacketHeader::check`]: modifier1, then
/// `datasize` against [`UwsgiLimits::max_block_size`]) as soon as its 4
/// bytes are in, before any block byte is buffered; then the buffer is
/// grown once to hold the block.
///
/// ```
/// use bytes::BytesMut;
/// use uwire::uwsgi::{UwsgiDecoder, UwsgiLimits};
///
/// let mut dec = UwsgiDecoder::new(UwsgiLimits::default());
/// let mut buf = BytesMut::from(&b"\x00\x14\x00\x00\x0e\x00CONTENT_LENGTH\x02\x00"[..]);
/// assert_eq!(dec.decode(&mut buf).unwrap(), None); // 2 block bytes missing
/// buf.extend_from_slice(b"1");
/// assert_eq!(dec.decode(&mut buf).unwrap(), None);
/// buf.extend_from_slice(b"2BODY...");
/// let req = dec.decode(&mut buf).unwrap().unwrap();
/// assert_eq!(req.body_length, 12);
/// assert_eq!(&buf[..], b"BODY...");
/// ```
#[derive(Debug, Clone)]
pub struct UwsgiDecoder {
    limits: UwsgiLimits,
    state: State,
}

impl UwsgiDecoder {
    /// A decoder waiting for a packet header.
    pub fn new(limits: UwsgiLimits) -> UwsgiDecoder {
        UwsgiDecoder {
            limits,
            state: State::Header,
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &UwsgiLimits {
        &self.limits
    }

    /// The header, once read and accepted (for logging a slow or
    /// truncated block).
    pub fn header(&self) -> Option<PacketHeader> {
        match self.state {
            State::Block(h) => Some(h),
            _ => None,
        }
    }

    /// Whether the request (or an error) has been returned.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decodes from the bytes in `src`: `Ok(None)` when more are needed.
    ///
    /// # Errors
    ///
    /// Any [`UwsgiError`] of [`PacketHeader::check`] and
    /// [`UwsgiRequest::parse`]. The connection must then be closed
    /// ([`UwsgiError::suggested_status`] says whether an answer is worth
    /// writing first).
    pub fn decode(&mut self, src: &mut BytesMut) -> Result<Option<UwsgiRequest>, UwsgiError> {
        let result = self.step(src);
        if result.is_err() {
            self.state = State::Done;
        }
        result
    }

    fn step(&mut self, src: &mut BytesMut) -> Result<Option<UwsgiRequest>, UwsgiError> {
        if self.state == State::Header {
            let Some(header) = PacketHeader::parse(src) else {
                return Ok(None);
            };
            header.check(&self.limits)?;
            src.advance(HEADER_LEN);
            self.state = State::Block(header);
        }
        let State::Block(header) = self.state else {
            return Ok(None);
        };
        let size = usize::from(header.datasize);
        if src.len() < size {
            src.reserve(size - src.len());
            return Ok(None);
        }
        let block = src.split_to(size).freeze();
        self.state = State::Done;
        UwsgiRequest::parse(header, block, &self.limits).map(Some)
    }

    /// Like [`decode`](UwsgiDecoder::decode), for when the peer has closed
    /// its side: a packet still incomplete is [`UwsgiError::Truncated`].
    /// A connection closed before sending any byte is `Ok(None)`.
    pub fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<UwsgiRequest>, UwsgiError> {
        if let Some(req) = self.decode(src)? {
            return Ok(Some(req));
        }
        let what = match self.state {
            State::Header if src.is_empty() => return Ok(None),
            State::Header => "packet header",
            State::Block(_) => "vars block",
            State::Done => return Ok(None),
        };
        self.state = State::Done;
        Err(UwsgiError::Truncated { what })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::uwsgi::encode_packet;

    fn packet(vars: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
        let mut buf = BytesMut::new();
        encode_packet(0, 0, vars, &UwsgiLimits::default(), &mut buf).unwrap();
        buf.extend_from_slice(body);
        buf.to_vec()
    }

    #[test]
    fn byte_by_byte_equals_whole() {
        let wire = packet(
            &[
                ("REQUEST_METHOD", "POST"),
                ("CONTENT_LENGTH", "5"),
                ("HTTP_X", "\u{e9}"),
            ],
            b"hello",
        );
        let mut whole = BytesMut::from(&wire[..]);
        let mut dec = UwsgiDecoder::new(UwsgiLimits::default());
        let want = dec.decode(&mut whole).unwrap().unwrap();
        assert_eq!(&whole[..], b"hello");
        assert!(dec.is_done());
        assert_eq!(dec.decode(&mut whole).unwrap(), None);
        assert_eq!(&whole[..], b"hello");

        let mut dec = UwsgiDecoder::new(UwsgiLimits::default());
        let mut buf = BytesMut::new();
        let mut got = None;
        for (i, &b) in wire.iter().enumerate() {
            buf.extend_from_slice(&[b]);
            if let Some(r) = dec.decode(&mut buf).unwrap() {
                assert!(got.is_none());
                assert_eq!(i, wire.len() - 6, "request complete at the last block byte");
                got = Some(r);
            }
            if i == 3 {
                assert_eq!(dec.header().unwrap().datasize as usize, wire.len() - 4 - 5);
            }
        }
        assert_eq!(got.unwrap(), want);
        assert_eq!(&buf[..], b"hello");
    }

    #[test]
    fn oversized_block_refused_at_the_header() {
        let limits = UwsgiLimits {
            max_block_size: 4096,
            ..UwsgiLimits::default()
        };
        let mut dec = UwsgiDecoder::new(limits);
        let mut buf = BytesMut::from(&[0u8, 0x01, 0x10][..]);
        assert_eq!(dec.decode(&mut buf).unwrap(), None);
        buf.extend_from_slice(&[0]);
        assert_eq!(
            dec.decode(&mut buf),
            Err(UwsgiError::BlockTooLarge {
                size: 4097,
                limit: 4096
            })
        );
        assert!(dec.is_done());
        assert_eq!(dec.decode(&mut buf), Ok(None));
    }

    #[test]
    fn unsupported_modifier_at_the_header() {
        let mut dec = UwsgiDecoder::new(UwsgiLimits::default());
        let mut buf = BytesMut::from(&[100u8, 0, 0, 0][..]);
        assert_eq!(
            dec.decode(&mut buf),
            Err(UwsgiError::UnsupportedModifier {
                modifier1: 100,
                modifier2: 0
            })
        );
    }

    #[test]
    fn eof_handling() {
        let wire = packet(&[("A", "b")], b"");
        for cut in 0..wire.len() {
            let mut dec = UwsgiDecoder::new(UwsgiLimits::default());
            let mut buf = BytesMut::from(&wire[..cut]);
            let r = dec.decode_eof(&mut buf);
            match cut {
                0 => assert_eq!(r, Ok(None)),
                1..=3 => assert_eq!(
                    r,
                    Err(UwsgiError::Truncated {
                        what: "packet header"
                    })
                ),
                _ => assert_eq!(r, Err(UwsgiError::Truncated { what: "vars block" })),
            }
        }
        let mut dec = UwsgiDecoder::new(UwsgiLimits::default());
        let mut buf = BytesMut::from(&wire[..]);
        assert!(dec.decode_eof(&mut buf).unwrap().is_some());
        assert_eq!(dec.decode_eof(&mut buf), Ok(None));
    }

    #[test]
    fn empty_block_and_reserve() {
        let mut dec = UwsgiDecoder::new(UwsgiLimits::default());
        let mut buf = BytesMut::from(&[0u8, 0, 0, 9][..]);
        let r = dec.decode(&mut buf).unwrap().unwrap();
        assert_eq!(r.header, PacketHeader::new(0, 0, 9));
        assert_eq!(r.vars().len(), 0);
        assert_eq!(r.body_length, 0);

        let mut dec = UwsgiDecoder::new(UwsgiLimits::default());
        let mut buf = BytesMut::from(&[0u8, 0x00, 0x10, 0][..]);
        assert_eq!(dec.decode(&mut buf).unwrap(), None);
        assert!(buf.capacity() >= 4096);
    }
}
