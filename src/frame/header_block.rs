//! Compact header blocks: the ordered list of header fields (or CGI
//! parameters) carried inside a head.
//!
//! A block is the entries' bytes, then a table of their lengths, then the
//! number of entries (PROTOCOL.md section 5.10):
//!
//! ```text
//! block = data  table  count
//! data  = name_0 value_0  name_1 value_1  ...   (no separators)
//! table = count x (name_len:u16be  value_len:u32be)
//! count = u32be
//! ```
//!
//! The lengths sit together so that a receiver never chases them through
//! the data: validating a block is a sum over the table, one scan of the
//! data for NUL, CR and LF, and a `tchar` check per name, none of which
//! waits for the one before. An empty block (no entries) is zero bytes.
//!
//! Names are raw as the client sent them (case preserved, repeats allowed),
//! non-empty, and made only of RFC 9110 `tchar`s. Values may hold any byte
//! except NUL, CR and LF. A block is validated once when decoded; iterating
//! it afterwards yields borrowed slices of the frame payload with no copy and
//! no allocation.

use bytes::Bytes;

use super::scan::{is_valid_name, is_valid_value};
use super::EncodeError;

/// Bytes of one table entry: `name_len:u16be value_len:u32be`.
const ENTRY: usize = 6;
/// Bytes of the trailing entry count.
const COUNT: usize = 4;

/// Why a header block failed validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BlockError {
    /// Malformed structure or bytes.
    Invalid(&'static str),
    /// More entries than allowed.
    TooMany,
}

/// One table entry: `(name_len, value_len)`.
#[inline(always)]
fn lengths(entry: &[u8; ENTRY]) -> (usize, usize) {
    let name = u16::from_be_bytes([entry[0], entry[1]]) as usize;
    let value = u32::from_be_bytes([entry[2], entry[3], entry[4], entry[5]]) as usize;
    (name, value)
}

/// A block cut into its parts: data, length table and entry count. The
/// count is checked ([`split`]); the lengths and the bytes of the fields
/// are not, until [`check_lengths`] or the AVX2 walk.
struct Parts<'a> {
    data: &'a [u8],
    table: &'a [u8],
    count: u32,
}

/// Cuts a non-empty `block` into data, table and count: the count fits and
/// is at most `max_count`. The count is checked before the table is read,
/// so an oversized block costs nothing to refuse.
#[inline]
fn split(block: &[u8], max_count: u32) -> Result<Parts<'_>, BlockError> {
    let Some((rest, count)) = block.split_last_chunk::<COUNT>() else {
        return Err(BlockError::Invalid(
            "header block shorter than its entry count",
        ));
    };
    let count = u32::from_be_bytes(*count);
    let Some(data_len) = (count as usize)
        .checked_mul(ENTRY)
        .and_then(|t| rest.len().checked_sub(t))
    else {
        return Err(BlockError::Invalid(
            "header block's length table runs past its start",
        ));
    };
    if count == 0 {
        // One encoding per content: no entries is the empty block.
        return Err(BlockError::Invalid(
            "header block with no entries is not empty",
        ));
    }
    if count > max_count {
        return Err(BlockError::TooMany);
    }
    let (data, table) = rest.split_at(data_len);
    Ok(Parts { data, table, count })
}

/// Checks the structure of the table of `p`: its lengths add up to exactly
/// the data, and no name is empty.
fn check_lengths(p: &Parts<'_>) -> Result<(), BlockError> {
    // Sums without a branch per entry (the lengths are independent loads,
    // so this runs at the speed of the adds). Saturating: a sum past any
    // real data length fails the comparison below all the same.
    let (mut total, mut empty) = (0u64, false);
    for e in p.table.chunks_exact(ENTRY) {
        let (n, v) = lengths(e.try_into().expect("ENTRY-sized chunk"));
        total = total.saturating_add(n as u64 + v as u64);
        empty |= n == 0;
    }
    if empty {
        return Err(BlockError::Invalid("empty header name"));
    }
    if total != p.data.len() as u64 {
        return Err(BlockError::Invalid(
            "header block's lengths do not add up to its data",
        ));
    }
    Ok(())
}

/// Validates `block` and counts its entries, with the fastest kernel the
/// CPU has. A block the fast path does not accept outright is checked
/// again the portable way, which names the first error.
#[inline]
fn count_checked(block: &[u8], max_count: u32) -> Result<u32, BlockError> {
    let p = split(block, max_count)?;
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    if super::scan::has_avx2_bmi2() {
        #[allow(unsafe_code)]
        // SAFETY: the CPU has AVX2 and BMI2 (checked just above).
        if unsafe { valid_avx2(block, &p) } {
            return Ok(p.count);
        }
    }
    check_lengths(&p)?;
    fields_by_field(&p)?;
    Ok(p.count)
}

/// Whether the block `p` was cut from is valid, structure and fields, in
/// one walk of its table: the lengths add up to the data, no name is empty
/// or holds a byte that is not a `tchar`, and one scan of all the data
/// finds no NUL, CR or LF (a name with one fails its own check too). The
/// verdicts are gathered without a branch per entry but one: blocks are
/// almost always valid, and a refused one is checked again to name the
/// error.
///
/// A name of up to 32 bytes is checked with one load from its start, when
/// 32 bytes remain in the block from there, which the table and count
/// after the data guarantee for every name of a block of five entries or
/// more; the others take [`far_name`]. A block shorter than one load is
/// left to the portable path (`false`).
#[cfg(all(target_arch = "x86_64", not(miri)))]
#[target_feature(enable = "avx2,bmi2")]
fn valid_avx2(block: &[u8], p: &Parts<'_>) -> bool {
    use super::scan::avx2::{ctl_in, not_tchar_at};
    use std::arch::x86_64::_bzhi_u32;
    debug_assert!(std::ptr::eq(block.as_ptr(), p.data.as_ptr()));
    // Each entry adds under 2^33 to the running offset, so a u64 cannot
    // wrap below 2^31 entries, far more than any block that fits a frame
    // holds; a larger count takes the portable path.
    if p.count >= 1 << 31 {
        return false;
    }
    // The last offset from which a 32-byte load stays in the block.
    let Some(last) = block.len().checked_sub(32) else {
        return false;
    };
    let data_len = p.data.len();
    #[allow(unsafe_code)]
    // SAFETY: the data is the start of the block.
    let mut bad = unsafe { ctl_in(block, 0, data_len) };
    // `names` gets a bit at 16 or above from an empty name (0 - 1 wraps),
    // never from a name of 1 to 65,535 bytes.
    let (mut at, mut names) = (0u64, 0u32);
    for e in p.table.chunks_exact(ENTRY) {
        let (n, v) = lengths(e.try_into().expect("ENTRY-sized chunk"));
        names |= (n as u32).wrapping_sub(1);
        // Until the sum is known to match, `at` may be anywhere: the load
        // is only taken when it stays in the block (a block whose lengths
        // are wrong is refused below, whatever its names held).
        let start = at as usize;
        bad |= if start <= last && n <= 32 {
            #[allow(unsafe_code)]
            // SAFETY: `start + 32 <= block.len()`.
            let marks = unsafe { not_tchar_at(block, start) };
            // The name is the low `n` bits.
            _bzhi_u32(marks, n as u32)
        } else {
            far_name(block, start, n, data_len)
        };
        at += (n + v) as u64;
    }
    bad == 0 && names <= u32::from(u16::MAX) && at == data_len as u64
}

/// The `tchar` check of a name [`valid_avx2`]'s one load does not cover
/// (longer than 32 bytes, or within 32 bytes of the end of the block), at
/// `start..start + n` clamped into the data: non-zero when a byte is not a
/// `tchar`.
#[cfg(all(target_arch = "x86_64", not(miri)))]
#[cold]
#[inline(never)]
#[target_feature(enable = "avx2")]
fn far_name(block: &[u8], start: usize, n: usize, data_len: usize) -> u32 {
    use super::scan::avx2::not_tchar_in;
    let start = start.min(data_len);
    let end = (start + n).min(data_len);
    #[allow(unsafe_code)]
    // SAFETY: `start <= end <= data_len <= block.len()`.
    unsafe {
        not_tchar_in(block, start, end)
    }
}

/// Validates every field of `p` on its own bytes, in order: the validator
/// without AVX2, and the one that names the error of a block the fast path
/// refused (within one entry, the name's error comes first).
fn fields_by_field(p: &Parts<'_>) -> Result<(), BlockError> {
    for (name, value) in (Iter {
        data: p.data,
        table: p.table,
    }) {
        if !is_valid_name(name) {
            return Err(BlockError::Invalid(
                "empty header name or name with a non-token byte",
            ));
        }
        if !is_valid_value(value) {
            return Err(BlockError::Invalid("header value contains NUL, CR or LF"));
        }
    }
    Ok(())
}

/// The structure and fields of `block` checked the plain way (no AVX2):
/// for tests that compare the two, and for the debug check of blocks a
/// builder wrote ([`HeaderBlock::from_built`]).
#[cfg(any(test, all(debug_assertions, feature = "net")))]
fn count_by_field(block: &[u8], max_count: u32) -> Result<u32, BlockError> {
    if block.is_empty() {
        return Ok(0);
    }
    let p = split(block, max_count)?;
    check_lengths(&p)?;
    fields_by_field(&p)?;
    Ok(p.count)
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
    #[inline(always)]
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
        #[cfg(debug_assertions)]
        assert_eq!(count_by_field(&buf, u32::MAX), Ok(count));
        HeaderBlock { buf, count }
    }

    /// Starts building a block.
    pub fn builder() -> HeaderBlockBuilder {
        HeaderBlockBuilder::default()
    }

    /// Starts building a block of about `bytes` bytes (6 per entry plus
    /// its name and value; the 4 bytes of the count are added here): one
    /// allocation when the estimate holds.
    pub fn builder_with_capacity(bytes: usize) -> HeaderBlockBuilder {
        HeaderBlockBuilder {
            buf: Vec::with_capacity(bytes + COUNT),
            ..HeaderBlockBuilder::default()
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
        if self.count == 0 {
            return Iter {
                data: &[],
                table: &[],
            };
        }
        // A valid block: the table ends where the count starts.
        let table_end = self.buf.len() - COUNT;
        let (data, table) = self.buf[..table_end].split_at(table_end - self.len() * ENTRY);
        Iter { data, table }
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
    /// The fields not yet returned.
    data: &'a [u8],
    /// Their lengths.
    table: &'a [u8],
}

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a [u8], &'a [u8]);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        let (entry, table) = self.table.split_first_chunk::<ENTRY>()?;
        self.table = table;
        let (n, v) = lengths(entry);
        // The block was validated on construction: the lengths add up to
        // the data, so these splits stay inside it.
        let (name, rest) = self.data.split_at(n);
        let (value, rest) = rest.split_at(v);
        self.data = rest;
        Some((name, value))
    }

    #[inline]
    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.table.len() / ENTRY;
        (n, Some(n))
    }
}

impl ExactSizeIterator for Iter<'_> {}

/// Entries whose lengths a builder keeps in itself before spilling to the
/// heap: the table is written after the data, so it waits somewhere until
/// the block is finished, and most blocks have fewer fields than this.
const INLINE_ENTRIES: usize = 32;

/// Builds a [`HeaderBlock`] entry by entry.
#[derive(Debug, Default)]
pub struct HeaderBlockBuilder {
    // A `Vec` rather than a `BytesMut`: its appends inline to a bounds
    // check and a copy (`BytesMut`'s `put_*` are out-of-line calls), and it
    // freezes into a `Bytes` just the same.
    buf: Vec<u8>,
    /// The table of the first [`INLINE_ENTRIES`] entries.
    inline: [[u8; ENTRY]; INLINE_ENTRIES],
    /// The table of the entries after those.
    spill: Vec<[u8; ENTRY]>,
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
        self.push_checked(name.as_str().as_bytes(), value.as_bytes())
    }

    /// Appends a field its caller has already checked: `name` a token of
    /// at most 65,535 bytes, `value` without NUL, CR or LF (what
    /// [`push`](Self::push) would check a second time).
    #[inline]
    pub(crate) fn push_checked(&mut self, name: &[u8], value: &[u8]) -> &mut Self {
        debug_assert!(name.len() <= u16::MAX as usize && is_valid_name(name));
        debug_assert!(value.len() <= u32::MAX as usize && is_valid_value(value));
        self.append(name, value);
        self
    }

    /// Appends an entry already checked.
    #[inline]
    fn append(&mut self, name: &[u8], value: &[u8]) {
        // Room for the table and the count too, so that sealing the block
        // never grows the buffer once more (a no-op when the builder was
        // given the block's size).
        let table = (self.count as usize + 1) * ENTRY + COUNT;
        self.buf.reserve(name.len() + value.len() + table);
        self.buf.extend_from_slice(name);
        self.buf.extend_from_slice(value);
        let mut entry = [0; ENTRY];
        entry[..2].copy_from_slice(&(name.len() as u16).to_be_bytes());
        entry[2..].copy_from_slice(&(value.len() as u32).to_be_bytes());
        match self.inline.get_mut(self.count as usize) {
            Some(slot) => *slot = entry,
            None => self.spill.push(entry),
        }
        self.count += 1;
    }

    /// A builder whose entries go after what `buf` already holds, so that
    /// a head's other fields and its block can share one allocation (see
    /// [`HeaderBlockBuilder::into_parts`]).
    #[cfg(feature = "net")]
    pub(crate) fn appending_to(buf: Vec<u8>) -> HeaderBlockBuilder {
        HeaderBlockBuilder {
            buf,
            ..HeaderBlockBuilder::default()
        }
    }

    /// Writes the table and the count after the data (nothing at all for
    /// no entries: the empty block is zero bytes) and resets the builder.
    fn seal(&mut self) -> (Vec<u8>, u32) {
        let count = std::mem::take(&mut self.count);
        let mut buf = std::mem::take(&mut self.buf);
        if count > 0 {
            let n = count as usize;
            // Room was kept by `append`: no growth here.
            buf.reserve(n * ENTRY + COUNT);
            buf.extend_from_slice(self.inline[..n.min(INLINE_ENTRIES)].as_flattened());
            if n > INLINE_ENTRIES {
                buf.extend_from_slice(self.spill.as_flattened());
                self.spill.clear();
            }
            buf.extend_from_slice(&count.to_be_bytes());
        }
        (buf, count)
    }

    /// The buffer (what it held before, then the block) and the number
    /// of entries; [`HeaderBlock::from_built`] makes the block from them.
    #[cfg(feature = "net")]
    pub(crate) fn into_parts(mut self) -> (Vec<u8>, u32) {
        self.seal()
    }

    /// Finishes the block.
    pub fn finish(&mut self) -> HeaderBlock {
        let (buf, count) = self.seal();
        HeaderBlock {
            buf: Bytes::from(buf),
            count,
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

    /// A block in the wire layout from raw entries, checked or not: data,
    /// then the length table, then the count.
    fn raw(entries: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut data = Vec::new();
        let mut table = Vec::new();
        for (n, v) in entries {
            data.extend_from_slice(n);
            data.extend_from_slice(v);
            table.extend_from_slice(&(n.len() as u16).to_be_bytes());
            table.extend_from_slice(&(v.len() as u32).to_be_bytes());
        }
        data.extend_from_slice(&table);
        data.extend_from_slice(&(entries.len() as u32).to_be_bytes());
        data
    }

    /// The layout of PROTOCOL.md section 5.10's example, byte for byte.
    #[test]
    fn layout_is_data_then_table_then_count() {
        let b = HeaderBlock::try_from_pairs([("Host", "a"), ("X-Empty", "")]).unwrap();
        let want: &[u8] = b"HostaX-Empty\
            \x00\x04\x00\x00\x00\x01\
            \x00\x07\x00\x00\x00\x00\
            \x00\x00\x00\x02";
        assert_eq!(&b.as_bytes()[..], want);
        assert_eq!(raw(&[(b"Host", b"a"), (b"X-Empty", b"")]), want);
        assert_eq!(b.iter().len(), 2);
        let none: [(&str, &str); 0] = [];
        assert!(HeaderBlock::try_from_pairs(none)
            .unwrap()
            .as_bytes()
            .is_empty());
    }

    /// No entries is the empty block, zero bytes: a bare count of 0 (with
    /// or without data before it) is refused.
    #[test]
    fn zero_count_is_not_the_empty_block() {
        let why = Err(BlockError::Invalid(
            "header block with no entries is not empty",
        ));
        assert_eq!(
            HeaderBlock::parse(Bytes::from_static(&[0, 0, 0, 0]), 0),
            why
        );
        assert_eq!(HeaderBlock::parse(Bytes::from_static(b"a\0\0\0\0"), 5), why);
    }

    /// More entries than the builder keeps inline: the spilled part of the
    /// table follows the inline one, in order.
    #[test]
    fn builder_spills_past_the_inline_table() {
        for n in [
            INLINE_ENTRIES - 1,
            INLINE_ENTRIES,
            INLINE_ENTRIES + 1,
            3 * INLINE_ENTRIES,
        ] {
            let pairs: Vec<(String, String)> = (0..n)
                .map(|i| (format!("x-{i}"), "v".repeat(i % 7)))
                .collect();
            let b = HeaderBlock::try_from_pairs(pairs.iter().map(|(a, b)| (a, b))).unwrap();
            let refs: Vec<(&[u8], &[u8])> = pairs
                .iter()
                .map(|(a, b)| (a.as_bytes(), b.as_bytes()))
                .collect();
            assert_eq!(&b.as_bytes()[..], &raw(&refs)[..], "{n} entries");
            let parsed = HeaderBlock::parse(b.as_bytes().clone(), n as u32).unwrap();
            assert!(parsed.iter().eq(refs.iter().copied()), "{n} entries");
        }
        // A builder is reusable after `finish`.
        let mut b = HeaderBlock::builder();
        for i in 0..40 {
            b.push(format!("a{i}").as_bytes(), b"1").unwrap();
        }
        let _ = b.finish();
        b.push(b"b", b"2").unwrap();
        assert_eq!(&b.finish().as_bytes()[..], &raw(&[(b"b", b"2")])[..]);
    }

    #[test]
    fn read_block_rejects_bad_entries() {
        let invalid =
            |block: Vec<u8>, why: &str| match HeaderBlock::parse(Bytes::from(block.clone()), 10) {
                Err(BlockError::Invalid(w)) => assert_eq!(w, why, "{block:?}"),
                other => panic!("{block:?}: {other:?}"),
            };
        let short = "header block shorter than its entry count";
        let table = "header block's length table runs past its start";
        let sum = "header block's lengths do not add up to its data";
        invalid(vec![0, 0, 1], short);
        // a count whose table does not fit
        invalid(vec![0, 0, 0, 1], table);
        invalid(vec![0xff; 4], table);
        // lengths adding up to more, or less, than the data
        let mut b = raw(&[(b"a", b"xy")]);
        b.remove(0);
        invalid(b, sum);
        let mut b = raw(&[(b"a", b"xy")]);
        b.insert(0, b'z');
        invalid(b, sum);
        invalid(raw(&[(b"a", b"1"), (b"", b"x")]), "empty header name");
        invalid(raw(&[(b"a", b"\r")]), "header value contains NUL, CR or LF");
        invalid(
            raw(&[(b"a:", b"")]),
            "empty header name or name with a non-token byte",
        );
        // Errors come in entry order: the first entry's bad value, not the
        // second's bad name.
        invalid(
            raw(&[(b"a", b"\n"), (b"b c", b"")]),
            "header value contains NUL, CR or LF",
        );
        // The count is checked against the limit before the table is read.
        let many: Vec<(&[u8], &[u8])> = vec![(b"a", b""); 11];
        let mut b = raw(&many);
        b[0] = b' ';
        assert_eq!(
            HeaderBlock::parse(Bytes::from(b), 10),
            Err(BlockError::TooMany)
        );
    }

    /// The obvious reading of PROTOCOL.md section 5.10: the verdict on
    /// `block` (`Some(count)` when valid), independent of the code above.
    fn reference(block: &[u8], max_count: u32) -> Option<u32> {
        if block.is_empty() {
            return Some(0);
        }
        let (rest, count) = block.split_at_checked(block.len().checked_sub(4)?)?;
        let count = u32::from_be_bytes(count.try_into().ok()?);
        if count == 0 {
            return None;
        }
        let table_len = (count as usize).checked_mul(6)?;
        let (mut data, table) = rest.split_at_checked(rest.len().checked_sub(table_len)?)?;
        for e in table.chunks(6) {
            let n = u16::from_be_bytes([e[0], e[1]]) as usize;
            let v = u32::from_be_bytes([e[2], e[3], e[4], e[5]]) as usize;
            let (name, rest) = data.split_at_checked(n)?;
            let (value, rest) = rest.split_at_checked(v)?;
            let name_ok = !name.is_empty()
                && name
                    .iter()
                    .all(|&b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
            if !name_ok || value.iter().any(|&b| matches!(b, 0 | b'\r' | b'\n')) {
                return None;
            }
            data = rest;
        }
        (data.is_empty() && count <= max_count).then_some(count)
    }

    /// [`count_checked`] as [`HeaderBlock::parse`] calls it (the empty
    /// block is handled before it).
    fn count_checked_or_empty(block: &[u8], max_count: u32) -> Result<u32, BlockError> {
        if block.is_empty() {
            return Ok(0);
        }
        count_checked(block, max_count)
    }

    proptest::proptest! {
        /// The validator (with AVX2 where the CPU has it) and the plain
        /// field-by-field walk agree with the reference reading of the
        /// layout, on well-formed blocks with stray bad bytes, on truncated
        /// ones, on blocks with one byte changed (a length, the count or a
        /// field) and on arbitrary bytes.
        #[test]
        fn validation_matches_the_reference(
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
            flip in (proptest::num::usize::ANY, proptest::num::u8::ANY),
            noise in proptest::collection::vec(proptest::num::u8::ANY, 0..600),
            max_count in 0u32..45,
        ) {
            let refs: Vec<(&[u8], &[u8])> =
                entries.iter().map(|(n, v)| (&n[..], &v[..])).collect();
            let block = raw(&refs);
            let truncated = &block[..cut % (block.len() + 1)];
            let mut flipped = block.clone();
            let at = flip.0 % flipped.len();
            flipped[at] = flip.1;
            for b in [&block[..], truncated, &flipped[..], &noise[..]] {
                let want = reference(b, max_count);
                let got = count_checked_or_empty(b, max_count);
                proptest::prop_assert_eq!(got.ok(), want, "{:?}", b);
                proptest::prop_assert_eq!(got, count_by_field(b, max_count));
            }
        }
    }

    /// The walk's two name paths at their edges: names of 1 to 40 bytes
    /// (one load up to 32, `far_name` above), in blocks of 1 to 7 entries
    /// (the last names of small blocks sit within one load of the block's
    /// end), with values that start and end with bytes no name may hold. A
    /// bad byte anywhere in a name is found; the neighbours' bytes, which
    /// share the name's load, are never taken for the name's.
    #[test]
    fn every_name_byte_is_checked_and_no_other() {
        let value = |len: usize| -> Vec<u8> {
            (0..len)
                .map(|i| if i % 2 == 0 { b' ' } else { b':' })
                .collect()
        };
        for count in 1..=7usize {
            for name_len in [1usize, 2, 5, 16, 31, 32, 33, 40] {
                for value_len in [0usize, 1, 3, 40] {
                    let names: Vec<Vec<u8>> = (0..count)
                        .map(|i| (0..name_len).map(|j| b"aZ09-~"[(i + j) % 6]).collect())
                        .collect();
                    let values: Vec<Vec<u8>> = (0..count).map(|_| value(value_len)).collect();
                    let entries = |names: &[Vec<u8>]| -> Vec<u8> {
                        let refs: Vec<(&[u8], &[u8])> = names
                            .iter()
                            .zip(&values)
                            .map(|(n, v)| (&n[..], &v[..]))
                            .collect();
                        raw(&refs)
                    };
                    let block = entries(&names);
                    assert_eq!(
                        count_checked(&block, 10),
                        Ok(count as u32),
                        "{count} x {name_len}/{value_len}"
                    );
                    // Accepted by the walk itself, not only by the portable
                    // check after it (a walk that refused valid blocks would
                    // only be slow).
                    #[cfg(all(target_arch = "x86_64", not(miri)))]
                    if super::super::scan::has_avx2_bmi2() && block.len() >= 32 {
                        let p = split(&block, 10).unwrap();
                        #[allow(unsafe_code)]
                        // SAFETY: the CPU has AVX2 and BMI2 (checked above).
                        let walked = unsafe { valid_avx2(&block, &p) };
                        assert!(walked, "{count} x {name_len}/{value_len}");
                    }
                    for e in 0..count {
                        let mut names = names.clone();
                        names[e].clear();
                        assert_eq!(
                            count_checked(&entries(&names), 10),
                            Err(BlockError::Invalid("empty header name")),
                            "entry {e} empty, {count} x {name_len}/{value_len}"
                        );
                    }
                    for e in 0..count {
                        for at in 0..name_len {
                            for bad in [b' ', b':', b'\r', 0x80] {
                                let mut names = names.clone();
                                names[e][at] = bad;
                                let block = entries(&names);
                                assert_eq!(
                                    count_checked(&block, 10),
                                    Err(BlockError::Invalid(
                                        "empty header name or name with a non-token byte"
                                    )),
                                    "entry {e} byte {at} = {bad:#04x}, {count} x {name_len}/{value_len}"
                                );
                            }
                        }
                    }
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
