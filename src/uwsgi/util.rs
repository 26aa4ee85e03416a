//! Byte-level helpers shared by the classic uwsgi codec: token and value checks,
//! percent coding, decimals.

use bytes::Bytes;

/// A non-empty RFC 9110 token (what header names, methods and header-block
/// names must be).
pub(crate) use crate::frame::is_valid_name as is_token;
/// Whether a value is free of NUL, CR and LF (what a head field may hold).
pub(crate) use crate::frame::is_valid_value as is_clean;
pub(crate) use crate::frame::scan::is_tchar;

/// Percent-decodes a URI path the way `PATH_INFO` is built (nginx, uWSGI and
/// `uwire::environ` agree, and share this code): `%XX` with two hex digits
/// becomes its byte, a `%` not followed by two hex digits stays literal, `+`
/// stays `+`. A slice of `src` (no copy) when there is no `%`.
pub(crate) fn percent_decode(src: &Bytes) -> Bytes {
    crate::environ::path::percent_decode(src, 0)
}

/// Whether `raw` percent-decodes (as [`percent_decode`]) to exactly `want`,
/// without allocating.
pub(crate) use crate::environ::path::decoded_eq as decodes_to;

/// Whether a decoded path byte must be percent-encoded to put it back in a
/// URI path: controls and space, `%`, `?`, `#`, DEL and every non-ASCII
/// byte. Everything else is written as is, so decoding gives back the exact
/// bytes.
fn needs_escape(b: u8) -> bool {
    b <= 0x20 || b >= 0x7F || matches!(b, b'%' | b'?' | b'#')
}

/// Percent-encodes a decoded path (nginx's `PATH_INFO`) into a URI path
/// (upper-case hex). [`percent_decode`] of the result is `decoded` again.
pub(crate) fn percent_encode_path(decoded: &[u8]) -> Bytes {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = Vec::with_capacity(decoded.len() + 8);
    for &b in decoded {
        if needs_escape(b) {
            out.extend_from_slice(&[b'%', HEX[(b >> 4) as usize], HEX[(b & 15) as usize]]);
        } else {
            out.push(b);
        }
    }
    Bytes::from(out)
}

/// A plain decimal (ASCII digits only, at least one) that fits in 64 bits.
pub(crate) fn parse_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    // One pass: each byte checked as it is added (a pass to check, then
    // one to add, cost twice as much on the ports of every request).
    s.iter().try_fold(0u64, |acc, &b| {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        acc.checked_mul(10)?.checked_add(u64::from(d))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_round_trip() {
        let d = |s: &'static str| percent_decode(&Bytes::from_static(s.as_bytes()));
        assert_eq!(&d("/a%20b+c")[..], b"/a b+c");
        assert_eq!(&d("/%2f%2F")[..], b"///");
        assert_eq!(&d("/%FF%fe")[..], b"/\xff\xfe");
        assert_eq!(&d("/%zz%4%")[..], b"/%zz%4%");
        assert_eq!(&d("/%41%")[..], b"/A%");
        assert_eq!(&d("/%4")[..], b"/%4");
        assert_eq!(&d("%41")[..], b"A");
        assert!(decodes_to(b"/%61pp", b"/app"));
        assert!(decodes_to(b"/%zz", b"/%zz"));
        assert!(decodes_to(b"/%4", b"/%4"));
        assert!(!decodes_to(b"/app", b"/ap"));
        assert!(!decodes_to(b"/ap", b"/app"));
        for raw in [
            &b"/a b?c#d%e\x00\x7f\xff\r\n"[..],
            b"",
            b"/caf\xc3\xa9",
            b"%41",
        ] {
            let enc = percent_encode_path(raw);
            assert!(enc.iter().all(|b| (0x21..0x7f).contains(b)), "{enc:?}");
            assert_eq!(&percent_decode(&enc)[..], raw);
            assert!(decodes_to(&enc, raw));
        }
        assert_eq!(&percent_encode_path(b"/a b%")[..], b"/a%20b%25");
    }

    #[test]
    fn decimals() {
        assert_eq!(parse_u64(b"0"), Some(0));
        assert_eq!(parse_u64(b"007"), Some(7));
        assert_eq!(parse_u64(b"18446744073709551615"), Some(u64::MAX));
        for bad in [
            &b""[..],
            b"18446744073709551616",
            b"-1",
            b"+1",
            b" 1",
            b"1 ",
            b"0x1",
        ] {
            assert_eq!(parse_u64(bad), None, "{bad:?}");
        }
    }
}
