//! The proxy side: a [`RequestHead`] to the request packet a real uWSGI
//! expects from nginx ([`request_vars`], [`encode_request`]).

use bytes::{BufMut, Bytes, BytesMut};
use memchr::memchr;

use super::packet::{encode_packet, PacketHeader};
use super::util::{is_clean, is_token, percent_decode};
use super::{UwsgiError, UwsgiLimits, MODIFIER1_WSGI};
use crate::environ::cgi::{
    apply_params, decimal, http_var_name, join_separator, request_uri, server_vars, strip_brackets,
    ServerVars,
};
use crate::frame::RequestHead;

/// One `HTTP_*` var being assembled from possibly repeated headers.
struct Joined {
    name: Bytes,
    value: Vec<u8>,
}

fn check_clean(name: &str, v: &[u8]) -> Result<(), UwsgiError> {
    if is_clean(v) {
        Ok(())
    } else {
        Err(UwsgiError::InvalidValue {
            name: name.to_owned(),
            detail: "contains NUL, CR or LF",
        })
    }
}

/// The CGI vars nginx's standard `uwsgi_params` would send for `head`,
/// in this order:
///
/// | var | value |
/// |---|---|
/// | `QUERY_STRING` | the query, `""` without one |
/// | `REQUEST_METHOD` | the method |
/// | `CONTENT_TYPE` | the first `Content-Type` header, `""` without one |
/// | `CONTENT_LENGTH` | `body_length`, `""` when `None` (no body) |
/// | `REQUEST_URI` | raw path, then `?query` when there was a `?` |
/// | `PATH_INFO` | the path, percent-decoded (as `uwire::environ`) |
/// | `SERVER_PROTOCOL` | e.g. `HTTP/1.1` (`HTTP/1.1` when unspecified) |
/// | `REQUEST_SCHEME` | the scheme; `https`/`http` from `tls` when empty |
/// | `HTTPS` | `on`, only when `tls` (nginx's `if_not_empty`) |
/// | `REMOTE_ADDR` | the client address, IPv6 brackets removed |
/// | `REMOTE_PORT` | the client port, `""` when 0 (unknown) |
/// | `SERVER_PORT` | the server port, else the authority's, else 443 for `https`/TLS, 80 otherwise |
/// | `SERVER_NAME` | the server name, else the authority's host, else `localhost` |
/// | `HTTP_HOST` | the authority, when there is no `Host` header |
/// | `HTTP_*` | one per mapped header name, in order of first appearance |
/// | params | replace a var of the same name in place, else appended; a param named `CONTENT_LENGTH` is ignored (framing is `body_length`'s) |
///
/// Headers map as in `uwire::environ` (RFC 3875 4.1.18): upper case, `-`
/// → `_`, `HTTP_` prefix; repeats and names that map alike are joined in
/// order with `", "` (`Cookie`: `"; "`). Dropped: names with bytes other
/// than letters, digits and `-` (`X_User` would impersonate `X-User`,
/// CVE-2015-0219), `Proxy` (httpoxy), and `Content-Length`/`Content-Type`,
/// which only feed `CONTENT_LENGTH`/`CONTENT_TYPE`. Other headers pass as
/// nginx passes them (hop-by-hop ones included: uwsgi is not HTTP). The
/// caller is expected to have refused what an HTTP front refuses (repeated
/// `Host`, conflicting `Content-Length`).
///
/// `body_length` is the exact number of body bytes the caller will write
/// after the packet (`None`: no body). uwsgi frames the body by
/// `CONTENT_LENGTH` only, so a body of unknown length must be buffered
/// first (or refused with 411) by the caller.
///
/// # Errors
///
/// [`UwsgiError::InvalidMethod`] for a method that is not a token;
/// [`UwsgiError::InvalidValue`] for an empty path, a NUL, CR or LF in the
/// path, query, scheme, authority, client address or server name, or a
/// path that decodes to a NUL (`%00`).
pub fn request_vars(
    head: &RequestHead,
    body_length: Option<u64>,
) -> Result<Vec<(Bytes, Bytes)>, UwsgiError> {
    if !is_token(&head.method) {
        return Err(UwsgiError::InvalidMethod);
    }
    if head.path.is_empty() {
        return Err(UwsgiError::InvalidValue {
            name: "path".into(),
            detail: "is empty",
        });
    }
    check_clean("path", &head.path)?;
    if let Some(q) = &head.query {
        check_clean("query", q)?;
    }
    check_clean("scheme", &head.scheme)?;
    check_clean("authority", &head.authority)?;
    check_clean("client_addr", &head.client_addr)?;
    check_clean("server_name", &head.server_name)?;
    let path_info = percent_decode(&head.path);
    if memchr(0, &path_info).is_some() {
        return Err(UwsgiError::InvalidValue {
            name: "PATH_INFO".into(),
            detail: "the path decodes to a NUL",
        });
    }

    // Headers.
    let mut content_type: Option<Bytes> = None;
    let mut has_host = false;
    let mut http: Vec<Joined> = Vec::new();
    let hbuf = head.headers.as_bytes();
    for (name, value) in head.headers.iter() {
        if name.eq_ignore_ascii_case(b"content-length") {
            continue;
        }
        if name.eq_ignore_ascii_case(b"content-type") {
            content_type.get_or_insert_with(|| hbuf.slice_ref(value));
            continue;
        }
        if name.eq_ignore_ascii_case(b"host") {
            has_host = true;
        }
        // As nginx's default `underscores_in_headers off`.
        let mut var = BytesMut::with_capacity(5 + name.len());
        if !http_var_name(name, false, &mut var) {
            continue;
        }
        match http.iter_mut().find(|j| j.name[..] == var[..]) {
            Some(j) => {
                j.value.extend_from_slice(join_separator(&var));
                j.value.extend_from_slice(value);
            }
            None => http.push(Joined {
                name: var.freeze(),
                value: value.to_vec(),
            }),
        }
    }

    let ServerVars {
        scheme,
        server_name,
        server_port,
    } = server_vars(head, &Bytes::from_static(b"localhost"), None);

    let mut vars: Vec<(Bytes, Bytes)> = Vec::with_capacity(16 + http.len() + head.params.len());
    let mut put = |name: &'static str, value: Bytes| {
        vars.push((Bytes::from_static(name.as_bytes()), value));
    };
    put("QUERY_STRING", head.query.clone().unwrap_or_default());
    put("REQUEST_METHOD", head.method.clone());
    put("CONTENT_TYPE", content_type.unwrap_or_default());
    put(
        "CONTENT_LENGTH",
        body_length.map(decimal).unwrap_or_default(),
    );
    put("REQUEST_URI", request_uri(&head.path, head.query.as_ref()));
    put("PATH_INFO", path_info);
    put(
        "SERVER_PROTOCOL",
        Bytes::from_static(head.version.as_protocol_str().as_bytes()),
    );
    put("REQUEST_SCHEME", scheme);
    if head.tls {
        put("HTTPS", Bytes::from_static(b"on"));
    }
    put("REMOTE_ADDR", strip_brackets(&head.client_addr));
    put(
        "REMOTE_PORT",
        match head.client_port {
            0 => Bytes::new(),
            p => decimal(p.into()),
        },
    );
    put("SERVER_PORT", decimal(server_port.into()));
    put("SERVER_NAME", server_name);
    if !has_host && !head.authority.is_empty() {
        put("HTTP_HOST", head.authority.clone());
    }
    vars.extend(http.into_iter().map(|j| (j.name, Bytes::from(j.value))));

    apply_params(&mut vars, head);
    Ok(vars)
}

/// Writes the request packet for `head` (modifier1 0, modifier2 0, the vars
/// of [`request_vars`]) and returns its header. The caller then writes
/// exactly `body_length` body bytes.
///
/// # Errors
///
/// Those of [`request_vars`], then those of
/// [`encode_packet`](super::encode_packet): a block over 65535 bytes or
/// over [`UwsgiLimits::max_block_size`], a var over 65535 bytes, more than
/// [`UwsgiLimits::max_vars`] vars. Nothing is written on error.
pub fn encode_request<B: BufMut>(
    head: &RequestHead,
    body_length: Option<u64>,
    limits: &UwsgiLimits,
    dst: &mut B,
) -> Result<PacketHeader, UwsgiError> {
    let vars = request_vars(head, body_length)?;
    encode_packet(MODIFIER1_WSGI, 0, &vars, limits, dst)
}
