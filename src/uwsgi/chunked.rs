//! [`ChunkedDecoder`]: removes the chunked transfer coding (RFC 9112 7.1)
//! from a response body, sans-IO and zero-copy.

use bytes::{Buf, Bytes, BytesMut};
use memchr::{memchr, memchr2};

use super::{UwsgiError, UwsgiLimits};

/// Longest chunk-size line (size, extensions, line end).
const MAX_SIZE_LINE: usize = 4096;

/// What [`ChunkedDecoder::decode`] produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dechunked {
    /// Body bytes (never empty), a zero-copy slice of the input.
    Data(Bytes),
    /// The last chunk and the trailer section have been read: the body is
    /// complete. Returned again by every later call.
    End,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading a chunk-size line.
    Size,
    /// Inside chunk data, this many bytes left.
    Data(u64),
    /// After chunk data, expecting its line end.
    DataEnd,
    /// After the last chunk, reading trailer lines up to the empty one.
    Trailers,
    /// Complete.
    Done,
}

/// Decodes a chunked body incrementally.
///
/// Accepts CRLF or bare LF line ends, chunk sizes of any number of hex
/// digits whose value fits in 64 bits, and chunk extensions (ignored).
/// Trailer fields are read and discarded (uwsgi servers do not send them);
/// the trailer section may not exceed [`UwsgiLimits::max_response_head`].
/// What follows the body stays in the buffer.
///
/// ```
/// use bytes::BytesMut;
/// use uwire::uwsgi::{ChunkedDecoder, Dechunked, UwsgiLimits};
///
/// let mut dec = ChunkedDecoder::new(&UwsgiLimits::default());
/// let mut buf = BytesMut::from(&b"5\r\nhello\r\n0\r\n\r\n"[..]);
/// assert_eq!(dec.decode(&mut buf).unwrap(), Some(Dechunked::Data("hello".into())));
/// assert_eq!(dec.decode(&mut buf).unwrap(), Some(Dechunked::End));
/// ```
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: State,
    max_trailers: usize,
    trailer_bytes: usize,
    /// Bytes of the current line already searched for its end.
    scanned: usize,
}

fn invalid(detail: &'static str) -> UwsgiError {
    UwsgiError::InvalidChunk { detail }
}

/// Parses a chunk-size line (line end removed): hex digits, then optional
/// whitespace and `;` extensions.
fn chunk_size(line: &[u8]) -> Result<u64, UwsgiError> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 {
        return Err(invalid("chunk size is not a hex number"));
    }
    let (hex, ext) = line.split_at(digits);
    let ext = ext.trim_ascii_start();
    if !ext.is_empty() && ext[0] != b';' {
        return Err(invalid("garbage after the chunk size"));
    }
    if memchr2(0, b'\r', ext).is_some() {
        return Err(invalid("chunk extension contains NUL or CR"));
    }
    let significant = &hex[hex.iter().take_while(|&&b| b == b'0').count()..];
    if significant.len() > 16 {
        return Err(invalid("chunk size overflows 64 bits"));
    }
    Ok(significant.iter().fold(0u64, |acc, &b| {
        (acc << 4) | u64::from((b as char).to_digit(16).expect("hex digit"))
    }))
}

impl ChunkedDecoder {
    /// A decoder at the start of a chunked body.
    pub fn new(limits: &UwsgiLimits) -> ChunkedDecoder {
        ChunkedDecoder {
            state: State::Size,
            max_trailers: limits.max_response_head,
            trailer_bytes: 0,
            scanned: 0,
        }
    }

    /// Whether the whole body has been read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// The end of the line at the start of `src` (index of its `\n`),
    /// scanning each byte once across calls; `None` when not in yet.
    fn line_end(&mut self, src: &BytesMut) -> Option<usize> {
        match memchr(b'\n', &src[self.scanned..]) {
            Some(i) => {
                let nl = self.scanned + i;
                self.scanned = 0;
                Some(nl)
            }
            None => {
                self.scanned = src.len();
                None
            }
        }
    }

    /// Decodes from the bytes in `src`: body data as it arrives,
    /// [`Dechunked::End`] once the body is complete, `Ok(None)` when more
    /// bytes are needed.
    ///
    /// # Errors
    ///
    /// [`UwsgiError::InvalidChunk`] for a malformed size line, a missing
    /// line end after chunk data, a size line over 4096 bytes or trailers
    /// over the limit.
    pub fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Dechunked>, UwsgiError> {
        loop {
            match self.state {
                State::Size => {
                    let Some(nl) = self.line_end(src) else {
                        if src.len() > MAX_SIZE_LINE {
                            return Err(invalid("chunk size line too long"));
                        }
                        return Ok(None);
                    };
                    if nl + 1 > MAX_SIZE_LINE {
                        return Err(invalid("chunk size line too long"));
                    }
                    let line = &src[..nl];
                    let size = chunk_size(line.strip_suffix(b"\r").unwrap_or(line))?;
                    src.advance(nl + 1);
                    self.state = if size == 0 {
                        State::Trailers
                    } else {
                        State::Data(size)
                    };
                }
                State::Data(left) => {
                    if src.is_empty() {
                        return Ok(None);
                    }
                    let n = usize::try_from(left).map_or(src.len(), |l| l.min(src.len()));
                    let data = src.split_to(n).freeze();
                    let left = left - n as u64;
                    self.state = if left == 0 {
                        State::DataEnd
                    } else {
                        State::Data(left)
                    };
                    return Ok(Some(Dechunked::Data(data)));
                }
                State::DataEnd => match src.first() {
                    None => return Ok(None),
                    Some(b'\n') => {
                        src.advance(1);
                        self.state = State::Size;
                    }
                    Some(b'\r') => match src.get(1) {
                        None => return Ok(None),
                        Some(b'\n') => {
                            src.advance(2);
                            self.state = State::Size;
                        }
                        Some(_) => return Err(invalid("chunk data not followed by a line end")),
                    },
                    Some(_) => return Err(invalid("chunk data not followed by a line end")),
                },
                State::Trailers => {
                    let Some(nl) = self.line_end(src) else {
                        if self.trailer_bytes + src.len() > self.max_trailers {
                            return Err(invalid("trailer section too large"));
                        }
                        return Ok(None);
                    };
                    self.trailer_bytes += nl + 1;
                    if self.trailer_bytes > self.max_trailers {
                        return Err(invalid("trailer section too large"));
                    }
                    let line = &src[..nl];
                    let line = line.strip_suffix(b"\r").unwrap_or(line);
                    if memchr2(0, b'\r', line).is_some() {
                        return Err(invalid("trailer line contains NUL or CR"));
                    }
                    let empty = line.is_empty();
                    src.advance(nl + 1);
                    if empty {
                        self.state = State::Done;
                    }
                }
                State::Done => return Ok(Some(Dechunked::End)),
            }
        }
    }

    /// Like [`decode`](ChunkedDecoder::decode), once the server has closed
    /// the connection: a body not complete is [`UwsgiError::Truncated`].
    pub fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Dechunked>, UwsgiError> {
        match self.decode(src)? {
            Some(d) => Ok(Some(d)),
            None => Err(UwsgiError::Truncated {
                what: "chunked body",
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `input` fed `step` bytes at a time: the body, or the error.
    fn run(input: &[u8], step: usize) -> Result<(Vec<u8>, Vec<u8>), UwsgiError> {
        let mut dec = ChunkedDecoder::new(&UwsgiLimits {
            max_response_head: 64,
            ..UwsgiLimits::default()
        });
        let mut buf = BytesMut::new();
        let mut body = Vec::new();
        let mut fed = 0;
        for piece in input.chunks(step.max(1)) {
            buf.extend_from_slice(piece);
            fed += piece.len();
            while let Some(d) = dec.decode(&mut buf)? {
                match d {
                    Dechunked::Data(b) => {
                        assert!(!b.is_empty());
                        body.extend_from_slice(&b);
                    }
                    Dechunked::End => return Ok((body, [&buf[..], &input[fed..]].concat())),
                }
            }
        }
        match dec.decode_eof(&mut buf)? {
            Some(Dechunked::End) => Ok((body, buf.to_vec())),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn valid_bodies_any_split() {
        let cases: &[(&[u8], &[u8], &[u8])] = &[
            (b"0\r\n\r\n", b"", b""),
            (
                b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\nNEXT",
                b"hello world",
                b"NEXT",
            ),
            (
                b"A;name=val\r\n0123456789\r\n00\r\nX-T: 1\r\n\r\n",
                b"0123456789",
                b"",
            ),
            (b"3 ;ext\n\xff\x00\r\n0\n\n", b"\xff\x00\r", b""),
            (b"000000000000000000001\r\nz\r\n0\r\n\r\n", b"z", b""),
        ];
        for (input, body, rest) in cases {
            for step in [1, 2, 3, 7, input.len()] {
                let (b, r) = run(input, step).unwrap();
                assert_eq!((&b[..], &r[..]), (*body, *rest), "{input:?} step {step}");
            }
        }
    }

    #[test]
    fn invalid_bodies() {
        let cases: &[(&[u8], &str)] = &[
            (b"x\r\n", "invalid_chunk"),
            (b"5x\r\nhello\r\n", "invalid_chunk"),
            (b"-1\r\n", "invalid_chunk"),
            (b"10000000000000000\r\n", "invalid_chunk"),
            (b"2\r\nabX\r\n", "invalid_chunk"),
            (b"1;a\rb\r\nx\r\n", "invalid_chunk"),
            (b"5\r\nhel", "truncated"),
            (b"5\r\nhello\r\n", "truncated"),
            (b"0\r\nX: 1\r\n", "truncated"),
            (b"", "truncated"),
        ];
        for (input, class) in cases {
            for step in [1, input.len()] {
                assert_eq!(run(input, step).unwrap_err().class(), *class, "{input:?}");
            }
        }
        // Size line and trailer limits.
        let long = [&b"1"[..], &[b' '; 4100][..]].concat();
        assert_eq!(run(&long, 1).unwrap_err().class(), "invalid_chunk");
        let trailers = [&b"0\r\n"[..], &[b'a'; 70][..]].concat();
        assert_eq!(run(&trailers, 5).unwrap_err().class(), "invalid_chunk");
    }

    #[test]
    fn sizes() {
        assert_eq!(chunk_size(b"ffffffffffffffff"), Ok(u64::MAX));
        assert_eq!(chunk_size(b"1F ; x=\"y\""), Ok(31));
        assert!(chunk_size(b"").is_err());
        assert!(chunk_size(b" 1").is_err());
    }
}
