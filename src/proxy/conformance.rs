//! HTTP/1.1 rules the front enforces before a request may reach the app
//! (RFC 9112), on top of what hyper's parser already rejects. Pure
//! functions over a parsed request and, for HTTP/1, the raw head bytes.

use http::{HeaderValue, Method, Request, StatusCode, Version};

/// What to do with a request that passed the checks.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Forward it (after [`normalize`]).
    Forward,
    /// `OPTIONS *`: answered by the front itself.
    OptionsAsterisk,
}

/// A refusal: status and reason.
pub(crate) type Refusal = (StatusCode, &'static str);

/// Checks a request's target and `Host` fields.
pub(crate) fn check<B>(req: &Request<B>) -> Result<Verdict, Refusal> {
    let bad = |why| Err((StatusCode::BAD_REQUEST, why));
    let http1 = matches!(req.version(), Version::HTTP_10 | Version::HTTP_11);
    let mut hosts = req.headers().get_all(http::header::HOST).iter();
    let host = hosts.next();
    // RFC 9112 3.2: "A server MUST respond with a 400 (Bad Request) status
    // code to any HTTP/1.1 request message that lacks a Host header field
    // and to any request message that contains more than one Host header
    // field line or a Host header field with an invalid field value."
    if hosts.next().is_some() {
        return bad("more than one Host field");
    }
    if let Some(h) = host {
        if !valid_host(h) {
            return bad("invalid Host field");
        }
    } else if req.version() == Version::HTTP_11 {
        return bad("HTTP/1.1 request without a Host field");
    }
    if req.method() == Method::CONNECT {
        return Err((StatusCode::METHOD_NOT_ALLOWED, "CONNECT is not supported"));
    }
    // RFC 9112 3.2.4: the asterisk-form "is only used for a server-wide
    // OPTIONS request".
    if req.uri().path() == "*" && req.uri().authority().is_none() {
        return if req.method() == Method::OPTIONS {
            Ok(Verdict::OptionsAsterisk)
        } else {
            bad("the * target is only valid with OPTIONS")
        };
    }
    if http1 {
        if let Some(s) = req.uri().scheme_str() {
            if !s.eq_ignore_ascii_case("http") && !s.eq_ignore_ascii_case("https") {
                return bad("absolute-form target with a scheme other than http(s)");
            }
            if req.uri().host().is_none_or(str::is_empty) {
                return bad("absolute-form target without a host");
            }
        }
    }
    if !req.uri().path().starts_with('/') {
        return bad("request target must start with /");
    }
    Ok(Verdict::Forward)
}

fn valid_host(h: &HeaderValue) -> bool {
    let b = h.as_bytes();
    // An empty Host is allowed when the target URI has no host (RFC 9110
    // 7.2); anything else must be a valid authority without userinfo.
    b.is_empty()
        || plain_host(b)
        || (std::str::from_utf8(b).is_ok_and(|s| s.parse::<http::uri::Authority>().is_ok())
            && !b.contains(&b'@'))
}

/// The common Host: a name or IPv4 address of letters, digits, `-` and
/// `.`, with an optional port of 1 to 5 digits. Always a valid authority
/// without userinfo (a subset of what the full parse accepts, which every
/// other form still goes through), checked in one pass.
fn plain_host(b: &[u8]) -> bool {
    let (host, port) = match b.iter().position(|&c| c == b':') {
        Some(i) => (&b[..i], Some(&b[i + 1..])),
        None => (b, None),
    };
    !host.is_empty()
        && host
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || c == b'-' || c == b'.')
        && port.is_none_or(|p| (1..=5).contains(&p.len()) && p.iter().all(u8::is_ascii_digit))
}

/// RFC 9112 3.2.2: with an absolute-form target "the server MUST ignore
/// the received Host header field (if any) and instead use the host
/// information of the request-target": the app sees the target's
/// authority as `Host`.
pub(crate) fn normalize<B>(req: &mut Request<B>) {
    if matches!(req.version(), Version::HTTP_10 | Version::HTTP_11) {
        if let Some(a) = req.uri().authority() {
            if let Ok(v) = HeaderValue::from_str(a.as_str()) {
                req.headers_mut().insert(http::header::HOST, v);
            }
        }
    }
}

/// `raw` without the empty lines (CR and LF bytes) before its request
/// line, which hyper (httparse) skips as RFC 9112 2.2 allows.
pub(crate) fn skip_empty_lines(raw: &[u8]) -> &[u8] {
    &raw[raw
        .iter()
        .take_while(|&&b| b == b'\r' || b == b'\n')
        .count()..]
}

/// Checks the framing fields of an HTTP/1 head as received (hyper folds
/// them before the request is seen: with both Content-Length and
/// Transfer-Encoding it drops Content-Length, duplicates of one
/// Content-Length value are merged). `raw` starts with the head of the
/// request `method path`; anything else (pipelined bytes, leftovers) is not
/// judged.
pub(crate) fn check_framing(raw: &[u8], method: &Method) -> Result<(), Refusal> {
    // Lines end in CRLF or, as hyper also accepts, a bare LF; the head ends
    // at the first empty line. An incomplete head is not judged. Lines are
    // found with memchr and only the few that may name a framing field are
    // looked into: this runs on every HTTP/1 request, over every field.
    //
    // A head behind leading empty lines is judged like any other.
    let raw = skip_empty_lines(raw);
    let mut ends = memchr::memchr_iter(b'\n', raw);
    let line_at = |start: usize, end: usize| {
        let l = &raw[start..end];
        l.strip_suffix(b"\r").unwrap_or(l)
    };
    let Some(first_end) = ends.next() else {
        return Ok(());
    };
    let first = line_at(0, first_end);
    // Only judge the head hyper actually parsed for this request.
    let m = method.as_str().as_bytes();
    if first.len() <= m.len() || &first[..m.len()] != m || first[m.len()] != b' ' {
        return Ok(());
    }
    let (mut cl, mut te) = (0usize, false);
    let mut start = first_end + 1;
    for end in ends {
        let line = line_at(start, end);
        start = end + 1;
        if line.is_empty() {
            // RFC 9112 6.3: a request with both "ought to be handled as an
            // error"; nginx answers 400, and so do we (no smuggling through
            // a disagreeing upstream, ever).
            if te && cl > 0 {
                return Err((
                    StatusCode::BAD_REQUEST,
                    "both Content-Length and Transfer-Encoding",
                ));
            }
            if cl > 1 {
                return Err((
                    StatusCode::BAD_REQUEST,
                    "more than one Content-Length field",
                ));
            }
            return Ok(());
        }
        // The name (before the colon, spaces trimmed) is one of the two
        // only if the line holds "content-length" or "transfer-encoding"
        // from its first non-space byte: a cheap test on that byte first.
        let lead = line.iter().position(|b| !b.is_ascii_whitespace());
        if !matches!(lead.map(|i| line[i] | 0x20), Some(b'c' | b't')) {
            continue;
        }
        let Some(colon) = memchr::memchr(b':', line) else {
            continue;
        };
        let name = line[..colon].trim_ascii();
        if name.eq_ignore_ascii_case(b"content-length") {
            cl += 1;
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            te = true;
        }
    }
    // No empty line: the head is incomplete.
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(v: Version, target: &str, host: Option<&str>) -> Request<()> {
        let mut b = Request::get(target).version(v);
        if let Some(h) = host {
            b = b.header("host", h);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn host_rules() {
        assert_eq!(
            check(&req(Version::HTTP_11, "/", Some("a"))),
            Ok(Verdict::Forward)
        );
        assert_eq!(check(&req(Version::HTTP_11, "/", None)).unwrap_err().0, 400);
        assert_eq!(
            check(&req(Version::HTTP_10, "/", None)),
            Ok(Verdict::Forward)
        );
        assert_eq!(
            check(&req(Version::HTTP_11, "/", Some("a b")))
                .unwrap_err()
                .0,
            400
        );
        assert_eq!(
            check(&req(Version::HTTP_11, "/", Some("u@h")))
                .unwrap_err()
                .0,
            400
        );
        let mut two = req(Version::HTTP_11, "/", Some("a"));
        two.headers_mut().append("host", "b".parse().unwrap());
        assert_eq!(check(&two).unwrap_err().0, 400);
        assert_eq!(
            check(&req(Version::HTTP_2, "http://a/", None)),
            Ok(Verdict::Forward)
        );
    }

    /// The one-pass check accepts only hosts the full authority parse
    /// accepts, and the verdict of `valid_host` is the full parse's on
    /// every input (the fast path changes the cost, never the answer).
    #[test]
    fn plain_host_agrees_with_the_full_parse() {
        let full = |b: &[u8]| {
            b.is_empty()
                || (std::str::from_utf8(b).is_ok_and(|s| s.parse::<http::uri::Authority>().is_ok())
                    && !b.contains(&b'@'))
        };
        let mut cases: Vec<Vec<u8>> = [
            "a",
            "example.com",
            "example.com:8080",
            "127.0.0.1",
            "127.0.0.1:80",
            "a:0",
            "a:00000",
            "a:65535",
            "a:65536",
            "a:99999",
            "a:123456",
            "a:",
            ":80",
            ":",
            "a:b",
            "a::1",
            "[::1]",
            "[::1]:80",
            "a_b",
            "a~b",
            "-",
            ".",
            "a..b",
            "-a-.",
            "A-Z.0-9",
            "a b",
            "u@h",
            "u@h:1",
            "a/b",
            "a?b",
            "a#b",
            "a%20b",
            "ex\u{e9}.com",
            "a,b",
            "a;b",
            "a:80:80",
            "1.2.3.4:5",
        ]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect();
        // Every byte after a plain prefix, and in a port.
        for c in 0u8..=255 {
            cases.push(vec![b'a', c, b'b']);
            cases.push(vec![b'a', b':', b'1', c]);
        }
        for b in &cases {
            if plain_host(b) {
                assert!(
                    full(b),
                    "fast path accepts {:?}, the parse refuses",
                    String::from_utf8_lossy(b)
                );
            }
            if let Ok(v) = HeaderValue::from_bytes(b) {
                assert_eq!(
                    valid_host(&v),
                    full(b),
                    "verdict for {:?}",
                    String::from_utf8_lossy(b)
                );
            }
        }
        assert!(plain_host(b"example.com:8080") && plain_host(b"10.0.0.1"));
        assert!(!plain_host(b"[::1]:80") && !plain_host(b"a:") && !plain_host(b":80"));
    }

    #[test]
    fn asterisk_and_absolute_forms() {
        let mut o = req(Version::HTTP_11, "*", Some("a"));
        assert_eq!(check(&o).unwrap_err().0, 400);
        *o.method_mut() = Method::OPTIONS;
        assert_eq!(check(&o), Ok(Verdict::OptionsAsterisk));
        let mut abs = req(Version::HTTP_11, "http://target.test:81/x", Some("other"));
        assert_eq!(check(&abs), Ok(Verdict::Forward));
        normalize(&mut abs);
        assert_eq!(abs.headers()["host"], "target.test:81");
        let ftp = req(Version::HTTP_11, "ftp://t/x", Some("t"));
        assert_eq!(check(&ftp).unwrap_err().0, 400);
    }

    #[test]
    fn framing_fields() {
        let get = Method::GET;
        let post = Method::POST;
        assert!(check_framing(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", &get).is_ok());
        let both = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(check_framing(both, &post).is_err());
        let dup = b"POST / HTTP/1.1\r\nContent-Length: 5\r\ncontent-length: 5\r\n\r\nhello";
        assert!(check_framing(dup, &post).is_err());
        // Not this request's head: not judged.
        assert!(check_framing(both, &get).is_ok());
        assert!(check_framing(b"POST / HTTP/1.1\r\nContent-Length: 5\r\n", &post).is_ok());
        let bare_lf = b"POST / HTTP/1.1\nContent-Length: 5\nTransfer-Encoding: chunked\n\n";
        assert!(check_framing(bare_lf, &post).is_err());
        // Empty lines before the request line do not hide the head.
        for lead in [&b"\r\n"[..], b"\n", b"\r\n\r\n", b"\n\r\n\n"] {
            assert!(check_framing(&[lead, &both[..]].concat(), &post).is_err());
            assert!(check_framing(&[lead, &dup[..]].concat(), &post).is_err());
        }
    }

    use proptest::strategy::Strategy as _;

    /// The check as first written (split on LF, every line looked into):
    /// the reference the memchr version must agree with. One difference:
    /// what follows the last LF is not a line (the first version took an
    /// empty remainder, as in `...\n` cut there, for the blank line that
    /// ends a head, and judged a head that had not ended).
    fn check_framing_reference(raw: &[u8], method: &Method) -> Result<(), Refusal> {
        let bad = |why| Err((StatusCode::BAD_REQUEST, why));
        let Some(last) = raw.iter().rposition(|b| *b == b'\n') else {
            return Ok(());
        };
        let mut lines = raw[..last]
            .split(|b| *b == b'\n')
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
            .skip_while(|l| l.iter().all(|&b| b == b'\r'));
        let Some(first) = lines.next() else {
            return Ok(());
        };
        let m = method.as_str().as_bytes();
        if first.len() <= m.len() || &first[..m.len()] != m || first[m.len()] != b' ' {
            return Ok(());
        }
        let mut fields = Vec::new();
        let mut complete = false;
        for line in lines {
            if line.is_empty() {
                complete = true;
                break;
            }
            fields.push(line);
        }
        if !complete {
            return Ok(());
        }
        let (mut cl, mut te) = (0usize, false);
        for line in fields {
            let Some(colon) = memchr::memchr(b':', line) else {
                continue;
            };
            let name = line[..colon].trim_ascii();
            if name.eq_ignore_ascii_case(b"content-length") {
                cl += 1;
            } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
                te = true;
            }
        }
        if te && cl > 0 {
            return bad("both Content-Length and Transfer-Encoding");
        }
        if cl > 1 {
            return bad("more than one Content-Length field");
        }
        Ok(())
    }

    proptest::proptest! {
        /// Heads made of lines that name the framing fields in any case,
        /// with spaces, tabs, bare LFs, a missing colon or a missing end,
        /// judged exactly as the reference judges them.
        #[test]
        fn framing_check_matches_the_reference(
            lines in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::sample::select(vec![
                        "Content-Length: 5", "content-length:5", " CONTENT-LENGTH : 1",
                        "Transfer-Encoding: chunked", "\ttransfer-encoding:x", "Host: a",
                        "Content-Lengthx: 1", "content-length", "t: 1", "c", "",
                        "X-Content-Length: 2", "Cookie: content-length: 3",
                    ]).prop_map(String::from),
                    "[ -~\t]{0,20}",
                ],
                0..8,
            ),
            crlf in proptest::collection::vec(proptest::bool::ANY, 8),
            method in proptest::sample::select(vec![Method::GET, Method::POST]),
            first in proptest::sample::select(vec!["POST / HTTP/1.1", "GET / HTTP/1.1", "POST"]),
            end in proptest::bool::ANY,
            lead in proptest::sample::select(vec!["", "\r\n", "\n", "\r\n\n"]),
        ) {
            let mut raw = lead.as_bytes().to_vec();
            raw.extend_from_slice(first.as_bytes());
            raw.extend_from_slice(b"\r\n");
            for (i, l) in lines.iter().enumerate() {
                raw.extend_from_slice(l.as_bytes());
                raw.extend_from_slice(if crlf[i] { b"\r\n" } else { b"\n" });
            }
            if end {
                raw.extend_from_slice(b"\r\n");
            }
            proptest::prop_assert_eq!(
                check_framing(&raw, &method),
                check_framing_reference(&raw, &method)
            );
        }
    }
}
