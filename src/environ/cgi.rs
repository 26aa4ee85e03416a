//! The CGI variables every gateway derives the same way from a request
//! head: the scheme, `SERVER_NAME` and `SERVER_PORT`, `REQUEST_URI`,
//! `REMOTE_ADDR`. The environ builder (app side) and the classic uwsgi
//! encoder (proxy side, building what nginx's `uwsgi_params` would send)
//! both take them from here, so the two cannot disagree.

use bytes::{BufMut, Bytes, BytesMut};
use memchr::{memchr, memrchr};

use crate::frame::RequestHead;

/// The server-side variables of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServerVars {
    /// `REQUEST_SCHEME` (`wsgi.url_scheme`): the head's scheme, else
    /// `https` with TLS and `http` without.
    pub(crate) scheme: Bytes,
    /// `SERVER_NAME`: the head's server name, else the authority's host,
    /// else `default_name`.
    pub(crate) server_name: Bytes,
    /// `SERVER_PORT`: the head's server port, else the authority's, else
    /// `default_port`, else 443 for `https`/TLS and 80 otherwise.
    pub(crate) server_port: u16,
}

/// Derives [`ServerVars`] from `head`.
pub(crate) fn server_vars(
    head: &RequestHead,
    default_name: &Bytes,
    default_port: Option<u16>,
) -> ServerVars {
    let scheme = if !head.scheme.is_empty() {
        head.scheme.clone()
    } else if head.tls {
        Bytes::from_static(b"https")
    } else {
        Bytes::from_static(b"http")
    };
    let (auth_host, auth_port) = split_authority(&head.authority);
    let server_name = if !head.server_name.is_empty() {
        head.server_name.clone()
    } else if !auth_host.is_empty() {
        head.authority.slice_ref(auth_host)
    } else {
        default_name.clone()
    };
    let server_port = if head.server_port != 0 {
        head.server_port
    } else if let Some(p) = auth_port.or(default_port) {
        p
    } else if head.tls || scheme.eq_ignore_ascii_case(b"https") {
        443
    } else {
        80
    };
    ServerVars {
        scheme,
        server_name,
        server_port,
    }
}

/// Splits an authority into host (brackets of an IPv6 literal kept) and a
/// valid non-zero port. Userinfo, if any, is dropped.
pub(crate) fn split_authority(a: &[u8]) -> (&[u8], Option<u16>) {
    let a = match memrchr(b'@', a) {
        Some(i) => &a[i + 1..],
        None => a,
    };
    if a.first() == Some(&b'[') {
        return match memchr(b']', a) {
            Some(end) => {
                let port = a[end + 1..].strip_prefix(b":").and_then(parse_port);
                (&a[..=end], port)
            }
            None => (a, None),
        };
    }
    match memrchr(b':', a) {
        Some(i) => (&a[..i], parse_port(&a[i + 1..])),
        None => (a, None),
    }
}

fn parse_port(p: &[u8]) -> Option<u16> {
    if p.is_empty() || p.len() > 5 || !p.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = p
        .iter()
        .fold(0u32, |acc, &d| acc * 10 + u32::from(d - b'0'));
    u16::try_from(n).ok().filter(|&n| n != 0)
}

/// `REMOTE_ADDR` is a bare address (RFC 3875 4.1.8: `hostnumber`), so a
/// bracketed IPv6 literal loses its brackets.
pub(crate) fn strip_brackets(addr: &Bytes) -> Bytes {
    match &addr[..] {
        [b'[', inner @ .., b']'] => addr.slice_ref(inner),
        _ => addr.clone(),
    }
}

/// `REQUEST_URI`: the path as received, then `?` and the query when the
/// target had a `?`. No copy when there is no query.
pub(crate) fn request_uri(path: &Bytes, query: Option<&Bytes>) -> Bytes {
    match query {
        None => path.clone(),
        Some(q) => {
            let mut v = BytesMut::with_capacity(path.len() + 1 + q.len());
            v.put_slice(path);
            v.put_u8(b'?');
            v.put_slice(q);
            v.freeze()
        }
    }
}

/// A decimal number as bytes; the common ports without allocating.
pub(crate) fn decimal(n: u64) -> Bytes {
    match n {
        80 => Bytes::from_static(b"80"),
        443 => Bytes::from_static(b"443"),
        0 => Bytes::from_static(b"0"),
        _ => Bytes::from(n.to_string()),
    }
}

/// Appends `ip` as text (`192.0.2.1`, `2001:db8::1`): IPv4 by hand (the
/// common case, on every request's `REMOTE_ADDR` and access log line,
/// where `fmt` costs a few hundred instructions), IPv6 through `Display`.
#[cfg(feature = "net")]
pub(crate) fn push_ip(dst: &mut Vec<u8>, ip: std::net::IpAddr) {
    match ip {
        std::net::IpAddr::V4(v4) => {
            // Into a stack buffer, then one copy: a `push` per digit would
            // check the capacity every time (this runs once per request).
            let mut text = [0u8; 15];
            let mut n = 0;
            for (i, o) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    text[n] = b'.';
                    n += 1;
                }
                if o >= 100 {
                    text[n] = b'0' + o / 100;
                    n += 1;
                }
                if o >= 10 {
                    text[n] = b'0' + o / 10 % 10;
                    n += 1;
                }
                text[n] = b'0' + o % 10;
                n += 1;
            }
            dst.extend_from_slice(&text[..n]);
        }
        std::net::IpAddr::V6(v6) => {
            use std::io::Write;
            let _ = write!(dst, "{v6}");
        }
    }
}

/// Variables no header may produce, whatever the configuration.
///
/// httpoxy, CVE-2016-5385: "PHP through 7.0.8 does not attempt to address
/// RFC 3875 section 4.1.18 namespace conflicts and therefore does not
/// protect applications from the presence of untrusted client data in the
/// HTTP_PROXY environment variable, which might allow remote attackers to
/// redirect an application's outbound HTTP traffic to an arbitrary proxy
/// server via a crafted Proxy header in an HTTP request" (also Go
/// CVE-2016-5386, Apache CVE-2016-5387, Python CVE-2016-1000110).
///
/// RFC 3875 4.1.18: "The server is not required to create meta-variables
/// for all the header fields that it receives. In particular, it SHOULD
/// remove any header fields carrying authentication information, such as
/// 'Authorization'; or that are available to the script in other
/// meta-variables, such as 'Content-Length' and 'Content-Type'."
/// (`Authorization` is kept: WSGI applications rely on
/// `HTTP_AUTHORIZATION`, and nginx and uWSGI pass it.)
const RESERVED: [&[u8]; 3] = [b"HTTP_PROXY", b"HTTP_CONTENT_LENGTH", b"HTTP_CONTENT_TYPE"];

/// Whether `var` is one of the [`RESERVED`] variables, which no header
/// field may set (the classic uwsgi conversion drops them too).
#[inline]
pub(crate) fn is_reserved_var(var: &[u8]) -> bool {
    RESERVED.contains(&var)
}

/// What each byte of a header name becomes in its variable: letters upper
/// case, `-` → `_`, digits and `_` as they are; 0 for a byte no variable
/// may hold (see [`http_var_name`]).
const VAR_BYTE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = match b {
            b'a'..=b'z' => b.to_ascii_uppercase(),
            b'A'..=b'Z' | b'0'..=b'9' | b'_' => b,
            b'-' => b'_',
            _ => 0,
        };
        i += 1;
    }
    t
};

/// Appends to `dst` the `HTTP_*` variable that header `name` becomes and
/// returns true, or returns false (leaving `dst` as it was) when the header
/// must not become a variable: a name with a byte other than ASCII letters,
/// digits, `-` and (with `allow_underscore`) `_`, or one mapping to a
/// [`RESERVED`] variable.
///
/// Which names map: CVE-2015-0219: "Django before 1.4.18, 1.6.x before
/// 1.6.10, and 1.7.x before 1.7.3 allows remote attackers to spoof WSGI
/// headers by using an _ (underscore) character instead of a - (dash)
/// character in an HTTP header, as demonstrated by an X-Auth_User header."
/// nginx, `ignore_invalid_headers` (on by default): "Valid names are
/// composed of English letters, digits, hyphens, and possibly underscores
/// (as controlled by the underscores_in_headers directive)." Apache 2.4
/// likewise: headers "containing invalid characters (including underscores)
/// are now silently dropped" when building CGI variables.
pub(crate) fn http_var_name(name: &[u8], allow_underscore: bool, dst: &mut BytesMut) -> bool {
    let start = dst.len();
    // RFC 3875 4.1.18: "The HTTP header field name is converted to upper
    // case, has all occurrences of "-" replaced with "_" and has "HTTP_"
    // prepended to give the meta-variable name." Every header variable
    // carries the prefix, so no header can set a server variable.
    dst.reserve(5 + name.len());
    dst.put_slice(b"HTTP_");
    // Copied, then mapped in place through one table that also checks each
    // byte, with no branch per byte: names are short and almost always
    // valid (a check pass and a mapping pass cost about twice as much).
    let at = dst.len();
    dst.put_slice(name);
    let (mut bad, mut underscore) = (false, false);
    for b in &mut dst[at..] {
        let m = VAR_BYTE[usize::from(*b)];
        bad |= m == 0;
        underscore |= *b == b'_';
        *b = m;
    }
    if bad || (underscore && !allow_underscore) || is_reserved_var(&dst[start..]) {
        dst.truncate(start);
        return false;
    }
    true
}

/// What joins the values of repeated headers that map to variable `var`.
///
/// RFC 9113 8.2.3: "If there are multiple Cookie header fields after
/// decompression, these MUST be concatenated into a single octet string
/// using the two-octet delimiter of 0x3b, 0x20 (the ASCII string "; ")
/// before being passed into a non-HTTP/2 context, such as an HTTP/1.1
/// connection, or a generic HTTP server application." (RFC 6265 5.4
/// already forbids a user agent to send more than one.) RFC 9110 5.3: "...
/// by appending each subsequent field line value to the initial field line
/// value in order, separated by a comma (",") and optional whitespace ...
/// For consistency, use comma SP."
pub(crate) fn join_separator(var: &[u8]) -> &'static [u8] {
    if var == b"HTTP_COOKIE" {
        b"; "
    } else {
        b", "
    }
}

/// Applies the head's params (trusted variables from the proxy, like
/// nginx's `uwsgi_param`) to `vars`: a param replaces a variable of the
/// same name in place, else it is appended. `CONTENT_LENGTH` is never
/// taken from a param: the body length is framing, carried by
/// `body_length` and the stream, and a variable must not contradict it.
pub(crate) fn apply_params(vars: &mut Vec<(Bytes, Bytes)>, head: &RequestHead) {
    let pbuf = head.params.as_bytes();
    for (name, value) in head.params.iter() {
        if name == b"CONTENT_LENGTH" {
            continue;
        }
        let value = pbuf.slice_ref(value);
        match vars.iter_mut().find(|(n, _)| n[..] == *name) {
            Some((_, v)) => *v = value,
            None => vars.push((pbuf.slice_ref(name), value)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "net")]
    #[test]
    fn ip_text_matches_display() {
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "203.0.113.9",
            "10.100.99.255",
            "255.255.255.255",
            "::1",
            "2001:db8::1",
            "::ffff:192.0.2.1",
        ] {
            let ip: std::net::IpAddr = ip.parse().unwrap();
            let mut out = b"x".to_vec();
            push_ip(&mut out, ip);
            assert_eq!(out, format!("x{ip}").into_bytes());
        }
        // Every octet value in every position.
        for o in 0..=255u8 {
            for ip in [
                [o, 1, 22, 255],
                [9, o, 0, 100],
                [255, 99, o, 10],
                [0, 0, 0, o],
            ] {
                let ip = std::net::IpAddr::from(ip);
                let mut out = Vec::new();
                push_ip(&mut out, ip);
                assert_eq!(out, ip.to_string().into_bytes());
            }
        }
    }

    #[test]
    fn authority_split() {
        assert_eq!(split_authority(b"example.com"), (&b"example.com"[..], None));
        assert_eq!(
            split_authority(b"example.com:8080"),
            (&b"example.com"[..], Some(8080))
        );
        assert_eq!(
            split_authority(b"example.com:"),
            (&b"example.com"[..], None)
        );
        assert_eq!(
            split_authority(b"example.com:99999"),
            (&b"example.com"[..], None)
        );
        assert_eq!(split_authority(b"[::1]:8443"), (&b"[::1]"[..], Some(8443)));
        assert_eq!(split_authority(b"[::1]"), (&b"[::1]"[..], None));
        assert_eq!(split_authority(b"u:p@h:81"), (&b"h"[..], Some(81)));
        assert_eq!(split_authority(b""), (&b""[..], None));
        assert_eq!(split_authority(b"h:81"), (&b"h"[..], Some(81)));
        assert_eq!(
            split_authority(b"u@[::1]:8443"),
            (&b"[::1]"[..], Some(8443))
        );
        assert_eq!(split_authority(b"h:0"), (&b"h"[..], None));
        assert_eq!(split_authority(b"h:000080"), (&b"h"[..], None));
        assert_eq!(&strip_brackets(&Bytes::from_static(b"[::1]"))[..], b"::1");
    }

    #[test]
    fn server_vars_fall_back_in_order() {
        let localhost = Bytes::from_static(b"localhost");
        let mut head = RequestHead::default();
        let v = server_vars(&head, &localhost, None);
        assert_eq!(
            (&v.scheme[..], &v.server_name[..], v.server_port),
            (&b"http"[..], &b"localhost"[..], 80)
        );
        head.tls = true;
        head.authority = Bytes::from_static(b"example.com");
        let v = server_vars(&head, &localhost, None);
        assert_eq!(
            (&v.scheme[..], &v.server_name[..], v.server_port),
            (&b"https"[..], &b"example.com"[..], 443)
        );
        assert_eq!(server_vars(&head, &localhost, Some(8443)).server_port, 8443);
        head.authority = Bytes::from_static(b"example.com:8080");
        head.server_name = Bytes::from_static(b"front");
        let v = server_vars(&head, &localhost, Some(8443));
        assert_eq!((&v.server_name[..], v.server_port), (&b"front"[..], 8080));
        head.server_port = 9000;
        assert_eq!(server_vars(&head, &localhost, None).server_port, 9000);
    }

    /// Every byte value, in every position of a name, against the rule
    /// as written (RFC 3875 4.1.18 plus the defences): letters upper case,
    /// `-` to `_`, digits kept, `_` only when allowed, anything else
    /// refused; refusal leaves `dst` as it was. And the reserved names.
    #[test]
    fn http_var_name_maps_or_refuses_every_byte() {
        for allow in [false, true] {
            for b in 0..=255u8 {
                for name in [vec![b], vec![b'x', b], vec![b, b'-', b'y'], {
                    let mut long = b"Sec-Fetch-Mode-".repeat(3);
                    long.push(b);
                    long
                }] {
                    let mut dst = BytesMut::from(&b"PREV"[..]);
                    let ok = http_var_name(&name, allow, &mut dst);
                    let mappable = name
                        .iter()
                        .all(|&c| c.is_ascii_alphanumeric() || c == b'-' || (allow && c == b'_'));
                    assert_eq!(ok, mappable, "{name:?} allow={allow}");
                    let mut want = b"PREV".to_vec();
                    if mappable {
                        want.extend_from_slice(b"HTTP_");
                        want.extend(name.iter().map(|&c| match c {
                            b'-' => b'_',
                            c => c.to_ascii_uppercase(),
                        }));
                    }
                    assert_eq!(&dst[..], &want[..], "{name:?} allow={allow}");
                }
            }
        }
        for name in ["Proxy", "content-length", "Content-Type", "PROXY"] {
            let mut dst = BytesMut::new();
            assert!(!http_var_name(name.as_bytes(), true, &mut dst), "{name}");
            assert!(dst.is_empty());
        }
        let mut dst = BytesMut::new();
        assert!(http_var_name(b"Proxy-Authorization", false, &mut dst));
        assert_eq!(&dst[..], b"HTTP_PROXY_AUTHORIZATION");
    }

    #[test]
    fn request_uri_keeps_an_empty_query() {
        let p = Bytes::from_static(b"/a");
        assert_eq!(request_uri(&p, None), "/a");
        assert_eq!(request_uri(&p, Some(&Bytes::new())), "/a?");
        assert_eq!(request_uri(&p, Some(&Bytes::from_static(b"x=1"))), "/a?x=1");
    }
}
