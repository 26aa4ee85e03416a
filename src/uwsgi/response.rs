//! Responses on a classic uwsgi connection: raw HTTP/1 heads.
//!
//! * [`encode_response_head`]: the uwire runtime answering nginx.
//! * [`ResponseHeadParser`]: the uwire proxy reading a real uWSGI, which
//!   answers with an HTTP status line (`HTTP/1.1 200 OK`) or, like a CGI
//!   script, with header fields only and an optional `Status:` field.

use bytes::{BufMut, Bytes, BytesMut};
use memchr::memchr;
use nom::bytes::complete::{tag, take_while, take_while1, take_while_m_n};
use nom::combinator::{all_consuming, opt, rest};
use nom::sequence::preceded;
use nom::{IResult, Parser};

use super::util::{is_clean, is_tchar, parse_u64};
use super::{UwsgiError, UwsgiLimits};
use crate::frame::{HeaderBlock, HttpVersion, ResponseHead};

/// The standard reason phrase of `status` (RFC 9110 section 15), if any.
fn reason_phrase(status: u16) -> Option<&'static str> {
    Some(match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        203 => "Non-Authoritative Information",
        204 => "No Content",
        205 => "Reset Content",
        206 => "Partial Content",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        421 => "Misdirected Request",
        422 => "Unprocessable Content",
        426 => "Upgrade Required",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        451 => "Unavailable For Legal Reasons",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => return None,
    })
}

/// Writes `HTTP/1.1 <status> <reason>\r\n`, one `Name: value\r\n` line per
/// header (names and order as in the head), and the blank line. The body
/// follows raw; the runtime delimits it by closing the connection, so the
/// application's `Content-Length` (if any) is kept and nothing is added.
///
/// The reason is the head's, else the standard phrase, else empty
/// (`HTTP/1.1 599 \r\n`, which nginx accepts).
///
/// # Errors
///
/// [`UwsgiError::InvalidResponseHead`], with nothing written, for a status
/// outside 100..=999, an interim status other than 101 (nginx's uwsgi
/// module would take `100 Continue` for the final response; 101 is how
/// WebSocket upgrades pass through it), or a reason holding NUL, CR or LF.
/// Header names and values are valid by construction of [`HeaderBlock`].
pub fn encode_response_head<B: BufMut>(head: &ResponseHead, dst: &mut B) -> Result<(), UwsgiError> {
    let invalid = |detail| Err(UwsgiError::InvalidResponseHead { detail });
    if !(100..=999).contains(&head.status) {
        return invalid("status outside 100..=999");
    }
    if head.is_informational() && head.status != 101 {
        return invalid("interim (1xx) status other than 101 cannot be sent over uwsgi");
    }
    let reason: &[u8] = match &head.reason {
        Some(r) if !is_clean(r) => return invalid("reason phrase contains NUL, CR or LF"),
        Some(r) => r,
        None => reason_phrase(head.status).unwrap_or("").as_bytes(),
    };
    dst.put_slice(b"HTTP/1.1 ");
    dst.put_slice(head.status.to_string().as_bytes());
    dst.put_u8(b' ');
    dst.put_slice(reason);
    dst.put_slice(b"\r\n");
    for (name, value) in head.headers.iter() {
        dst.put_slice(name);
        dst.put_slice(b": ");
        dst.put_slice(value);
        dst.put_slice(b"\r\n");
    }
    dst.put_slice(b"\r\n");
    Ok(())
}

/// How the body after a response head is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// Exactly this many bytes (`Content-Length`).
    Length(u64),
    /// A chunked transfer coding: feed the bytes to a [`ChunkedDecoder`](super::ChunkedDecoder).
    Chunked,
    /// Everything until the server closes the connection (uwsgi's usual
    /// framing; also a `Transfer-Encoding` whose last coding is not
    /// `chunked`).
    Close,
    /// No body: a 204 or 304, or the answer to a HEAD request.
    Empty,
    /// No body, and another head follows (an interim 1xx other than 101):
    /// parse again.
    Interim,
    /// 101 Switching Protocols: the connection now carries another protocol
    /// in both directions.
    Upgrade,
}

/// A parsed response head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UwsgiResponse {
    /// Status, reason and header fields (raw names, in order; a CGI
    /// `Status` field is consumed, not kept).
    pub head: ResponseHead,
    /// The version of the status line; `None` for a CGI-style head.
    pub version: Option<HttpVersion>,
    /// How the body is delimited.
    pub body: BodyKind,
}

/// Reads a response head from a real uWSGI (or any uwsgi server),
/// incrementally.
///
/// Accepted forms (lines end in CRLF or a bare LF; the head ends at the
/// first empty line):
///
/// * **status line**: `HTTP/1.0` or `HTTP/1.1`, a space, three digits
///   (100..=999), then optionally a space and a reason phrase;
/// * **CGI style** (RFC 3875 6.2): header fields only. The status comes
///   from a `Status: 404 Not Found` field (three digits, optional reason),
///   which is removed from the headers; without it, a `Location` field
///   means 302 (the client redirect of RFC 3875 6.2.3; uwire does no local
///   redirects), anything else 200. A CGI head needs at least one field. In
///   the status-line form a `Status` field is an ordinary header.
///
/// Header lines are `name: value` with a token name, no space before the
/// colon, optional whitespace around the value; obsolete line folding,
/// NUL and bare CR are refused ([`UwsgiError::InvalidResponseHead`]).
///
/// Framing (RFC 9112 6.3), checked in this order:
/// `Content-Length` must be a decimal or a list of identical decimals
/// (across repeats too); `Transfer-Encoding` together with
/// `Content-Length`, or in an HTTP/1.0 response, is refused
/// ([`UwsgiError::InvalidResponseFraming`]: a smuggling vector for a
/// proxy). Then: 101 → [`BodyKind::Upgrade`], other 1xx →
/// [`BodyKind::Interim`], 204, 304 or a HEAD request → [`BodyKind::Empty`],
/// `Transfer-Encoding` ending in `chunked` → [`BodyKind::Chunked`], other
/// `Transfer-Encoding` → [`BodyKind::Close`], `Content-Length` →
/// [`BodyKind::Length`], else [`BodyKind::Close`]. Headers are returned
/// as received, framing fields included: a caller that re-frames the body
/// drops them.
///
/// The head, blank line included, may not exceed
/// [`UwsgiLimits::max_response_head`]
/// ([`UwsgiError::ResponseHeadTooLarge`], reported as soon as the
/// buffered bytes prove it). Each byte is scanned once however the input
/// is split.
#[derive(Debug, Clone)]
pub struct ResponseHeadParser {
    max_head: usize,
    head_request: bool,
    /// Start of the first line not yet known to be complete.
    scanned: usize,
}

type Res<'a, T> = IResult<&'a [u8], T>;
/// `(minor version digit, status digits, reason)`.
type StatusLine<'a> = (&'a [u8], &'a [u8], Option<&'a [u8]>);

fn status_line(i: &[u8]) -> Res<'_, StatusLine<'_>> {
    all_consuming((
        preceded(
            tag(&b"HTTP/1."[..]),
            take_while_m_n(1, 1, |b: u8| b == b'0' || b == b'1'),
        ),
        preceded(
            tag(&b" "[..]),
            take_while_m_n(3, 3, |b: u8| b.is_ascii_digit()),
        ),
        opt(preceded(tag(&b" "[..]), rest)),
    ))
    .parse(i)
}

fn header_line(i: &[u8]) -> Res<'_, (&[u8], &[u8])> {
    let ows = |b: u8| b == b' ' || b == b'\t';
    (
        take_while1(is_tchar),
        preceded((tag(&b":"[..]), take_while(ows)), rest),
    )
        .parse(i)
}

/// A `Status` field value: three digits, optionally a space and a reason.
fn status_field(i: &[u8]) -> Res<'_, (&[u8], Option<&[u8]>)> {
    all_consuming((
        take_while_m_n(3, 3, |b: u8| b.is_ascii_digit()),
        opt(preceded(tag(&b" "[..]), rest)),
    ))
    .parse(i)
}

fn trim_ows_end(mut s: &[u8]) -> &[u8] {
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

fn status_code(digits: &[u8]) -> Result<u16, UwsgiError> {
    match parse_u64(digits) {
        Some(n @ 100..=999) => Ok(n as u16),
        _ => Err(UwsgiError::InvalidResponseHead {
            detail: "status code outside 100..=999",
        }),
    }
}

impl ResponseHeadParser {
    /// A parser for the answer to a request other than HEAD.
    pub fn new(limits: &UwsgiLimits) -> ResponseHeadParser {
        ResponseHeadParser {
            max_head: limits.max_response_head,
            head_request: false,
            scanned: 0,
        }
    }

    /// Marks the request as HEAD: the final response has no body, whatever
    /// its framing fields say.
    pub fn head_request(&mut self, yes: bool) -> &mut Self {
        self.head_request = yes;
        self
    }

    /// Parses a head from the start of `src`: `Ok(None)` until the blank
    /// line is in. On success the head (blank line included) is consumed
    /// and what follows in `src` is the body. After a [`BodyKind::Interim`]
    /// head, call again for the next one.
    ///
    /// # Errors
    ///
    /// [`UwsgiError::ResponseHeadTooLarge`],
    /// [`UwsgiError::InvalidResponseHead`],
    /// [`UwsgiError::InvalidResponseFraming`].
    pub fn parse(&mut self, src: &mut BytesMut) -> Result<Option<UwsgiResponse>, UwsgiError> {
        loop {
            let Some(i) = memchr(b'\n', &src[self.scanned..]) else {
                if src.len() >= self.max_head {
                    self.scanned = 0;
                    return Err(UwsgiError::ResponseHeadTooLarge {
                        limit: self.max_head,
                    });
                }
                return Ok(None);
            };
            let line_start = self.scanned;
            let end = line_start + i + 1;
            if end > self.max_head {
                self.scanned = 0;
                return Err(UwsgiError::ResponseHeadTooLarge {
                    limit: self.max_head,
                });
            }
            self.scanned = end;
            if matches!(&src[line_start..end], b"\n" | b"\r\n") {
                self.scanned = 0;
                let head = src.split_to(end).freeze();
                return self.parse_head(head, line_start).map(Some);
            }
        }
    }

    /// Like [`parse`](ResponseHeadParser::parse), once the server has closed
    /// the connection: an incomplete head, or no byte at all, is
    /// [`UwsgiError::Truncated`] (a uwsgi server always answers).
    pub fn parse_eof(&mut self, src: &mut BytesMut) -> Result<Option<UwsgiResponse>, UwsgiError> {
        match self.parse(src)? {
            Some(r) => Ok(Some(r)),
            None => {
                self.scanned = 0;
                Err(UwsgiError::Truncated {
                    what: "response head",
                })
            }
        }
    }

    /// Parses a complete head; `blank` is where its final empty line starts.
    fn parse_head(&self, head: Bytes, blank: usize) -> Result<UwsgiResponse, UwsgiError> {
        let invalid = |detail| UwsgiError::InvalidResponseHead { detail };
        // The lines before the blank one, without their line ends (a head
        // made only of the blank line has none).
        let lines: Vec<&[u8]> = match blank {
            0 => Vec::new(),
            _ => head[..blank - 1]
                .split(|&b| b == b'\n')
                .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
                .collect(),
        };
        let mut fields = &lines[..];

        let mut version = None;
        let mut status: Option<(u16, Option<Bytes>)> = None;
        if let Some(first) = lines.first().filter(|l| l.starts_with(b"HTTP/")) {
            let (_, (minor, code, reason)) =
                status_line(first).map_err(|_| invalid("malformed status line"))?;
            version = Some(if minor == b"0" {
                HttpVersion::HTTP_10
            } else {
                HttpVersion::HTTP_11
            });
            if let Some(r) = reason {
                if !is_clean(r) {
                    return Err(invalid("reason phrase contains NUL or CR"));
                }
            }
            status = Some((status_code(code)?, reason.map(|r| head.slice_ref(r))));
            fields = &lines[1..];
        }

        let mut headers = HeaderBlock::builder();
        let mut cgi_status: Option<(u16, Option<Bytes>)> = None;
        let mut has_fields = false;
        let mut has_location = false;
        let mut content_length: Option<u64> = None;
        let mut te: Option<bool> = None; // Some(last coding is chunked)
        for &line in fields {
            if matches!(line.first(), Some(b' ' | b'\t')) {
                return Err(invalid("obsolete line folding"));
            }
            let (_, (name, value)) =
                header_line(line).map_err(|_| invalid("malformed header line"))?;
            let value = trim_ows_end(value);
            if !is_clean(value) {
                return Err(invalid("header value contains NUL or CR"));
            }
            has_fields = true;
            if version.is_none() && name.eq_ignore_ascii_case(b"status") {
                if cgi_status.is_some() {
                    return Err(invalid("more than one Status field"));
                }
                let (_, (code, reason)) =
                    status_field(value).map_err(|_| invalid("malformed Status field"))?;
                cgi_status = Some((status_code(code)?, reason.map(|r| head.slice_ref(r))));
                continue;
            }
            if name.eq_ignore_ascii_case(b"location") {
                has_location = true;
            } else if name.eq_ignore_ascii_case(b"content-length") {
                let framing = |detail| UwsgiError::InvalidResponseFraming { detail };
                for elem in value.split(|&b| b == b',') {
                    let n = parse_u64(trim_ows_end(elem.trim_ascii_start()))
                        .ok_or(framing("invalid Content-Length"))?;
                    if content_length.is_some_and(|first| first != n) {
                        return Err(framing("conflicting Content-Length values"));
                    }
                    content_length = Some(n);
                }
            } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
                let last = value
                    .split(|&b| b == b',')
                    .map(|c| trim_ows_end(c.trim_ascii_start()))
                    .rfind(|c| !c.is_empty());
                te = Some(last.is_some_and(|c| c.eq_ignore_ascii_case(b"chunked")));
            }
            headers
                .push(name, value)
                .map_err(|_| invalid("invalid header field"))?;
        }

        let (status, reason) = match (status, cgi_status) {
            (Some(s), _) | (None, Some(s)) => s,
            (None, None) if !has_fields => return Err(invalid("CGI-style head without any field")),
            (None, None) if has_location => (302, None),
            (None, None) => (200, None),
        };

        let framing = |detail| Err(UwsgiError::InvalidResponseFraming { detail });
        if te.is_some() && content_length.is_some() {
            return framing("both Transfer-Encoding and Content-Length");
        }
        if te.is_some() && version == Some(HttpVersion::HTTP_10) {
            return framing("Transfer-Encoding in an HTTP/1.0 response");
        }
        let body = match (status, te, content_length) {
            (101, _, _) => BodyKind::Upgrade,
            (100..=199, _, _) => BodyKind::Interim,
            (204 | 304, _, _) => BodyKind::Empty,
            _ if self.head_request => BodyKind::Empty,
            (_, Some(true), _) => BodyKind::Chunked,
            (_, Some(false), _) => BodyKind::Close,
            (_, None, Some(n)) => BodyKind::Length(n),
            (_, None, None) => BodyKind::Close,
        };
        Ok(UwsgiResponse {
            head: ResponseHead {
                status,
                reason,
                headers: headers.finish(),
            },
            version,
            body,
        })
    }
}
