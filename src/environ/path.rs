//! The request target: NUL refusal, percent-decoding of `PATH_INFO`, and
//! matching the mount prefix (`SCRIPT_NAME`).

use bytes::Bytes;
use memchr::{memchr, memchr_iter};

use super::EnvironError;
use crate::frame::RequestHead;

/// Refuses NUL in the request target.
///
/// RFC 3986 7.3: "Note, however, that the "%00" percent-encoding (NUL) may
/// require special handling and should be rejected if the application is
/// not expecting to receive raw data within a component." `PATH_INFO` is
/// decoded and commonly reaches C strings and file systems, where a NUL
/// truncates; a raw NUL is never valid in a request target.
pub(super) fn check_target(head: &RequestHead) -> Result<(), EnvironError> {
    let path = &head.path[..];
    let raw_nul =
        memchr(0, path).is_some() || head.query.as_ref().is_some_and(|q| memchr(0, q).is_some());
    let encoded_nul = memchr_iter(b'%', path).any(|i| path[i + 1..].starts_with(b"00"));
    if raw_nul || encoded_nul {
        return Err(EnvironError::NulInTarget);
    }
    Ok(())
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The byte at `s[i]` after percent-decoding, and how many input bytes it
/// used. A `%` not followed by two hex digits stands for itself.
fn decode_at(s: &[u8], i: usize) -> (u8, usize) {
    if s[i] == b'%' && i + 2 < s.len() {
        if let (Some(hi), Some(lo)) = (hex(s[i + 1]), hex(s[i + 2])) {
            return ((hi << 4) | lo, 3);
        }
    }
    (s[i], 1)
}

/// Percent-decodes `src[start..]`; a slice of `src` (no copy) when there is
/// no `%`. `+` is not a space here: that is form encoding, not URI paths.
pub(crate) fn percent_decode(src: &Bytes, start: usize) -> Bytes {
    let s = &src[start..];
    let Some(first) = memchr(b'%', s) else {
        return src.slice(start..);
    };
    let mut out = Vec::with_capacity(s.len());
    out.extend_from_slice(&s[..first]);
    let mut i = first;
    while i < s.len() {
        if s[i] != b'%' {
            let run = memchr(b'%', &s[i..]).map_or(s.len(), |j| i + j);
            out.extend_from_slice(&s[i..run]);
            i = run;
            continue;
        }
        let (b, used) = decode_at(s, i);
        out.push(b);
        i += used;
    }
    Bytes::from(out)
}

/// Whether `raw` percent-decodes to exactly `want`, without allocating.
pub(crate) fn decoded_eq(raw: &[u8], want: &[u8]) -> bool {
    let (mut i, mut j) = (0, 0);
    while i < raw.len() {
        let (b, used) = decode_at(raw, i);
        if want.get(j) != Some(&b) {
            return false;
        }
        i += used;
        j += 1;
    }
    j == want.len()
}

/// Where `PATH_INFO` starts when `path` is under the mount prefix `script`
/// (normalised, non-empty), comparing decoded segments and matching only at
/// a segment boundary. `None` when there is no prefix or it does not match.
pub(super) fn match_prefix(path: &[u8], script: &[u8]) -> Option<usize> {
    if script.is_empty() {
        return None;
    }
    let mut pos = 0;
    for seg in script.split(|&b| b == b'/').filter(|s| !s.is_empty()) {
        if path.get(pos) != Some(&b'/') {
            return None;
        }
        pos += 1;
        let end = memchr(b'/', &path[pos..]).map_or(path.len(), |e| pos + e);
        if !decoded_eq(&path[pos..end], seg) {
            return None;
        }
        pos = end;
    }
    Some(pos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        let d = |s: &'static str| percent_decode(&Bytes::from_static(s.as_bytes()), 0);
        assert_eq!(&d("/a%20b+c")[..], b"/a b+c");
        assert_eq!(&d("/%2f%2F")[..], b"///");
        assert_eq!(&d("/%FF%fe")[..], b"/\xff\xfe");
        assert_eq!(&d("/%zz%4%")[..], b"/%zz%4%");
        assert_eq!(&d("/%41%")[..], b"/A%");
        assert_eq!(&d("/plain")[..], b"/plain");
        assert!(decoded_eq(b"%61pp", b"app"));
        assert!(!decoded_eq(b"app%2Fx", b"app"));
        assert!(!decoded_eq(b"ap", b"app"));
    }

    #[test]
    fn prefix_matching() {
        assert_eq!(match_prefix(b"/app", b"/app"), Some(4));
        assert_eq!(match_prefix(b"/app/", b"/app"), Some(4));
        assert_eq!(match_prefix(b"/app/x", b"/app"), Some(4));
        assert_eq!(match_prefix(b"/application", b"/app"), None);
        assert_eq!(match_prefix(b"/ap", b"/app"), None);
        assert_eq!(match_prefix(b"//app", b"/app"), None);
        assert_eq!(match_prefix(b"/a/b/c", b"/a/b"), Some(4));
        assert_eq!(match_prefix(b"/a%2Fb/c", b"/a/b"), None);
        assert_eq!(match_prefix(b"/x", b""), None);
        assert_eq!(match_prefix(b"*", b"/app"), None);
    }
}
