//! CGI/WSGI environs from request heads (RFC 3875, PEP 3333).
//!
//! The app side of uwire turns each [`RequestHead`](crate::frame::RequestHead)
//! into the environment a CGI script or WSGI application expects, the way
//! uWSGI does for the classic uwsgi protocol. [`build`] is pure: no I/O, no
//! clock, no global state.
//!
//! ```
//! use uwire::environ::{build, EnvironConfig};
//! use uwire::frame::{HeaderBlock, HttpVersion, RequestHead};
//!
//! let head = RequestHead {
//!     method: "GET".into(),
//!     scheme: "http".into(),
//!     authority: "example.com".into(),
//!     path: "/app/caf%C3%A9".into(),
//!     query: Some("x=1".into()),
//!     version: HttpVersion::HTTP_11,
//!     headers: HeaderBlock::try_from_pairs([("Host", "example.com"), ("X-Id", "7")]).unwrap(),
//!     ..RequestHead::default()
//! };
//! let mut config = EnvironConfig::default();
//! config.script_name("/app");
//! let env = build(&head, &config).unwrap();
//! assert_eq!(env.get("SCRIPT_NAME"), Some(&b"/app"[..]));
//! assert_eq!(env.get("PATH_INFO"), Some("/café".as_bytes()));
//! assert_eq!(env.get("HTTP_X_ID"), Some(&b"7"[..]));
//! ```
//!
//! # Variables
//!
//! In this order (the order of [`Environ::iter`]):
//!
//! | variable | value |
//! |---|---|
//! | `REQUEST_METHOD` | the method as sent |
//! | `SCRIPT_NAME` | the mount prefix when the path is under it, else `""` |
//! | `PATH_INFO` | the rest of the path, percent-decoded |
//! | `QUERY_STRING` | the raw query, `""` when the target had no `?` |
//! | `REQUEST_URI` | raw path, then `?query` when there was a `?` |
//! | `REQUEST_SCHEME` | the head's scheme; `https`/`http` from `tls` when empty |
//! | `SERVER_PROTOCOL` | e.g. `HTTP/1.1` |
//! | `SERVER_NAME`, `SERVER_PORT` | see below; never empty |
//! | `SERVER_SOFTWARE` | [`EnvironConfig::server_software`] |
//! | `GATEWAY_INTERFACE` | `CGI/1.1` |
//! | `REMOTE_ADDR` | the client address (brackets around IPv6 removed), may be `""` |
//! | `REMOTE_PORT` | only when the client port is known (non-zero) |
//! | `HTTPS` | `on`, only when the client connection used TLS |
//! | `CONTENT_TYPE` | only when the request has a `Content-Type` header |
//! | `CONTENT_LENGTH` | only when the body length is known, see below |
//! | `HTTP_*` | one per distinct mapped header name, in order of first appearance |
//! | params | the proxy's extra variables, see below |
//!
//! # Decisions
//!
//! * **Mount prefix.** The path is compared with
//!   [`EnvironConfig::script_name`] segment by segment, each path segment
//!   percent-decoded (so `/%61pp` is under `/app`, but `/app%2Fx` is one
//!   segment and is not). The prefix matches only at a segment boundary:
//!   `/app`, `/app/` and `/app/x` are under `/app`, `/application` is not.
//!   When the path is under the prefix, `SCRIPT_NAME` is the prefix and
//!   `PATH_INFO` the decoded rest (`""` for exactly `/app`). When it is not,
//!   `SCRIPT_NAME` is `""` and `PATH_INFO` the whole decoded path: the
//!   request still reaches the application, which sees that it is outside
//!   its mount (uWSGI's behaviour for unmatched mounts).
//! * **Percent-decoding.** `PATH_INFO` is decoded (RFC 3875 4.1.5: "Unlike
//!   a URI path, the PATH_INFO is not URL-encoded"): every `%XX` with two
//!   hex digits becomes its byte, raw bytes are kept (so `%FF` yields byte
//!   0xFF, not UTF-8), `+` stays `+`, and a `%` not followed by two hex
//!   digits is kept literally. `%2F` becomes `/`, like nginx and uWSGI: the
//!   undecoded form is in `REQUEST_URI`. No dot-segment removal is done (the
//!   proxy owns URL normalisation). A NUL (raw, or `%00` in the path) is an
//!   error ([`EnvironError::NulInTarget`]).
//! * **Body length.** `CONTENT_LENGTH` is the head's `body_length` when
//!   present (the proxy frames the body, and RFC 3875 4.1.2 asks for the
//!   length "after the server has removed any transfer-codings"), else the
//!   value of the `Content-Length` header(s), written as a canonical
//!   decimal. It is absent when neither is known (chunked uploads), which
//!   PEP 3333 allows ("May be empty or absent"). `Content-Length` headers
//!   are validated even when `body_length` wins: a malformed or conflicting
//!   one, or one next to `Transfer-Encoding`, is an error.
//! * **Server name and port.** `SERVER_NAME` is the head's `server_name`,
//!   else the host part of its `authority` (brackets of an IPv6 literal
//!   kept, RFC 3875 4.1.14), else [`EnvironConfig::default_server_name`].
//!   `SERVER_PORT` is the head's `server_port` when non-zero, else the port
//!   of the authority, else [`EnvironConfig::default_server_port`], else 443
//!   for `https`/TLS and 80 otherwise.
//! * **Host.** When the request has no `Host` header but the head has an
//!   authority (HTTP/2 and HTTP/3 carry `:authority`), `HTTP_HOST` is set
//!   to the authority, so PEP 3333 URL reconstruction works.
//! * **HTTPS** follows the head's `tls` flag only (nginx's `$https`).
//! * **Repeated headers** are joined in order with `", "` (RFC 9110 5.3),
//!   `Cookie` with `"; "` (RFC 9113 8.2.3). Names that map to the same
//!   variable (`Foo-Bar`, `foo-bar`, and `foo_bar` when underscores are
//!   allowed) are merged the same way, never overwritten.
//! * **Params** (the proxy's `uwsgi_param` equivalents) come last. They are
//!   trusted: a param whose name equals a variable already present (exact,
//!   case-sensitive match) replaces its value in place, including computed
//!   variables such as `SCRIPT_NAME` or `HTTP_HOST` (nginx's `uwsgi_param
//!   HTTP_X` hides the header `X` the same way); other params are appended
//!   in order, and a repeated param name keeps its last value. The one
//!   exception is `CONTENT_LENGTH`: a param by that name is ignored, because
//!   the body length is a framing matter carried by `body_length` and the
//!   stream, never by a variable. The header defences below concern client
//!   headers only; params are not filtered.
//! * **Encoding.** Names and values are raw bytes. PEP 3333 environ values
//!   are "native strings" holding ISO-8859-1 code points; the consumer maps
//!   byte `0xNN` to `U+00NN` (what [`Environ::to_json_string`] does).
//!
//! # Defences against client headers
//!
//! Each rule is in `build.rs` or `path.rs` with the sentence of the RFC, CVE or server
//! manual that motivates it, and has a unit test:
//!
//! * header names with characters other than letters, digits and `-` are
//!   dropped (`_` is accepted when
//!   [`EnvironConfig::allow_underscore_headers`] is set);
//! * `Proxy` never becomes `HTTP_PROXY` (httpoxy);
//! * `Content-Length` and `Content-Type` only feed `CONTENT_LENGTH` and
//!   `CONTENT_TYPE`, never `HTTP_CONTENT_*`; no header can produce a
//!   variable without the `HTTP_` prefix;
//! * malformed, conflicting, or `Transfer-Encoding`-accompanied
//!   `Content-Length`, conflicting `Content-Type` and repeated `Host` are
//!   errors ([`EnvironError`]), which the runtime answers with 400.
//!
//! Errors are reported in this order: NUL in the target, then header
//! problems in header order, then `Content-Length` with
//! `Transfer-Encoding`, then [`EnvironError::TooLarge`].

pub(crate) mod build;
pub(crate) mod cgi;
mod config;
pub(crate) mod path;
#[cfg(test)]
mod tests;

use bytes::Bytes;

pub use build::{build, check};
pub use config::EnvironConfig;

/// Why a request head cannot be turned into an environ. The runtime answers
/// these with 400 (Bad Request).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EnvironError {
    /// The path or query holds a NUL byte, or the path holds `%00`.
    #[error("request target contains a NUL byte (raw or %00 in the path)")]
    NulInTarget,
    /// A `Content-Length` value is not a list of decimal numbers that fit in
    /// 64 bits.
    #[error("invalid Content-Length value {value:?}")]
    InvalidContentLength {
        /// The offending value (lossy UTF-8, cut to 64 bytes).
        value: String,
    },
    /// `Content-Length` values (in one header or across repeats) differ.
    #[error("conflicting Content-Length values {first} and {other}")]
    ConflictingContentLength {
        /// The first value seen.
        first: u64,
        /// A later, different value.
        other: u64,
    },
    /// Both `Content-Length` and `Transfer-Encoding` headers are present.
    #[error("request has both Content-Length and Transfer-Encoding headers")]
    ContentLengthWithTransferEncoding,
    /// Repeated `Content-Type` headers with different values.
    #[error("conflicting Content-Type headers")]
    ConflictingContentType,
    /// More than one `Host` header.
    #[error("more than one Host header")]
    DuplicateHost,
    /// The environ exceeds [`EnvironConfig::max_size`].
    #[error("environ of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Size of the environ (names plus values, in bytes).
        size: usize,
        /// The configured limit.
        limit: usize,
    },
}

impl EnvironError {
    /// The stable snake_case name used by the shared test vectors
    /// (`tests/vectors/environ.json`) and by every implementation.
    pub fn class(&self) -> &'static str {
        match self {
            EnvironError::NulInTarget => "nul_in_target",
            EnvironError::InvalidContentLength { .. } => "invalid_content_length",
            EnvironError::ConflictingContentLength { .. } => "conflicting_content_length",
            EnvironError::ContentLengthWithTransferEncoding => {
                "content_length_with_transfer_encoding"
            }
            EnvironError::ConflictingContentType => "conflicting_content_type",
            EnvironError::DuplicateHost => "duplicate_host",
            EnvironError::TooLarge { .. } => "environ_too_large",
        }
    }
}

/// A CGI/WSGI environ: an ordered list of `(name, value)` byte pairs with
/// unique names.
///
/// Values that are unchanged from the head (method, query, header values,
/// params) share the head's buffers; nothing is copied for them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Environ {
    vars: Vec<(Bytes, Bytes)>,
}

impl Environ {
    /// An empty environ.
    pub fn new() -> Environ {
        Environ::default()
    }

    pub(crate) fn from_vec(vars: Vec<(Bytes, Bytes)>) -> Environ {
        Environ { vars }
    }

    /// The value of variable `name` (exact, case-sensitive). A linear scan:
    /// environs are small.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.vars
            .iter()
            .find(|(n, _)| n[..] == *name.as_bytes())
            .map(|(_, v)| &v[..])
    }

    /// Sets `name` to `value`, replacing the value in place when the name is
    /// present (and returning the old value), appending otherwise.
    pub fn insert(&mut self, name: impl Into<Bytes>, value: impl Into<Bytes>) -> Option<Bytes> {
        let name = name.into();
        let value = value.into();
        match self.vars.iter_mut().find(|(n, _)| *n == name) {
            Some((_, v)) => Some(std::mem::replace(v, value)),
            None => {
                self.vars.push((name, value));
                None
            }
        }
    }

    /// Iterates `(name, value)` pairs in order.
    pub fn iter(&self) -> Iter<'_> {
        Iter {
            inner: self.vars.iter(),
        }
    }

    /// Number of variables.
    pub fn len(&self) -> usize {
        self.vars.len()
    }

    /// Whether there are no variables.
    pub fn is_empty(&self) -> bool {
        self.vars.is_empty()
    }

    /// The pairs as a slice.
    pub fn as_slice(&self) -> &[(Bytes, Bytes)] {
        &self.vars
    }

    /// The pairs, consuming the environ.
    pub fn into_vec(self) -> Vec<(Bytes, Bytes)> {
        self.vars
    }

    /// Sum of the byte lengths of every name and value.
    pub fn size(&self) -> usize {
        self.vars.iter().map(|(n, v)| n.len() + v.len()).sum()
    }

    /// The environ as one JSON object, keys in environ order.
    ///
    /// Bytes are mapped the PEP 3333 way: byte `0xNN` is the code point
    /// `U+00NN` (ISO-8859-1), so invalid UTF-8 never fails and decoding the
    /// JSON and encoding each string as Latin-1 gives back the exact bytes.
    /// `"`, `\` and control characters are escaped, and every byte from
    /// 0x7F up is written as a `\u00XX` escape, so the output is ASCII.
    pub fn to_json_string(&self) -> String {
        let mut out = String::with_capacity(2 + self.size() + 6 * self.len());
        out.push('{');
        for (i, (n, v)) in self.vars.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            push_json_latin1(&mut out, n);
            out.push(':');
            push_json_latin1(&mut out, v);
        }
        out.push('}');
        out
    }
}

/// Appends `bytes` as a JSON string, each byte mapped to `U+00XX`.
fn push_json_latin1(out: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    for &b in bytes {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            0x20..=0x7e => out.push(b as char),
            _ => {
                out.push_str("\\u00");
                out.push(HEX[(b >> 4) as usize] as char);
                out.push(HEX[(b & 0xf) as usize] as char);
            }
        }
    }
    out.push('"');
}

impl<'a> IntoIterator for &'a Environ {
    type Item = (&'a [u8], &'a [u8]);
    type IntoIter = Iter<'a>;
    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

/// Iterator over the `(name, value)` pairs of an [`Environ`].
#[derive(Debug, Clone)]
pub struct Iter<'a> {
    inner: std::slice::Iter<'a, (Bytes, Bytes)>,
}

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        self.inner.next().map(|(n, v)| (&n[..], &v[..]))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.size_hint()
    }
}

impl ExactSizeIterator for Iter<'_> {}

impl DoubleEndedIterator for Iter<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.inner.next_back().map(|(n, v)| (&n[..], &v[..]))
    }
}
