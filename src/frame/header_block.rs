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

use bytes::Bytes;

use super::scan::{is_valid_name, is_valid_value};
use super::EncodeError;

/// Why a header block failed validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BlockError {
    /// Malformed structure or bytes.
    Invalid(&'static str),
    /// More entries than allowed.
    TooMany,
}

/// Splits the first entry off `input`: `(name, value, rest)`, or `None` when
/// a length runs past the end.
#[inline(always)]
fn entry(input: &[u8]) -> Option<(&[u8], &[u8], &[u8])> {
    let (name_len, rest) = input.split_first_chunk::<2>()?;
    let (name, rest) = rest.split_at_checked(u16::from_be_bytes(*name_len) as usize)?;
    let (value_len, rest) = rest.split_first_chunk::<4>()?;
    let (value, rest) = rest.split_at_checked(u32::from_be_bytes(*value_len) as usize)?;
    Some((name, value, rest))
}

/// Validates `block` and counts its entries, with the fastest kernel the
/// CPU has. A block the fast path does not accept outright is walked again
/// by [`count_by_field`], which names the first error.
#[inline]
fn count_checked(block: &[u8], max_count: u32) -> Result<u32, BlockError> {
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    if super::scan::has_avx2() {
        #[allow(unsafe_code)]
        // SAFETY: the CPU has AVX2 (checked just above).
        if let Some(count) = unsafe { count_avx2(block, max_count) } {
            return Ok(count);
        }
    }
    count_by_field(block, max_count)
}

/// The entry count of a valid block of at most `max_count` entries, `None`
/// for any other block (without saying why: the caller walks it again to
/// find out). Every field is checked with the AVX2 kernels, and their
/// verdicts are gathered without a branch per field: blocks are almost
/// always valid, and a refused one costs a second walk.
#[cfg(all(target_arch = "x86_64", not(miri)))]
#[target_feature(enable = "avx2")]
fn count_avx2(block: &[u8], max_count: u32) -> Option<u32> {
    use super::scan::avx2::{ctl_in, not_tchar_in};
    let mut at = 0;
    let mut count: u32 = 0;
    let mut bad = 0;
    while at < block.len() {
        let name_len = u16::from_be_bytes(*block[at..].first_chunk::<2>()?) as usize;
        let name = at + 2;
        let value_len = block.get(name + name_len..)?.first_chunk::<4>()?;
        let value = name + name_len + 4;
        let end = value + u32::from_be_bytes(*value_len) as usize;
        if end > block.len() {
            return None;
        }
        #[allow(unsafe_code)]
        // SAFETY: `name <= name + name_len < value <= end <= block.len()`:
        // both ranges are inside the block.
        let fields =
            unsafe { not_tchar_in(block, name, name + name_len) | ctl_in(block, value, end) };
        bad |= fields | u32::from(name_len == 0);
        count += 1;
        at = end;
    }
    (bad == 0 && count <= max_count).then_some(count)
}

/// Validates `block` field by field on the fields' own bytes and counts
/// its entries: the validator without AVX2, and the one that names the
/// error of a block the fast path refused. Errors come in the order the
/// entries do, and within one entry: structure, name, value, count.
fn count_by_field(block: &[u8], max_count: u32) -> Result<u32, BlockError> {
    let mut input = block;
    let mut count: u32 = 0;
    while !input.is_empty() {
        let (name, value, rest) = entry(input).ok_or(BlockError::Invalid(
            "entry length runs past the end of the block",
        ))?;
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
    Ok(count)
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
        if buf.is_empty() {
            return Ok(HeaderBlock::new());
        }
        let count = count_checked(&buf, max_count)?;
        Ok(HeaderBlock { buf, count })
    }

    /// The block a builder wrote: `buf` holds exactly its `count` entries,
    /// each checked when it was pushed (not checked again, but in debug
    /// builds).
    #[cfg(feature = "net")]
    pub(crate) fn from_built(buf: Bytes, count: u32) -> HeaderBlock {
        debug_assert_eq!(count_by_field(&buf, u32::MAX), Ok(count));
        HeaderBlock { buf, count }
    }

    /// Starts building a block.
    pub fn builder() -> HeaderBlockBuilder {
        HeaderBlockBuilder::default()
    }

    /// Starts building a block of about `bytes` bytes (6 per entry plus
    /// its name and value): one allocation when the estimate holds.
    pub fn builder_with_capacity(bytes: usize) -> HeaderBlockBuilder {
        HeaderBlockBuilder {
            buf: Vec::with_capacity(bytes),
            count: 0,
        }
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
    #[inline]
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
    #[inline]
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

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        // The block was validated on construction, so this fails only at the end.
        let (name, value, rest) = entry(self.rest)?;
        self.rest = rest;
        Some((name, value))
    }
}

/// Builds a [`HeaderBlock`] entry by entry.
#[derive(Debug, Default)]
pub struct HeaderBlockBuilder {
    // A `Vec` rather than a `BytesMut`: its appends inline to a bounds
    // check and a copy (`BytesMut`'s `put_*` are out-of-line calls, four
    // per entry), and it freezes into a `Bytes` just the same.
    buf: Vec<u8>,
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
        self.append(name, value);
        Ok(self)
    }

    /// Appends a field held in `http`'s types. They already hold only what
    /// a block can carry (a name is a token of at most 65,535 bytes, a value
    /// has no NUL, CR or LF), so the field is not validated a second time.
    #[cfg(feature = "net")]
    pub fn push_field(&mut self, name: &http::HeaderName, value: &http::HeaderValue) -> &mut Self {
        let (name, value) = (name.as_str().as_bytes(), value.as_bytes());
        debug_assert!(name.len() <= u16::MAX as usize && is_valid_name(name));
        debug_assert!(value.len() <= u32::MAX as usize && is_valid_value(value));
        self.append(name, value);
        self
    }

    /// Appends an entry already checked.
    #[inline]
    fn append(&mut self, name: &[u8], value: &[u8]) {
        self.buf.reserve(6 + name.len() + value.len());
        self.buf
            .extend_from_slice(&(name.len() as u16).to_be_bytes());
        self.buf.extend_from_slice(name);
        self.buf
            .extend_from_slice(&(value.len() as u32).to_be_bytes());
        self.buf.extend_from_slice(value);
        self.count += 1;
    }

    /// A builder whose entries go after what `buf` already holds, so that
    /// a head's other fields and its block can share one allocation (see
    /// [`HeaderBlockBuilder::into_parts`]).
    #[cfg(feature = "net")]
    pub(crate) fn appending_to(buf: Vec<u8>) -> HeaderBlockBuilder {
        HeaderBlockBuilder { buf, count: 0 }
    }

    /// The buffer (what it held before, then the entries) and the number
    /// of entries; [`HeaderBlock::from_built`] makes the block from them.
    #[cfg(feature = "net")]
    pub(crate) fn into_parts(self) -> (Vec<u8>, u32) {
        (self.buf, self.count)
    }

    /// Finishes the block.
    pub fn finish(&mut self) -> HeaderBlock {
        HeaderBlock {
            buf: Bytes::from(std::mem::take(&mut self.buf)),
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

    /// `push_field` skips validation: every field `http` can hold (the
    /// widest values it accepts: tab, obs-text, DEL-free bytes up to 0xff)
    /// gives the same block as the checked `push`, and the block parses.
    #[cfg(feature = "net")]
    #[test]
    fn push_field_matches_checked_push() {
        let long = "n".repeat(u16::MAX as usize);
        let wide: Vec<u8> = (0u8..=255)
            .filter(|&b| b == b'\t' || (b >= 0x20 && b != 0x7f))
            .collect();
        let fields = [
            (
                http::HeaderName::from_static("x-a"),
                http::HeaderValue::from_static(""),
            ),
            (
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/plain"),
            ),
            (
                http::HeaderName::from_bytes(b"x-wide").unwrap(),
                http::HeaderValue::from_bytes(&wide).unwrap(),
            ),
            (
                http::HeaderName::from_bytes(long.as_bytes()).unwrap(),
                http::HeaderValue::from_static("v"),
            ),
        ];
        let (mut fast, mut checked) = (HeaderBlock::builder(), HeaderBlock::builder());
        for (n, v) in &fields {
            fast.push_field(n, v);
            checked.push(n.as_str().as_bytes(), v.as_bytes()).unwrap();
        }
        let (fast, checked) = (fast.finish(), checked.finish());
        assert_eq!(fast.as_bytes(), checked.as_bytes());
        let parsed = HeaderBlock::parse(fast.as_bytes().clone(), 4).unwrap();
        assert_eq!(parsed.get(b"x-wide"), Some(&wide[..]));
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

    proptest::proptest! {
        /// The AVX2 walk accepts exactly the blocks the field-by-field one
        /// accepts, with the same count, on well-formed blocks with stray
        /// bad bytes, on truncated ones and on arbitrary bytes (a block it
        /// refuses is walked again field by field, which names the error).
        fn simd_and_by_field_validation_agree(
            entries in proptest::collection::vec(
                (
                    proptest::collection::vec(proptest::prop_oneof![
                        12 => proptest::sample::select(&b"azAZ09-_.!~|"[..]),
                        1 => proptest::num::u8::ANY,
                    ], 0..70),
                    proptest::collection::vec(proptest::prop_oneof![
                        20 => 0x20u8..0x7f,
                        1 => proptest::num::u8::ANY,
                    ], 0..200),
                ),
                0..40,
            ),
            cut in proptest::num::usize::ANY,
            noise in proptest::collection::vec(proptest::num::u8::ANY, 0..600),
            max_count in 0u32..45,
        ) {
            let mut block = Vec::new();
            for (n, v) in &entries {
                block.extend_from_slice(&(n.len() as u16).to_be_bytes());
                block.extend_from_slice(n);
                block.extend_from_slice(&(v.len() as u32).to_be_bytes());
                block.extend_from_slice(v);
            }
            let truncated = &block[..cut % (block.len() + 1)];
            for b in [&block[..], truncated, &noise[..]] {
                proptest::prop_assert_eq!(
                    count_checked(b, max_count),
                    count_by_field(b, max_count)
                );
                #[cfg(all(target_arch = "x86_64", not(miri)))]
                if crate::frame::scan::has_avx2() {
                    #[allow(unsafe_code)]
                    // SAFETY: the CPU has AVX2.
                    let fast = unsafe { count_avx2(b, max_count) };
                    proptest::prop_assert_eq!(fast, count_by_field(b, max_count).ok());
                }
            }
        }
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
