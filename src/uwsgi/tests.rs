//! Tests across the classic uwsgi codec: nginx packets to heads and environs,
//! heads to packets and back, response heads split at every byte.

use bytes::{Bytes, BytesMut};

use super::*;
use crate::environ::{build, EnvironConfig};
use crate::frame::{HeaderBlock, HttpVersion, RequestHead, ResponseHead};

fn packet(vars: &[(&str, &str)]) -> BytesMut {
    let mut buf = BytesMut::new();
    encode_packet(0, 0, vars, &UwsgiLimits::default(), &mut buf).unwrap();
    buf
}

fn decode(vars: &[(&str, &str)]) -> UwsgiRequest {
    let mut buf = packet(vars);
    UwsgiDecoder::new(UwsgiLimits::default())
        .decode(&mut buf)
        .unwrap()
        .unwrap()
}

fn head(vars: &[(&str, &str)]) -> Result<RequestHead, UwsgiError> {
    decode(vars).to_request_head()
}

/// nginx's `uwsgi_params` for `GET /caf%C3%A9/x?q=1` over TLS.
const NGINX: &[(&str, &str)] = &[
    ("QUERY_STRING", "q=1"),
    ("REQUEST_METHOD", "GET"),
    ("CONTENT_TYPE", ""),
    ("CONTENT_LENGTH", ""),
    ("REQUEST_URI", "/caf%C3%A9/x?q=1"),
    ("PATH_INFO", "/caf\u{e9}/x"),
    ("DOCUMENT_ROOT", "/usr/share/nginx/html"),
    ("SERVER_PROTOCOL", "HTTP/1.1"),
    ("REQUEST_SCHEME", "https"),
    ("HTTPS", "on"),
    ("REMOTE_ADDR", "192.0.2.7"),
    ("REMOTE_PORT", "50412"),
    ("SERVER_PORT", "443"),
    ("SERVER_NAME", "example.com"),
    ("HTTP_HOST", "example.com"),
    ("HTTP_USER_AGENT", "curl/8.5.0"),
    ("HTTP_ACCEPT", "*/*"),
    ("HTTP_COOKIE", "a=1"),
    ("HTTP_COOKIE", "b=2"),
    ("HTTP_PROXY", "http://evil.example/"),
];

#[test]
fn nginx_packet_to_head_and_environ() {
    let h = head(NGINX).unwrap();
    assert_eq!(&h.method[..], b"GET");
    assert_eq!(&h.path[..], b"/caf%C3%A9/x");
    assert_eq!(h.query.as_deref(), Some(&b"q=1"[..]));
    assert_eq!(h.version, HttpVersion::HTTP_11);
    assert_eq!(&h.scheme[..], b"https");
    assert!(h.tls);
    assert_eq!(&h.authority[..], b"example.com");
    assert_eq!(
        (&h.client_addr[..], h.client_port),
        (&b"192.0.2.7"[..], 50412)
    );
    assert_eq!(
        (&h.server_name[..], h.server_port),
        (&b"example.com"[..], 443)
    );
    assert_eq!(h.body_length, None);
    let headers: Vec<_> = h.headers.iter().collect();
    assert_eq!(
        headers,
        [
            (&b"Host"[..], &b"example.com"[..]),
            (b"User-Agent", b"curl/8.5.0"),
            (b"Accept", b"*/*"),
            (b"Cookie", b"a=1"),
            (b"Cookie", b"b=2"),
        ]
    );
    let params: Vec<_> = h.params.iter().collect();
    assert_eq!(
        params,
        [(&b"DOCUMENT_ROOT"[..], &b"/usr/share/nginx/html"[..])]
    );

    let env = build(&h, &EnvironConfig::default()).unwrap();
    assert_eq!(env.get("PATH_INFO"), Some("/caf\u{e9}/x".as_bytes()));
    assert_eq!(env.get("REQUEST_URI"), Some(&b"/caf%C3%A9/x?q=1"[..]));
    assert_eq!(env.get("QUERY_STRING"), Some(&b"q=1"[..]));
    assert_eq!(env.get("HTTPS"), Some(&b"on"[..]));
    assert_eq!(env.get("HTTP_COOKIE"), Some(&b"a=1; b=2"[..]));
    assert_eq!(
        env.get("DOCUMENT_ROOT"),
        Some(&b"/usr/share/nginx/html"[..])
    );
    assert_eq!(env.get("HTTP_PROXY"), None);
    assert_eq!(env.get("CONTENT_LENGTH"), None);
}

#[test]
fn path_prefers_request_uri_only_when_it_agrees_with_path_info() {
    // Dot segments: nginx normalised; the application sees nginx's path.
    let h = head(&[
        ("REQUEST_METHOD", "GET"),
        ("REQUEST_URI", "/public/../admin//x?a=1"),
        ("PATH_INFO", "/admin/x"),
        ("QUERY_STRING", "a=1"),
    ])
    .unwrap();
    assert_eq!(&h.path[..], b"/admin/x");
    assert_eq!(
        h.params.get(b"REQUEST_URI"),
        Some(&b"/public/../admin//x?a=1"[..])
    );
    let env = build(&h, &EnvironConfig::default()).unwrap();
    assert_eq!(env.get("PATH_INFO"), Some(&b"/admin/x"[..]));
    assert_eq!(
        env.get("REQUEST_URI"),
        Some(&b"/public/../admin//x?a=1"[..])
    );

    // %2F is kept raw when consistent.
    let h = head(&[
        ("REQUEST_METHOD", "GET"),
        ("REQUEST_URI", "/a%2Fb"),
        ("PATH_INFO", "/a/b"),
    ])
    .unwrap();
    assert_eq!(&h.path[..], b"/a%2Fb");
    assert!(h.params.is_empty());

    // SCRIPT_NAME stripped by a regex location; empty PATH_INFO.
    let h = head(&[
        ("REQUEST_METHOD", "GET"),
        ("REQUEST_URI", "/app"),
        ("SCRIPT_NAME", "/app"),
        ("PATH_INFO", ""),
        ("QUERY_STRING", ""),
    ])
    .unwrap();
    assert_eq!(&h.path[..], b"/app");
    let env = build(&h, &EnvironConfig::default()).unwrap();
    assert_eq!(env.get("SCRIPT_NAME"), Some(&b"/app"[..]));
    assert_eq!(env.get("PATH_INFO"), Some(&b""[..]));
    assert_eq!(env.get("REQUEST_URI"), Some(&b"/app"[..]));

    // Rewritten args, bare '?', decoded CR/LF in PATH_INFO, no path at all.
    let h = head(&[
        ("REQUEST_METHOD", "GET"),
        ("REQUEST_URI", "/x?old=1"),
        ("PATH_INFO", "/y\r\n"),
        ("QUERY_STRING", ""),
    ])
    .unwrap();
    assert_eq!((&h.path[..], h.query.clone()), (&b"/y%0D%0A"[..], None));
    let h = head(&[
        ("REQUEST_METHOD", "GET"),
        ("REQUEST_URI", "/x?"),
        ("QUERY_STRING", ""),
    ])
    .unwrap();
    assert_eq!(h.query.as_deref(), Some(&b""[..]));
    assert!(h.params.is_empty());
    let h = head(&[("REQUEST_METHOD", "GET")]).unwrap();
    assert_eq!((&h.path[..], h.query.clone()), (&b"/"[..], None));
}

#[test]
fn head_errors() {
    let class = |vars: &[(&str, &str)]| head(vars).unwrap_err().class();
    assert_eq!(class(&[]), "invalid_method");
    assert_eq!(class(&[("REQUEST_METHOD", "")]), "invalid_method");
    assert_eq!(class(&[("REQUEST_METHOD", "G T")]), "invalid_method");
    assert_eq!(
        class(&[("REQUEST_METHOD", "GET"), ("HTTP_X", "a\r\nb")]),
        "invalid_value"
    );
    assert_eq!(
        class(&[("REQUEST_METHOD", "GET"), ("HTTP_PROXY", "\n")]),
        "invalid_value"
    );
    assert_eq!(
        class(&[("REQUEST_METHOD", "GET"), ("QUERY_STRING", "\0")]),
        "invalid_value"
    );
    assert_eq!(
        class(&[("REQUEST_METHOD", "GET"), ("MY VAR", "x")]),
        "invalid_var_name"
    );
    assert_eq!(
        class(&[("REQUEST_METHOD", "GET"), ("REMOTE_PORT", "x")]),
        "invalid_port"
    );
    assert_eq!(
        class(&[("REQUEST_METHOD", "GET"), ("SERVER_PORT", "70000")]),
        "invalid_port"
    );
    // Dropped, not refused: HTTP_ names that no header could map to.
    let h = head(&[
        ("REQUEST_METHOD", "GET"),
        ("HTTP_X Y", "1"),
        ("HTTP_A.B", "2"),
        ("HTTP_", "3"),
    ])
    .unwrap();
    assert!(h.headers.is_empty() && h.params.is_empty());
}

#[test]
fn scheme_version_and_body_length() {
    let h = head(&[
        ("REQUEST_METHOD", "POST"),
        ("UWSGI_SCHEME", "https"),
        ("REQUEST_SCHEME", "http"),
        ("SERVER_PROTOCOL", "HTTP/2.0"),
        ("CONTENT_LENGTH", "3"),
        ("CONTENT_TYPE", "text/plain"),
        ("HTTP_CONTENT_TYPE", "text/plain"),
        ("HTTP_CONTENT_LENGTH", "3"),
    ])
    .unwrap();
    assert_eq!(&h.scheme[..], b"https");
    assert!(h.tls);
    assert_eq!(h.version, HttpVersion::HTTP_2);
    assert_eq!(h.params.get(b"SERVER_PROTOCOL"), Some(&b"HTTP/2.0"[..]));
    assert_eq!(h.body_length, Some(3));
    assert_eq!(
        h.headers.iter().collect::<Vec<_>>(),
        [(&b"Content-Type"[..], &b"text/plain"[..])]
    );
    let h = head(&[("REQUEST_METHOD", "GET"), ("HTTPS", "1")]).unwrap();
    assert_eq!((&h.scheme[..], h.tls), (&b"https"[..], true));
    let h = head(&[("REQUEST_METHOD", "GET"), ("HTTPS", "off")]).unwrap();
    assert_eq!((&h.scheme[..], h.tls), (&b"http"[..], false));
}

fn sample_head() -> RequestHead {
    RequestHead {
        method: "POST".into(),
        scheme: "https".into(),
        authority: "example.com:8443".into(),
        path: "/caf%C3%A9/a%2Fb".into(),
        query: Some("x=1&y=%20".into()),
        version: HttpVersion::HTTP_11,
        headers: HeaderBlock::try_from_pairs([
            ("Host", "example.com:8443"),
            ("Content-Type", "application/json"),
            ("Content-Length", "2"),
            ("Accept", "a"),
            ("accept", "b"),
            ("Cookie", "c=1"),
            ("Cookie", "d=2"),
            ("X_Spoof", "1"),
            ("Proxy", "evil"),
        ])
        .unwrap(),
        client_addr: "[2001:db8::1]".into(),
        client_port: 40000,
        server_name: Bytes::new(),
        server_port: 0,
        tls: true,
        params: HeaderBlock::try_from_pairs([
            ("SCRIPT_NAME", "/app"),
            ("REMOTE_ADDR", "10.0.0.1"),
            ("CONTENT_LENGTH", "999"),
        ])
        .unwrap(),
        body_length: Some(2),
        upgrade: None,
    }
}

#[test]
fn request_vars_like_nginx() {
    let vars = request_vars(&sample_head(), Some(2)).unwrap();
    let got: Vec<(String, String)> = vars
        .iter()
        .map(|(k, v)| {
            (
                String::from_utf8_lossy(k).into_owned(),
                String::from_utf8_lossy(v).into_owned(),
            )
        })
        .collect();
    let want: Vec<(String, String)> = [
        ("QUERY_STRING", "x=1&y=%20"),
        ("REQUEST_METHOD", "POST"),
        ("CONTENT_TYPE", "application/json"),
        ("CONTENT_LENGTH", "2"),
        ("REQUEST_URI", "/caf%C3%A9/a%2Fb?x=1&y=%20"),
        ("PATH_INFO", "/caf\u{e9}/a/b"),
        ("SERVER_PROTOCOL", "HTTP/1.1"),
        ("REQUEST_SCHEME", "https"),
        ("HTTPS", "on"),
        ("REMOTE_ADDR", "10.0.0.1"),
        ("REMOTE_PORT", "40000"),
        ("SERVER_PORT", "8443"),
        ("SERVER_NAME", "example.com"),
        ("HTTP_HOST", "example.com:8443"),
        ("HTTP_ACCEPT", "a, b"),
        ("HTTP_COOKIE", "c=1; d=2"),
        ("SCRIPT_NAME", "/app"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(got, want);
}

#[test]
fn encode_then_decode_round_trips_the_head() {
    let mut head = sample_head();
    head.headers =
        HeaderBlock::try_from_pairs([("Host", "example.com:8443"), ("X-Id", "7")]).unwrap();
    head.params = HeaderBlock::try_from_pairs([("DOCUMENT_ROOT", "/srv")]).unwrap();
    head.client_addr = "192.0.2.1".into();
    head.server_name = "example.com".into();
    head.server_port = 8443;
    let mut wire = BytesMut::new();
    encode_request(&head, Some(2), &UwsgiLimits::default(), &mut wire).unwrap();
    wire.extend_from_slice(b"{}");
    let req = UwsgiDecoder::new(UwsgiLimits::default())
        .decode(&mut wire)
        .unwrap()
        .unwrap();
    assert_eq!(req.body_length, 2);
    assert_eq!(&wire[..], b"{}");
    assert_eq!(req.to_request_head().unwrap(), head);
}

#[test]
fn request_vars_errors_and_size_refusal() {
    let mut h = sample_head();
    h.method = "".into();
    assert_eq!(
        request_vars(&h, None).unwrap_err().class(),
        "invalid_method"
    );
    let mut h = sample_head();
    h.path = "/a%00b".into();
    assert_eq!(request_vars(&h, None).unwrap_err().class(), "invalid_value");
    let mut h = sample_head();
    h.path = "".into();
    assert_eq!(request_vars(&h, None).unwrap_err().class(), "invalid_value");
    let mut h = sample_head();
    h.query = Some("a\nb".into());
    assert_eq!(request_vars(&h, None).unwrap_err().class(), "invalid_value");

    // A header that pushes the block past 65535 bytes: refused, not wrapped.
    let mut h = sample_head();
    h.headers = HeaderBlock::try_from_pairs([("X-Big", "v".repeat(70_000))]).unwrap();
    let mut buf = BytesMut::new();
    let e = encode_request(&h, None, &UwsgiLimits::default(), &mut buf).unwrap_err();
    assert_eq!(e.class(), "var_too_long");
    h.headers = HeaderBlock::try_from_pairs([("X-Big", "v".repeat(65_200))]).unwrap();
    let e = encode_request(&h, None, &UwsgiLimits::default(), &mut buf).unwrap_err();
    assert_eq!(e.class(), "block_too_large");
    let small = UwsgiLimits {
        max_block_size: 4096,
        ..UwsgiLimits::default()
    };
    h.headers = HeaderBlock::try_from_pairs([("X-Big", "v".repeat(4096))]).unwrap();
    let e = encode_request(&h, None, &small, &mut buf).unwrap_err();
    assert!(
        matches!(e, UwsgiError::BlockTooLarge { limit: 4096, .. }),
        "{e:?}"
    );
    assert!(buf.is_empty());
}

/// Parses `input` fed `step` bytes at a time; then the rest of the buffer.
fn parse_response(
    input: &[u8],
    step: usize,
    head_request: bool,
) -> Result<(UwsgiResponse, Vec<u8>), UwsgiError> {
    let mut p = ResponseHeadParser::new(&UwsgiLimits {
        max_response_head: 256,
        ..UwsgiLimits::default()
    });
    p.head_request(head_request);
    let mut buf = BytesMut::new();
    let mut fed = 0;
    for piece in input.chunks(step.max(1)) {
        buf.extend_from_slice(piece);
        fed += piece.len();
        if let Some(r) = p.parse(&mut buf)? {
            // What follows the head: the buffer, then the bytes not fed yet.
            let rest = [&buf[..], &input[fed..]].concat();
            return Ok((r, rest));
        }
    }
    p.parse_eof(&mut buf).map(|r| (r.unwrap(), buf.to_vec()))
}

#[test]
fn response_heads() {
    let ok = |input: &[u8]| {
        let whole = parse_response(input, input.len(), false).unwrap();
        for step in 1..input.len() {
            let r = parse_response(input, step, false).unwrap();
            assert_eq!(r.0, whole.0, "{input:?} step {step}");
        }
        whole.0
    };
    let r = ok(b"HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\nX-A:  b  \r\n\r\nabc");
    assert_eq!(
        (r.head.status, r.head.reason.as_deref()),
        (404, Some(&b"Not Found"[..]))
    );
    assert_eq!(r.version, Some(HttpVersion::HTTP_11));
    assert_eq!(r.body, BodyKind::Length(3));
    assert_eq!(r.head.headers.get(b"x-a"), Some(&b"b"[..]));

    let r = ok(b"Status: 201 Created\nContent-Type: text/plain\n\n");
    assert_eq!(
        (r.head.status, r.head.reason.as_deref()),
        (201, Some(&b"Created"[..]))
    );
    assert_eq!(r.head.headers.len(), 1);
    assert_eq!(r.version, None);
    assert_eq!(r.body, BodyKind::Close);

    let r = ok(b"Location: /next\r\n\r\n");
    assert_eq!((r.head.status, r.head.reason.clone()), (302, None));
    let r = ok(b"Content-Type: text/html\r\n\r\n");
    assert_eq!(r.head.status, 200);
    let r = ok(b"HTTP/1.0 200\r\nStatus: 500\r\n\r\n");
    assert_eq!((r.head.status, r.head.reason.clone()), (200, None));
    assert_eq!(r.head.headers.get(b"status"), Some(&b"500"[..]));
    let r = ok(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n");
    assert_eq!(r.body, BodyKind::Chunked);
    let r = ok(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n");
    assert_eq!(r.body, BodyKind::Close);
    assert_eq!(
        ok(b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n").body,
        BodyKind::Empty
    );
    assert_eq!(
        ok(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n").body,
        BodyKind::Upgrade
    );
    assert_eq!(ok(b"HTTP/1.1 100 Continue\r\n\r\n").body, BodyKind::Interim);
    assert_eq!(
        ok(b"HTTP/1.1 200 OK\r\nContent-Length: 7, 7\r\n\r\n").body,
        BodyKind::Length(7)
    );
    let head = parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n", 5, true).unwrap();
    assert_eq!(head.0.body, BodyKind::Empty);

    // Body bytes stay in the buffer.
    let mut p = ResponseHeadParser::new(&UwsgiLimits::default());
    let mut buf = BytesMut::from(&b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n\r\nbody"[..]);
    assert_eq!(p.parse(&mut buf).unwrap().unwrap().body, BodyKind::Interim);
    assert_eq!(p.parse(&mut buf).unwrap().unwrap().body, BodyKind::Close);
    assert_eq!(&buf[..], b"body");
}

#[test]
fn response_head_errors() {
    let err = |input: &[u8]| {
        let whole = parse_response(input, input.len(), false).unwrap_err();
        for step in 1..input.len() {
            assert_eq!(
                parse_response(input, step, false).unwrap_err(),
                whole,
                "step {step}"
            );
        }
        whole.class()
    };
    assert_eq!(err(b"HTTP/1.1 20 OK\r\n\r\n"), "invalid_response_head");
    assert_eq!(err(b"HTTP/2 200 OK\r\n\r\n"), "invalid_response_head");
    assert_eq!(err(b"HTTP/1.1 099 X\r\n\r\n"), "invalid_response_head");
    assert_eq!(
        err(b"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n"),
        "invalid_response_head"
    );
    assert_eq!(
        err(b"HTTP/1.1 200 OK\r\nA : x\r\n\r\n"),
        "invalid_response_head"
    );
    assert_eq!(
        err(b"HTTP/1.1 200 OK\r\nA: x\r\n folded\r\n\r\n"),
        "invalid_response_head"
    );
    assert_eq!(
        err(b"HTTP/1.1 200 OK\r\nA: x\ry\r\n\r\n"),
        "invalid_response_head"
    );
    assert_eq!(
        err(b"HTTP/1.1 200 OK\r\nA: x\0\r\n\r\n"),
        "invalid_response_head"
    );
    assert_eq!(err(b"Status: 2000\r\n\r\n"), "invalid_response_head");
    assert_eq!(
        err(b"Status: 200\r\nStatus: 404\r\n\r\n"),
        "invalid_response_head"
    );
    assert_eq!(err(b"\r\n"), "invalid_response_head");
    assert_eq!(
        err(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n"),
        "invalid_response_framing"
    );
    assert_eq!(
        err(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
        "invalid_response_framing"
    );
    assert_eq!(
        err(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"),
        "invalid_response_framing"
    );
    assert_eq!(
        err(b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
        "invalid_response_framing"
    );
    assert_eq!(err(b"HTTP/1.1 200 OK\r\nA: b\r\n"), "truncated");
    assert_eq!(err(b""), "truncated");
    let long = [&b"HTTP/1.1 200 OK\r\nA: "[..], &[b'x'; 300][..]].concat();
    assert_eq!(err(&long), "response_head_too_large");
    // Exactly at the limit (256) is fine; one more byte is not.
    let fill = 256 - b"HTTP/1.1 200 OK\r\nA: \r\n\r\n".len();
    let exact = [
        &b"HTTP/1.1 200 OK\r\nA: "[..],
        &vec![b'x'; fill][..],
        b"\r\n\r\n",
    ]
    .concat();
    assert_eq!(exact.len(), 256);
    assert!(parse_response(&exact, 1, false).is_ok());
    let over = [
        &b"HTTP/1.1 200 OK\r\nA: "[..],
        &vec![b'x'; fill + 1][..],
        b"\r\n\r\n",
    ]
    .concat();
    assert_eq!(err(&over), "response_head_too_large");
}

#[test]
fn response_head_encoding() {
    let mut head = ResponseHead::new(200);
    head.headers =
        HeaderBlock::try_from_pairs([("Content-Type", "text/plain"), ("set-cookie", "a=1")])
            .unwrap();
    let mut buf = BytesMut::new();
    encode_response_head(&head, &mut buf).unwrap();
    assert_eq!(
        &buf[..],
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nset-cookie: a=1\r\n\r\n"
    );
    let parsed = ResponseHeadParser::new(&UwsgiLimits::default())
        .parse(&mut buf)
        .unwrap()
        .unwrap();
    assert_eq!(parsed.head.headers, head.headers);
    assert_eq!(parsed.head.status, 200);

    let mut buf = Vec::new();
    let custom = ResponseHead {
        status: 599,
        reason: None,
        headers: HeaderBlock::new(),
    };
    encode_response_head(&custom, &mut buf).unwrap();
    assert_eq!(&buf[..], b"HTTP/1.1 599 \r\n\r\n");
    let mut buf = Vec::new();
    let teapot = ResponseHead {
        status: 418,
        reason: Some("I'm a teapot".into()),
        headers: HeaderBlock::new(),
    };
    encode_response_head(&teapot, &mut buf).unwrap();
    assert_eq!(&buf[..], b"HTTP/1.1 418 I'm a teapot\r\n\r\n");
    encode_response_head(&ResponseHead::new(101), &mut Vec::new()).unwrap();

    for bad in [
        ResponseHead::new(99),
        ResponseHead::new(1000),
        ResponseHead::new(100),
        ResponseHead::new(103),
        ResponseHead {
            status: 200,
            reason: Some("a\r\nX: y".into()),
            headers: HeaderBlock::new(),
        },
    ] {
        let mut buf = Vec::new();
        assert_eq!(
            encode_response_head(&bad, &mut buf).unwrap_err().class(),
            "invalid_response_head"
        );
        assert!(buf.is_empty());
    }
}
