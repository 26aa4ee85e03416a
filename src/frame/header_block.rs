//! Compact header blocks: the ordered list of header fields (or CGI
//! parameters) carried inside a head.
//!
//! A block is a sequence of entries, nothing before or after:
//!
//! ```text
//! entry = name_len:u16be  name:name_len bytes  value_len:u32be  value:value_len bytes
//! ```
//!
//! Names are raw as the client sent them (case preserved, repeats allowed),
//! non-empty, and made only of RFC 9110 `tchar`s. Values may hold any byte
//! except NUL, CR and LF. A block is validated once when decoded; iterating
//! it afterwards yields borrowed slices of the frame payload with no copy and
//! no allocation.

use bytes::{BufMut, Bytes, BytesMut};
use nom::bytes::complete::take;
use nom::number::complete::{be_u16, be_u32};
use nom::{IResult, Parser};

use super::EncodeError;

/// Why a header block failed validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BlockError {
    /// Malformed structure or bytes.
    Invalid(&'static str),
    /// More entries than allowed.
    TooMany,
}

/// RFC 9110 §5.6.2: `tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" /
/// "-" / "." / "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA`.
static TCHAR: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        t[i] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
            );
        i += 1;
    }
    t
};

/// Whether `name` is a valid field name: non-empty, all `tchar`.
pub fn is_valid_name(name: &[u8]) -> bool {
    !name.is_empty() && name.iter().all(|&b| TCHAR[b as usize])
}

/// Whether `value` is a valid field value: no NUL, CR or LF.
pub fn is_valid_value(value: &[u8]) -> bool {
    memchr::memchr3(0, b'\r', b'\n', value).is_none()
}

fn entry(input: &[u8]) -> IResult<&[u8], (&[u8], &[u8])> {
    let (input, name_len) = be_u16(input)?;
    let (input, name) = take(name_len as usize).parse(input)?;
    let (input, value_len) = be_u32(input)?;
    let (input, value) = take(value_len as usize).parse(input)?;
    Ok((input, (name, value)))
}

/// A validated, ordered list of `(name, value)` byte pairs backed by one
/// shared buffer.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct HeaderBlock {
    buf: Bytes,
    count: u32,
}

impl HeaderBlock {
    /// An empty block.
    pub const fn new() -> HeaderBlock {
        HeaderBlock {
            buf: Bytes::new(),
            count: 0,
        }
    }

    /// Validates an encoded block, allowing at most `max_count` entries.
    pub(crate) fn parse(buf: Bytes, max_count: u32) -> Result<HeaderBlock, BlockError> {
        let mut input: &[u8] = &buf;
        let mut count: u32 = 0;
        while !input.is_empty() {
            let (rest, (name, value)) = entry(input)
                .map_err(|_| BlockError::Invalid("entry length runs past the end of the block"))?;
            if !is_valid_name(name) {
                return Err(BlockError::Invalid(
                    "empty header name or name with a non-token byte",
                ));
            }
            if !is_valid_value(value) {
                return Err(BlockError::Invalid("header value contains NUL, CR or LF"));
            }
            count += 1;
            if count > max_count {
                return Err(BlockError::TooMany);
            }
            input = rest;
        }
        Ok(HeaderBlock { buf, count })
    }

    /// Starts building a block.
    pub fn builder() -> HeaderBlockBuilder {
        HeaderBlockBuilder::default()
    }

    /// Builds a block from pairs, validating each.
    pub fn try_from_pairs<N, V, I>(pairs: I) -> Result<HeaderBlock, EncodeError>
    where
        N: AsRef<[u8]>,
        V: AsRef<[u8]>,
        I: IntoIterator<Item = (N, V)>,
    {
        let mut b = HeaderBlock::builder();
        for (n, v) in pairs {
            b.push(n.as_ref(), v.as_ref())?;
        }
        Ok(b.finish())
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// Whether the block has no entries.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The encoded bytes.
    pub fn as_bytes(&self) -> &Bytes {
        &self.buf
    }

    /// Encoded length in bytes.
    pub fn encoded_len(&self) -> usize {
        self.buf.len()
    }

    /// Iterates `(name, value)` pairs in order.
    pub fn iter(&self) -> Iter<'_> {
        Iter { rest: &self.buf }
    }

    /// The first value whose name equals `name` ignoring ASCII case.
    pub fn get(&self, name: &[u8]) -> Option<&[u8]> {
        self.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// All values whose name equals `name` ignoring ASCII case, in order.
    pub fn get_all<'a>(&'a self, name: &'a [u8]) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }
}

impl std::fmt::Debug for HeaderBlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(
                self.iter()
                    .map(|(n, v)| (String::from_utf8_lossy(n), String::from_utf8_lossy(v))),
            )
            .finish()
    }
}

impl<'a> IntoIterator for &'a HeaderBlock {
    type Item = (&'a [u8], &'a [u8]);
    type IntoIter = Iter<'a>;
    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

/// Iterator over the entries of a [`HeaderBlock`].
#[derive(Debug, Clone)]
pub struct Iter<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        // The block was validated on construction, so this cannot fail.
        let (rest, pair) = entry(self.rest).ok()?;
        self.rest = rest;
        Some(pair)
    }
}

/// Builds a [`HeaderBlock`] entry by entry.
#[derive(Debug, Default)]
pub struct HeaderBlockBuilder {
    buf: BytesMut,
    count: u32,
}

impl HeaderBlockBuilder {
    /// Appends an entry after validating name and value.
    pub fn push(&mut self, name: &[u8], value: &[u8]) -> Result<&mut Self, EncodeError> {
        if name.len() > u16::MAX as usize {
            return Err(EncodeError::NameTooLong(name.len()));
        }
        if value.len() > u32::MAX as usize {
            return Err(EncodeError::ValueTooLong(value.len()));
        }
        if !is_valid_name(name) {
            return Err(EncodeError::InvalidName(
                String::from_utf8_lossy(name).into_owned(),
            ));
        }
        if !is_valid_value(value) {
            return Err(EncodeError::InvalidValue(
                String::from_utf8_lossy(name).into_owned(),
            ));
        }
        self.buf.reserve(6 + name.len() + value.len());
        self.buf.put_u16(name.len() as u16);
        self.buf.put_slice(name);
        self.buf.put_u32(value.len() as u32);
        self.buf.put_slice(value);
        self.count += 1;
        Ok(self)
    }

    /// Finishes the block.
    pub fn finish(&mut self) -> HeaderBlock {
        HeaderBlock {
            buf: std::mem::take(&mut self.buf).freeze(),
            count: std::mem::take(&mut self.count),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_preserves_order_case_and_repeats() {
        let pairs = [
            ("Host", "a"),
            ("cookie", "x=1"),
            ("Cookie", "y=2"),
            ("X-Empty", ""),
        ];
        let b = HeaderBlock::try_from_pairs(pairs).unwrap();
        let parsed = HeaderBlock::parse(b.as_bytes().clone(), 4).unwrap();
        let got: Vec<_> = parsed.iter().collect();
        assert_eq!(got.len(), 4);
        assert_eq!(got[1], (&b"cookie"[..], &b"x=1"[..]));
        assert_eq!(parsed.get(b"COOKIE"), Some(&b"x=1"[..]));
        assert_eq!(parsed.get_all(b"cookie").count(), 2);
        assert_eq!(parsed, b);
    }

    #[test]
    fn read_block_count_limit_edge() {
        let b = HeaderBlock::try_from_pairs([("a", "1"), ("b", "2")]).unwrap();
        assert!(HeaderBlock::parse(b.as_bytes().clone(), 2).is_ok());
        assert_eq!(
            HeaderBlock::parse(b.as_bytes().clone(), 1),
            Err(BlockError::TooMany)
        );
    }

    #[test]
    fn read_block_rejects_bad_entries() {
        // value length runs past the end
        let bad = Bytes::from_static(&[0, 1, b'a', 0, 0, 0, 5, b'x']);
        assert!(matches!(
            HeaderBlock::parse(bad, 10),
            Err(BlockError::Invalid(_))
        ));
        // empty name
        let bad = Bytes::from_static(&[0, 0, 0, 0, 0, 0]);
        assert!(matches!(
            HeaderBlock::parse(bad, 10),
            Err(BlockError::Invalid(_))
        ));
        // CR in value
        let bad = Bytes::from_static(&[0, 1, b'a', 0, 0, 0, 1, b'\r']);
        assert!(matches!(
            HeaderBlock::parse(bad, 10),
            Err(BlockError::Invalid(_))
        ));
        // colon in name
        let bad = Bytes::from_static(&[0, 2, b'a', b':', 0, 0, 0, 0]);
        assert!(matches!(
            HeaderBlock::parse(bad, 10),
            Err(BlockError::Invalid(_))
        ));
    }

    #[test]
    fn write_block_rejects_bad_entries() {
        let mut b = HeaderBlock::builder();
        assert!(b.push(b"", b"x").is_err());
        assert!(b.push(b"a b", b"x").is_err());
        assert!(b.push(b"a", b"x\ny").is_err());
        assert!(b.push(&vec![b'a'; 65536], b"x").is_err());
        assert!(b.push(&vec![b'a'; 65535], b"x").is_ok());
    }
}
