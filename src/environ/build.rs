//! [`build`]: a request head to an environ. The rules and their reasons are
//! listed in the module documentation; each defence below quotes the text
//! that motivates it.

use std::collections::HashMap;

use bytes::{Bytes, BytesMut};

use super::cgi::{
    apply_params, decimal, http_var_name, join_separator, request_uri, server_vars, strip_brackets,
    ServerVars,
};
use super::config::{is_normalized_script_name, normalize_script_name};
use super::path::{check_target, match_prefix, percent_decode};
use super::{Environ, EnvironConfig, EnvironError};
use crate::frame::RequestHead;

/// Distinct `HTTP_*` names above which lookups switch from a linear scan to
/// a hash map (keeps many-header requests linear, small ones allocation-free).
const INDEX_THRESHOLD: usize = 16;

/// Builds the CGI/WSGI environ of `head` (see the [module
/// documentation](super) for every variable and rule).
///
/// # Errors
///
/// An [`EnvironError`] when the head carries a request that must be refused
/// (the runtime answers 400): NUL in the target, invalid, conflicting or
/// `Transfer-Encoding`-accompanied `Content-Length`, conflicting
/// `Content-Type`, repeated `Host`, or an environ over
/// [`EnvironConfig::max_size`].
pub fn build(head: &RequestHead, config: &EnvironConfig) -> Result<Environ, EnvironError> {
    check_target(head)?;
    let mapped = map_headers(head, config)?;

    let script = if is_normalized_script_name(&config.script_name) {
        config.script_name.clone()
    } else {
        normalize_script_name(config.script_name.clone())
    };
    let (script_name, path_info) = match match_prefix(&head.path, &script) {
        Some(rest) => (script, percent_decode(&head.path, rest)),
        None => (Bytes::new(), percent_decode(&head.path, 0)),
    };

    let ServerVars {
        scheme,
        server_name,
        server_port,
    } = server_vars(
        head,
        &config.default_server_name,
        config.default_server_port,
    );
    let mut vars: Vec<(Bytes, Bytes)> =
        Vec::with_capacity(17 + mapped.http.len() + head.params.len());
    let mut put = |name: &'static str, value: Bytes| {
        vars.push((Bytes::from_static(name.as_bytes()), value));
    };
    put("REQUEST_METHOD", head.method.clone());
    put("SCRIPT_NAME", script_name);
    put("PATH_INFO", path_info);
    put("QUERY_STRING", head.query.clone().unwrap_or_default());
    put("REQUEST_URI", request_uri(&head.path, head.query.as_ref()));
    put("REQUEST_SCHEME", scheme);
    put(
        "SERVER_PROTOCOL",
        Bytes::from_static(head.version.as_protocol_str().as_bytes()),
    );
    put("SERVER_NAME", server_name);
    put("SERVER_PORT", decimal(server_port.into()));
    put("SERVER_SOFTWARE", config.server_software.clone());
    put("GATEWAY_INTERFACE", Bytes::from_static(b"CGI/1.1"));
    put("REMOTE_ADDR", strip_brackets(&head.client_addr));
    if head.client_port != 0 {
        put("REMOTE_PORT", decimal(head.client_port.into()));
    }
    if head.tls {
        put("HTTPS", Bytes::from_static(b"on"));
    }
    if let Some(ct) = mapped.content_type {
        put("CONTENT_TYPE", ct);
    }
    if let Some(len) = head.body_length.or(mapped.content_length) {
        put("CONTENT_LENGTH", decimal(len));
    }
    if !mapped.has_host && !head.authority.is_empty() {
        put("HTTP_HOST", head.authority.clone());
    }
    vars.extend(mapped.http);

    apply_params(&mut vars, head);

    let env = Environ::from_vec(vars);
    if let Some(limit) = config.max_size {
        let size = env.size();
        if size > limit {
            return Err(EnvironError::TooLarge { size, limit });
        }
    }
    Ok(env)
}

/// Refuses exactly what [`build`] refuses, without building the environ
/// when that can be avoided: the runtime checks every request before its
/// handler runs and builds the environ only when the handler asks for it
/// (a Rust handler reading the head seldom does).
///
/// Returns the environ when checking needed it: with
/// [`EnvironConfig::max_size`] set, the size is known only once built.
///
/// # Errors
///
/// The [`EnvironError`] that [`build`] would return.
pub fn check(head: &RequestHead, config: &EnvironConfig) -> Result<Option<Environ>, EnvironError> {
    if config.max_size.is_some() {
        return build(head, config).map(Some);
    }
    check_target(head)?;
    let mut framing = Framing::default();
    for (name, value) in head.headers.iter() {
        framing.see(name, value)?;
    }
    framing.finish()?;
    Ok(None)
}

/// The fields that frame and address a request, gathered while refusing
/// the combinations the runtime answers with 400. The one home of those
/// refusals: [`build`] and [`check`] both go through it.
#[derive(Default)]
struct Framing<'a> {
    content_type: Option<&'a [u8]>,
    content_length: Option<u64>,
    has_host: bool,
    has_te: bool,
}

impl<'a> Framing<'a> {
    /// Looks at one header field, in order. True when the field is
    /// `Content-Length` or `Content-Type`, which become `CONTENT_*`
    /// variables and never `HTTP_*` ones.
    #[inline]
    fn see(&mut self, name: &'a [u8], value: &'a [u8]) -> Result<bool, EnvironError> {
        if name.eq_ignore_ascii_case(b"content-length") {
            // RFC 9112 6.3: "If a message is received without
            // Transfer-Encoding and with an invalid Content-Length header
            // field, then the message framing is invalid and the recipient
            // MUST treat it as an unrecoverable error, unless the field
            // value can be successfully parsed as a comma-separated list
            // (Section 5.6.1 of [HTTP]), all values in the list are valid,
            // and all values in the list are the same". RFC 9110 8.6 allows
            // "Content-Length: 42, 42" to be replaced "with a single instance
            // of the decimal value". Repeated fields are one list (RFC 9110
            // 5.3), so differing repeats conflict too: request smuggling
            // defence, the two sides of a desync disagree on the length.
            let n = parse_content_length(value)?;
            match self.content_length {
                Some(first) if first != n => {
                    return Err(EnvironError::ConflictingContentLength { first, other: n })
                }
                _ => self.content_length = Some(n),
            }
            return Ok(true);
        }
        if name.eq_ignore_ascii_case(b"content-type") {
            // RFC 9110 5.3: "A sender MUST NOT generate multiple field lines
            // with the same name in a message ... unless that field's
            // definition allows multiple field line values to be recombined
            // as a comma-separated list". Content-Type does not; servers
            // that disagree on which copy wins can be played off each other.
            match self.content_type {
                Some(first) if first != value => return Err(EnvironError::ConflictingContentType),
                _ => self.content_type = Some(value),
            }
            return Ok(true);
        }
        if name.eq_ignore_ascii_case(b"host") {
            // RFC 9112 3.2: "A server MUST respond with a 400 (Bad Request)
            // status code to any HTTP/1.1 request message that lacks a Host
            // header field and to any request message that contains more
            // than one Host header field line or a Host header field with an
            // invalid field value."
            if self.has_host {
                return Err(EnvironError::DuplicateHost);
            }
            self.has_host = true;
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            self.has_te = true;
        }
        Ok(false)
    }

    /// The refusals that need every field seen.
    fn finish(&self) -> Result<(), EnvironError> {
        // RFC 9112 6.3: "If a message is received with both a
        // Transfer-Encoding and a Content-Length header field, the
        // Transfer-Encoding overrides the Content-Length. Such a message
        // might indicate an attempt to perform request smuggling (Section
        // 11.2) or response splitting (Section 11.1) and ought to be handled
        // as an error. An intermediary that chooses to forward the message
        // MUST first remove the received Content-Length field". A proxy that
        // forwards both broke that rule: refuse.
        if self.has_te && self.content_length.is_some() {
            return Err(EnvironError::ContentLengthWithTransferEncoding);
        }
        Ok(())
    }
}

/// Headers sorted into what the environ needs.
struct Mapped {
    content_type: Option<Bytes>,
    content_length: Option<u64>,
    has_host: bool,
    http: Vec<(Bytes, Bytes)>,
}

/// One `HTTP_*` variable being assembled.
struct Pending<'a> {
    name: Bytes,
    first: &'a [u8],
    joined: Option<Vec<u8>>,
}

impl Pending<'_> {
    /// Joins another value of the same variable (see [`join_separator`]).
    fn append(&mut self, value: &[u8]) {
        let joined = self.joined.get_or_insert_with(|| self.first.to_vec());
        joined.extend_from_slice(join_separator(&self.name));
        joined.extend_from_slice(value);
    }
}

fn map_headers(head: &RequestHead, config: &EnvironConfig) -> Result<Mapped, EnvironError> {
    let block = &head.headers;
    let buf = block.as_bytes();
    // One allocation holds every HTTP_* name; each is split off as a Bytes.
    let names_len: usize = block.iter().map(|(n, _)| 5 + n.len()).sum();
    let mut names = BytesMut::with_capacity(names_len);
    let mut pending: Vec<Pending<'_>> = Vec::with_capacity(block.len());
    let mut index: Option<HashMap<Bytes, usize>> = None;
    let mut framing = Framing::default();

    for (name, value) in block.iter() {
        if framing.see(name, value)? {
            continue;
        }
        if !http_var_name(name, config.allow_underscore_headers, &mut names) {
            continue;
        }
        // RFC 3875 4.1.18: "If multiple header fields with the same
        // field-name are received then the server MUST rewrite them as a
        // single value having the same semantics." Names that normalise to
        // the same variable are merged in order, never overwritten.
        let found = match &index {
            Some(map) => map.get(&names[..]).copied(),
            None => pending.iter().position(|p| p.name[..] == names[..]),
        };
        match found {
            Some(i) => {
                names.clear();
                pending[i].append(value);
            }
            None => {
                let key = names.split().freeze();
                if let Some(map) = &mut index {
                    map.insert(key.clone(), pending.len());
                }
                pending.push(Pending {
                    name: key,
                    first: value,
                    joined: None,
                });
                if index.is_none() && pending.len() >= INDEX_THRESHOLD {
                    let map = pending
                        .iter()
                        .enumerate()
                        .map(|(i, p)| (p.name.clone(), i))
                        .collect();
                    index = Some(map);
                }
            }
        }
    }

    framing.finish()?;

    let http = pending
        .into_iter()
        .map(|p| {
            let value = match p.joined {
                Some(v) => Bytes::from(v),
                None => buf.slice_ref(p.first),
            };
            (p.name, value)
        })
        .collect();
    Ok(Mapped {
        content_type: framing.content_type.map(|v| buf.slice_ref(v)),
        content_length: framing.content_length,
        has_host: framing.has_host,
        http,
    })
}

/// Parses a `Content-Length` value: a comma-separated list of identical
/// decimals (`"42"`, `"42, 42"`), each fitting in 64 bits.
fn parse_content_length(value: &[u8]) -> Result<u64, EnvironError> {
    let invalid = || EnvironError::InvalidContentLength {
        value: String::from_utf8_lossy(&value[..value.len().min(64)]).into_owned(),
    };
    let mut result: Option<u64> = None;
    for elem in value.split(|&b| b == b',') {
        let elem = trim_ows(elem);
        if elem.is_empty() || !elem.iter().all(u8::is_ascii_digit) {
            return Err(invalid());
        }
        let n = elem
            .iter()
            .try_fold(0u64, |acc, &d| {
                acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
            })
            .ok_or_else(invalid)?;
        match result {
            Some(first) if first != n => {
                return Err(EnvironError::ConflictingContentLength { first, other: n })
            }
            _ => result = Some(n),
        }
    }
    result.ok_or_else(invalid)
}

/// Strips RFC 9110 optional whitespace (SP / HTAB) from both ends.
fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

#[cfg(test)]
mod helper_tests {
    use super::*;

    #[test]
    fn content_length_lists() {
        assert_eq!(parse_content_length(b"42"), Ok(42));
        assert_eq!(parse_content_length(b"042"), Ok(42));
        assert_eq!(parse_content_length(b" 42 ,\t42"), Ok(42));
        assert_eq!(parse_content_length(b"18446744073709551615"), Ok(u64::MAX));
        for bad in [
            &b""[..],
            b" ",
            b"4 2",
            b"-1",
            b"+1",
            b"0x10",
            b"42,",
            b"18446744073709551616",
        ] {
            assert!(
                matches!(
                    parse_content_length(bad),
                    Err(EnvironError::InvalidContentLength { .. })
                ),
                "{bad:?}"
            );
        }
        assert_eq!(
            parse_content_length(b"1, 2"),
            Err(EnvironError::ConflictingContentLength { first: 1, other: 2 })
        );
    }
}
