//! Byte classes of header fields, and their validation.
//!
//! Names are made of RFC 9110 token characters (`tchar`); values may hold
//! any byte but NUL, CR and LF. [`is_valid_name`] and [`is_valid_value`]
//! check one field on its own bytes (table lookups for names, eight bytes
//! per step for values). Where the CPU has AVX2 (checked at run time), the
//! block validator uses [`avx2`]'s field checks instead: a field of up to 32
//! bytes, the usual header name or value, is classified with one 32-byte
//! load and a mask, longer ones 32 bytes per step. Both ways accept and
//! reject exactly the same fields (the tests below compare them byte by
//! byte; a property test in `header_block` and the `heads` fuzz target
//! compare whole blocks).
//!
//! This is the crate's only SIMD: the intrinsics need `unsafe`, confined to
//! [`avx2`], whose loads stay inside the block they are given.

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

/// Whether the CPU can run [`avx2`]'s kernels (checked at run time; the
/// answer is cached by the standard library).
#[cfg(all(target_arch = "x86_64", not(miri)))]
#[inline(always)]
pub(crate) fn has_avx2() -> bool {
    std::arch::is_x86_feature_detected!("avx2")
}

/// Whether the CPU can run the block walk's kernel, which also masks with
/// BMI2 (every x86-64 CPU with AVX2 so far has it; checked all the same).
#[cfg(all(target_arch = "x86_64", not(miri)))]
#[inline(always)]
pub(crate) fn has_avx2_bmi2() -> bool {
    has_avx2() && std::arch::is_x86_feature_detected!("bmi2")
}

/// Field checks 32 bytes per step. Each takes the whole block and a field's
/// range in it, because a short field is checked with one 32-byte load that
/// may cover bytes of its neighbours (the bits of those bytes are masked
/// off): forwards from the field's start when 32 bytes remain in the block,
/// else backwards from its end. Loads never leave the block; a block shorter
/// than 32 bytes is checked byte by byte.
#[cfg(all(target_arch = "x86_64", not(miri)))]
#[allow(unsafe_code)]
pub(crate) mod avx2 {
    use std::arch::x86_64::*;

    use super::NIBBLES;

    /// Whether `block[start..end]` is a valid name: non-empty, all `tchar`.
    /// `start <= end <= block.len()` (checked: an out-of-range field panics).
    /// For tests: the block walk uses [`not_tchar_in`].
    #[cfg(test)]
    #[target_feature(enable = "avx2")]
    #[inline]
    pub(crate) fn name_ok(block: &[u8], start: usize, end: usize) -> bool {
        assert!(start <= end && end <= block.len());
        // SAFETY: the range is inside the block (asserted).
        start < end && unsafe { not_tchar_in(block, start, end) } == 0
    }

    /// Whether `block[start..end]` is a valid value: no NUL, CR or LF.
    /// `start <= end <= block.len()` (checked). For tests: the block walk
    /// uses [`ctl_in`].
    #[cfg(test)]
    #[target_feature(enable = "avx2")]
    #[inline]
    pub(crate) fn value_ok(block: &[u8], start: usize, end: usize) -> bool {
        assert!(start <= end && end <= block.len());
        // SAFETY: the range is inside the block (asserted).
        (unsafe { ctl_in(block, start, end) }) == 0
    }

    /// Non-zero when a byte of `block[start..end]` is not a `tchar` (an
    /// empty range gives 0).
    ///
    /// # Safety
    /// `start <= end <= block.len()`.
    #[target_feature(enable = "avx2")]
    #[inline]
    pub(crate) unsafe fn not_tchar_in(block: &[u8], start: usize, end: usize) -> u32 {
        // SAFETY: the caller's contract.
        unsafe { marked(block, start, end, |v| not_tchar(v), super::is_valid_name) }
    }

    /// Bit `i` set when byte `at + i` of `block` is not a `tchar`, for the
    /// 32 bytes from `at` (a field of up to 32 bytes that starts at `at` is
    /// the low bits; the bits above it are its neighbours').
    ///
    /// # Safety
    /// `at + 32 <= block.len()`.
    #[target_feature(enable = "avx2")]
    #[inline]
    pub(crate) unsafe fn not_tchar_at(block: &[u8], at: usize) -> u32 {
        debug_assert!(at + 32 <= block.len());
        // SAFETY: the 32 bytes from `at` are in the block (the contract).
        not_tchar(unsafe { _mm256_loadu_si256(block.as_ptr().add(at).cast()) })
    }

    /// Non-zero when a byte of `block[start..end]` is NUL, CR or LF.
    ///
    /// # Safety
    /// `start <= end <= block.len()`.
    #[target_feature(enable = "avx2")]
    #[inline]
    pub(crate) unsafe fn ctl_in(block: &[u8], start: usize, end: usize) -> u32 {
        // SAFETY: the caller's contract.
        unsafe { marked(block, start, end, |v| is_ctl(v), super::is_valid_value) }
    }

    /// Non-zero when `class` marks a byte of `block[start..end]` (`valid` is
    /// the byte-by-byte answer, for blocks too short for one load; it is
    /// only asked about non-empty ranges).
    ///
    /// # Safety
    /// `start <= end <= block.len()`.
    #[target_feature(enable = "avx2")]
    #[inline]
    unsafe fn marked(
        block: &[u8],
        start: usize,
        end: usize,
        class: impl Fn(__m256i) -> u32,
        valid: impl Fn(&[u8]) -> bool,
    ) -> u32 {
        debug_assert!(start <= end && end <= block.len());
        let len = end - start;
        let at = |i: usize| {
            debug_assert!(i + 32 <= block.len());
            // SAFETY: every call below passes `i` with `i + 32 <=
            // block.len()`, so the unaligned load reads inside the block.
            class(unsafe { _mm256_loadu_si256(block.as_ptr().add(i).cast()) })
        };
        if len <= 32 {
            if block.len() - start >= 32 {
                // The field's bytes are the low `len` bits (none when empty).
                return (u64::from(at(start)) & ((1u64 << len) - 1)) as u32;
            }
            if len == 0 {
                return 0;
            }
            if end >= 32 {
                // The field's bytes are the high `len` bits.
                return at(end - 32) >> (32 - len);
            }
            // SAFETY: the range is inside the block (the contract).
            let field = unsafe { block.get_unchecked(start..end) };
            return u32::from(!valid(field));
        }
        // Longer fields: 32 bytes per step, the last load ending at `end`
        // (it may overlap the one before).
        let mut found = 0;
        let mut i = start;
        while end - i > 32 {
            found |= at(i);
            i += 32;
        }
        found | at(end - 32)
    }

    /// Bit `i` set when byte `i` of `v` is not a `tchar`: the shuffles look
    /// both nibbles up in each 128-bit lane's copy of the tables.
    #[target_feature(enable = "avx2")]
    #[inline]
    fn not_tchar(v: __m256i) -> u32 {
        let (lo, hi) = NIBBLES;
        // SAFETY: the tables are 16 readable bytes each (unaligned loads).
        let (lo, hi) = unsafe {
            (
                _mm256_broadcastsi128_si256(_mm_loadu_si128(lo.as_ptr().cast())),
                _mm256_broadcastsi128_si256(_mm_loadu_si128(hi.as_ptr().cast())),
            )
        };
        let nibble = _mm256_set1_epi8(0x0f);
        let low = _mm256_and_si256(v, nibble);
        let high = _mm256_and_si256(_mm256_srli_epi16(v, 4), nibble);
        let hit = _mm256_and_si256(_mm256_shuffle_epi8(lo, low), _mm256_shuffle_epi8(hi, high));
        _mm256_movemask_epi8(_mm256_cmpeq_epi8(hit, _mm256_setzero_si256())) as u32
    }

    /// Bit `i` set when byte `i` of `v` is NUL, CR or LF. The three share
    /// the high nibble 0 and differ in the low one, so one shuffle of
    /// [`CTL`] by the byte gives back the byte itself exactly for them (a
    /// byte of 0x80 and above shuffles to 0, which only NUL equals).
    #[target_feature(enable = "avx2")]
    #[inline]
    fn is_ctl(v: __m256i) -> u32 {
        // SAFETY: the table is 16 readable bytes (an unaligned load).
        let ctl = unsafe { _mm256_broadcastsi128_si256(_mm_loadu_si128(CTL.as_ptr().cast())) };
        _mm256_movemask_epi8(_mm256_cmpeq_epi8(_mm256_shuffle_epi8(ctl, v), v)) as u32
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

    /// The AVX2 field checks against the byte-by-byte ones: every byte
    /// value at the start, middle and end of fields of every length from 0
    /// to 70, placed at the start, in the middle and at the end of blocks
    /// shorter and longer than one load (so forward loads, backward loads,
    /// the byte-by-byte fallback and the 32-byte loop all run).
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    #[allow(unsafe_code)]
    #[test]
    fn avx2_field_checks_match_the_tables() {
        if !has_avx2() {
            return; // nothing to compare on this CPU
        }
        let check = |block: &[u8], start: usize, end: usize| {
            let field = &block[start..end];
            // SAFETY: the CPU has AVX2 (checked above).
            let (name, value) = unsafe {
                (
                    avx2::name_ok(block, start, end),
                    avx2::value_ok(block, start, end),
                )
            };
            assert_eq!(name, is_valid_name(field), "name {field:?} in {block:?}");
            assert_eq!(value, is_valid_value(field), "value {field:?} in {block:?}");
        };
        for len in 0..=70usize {
            for pad in [0usize, 1, 5, 31, 40] {
                for at in [0, pad / 2, pad] {
                    // `at` bytes of padding, the field, then `pad - at`; the
                    // padding holds bad bytes of both kinds, which the checks
                    // must not see.
                    let total = len + pad;
                    let mut block: Vec<u8> = (0..total)
                        .map(|i| if i % 2 == 0 { b'\n' } else { b' ' })
                        .collect();
                    for (i, b) in block[at..at + len].iter_mut().enumerate() {
                        *b = b"aZ09-~"[i % 6];
                    }
                    check(&block, at, at + len);
                    let positions = [0, len / 2, len.saturating_sub(1)];
                    for pos in positions.into_iter().filter(|_| len > 0) {
                        let keep = block[at + pos];
                        for b in 0..=255u8 {
                            block[at + pos] = b;
                            check(&block, at, at + len);
                        }
                        block[at + pos] = keep;
                    }
                }
            }
        }
    }

    /// The AVX2 kernel is the one the block validator takes where the CPU
    /// allows it (the test above compares it with the tables only when it
    /// is).
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    #[test]
    fn avx2_detection_matches_the_cpu() {
        assert_eq!(has_avx2(), std::arch::is_x86_feature_detected!("avx2"));
        assert_eq!(
            has_avx2_bmi2(),
            has_avx2() && std::arch::is_x86_feature_detected!("bmi2")
        );
    }

    /// A long value with one bad byte on either side of each 32-byte step.
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    #[allow(unsafe_code)]
    #[test]
    fn avx2_long_fields_across_steps() {
        if !has_avx2() {
            return;
        }
        let mut block = vec![b'a'; 300];
        // SAFETY (all calls below): the CPU has AVX2.
        unsafe {
            assert!(avx2::value_ok(&block, 0, 300));
            assert!(avx2::name_ok(&block, 7, 300));
            for bad in [0usize, 31, 32, 33, 63, 64, 130, 267, 268, 299] {
                block[bad] = b'\r';
                assert!(!avx2::value_ok(&block, 0, 300), "at {bad}");
                assert!(!avx2::name_ok(&block, 0, 300), "at {bad}");
                assert!(avx2::value_ok(&block, bad + 1, 300), "after {bad}");
                assert!(avx2::value_ok(&block, 0, bad), "before {bad}");
                block[bad] = b'a';
            }
            assert!(avx2::value_ok(&block, 5, 5), "an empty value is valid");
            assert!(!avx2::name_ok(&block, 5, 5), "an empty name is not");
        }
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
