//! Byte classes of header fields, and a bulk classifier for whole header
//! blocks.
//!
//! Names are made of RFC 9110 token characters (`tchar`); values may hold
//! any byte but NUL, CR and LF. [`Classes`] marks, for every byte of a block,
//! whether it is a `tchar` and whether it is one of NUL/CR/LF, as two
//! bitmaps built 64 bytes per step with AVX2 when the CPU has it (checked
//! once, at run time). A block validator then checks each name and each
//! value against the bitmaps with a few word operations, instead of a pass
//! over its bytes. Without AVX2, or for a block too large for the bitmaps on
//! the stack, validation checks field by field ([`is_valid_name`],
//! [`is_valid_value`]); both ways accept and reject exactly the same blocks
//! (a property test and the `heads` fuzz target hold them to it).
//!
//! This is the crate's only SIMD: the intrinsics need `unsafe`, confined to
//! [`Classes::scan`]'s AVX2 kernel, whose loads stay inside 64-byte chunks
//! of the input.

/// RFC 9110 §5.6.2: `tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" /
/// "-" / "." / "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA`.
const fn tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric()
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
        )
}

/// [`tchar`] as a table.
static TCHAR: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = tchar(i as u8);
        i += 1;
    }
    t
};

/// Whether `b` is an RFC 9110 `tchar`.
#[inline]
pub(crate) fn is_tchar(b: u8) -> bool {
    TCHAR[b as usize]
}

/// Whether `name` is a valid field name: non-empty, all `tchar`.
#[inline]
pub fn is_valid_name(name: &[u8]) -> bool {
    // Branch-free accumulation, eight table lookups per step: names are short
    // and almost always valid, so an early exit per byte would only cost
    // loop overhead and mispredictions.
    let t = |b: u8| TCHAR[b as usize];
    let mut ok = !name.is_empty();
    let mut chunks = name.chunks_exact(8);
    for c in &mut chunks {
        ok &= t(c[0]) & t(c[1]) & t(c[2]) & t(c[3]) & t(c[4]) & t(c[5]) & t(c[6]) & t(c[7]);
    }
    for &b in chunks.remainder() {
        ok &= t(b);
    }
    ok
}

/// Whether `value` is a valid field value: no NUL, CR or LF.
#[inline]
pub fn is_valid_value(value: &[u8]) -> bool {
    // memchr3 pays a dispatch and setup cost per call that dominates for the
    // short values typical of headers, so short values are checked inline,
    // eight bytes per step (SWAR), with no call at all.
    if value.len() >= 128 {
        return memchr::memchr3(0, b'\r', b'\n', value).is_none();
    }
    if value.len() < 8 {
        // bit i of 0x2401 is set for i in {0, 10, 13}.
        return !value.iter().fold(false, |bad, &b| {
            bad | ((b < 14) & ((0x2401u16 >> (b & 15)) & 1 != 0))
        });
    }
    let mut bad = 0;
    let mut words = value.chunks_exact(8);
    for w in &mut words {
        bad |= bad_bytes(u64::from_le_bytes(w.try_into().unwrap()));
    }
    // The last word may overlap bytes already checked; that is harmless.
    let tail = value.len() - 8;
    bad |= bad_bytes(u64::from_le_bytes(value[tail..].try_into().unwrap()));
    bad == 0
}

/// Non-zero when any byte of `x` is NUL, CR or LF.
#[inline(always)]
fn bad_bytes(x: u64) -> u64 {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    // Classic "has a zero byte" test: exact as to whether any byte is zero.
    #[inline(always)]
    fn has_zero(x: u64) -> u64 {
        x.wrapping_sub(LO) & !x & HI
    }
    has_zero(x) | has_zero(x ^ (LO * b'\r' as u64)) | has_zero(x ^ (LO * b'\n' as u64))
}

/// The largest block [`Classes`] covers: its two bitmaps (1 KiB together)
/// live on the stack. Real request heads are far smaller (a browser's is
/// under 1 KiB); larger blocks are validated field by field.
pub(crate) const MAX_SCAN_LEN: usize = 4096;

/// Bytes of one bitmap: a bit per byte of the largest block, and eight
/// bytes of padding so that any bit can be the first of a 64-bit load.
const MAP_LEN: usize = MAX_SCAN_LEN / 8 + 8;

/// Per-byte classes of one header block: bit `i % 8` of byte `i / 8` is
/// set when byte `i` of the block is not a `tchar` (in `not_tchar`) or is
/// NUL, CR or LF (in `ctl`).
pub(crate) struct Classes {
    not_tchar: [u8; MAP_LEN],
    ctl: [u8; MAP_LEN],
}

impl Classes {
    /// Empty bitmaps, to be filled by [`Classes::scan`].
    #[inline(always)]
    pub(crate) fn new() -> Classes {
        Classes {
            not_tchar: [0; MAP_LEN],
            ctl: [0; MAP_LEN],
        }
    }

    /// Classifies every byte of `block` and returns true, or returns false
    /// when the CPU has no AVX2 or `block` is longer than [`MAX_SCAN_LEN`]:
    /// the caller then validates field by field. (Filled in place: the
    /// bitmaps are 1 KiB, too much to move around.)
    #[inline]
    pub(crate) fn scan(&mut self, block: &[u8]) -> bool {
        if block.len() > MAX_SCAN_LEN {
            return false;
        }
        #[cfg(all(target_arch = "x86_64", not(miri)))]
        {
            if std::arch::is_x86_feature_detected!("avx2") {
                #[allow(unsafe_code)]
                // SAFETY: the CPU has AVX2 (checked just above).
                unsafe {
                    avx2::scan(block, &mut self.not_tchar, &mut self.ctl)
                };
                return true;
            }
        }
        false
    }

    /// Whether `block[start..end]` is a valid name: non-empty, all `tchar`.
    /// The range must lie inside the scanned block.
    #[inline(always)]
    pub(crate) fn is_valid_name(&self, start: usize, end: usize) -> bool {
        start < end && !any_set(&self.not_tchar, start, end)
    }

    /// Whether `block[start..end]` is a valid value: no NUL, CR or LF.
    /// The range must lie inside the scanned block.
    #[inline(always)]
    pub(crate) fn is_valid_value(&self, start: usize, end: usize) -> bool {
        !any_set(&self.ctl, start, end)
    }
}

/// Whether any bit in positions `start..end` of `bits` is set.
#[inline(always)]
fn any_set(bits: &[u8; MAP_LEN], start: usize, end: usize) -> bool {
    let load = |bit: usize| {
        let i = bit / 8;
        u64::from_le_bytes(bits[i..i + 8].try_into().unwrap()) >> (bit % 8)
    };
    let len = end.saturating_sub(start);
    if len <= 56 {
        // One load covers the range (the usual header name or value).
        return load(start) & ((1u64 << len) - 1) != 0;
    }
    let mut bit = start;
    while end - bit > 56 {
        if load(bit) & ((1u64 << 56) - 1) != 0 {
            return true;
        }
        bit += 56;
    }
    load(bit) & ((1u64 << (end - bit)) - 1) != 0
}

/// The nibble tables of the `tchar` test: byte `b` is a `tchar` exactly when
/// `LO[b & 15] & HI[b >> 4] != 0`. `HI[h]` is the bit `1 << h` for the eight
/// ASCII rows and 0 for bytes of 0x80 and above; `LO[l]` has bit `h` set when
/// byte `h * 16 + l` is a `tchar`.
#[cfg(any(test, all(target_arch = "x86_64", not(miri))))]
const NIBBLES: ([u8; 16], [u8; 16]) = {
    let mut lo = [0u8; 16];
    let mut hi = [0u8; 16];
    let mut h = 0;
    while h < 8 {
        hi[h] = 1 << h;
        let mut l = 0;
        while l < 16 {
            if tchar((h * 16 + l) as u8) {
                lo[l] |= 1 << h;
            }
            l += 1;
        }
        h += 1;
    }
    (lo, hi)
};

#[cfg(all(target_arch = "x86_64", not(miri)))]
#[allow(unsafe_code)]
mod avx2 {
    use std::arch::x86_64::*;

    use super::NIBBLES;

    /// Fills one bit per byte of `block` into `not_tchar` and `ctl`
    /// (bytes past what the bitmaps hold are not classified).
    ///
    /// # Safety
    /// The CPU must support AVX2.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn scan(block: &[u8], not_tchar: &mut [u8], ctl: &mut [u8]) {
        let mut chunks = block.chunks_exact(64);
        let mut words = not_tchar.chunks_exact_mut(8).zip(ctl.chunks_exact_mut(8));
        for (chunk, (nt, ct)) in (&mut chunks).zip(&mut words) {
            // SAFETY: `chunk` holds 64 readable bytes.
            let (n, c) = unsafe { classify(chunk.as_ptr()) };
            nt.copy_from_slice(&n.to_le_bytes());
            ct.copy_from_slice(&c.to_le_bytes());
        }
        let rest = chunks.remainder().len();
        let Some((nt, ct)) = words.next().filter(|_| rest > 0) else {
            return;
        };
        let (n, c) = if block.len() >= 64 {
            // The last 64 bytes of the block, shifted so that the tail's
            // bits come first.
            let last = &block[block.len() - 64..];
            // SAFETY: `last` holds 64 readable bytes.
            let (n, c) = unsafe { classify(last.as_ptr()) };
            (n >> (64 - rest), c >> (64 - rest))
        } else {
            // A short block goes through a zeroed copy; bits past its end
            // are never looked at.
            let mut tail = [0u8; 64];
            tail[..rest].copy_from_slice(chunks.remainder());
            // SAFETY: `tail` holds 64 readable bytes.
            unsafe { classify(tail.as_ptr()) }
        };
        nt.copy_from_slice(&n.to_le_bytes());
        ct.copy_from_slice(&c.to_le_bytes());
    }

    /// The `not_tchar` and `ctl` masks of the 64 bytes at `p`.
    ///
    /// # Safety
    /// AVX2, and 64 readable bytes at `p`.
    #[target_feature(enable = "avx2")]
    #[inline]
    unsafe fn classify(p: *const u8) -> (u64, u64) {
        // SAFETY: the tables are 16 readable bytes each, `p` 64 (the
        // caller's contract); all loads are unaligned loads.
        unsafe {
            let (lo, hi) = NIBBLES;
            let lo = _mm256_broadcastsi128_si256(_mm_loadu_si128(lo.as_ptr().cast()));
            let hi = _mm256_broadcastsi128_si256(_mm_loadu_si128(hi.as_ptr().cast()));
            let ctl = _mm256_broadcastsi128_si256(_mm_loadu_si128(CTL.as_ptr().cast()));
            let a = _mm256_loadu_si256(p.cast());
            let b = _mm256_loadu_si256(p.add(32).cast());
            let join = |x: i32, y: i32| (x as u32 as u64) | ((y as u32 as u64) << 32);
            (
                join(not_tchar(a, lo, hi), not_tchar(b, lo, hi)),
                join(is_ctl(a, ctl), is_ctl(b, ctl)),
            )
        }
    }

    /// Bit `i` set when byte `i` of `v` is not a `tchar`: the shuffles look
    /// both nibbles up in each 128-bit lane's copy of the tables.
    #[target_feature(enable = "avx2")]
    #[inline]
    unsafe fn not_tchar(v: __m256i, lo: __m256i, hi: __m256i) -> i32 {
        let nibble = _mm256_set1_epi8(0x0f);
        let low = _mm256_and_si256(v, nibble);
        let high = _mm256_and_si256(_mm256_srli_epi16(v, 4), nibble);
        let hit = _mm256_and_si256(_mm256_shuffle_epi8(lo, low), _mm256_shuffle_epi8(hi, high));
        _mm256_movemask_epi8(_mm256_cmpeq_epi8(hit, _mm256_setzero_si256()))
    }

    /// Bit `i` set when byte `i` of `v` is NUL, CR or LF. The three share
    /// the high nibble 0 and differ in the low one, so one shuffle of
    /// [`CTL`] by the byte gives back the byte itself exactly for them (a
    /// byte of 0x80 and above shuffles to 0, which only NUL equals).
    #[target_feature(enable = "avx2")]
    #[inline]
    unsafe fn is_ctl(v: __m256i, ctl: __m256i) -> i32 {
        _mm256_movemask_epi8(_mm256_cmpeq_epi8(_mm256_shuffle_epi8(ctl, v), v))
    }

    /// Indexed by low nibble: the byte NUL, LF or CR for nibbles 0, 10 and
    /// 13, and 0xFF (no byte under 0x80 equals it) for the others.
    const CTL: [u8; 16] = {
        let mut t = [0xFFu8; 16];
        t[0] = 0;
        t[b'\n' as usize] = b'\n';
        t[b'\r' as usize] = b'\r';
        t
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nibble_tables_define_tchar() {
        let (lo, hi) = NIBBLES;
        for b in 0..=255u8 {
            let by_nibbles = lo[(b & 15) as usize] & hi[(b >> 4) as usize] != 0;
            assert_eq!(by_nibbles, is_tchar(b), "byte {b:#04x}");
        }
    }

    /// Every byte value at every position of a 64-byte chunk and of the
    /// tail, against the table.
    #[test]
    fn scan_classifies_every_byte_at_every_position() {
        for len in [1usize, 31, 63, 64, 65, 130, 200] {
            for b in 0..=255u8 {
                let mut block: Vec<u8> = (0..len).map(|i| b"aZ09-~"[i % 6]).collect();
                for pos in [0, len / 2, len - 1] {
                    block[pos] = b;
                    let mut c = Classes::new();
                    if !c.scan(&block) {
                        return; // no AVX2 on this CPU: nothing to compare
                    }
                    for i in 0..len {
                        assert_eq!(
                            c.is_valid_name(i, i + 1),
                            is_tchar(block[i]),
                            "len {len} pos {i}"
                        );
                        assert_eq!(
                            c.is_valid_value(i, i + 1),
                            is_valid_value(&block[i..i + 1]),
                            "len {len} pos {i}"
                        );
                    }
                    assert_eq!(c.is_valid_name(0, len), is_valid_name(&block));
                    assert_eq!(c.is_valid_value(0, len), is_valid_value(&block));
                    block[pos] = b'a';
                }
            }
        }
    }

    #[test]
    fn scan_size_limit_edge() {
        assert!(!Classes::new().scan(&[b'a'; MAX_SCAN_LEN + 1]));
        let mut c = Classes::new();
        if c.scan(&[b'a'; MAX_SCAN_LEN]) {
            assert!(c.is_valid_name(0, MAX_SCAN_LEN));
            assert!(c.is_valid_value(MAX_SCAN_LEN - 1, MAX_SCAN_LEN));
        }
    }

    /// The bulk path is the one taken where the CPU allows it (the tests
    /// above compare it with the tables only when it is).
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    #[test]
    fn scan_runs_on_avx2_cpus() {
        assert_eq!(
            Classes::new().scan(b"a"),
            std::arch::is_x86_feature_detected!("avx2")
        );
    }

    #[test]
    fn ranges_across_words() {
        let mut block = vec![b'a'; 300];
        block[130] = b'\n';
        let mut c = Classes::new();
        if !c.scan(&block) {
            return;
        }
        assert!(c.is_valid_value(0, 130));
        assert!(c.is_valid_value(131, 300));
        assert!(!c.is_valid_value(0, 300));
        assert!(!c.is_valid_value(10, 131));
        assert!(!c.is_valid_value(130, 131));
        assert!(!c.is_valid_value(129, 200));
        assert!(c.is_valid_value(5, 5), "an empty value is valid");
        assert!(!c.is_valid_name(5, 5), "an empty name is not");
    }

    proptest::proptest! {
        /// The word-at-a-time validators agree with the obvious definitions
        /// at every length and position (the SWAR tail overlaps, the long
        /// path switches to memchr).
        #[test]
        fn validators_match_reference(
            v in proptest::collection::vec(
                proptest::prop_oneof![
                    8 => 0x20u8..0x7f,
                    1 => proptest::prop_oneof![proptest::prelude::Just(0u8), proptest::prelude::Just(b'\r'), proptest::prelude::Just(b'\n'), proptest::prelude::Just(0x80), proptest::prelude::Just(0xff)],
                    1 => proptest::num::u8::ANY,
                ],
                0..300,
            )
        ) {
            let value_ref = !v.iter().any(|&b| b == 0 || b == b'\r' || b == b'\n');
            let name_ref = !v.is_empty() && v.iter().all(|&b| is_tchar(b));
            proptest::prop_assert_eq!(is_valid_value(&v), value_ref);
            proptest::prop_assert_eq!(is_valid_name(&v), name_ref);
            // Single bad byte at every position of an otherwise valid value.
            if !v.is_empty() && v.len() < 140 {
                let mut w = vec![b'a'; v.len()];
                for i in 0..w.len() {
                    for bad in [0u8, b'\r', b'\n'] {
                        w[i] = bad;
                        proptest::prop_assert!(!is_valid_value(&w));
                    }
                    w[i] = b'a';
                }
                proptest::prop_assert!(is_valid_value(&w));
            }
        }
    }
}
