//! CGI vars from nginx to the common [`RequestHead`]
//! ([`UwsgiRequest::to_request_head`]).

use bytes::Bytes;
use memchr::memchr;

use super::packet::UwsgiRequest;
use super::util::{decodes_to, is_clean, is_token, parse_u64, percent_decode, percent_encode_path};
use super::{lossy, UwsgiError};
use crate::environ::cgi::is_reserved_var;
use crate::frame::{HeaderBlock, HeaderBlockBuilder, HttpVersion, RequestHead};

/// Vars that become fields of the head rather than parameters, in the
/// order of the array `to_request_head` fills.
const CONSUMED: [&[u8]; 14] = [
    b"REQUEST_METHOD",
    b"REQUEST_URI",
    b"PATH_INFO",
    b"QUERY_STRING",
    b"SERVER_PROTOCOL",
    b"REQUEST_SCHEME",
    b"UWSGI_SCHEME",
    b"HTTPS",
    b"REMOTE_ADDR",
    b"REMOTE_PORT",
    b"SERVER_NAME",
    b"SERVER_PORT",
    b"CONTENT_TYPE",
    b"CONTENT_LENGTH",
];

/// Which of [`CONSUMED`] `key` is, if any. Length, first and last byte
/// pick the candidate (one jump table, where comparing with each name in
/// turn cost about 30 instructions a var), then one comparison confirms it
/// (with a constant index in each arm, the compiler compares with a name
/// of known length inline; with the index looked up after the match, it
/// called `memcmp`).
#[inline]
fn consumed(key: &[u8]) -> Option<usize> {
    let (&first, &last) = (key.first()?, key.last()?);
    Some(match (key.len(), first, last) {
        (14, b'R', b'D') if key == CONSUMED[0] => 0,
        (11, b'R', b'I') if key == CONSUMED[1] => 1,
        (9, b'P', b'O') if key == CONSUMED[2] => 2,
        (12, b'Q', b'G') if key == CONSUMED[3] => 3,
        (15, b'S', b'L') if key == CONSUMED[4] => 4,
        (14, b'R', b'E') if key == CONSUMED[5] => 5,
        (12, b'U', b'E') if key == CONSUMED[6] => 6,
        (5, b'H', b'S') if key == CONSUMED[7] => 7,
        (11, b'R', b'R') if key == CONSUMED[8] => 8,
        (11, b'R', b'T') if key == CONSUMED[9] => 9,
        (11, b'S', b'E') if key == CONSUMED[10] => 10,
        (11, b'S', b'T') if key == CONSUMED[11] => 11,
        (12, b'C', b'E') if key == CONSUMED[12] => 12,
        (14, b'C', b'H') if key == CONSUMED[13] => 13,
        _ => return None,
    })
}

/// `HTTP_USER_AGENT` → `User-Agent`: the suffix after `HTTP_`, each
/// `_`-separated word capitalised, joined with `-`. `None` when the suffix
/// is empty or holds a byte other than ASCII letters, digits and `_` (the
/// names the environ builder would drop as a header too).
#[cfg(test)]
fn header_name(key: &[u8]) -> Option<Bytes> {
    let suffix = header_suffix(key)?;
    let mut name = vec![0; suffix.len()];
    write_header_name(suffix, &mut name);
    Some(Bytes::from(name))
}

/// The part of an `HTTP_*` key that names a header field: non-empty, only
/// ASCII letters, digits and `_`. `None` for any other key.
fn header_suffix(key: &[u8]) -> Option<&[u8]> {
    let suffix = key.strip_prefix(b"HTTP_")?;
    let ok = !suffix.is_empty()
        && suffix
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'_');
    ok.then_some(suffix)
}

/// Writes the field name of an `HTTP_*` key's suffix into `out` (of the
/// same length): `_` becomes `-`, each word capitalised.
fn write_header_name(suffix: &[u8], out: &mut [u8]) {
    let mut start = true;
    for (o, &b) in out.iter_mut().zip(suffix) {
        *o = match b {
            b'_' => b'-',
            _ if start => b.to_ascii_uppercase(),
            _ => b.to_ascii_lowercase(),
        };
        start = b == b'_';
    }
}

/// Appends the header field of an `HTTP_*` var to `headers`, its name
/// converted on the stack (no allocation for names up to 64 bytes).
fn push_header(headers: &mut HeaderBlockBuilder, suffix: &[u8], value: &[u8]) {
    let mut stack = [0u8; 64];
    let mut heap = Vec::new();
    let name = match stack.get_mut(..suffix.len()) {
        Some(name) => name,
        None => {
            heap.resize(suffix.len(), 0);
            &mut heap[..]
        }
    };
    write_header_name(suffix, name);
    // Letters, digits and `-` (a token) and a value checked by the caller.
    headers.push_checked(name, value);
}

/// `SERVER_PROTOCOL` to a version; `UNSPECIFIED` when unknown.
fn version(v: &[u8]) -> HttpVersion {
    match v {
        b"HTTP/1.1" => HttpVersion::HTTP_11,
        b"HTTP/1.0" => HttpVersion::HTTP_10,
        b"HTTP/2.0" | b"HTTP/2" => HttpVersion::HTTP_2,
        b"HTTP/3.0" | b"HTTP/3" => HttpVersion::HTTP_3,
        b"HTTP/0.9" => HttpVersion::HTTP_09,
        _ => HttpVersion::UNSPECIFIED,
    }
}

fn port(name: &'static str, v: Option<&[u8]>) -> Result<u16, UwsgiError> {
    match v {
        None | Some([]) => Ok(0),
        Some(v) => (v.len() <= 5)
            .then(|| parse_u64(v))
            .flatten()
            .and_then(|n| u16::try_from(n).ok())
            .ok_or_else(|| UwsgiError::InvalidPort {
                name,
                value: lossy(v),
            }),
    }
}

impl UwsgiRequest {
    /// Turns the CGI vars nginx sent into a [`RequestHead`], so the environ
    /// builder ([`crate::environ::build`]) produces what the application
    /// would see under uWSGI.
    ///
    /// Repeated vars: the last one wins (uWSGI builds a dictionary), except
    /// `HTTP_*` vars, which become repeated headers (joined by the environ
    /// builder) and params, kept in order (the builder keeps the last).
    ///
    /// | var | head |
    /// |---|---|
    /// | `REQUEST_METHOD` | `method`; required, a token ([`UwsgiError::InvalidMethod`]) |
    /// | `REQUEST_URI`, `PATH_INFO` | `path`, see below |
    /// | `QUERY_STRING` | `query`: `Some` when non-empty; `Some("")` when empty and `REQUEST_URI` ends in a bare `?`; `None` otherwise. Without the var, the query of `REQUEST_URI` |
    /// | `SERVER_PROTOCOL` | `version` (`HTTP/1.0`, `HTTP/1.1`, `HTTP/2.0`, `HTTP/3.0`, `HTTP/0.9`; else unspecified) |
    /// | `UWSGI_SCHEME`, else `REQUEST_SCHEME` | `scheme`; when both are empty, `https` if `tls`, else `http` |
    /// | `HTTPS` | `tls` when `on` (any case) or `1`; `tls` is also set when the scheme is `https` |
    /// | `HTTP_HOST` | `authority` (and a `Host` header) |
    /// | `REMOTE_ADDR`, `REMOTE_PORT` | `client_addr`, `client_port` |
    /// | `SERVER_NAME`, `SERVER_PORT` | `server_name`, `server_port` |
    /// | `CONTENT_TYPE` | a leading `Content-Type` header, when non-empty |
    /// | `CONTENT_LENGTH` | `body_length`: `Some` when non-empty, `None` when absent or empty (nginx sends it empty without a body) |
    /// | `HTTP_*` | headers in var order, names rebuilt: `HTTP_USER_AGENT` → `User-Agent` |
    /// | anything else | `params` in var order (`DOCUMENT_ROOT`, `SCRIPT_NAME`, custom `uwsgi_param`s, uWSGI magic vars such as `UWSGI_SCRIPT`, which mean nothing to uwire) |
    ///
    /// Ports must be empty (0, unknown) or decimal 0..=65535
    /// ([`UwsgiError::InvalidPort`]).
    ///
    /// # Path
    ///
    /// nginx sends `REQUEST_URI`, the target as the client wrote it
    /// (percent-encoded, dot segments and `//` as sent), and `PATH_INFO`,
    /// nginx's `$document_uri`: decoded, normalised, possibly rewritten,
    /// and the path nginx matched its `location`s and access rules against.
    /// The head's path is:
    ///
    /// 1. the raw path of `REQUEST_URI` (before the first `?`) when it
    ///    percent-decodes to exactly `PATH_INFO`, or when there is no
    ///    `PATH_INFO`: the common case keeps the client's exact bytes
    ///    (`%2F` stays distinguishable from `/`);
    /// 2. otherwise `PATH_INFO` percent-encoded (controls, space, `%`, `?`,
    ///    `#`, DEL and non-ASCII bytes), so the environ's `PATH_INFO` is
    ///    nginx's byte for byte: after a `rewrite`, dot-segment removal,
    ///    slash merging, or a `uwsgi_param PATH_INFO $1` that strips a
    ///    `SCRIPT_NAME`, the application routes on the path nginx
    ///    authorised, never on a different reading of the raw target;
    /// 3. `/` when neither var gives a path.
    ///
    /// Vars whose value the environ builder would compute differently from
    /// the head are added to `params` (which the builder applies over its
    /// own values): `REQUEST_URI` when it is not `path` + `?query`,
    /// `PATH_INFO` when it is empty (a path cannot be), and `SERVER_PROTOCOL`
    /// when not the canonical spelling (`HTTP/2.0`).
    ///
    /// # What the environ builder's defences still do
    ///
    /// nginx has already mapped header names to `HTTP_*` (upper case, `-`
    /// → `_`), so the spoofing defences that look at header names cannot
    /// see the original: `X-User` and `X_User` (with nginx's
    /// `underscores_in_headers on`) both arrive as `HTTP_X_USER` and both
    /// become `X-User`. nginx drops names with `_` by default, which is the
    /// defence in that configuration. What still applies: `HTTP_PROXY` is
    /// dropped (above); `HTTP_CONTENT_*` never shadow `CONTENT_*`; names
    /// with bytes other than letters, digits and `_` are dropped; a repeated
    /// `HTTP_HOST` is refused by the builder (`duplicate_host`); and the
    /// builder refuses NUL in the target (`%00`).
    ///
    /// # Errors
    ///
    /// Checked var by var in order: a NUL, CR or LF in any value except
    /// `PATH_INFO`'s (which is re-encoded) is [`UwsgiError::InvalidValue`];
    /// a name that is not an RFC 9110 token, unless it starts with `HTTP_`
    /// (those are dropped), is [`UwsgiError::InvalidVarName`]. Then
    /// `REQUEST_METHOD`, `REMOTE_PORT`, `SERVER_PORT` and `CONTENT_LENGTH`.
    pub fn to_request_head(&self) -> Result<RequestHead, UwsgiError> {
        let mut last: [Option<&[u8]>; CONSUMED.len()] = [None; CONSUMED.len()];
        let mut params = HeaderBlock::builder();
        let vars = self.vars();
        let mut http: Vec<(&[u8], &[u8])> = Vec::with_capacity(vars.len());

        for (k, v) in vars {
            if k != b"PATH_INFO" && !is_clean(v) {
                return Err(UwsgiError::InvalidValue {
                    name: lossy(k),
                    detail: "value contains NUL, CR or LF",
                });
            }
            if let Some(i) = consumed(k) {
                last[i] = Some(v);
            } else if k.starts_with(b"HTTP_") {
                // Never a header (`crate::environ::cgi::RESERVED`):
                //
                // * `HTTP_PROXY`: httpoxy (CVE-2016-5385 and siblings).
                //   nginx maps a client's `Proxy` header to `HTTP_PROXY`
                //   like any other; turned into a `Proxy` header it would
                //   be dropped again by the environ builder, but it is
                //   dropped here already so no consumer of the head sees it.
                // * `HTTP_CONTENT_LENGTH`, `HTTP_CONTENT_TYPE`: nginx sends
                //   the client's headers as these next to its own
                //   `CONTENT_LENGTH`/`CONTENT_TYPE` params. Framing follows
                //   `CONTENT_LENGTH` only (as uWSGI does) and the type
                //   follows `CONTENT_TYPE`; a second copy could only
                //   contradict them.
                if is_reserved_var(k) {
                    continue;
                }
                if let Some(suffix) = header_suffix(k) {
                    http.push((suffix, v));
                }
            } else if is_token(k) {
                // A key fits a name (at most 65,535 bytes) and the value
                // was checked above.
                params.push_checked(k, v);
            } else {
                return Err(UwsgiError::InvalidVarName { name: lossy(k) });
            }
        }
        let [method, req_uri, path_info, query_string, protocol, request_scheme, uwsgi_scheme, https, remote_addr, remote_port, server_name, server_port, content_type, _] =
            last;

        let method = method
            .filter(|m| is_token(m))
            .map(|m| self.share(m))
            .ok_or(UwsgiError::InvalidMethod)?;
        let client_port = port("REMOTE_PORT", remote_port)?;
        let server_port = port("SERVER_PORT", server_port)?;
        let body_length = self.content_length();

        // Target.
        let uri = req_uri.filter(|u| !u.is_empty());
        let (raw_path, raw_query) = match uri {
            Some(u) => match memchr(b'?', u) {
                Some(q) => (Some(self.share(&u[..q])), Some(self.share(&u[q + 1..]))),
                None => (Some(self.share(u)), None),
            },
            None => (None, None),
        };
        let raw_path = raw_path.filter(|p| !p.is_empty());
        // The same defence as a uwire target (`environ`'s `check_target`): a
        // path that decodes to a NUL truncates it for C-based consumers.
        // PATH_INFO's own NUL is caught there, once it is re-encoded.
        if raw_path
            .as_ref()
            .is_some_and(|p| memchr(0, &percent_decode(p)).is_some())
        {
            return Err(UwsgiError::InvalidValue {
                name: "REQUEST_URI".into(),
                detail: "the path decodes to a NUL",
            });
        }
        let slash = || Bytes::from_static(b"/");
        let mut path_info_param = None;
        let path = match path_info {
            None => raw_path.unwrap_or_else(slash),
            Some(pi) if pi.is_empty() => {
                path_info_param = Some(pi);
                raw_path.unwrap_or_else(slash)
            }
            Some(pi) => match raw_path {
                Some(raw) if decodes_to(&raw, pi) => raw,
                _ => percent_encode_path(pi),
            },
        };
        let query = match query_string {
            Some(qs) if !qs.is_empty() => Some(self.share(qs)),
            Some(_) => raw_query.filter(|q| q.is_empty()),
            None => raw_query,
        };

        let version = protocol.map_or(HttpVersion::UNSPECIFIED, version);
        let scheme = uwsgi_scheme
            .filter(|s| !s.is_empty())
            .or(request_scheme.filter(|s| !s.is_empty()))
            .map(|s| self.share(s));
        let tls = https.is_some_and(|h| h.eq_ignore_ascii_case(b"on") || h == b"1")
            || scheme
                .as_ref()
                .is_some_and(|s| s.eq_ignore_ascii_case(b"https"));
        let scheme =
            scheme.unwrap_or_else(|| Bytes::from_static(if tls { b"https" } else { b"http" }));

        let content_type = content_type.filter(|c| !c.is_empty());
        // One allocation for the block: 6 bytes of lengths per field, names
        // as long as their keys' suffixes.
        let size = content_type.map_or(0, |ct| 18 + ct.len())
            + http
                .iter()
                .map(|(n, v)| 6 + n.len() + v.len())
                .sum::<usize>();
        let mut headers = HeaderBlock::builder_with_capacity(size);
        if let Some(ct) = content_type {
            headers.push_checked(b"Content-Type", ct);
        }
        let mut authority = Bytes::new();
        for (suffix, value) in &http {
            if suffix.eq_ignore_ascii_case(b"HOST") {
                authority = self.share(value);
            }
            push_header(&mut headers, suffix, value);
        }

        if let Some(uri) = uri {
            let rebuilt = path.len() + query.as_ref().map_or(0, |q| q.len() + 1);
            let same = uri.len() == rebuilt
                && uri.starts_with(&path)
                && match &query {
                    Some(q) => uri[path.len()] == b'?' && uri.ends_with(q),
                    None => true,
                };
            if !same {
                params.push_checked(b"REQUEST_URI", uri);
            }
        }
        if let Some(pi) = path_info_param {
            params.push_checked(b"PATH_INFO", pi);
        }
        if let Some(p) = protocol.filter(|p| !p.is_empty()) {
            if p != version.as_protocol_str().as_bytes() {
                params.push_checked(b"SERVER_PROTOCOL", p);
            }
        }

        Ok(RequestHead {
            method,
            scheme,
            authority,
            path,
            query,
            version,
            headers: headers.finish(),
            client_addr: remote_addr.map(|a| self.share(a)).unwrap_or_default(),
            client_port,
            server_name: server_name.map(|n| self.share(n)).unwrap_or_default(),
            server_port,
            tls,
            params: params.finish(),
            body_length,
            // Whether the connection may become a tunnel is the server's
            // call (it owns the socket), not the packet's.
            upgrade: None,
        })
    }
}

impl TryFrom<&UwsgiRequest> for RequestHead {
    type Error = UwsgiError;

    /// [`UwsgiRequest::to_request_head`].
    fn try_from(req: &UwsgiRequest) -> Result<RequestHead, UwsgiError> {
        req.to_request_head()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Names up to 64 bytes are converted on the stack, longer ones on the
    /// heap: both give the same field.
    #[test]
    fn push_header_stack_limit_edge() {
        for len in [1, 63, 64, 65, 300] {
            let key = format!("HTTP_{}", "AB_C".repeat(len).get(..len).unwrap());
            let suffix = header_suffix(key.as_bytes()).unwrap();
            let mut b = HeaderBlock::builder();
            push_header(&mut b, suffix, b"v");
            let block = b.finish();
            let (name, value) = block.iter().next().unwrap();
            assert_eq!(name, &header_name(key.as_bytes()).unwrap()[..], "{len}");
            assert_eq!(name.len(), len);
            assert_eq!(value, b"v");
        }
    }

    #[test]
    fn header_names() {
        let n = |k: &[u8]| header_name(k).map(|b| String::from_utf8(b.to_vec()).unwrap());
        assert_eq!(n(b"HTTP_USER_AGENT").as_deref(), Some("User-Agent"));
        assert_eq!(n(b"HTTP_HOST").as_deref(), Some("Host"));
        assert_eq!(
            n(b"HTTP_X_FORWARDED_FOR").as_deref(),
            Some("X-Forwarded-For")
        );
        assert_eq!(n(b"HTTP_DNT").as_deref(), Some("Dnt"));
        assert_eq!(n(b"HTTP_X__Y").as_deref(), Some("X--Y"));
        assert_eq!(n(b"HTTP_x_y2").as_deref(), Some("X-Y2"));
        assert_eq!(n(b"HTTP_"), None);
        assert_eq!(n(b"HTTP_X.Y"), None);
        assert_eq!(n(b"HTTP_X-Y"), None);
        assert_eq!(n(b"HTTPX"), None);
    }

    /// Every name [`consumed`] knows maps to its own index, and names
    /// that share a length and both end bytes with one of them do not.
    #[test]
    fn consumed_vars() {
        for (i, name) in CONSUMED.iter().enumerate() {
            assert_eq!(consumed(name), Some(i), "{}", lossy(name));
            let mut near = name.to_vec();
            near[1] ^= 0x20;
            assert_eq!(consumed(&near), None, "{}", lossy(&near));
        }
        for other in [
            &b""[..],
            b"H",
            b"HTTP_HOST",
            b"DOCUMENT_ROOT",
            b"REMOTE_USER",
            b"SERVER_SOFTWARE",
            b"request_method",
        ] {
            assert_eq!(consumed(other), None, "{}", lossy(other));
        }
    }

    #[test]
    fn ports() {
        let b = |s: &'static str| Bytes::from_static(s.as_bytes());
        assert_eq!(port("P", None), Ok(0));
        assert_eq!(port("P", Some(&b(""))), Ok(0));
        assert_eq!(port("P", Some(&b("65535"))), Ok(65535));
        assert_eq!(port("P", Some(&b("080"))), Ok(80));
        assert_eq!(port("P", Some(&b("00000"))), Ok(0));
        assert_eq!(port("P", Some(&b("7"))), Ok(7));
        for bad in [
            "65536", "99999", "-1", "+80", "x", " 80", "80 ", "8:0", "000080", "1e3", "٨٠",
        ] {
            assert_eq!(
                port("P", Some(&b(bad))).unwrap_err().class(),
                "invalid_port",
                "{bad}"
            );
        }
    }
}
