//! Unit tests of [`build`](super::build): the variables, the decisions and
//! one test per defence. The language-neutral cases are in
//! `tests/vectors/environ.json`.

use bytes::Bytes;

use super::*;
use crate::frame::{HeaderBlock, HttpVersion, RequestHead};

fn head(path: &'static str, headers: &[(&str, &str)]) -> RequestHead {
    RequestHead {
        method: Bytes::from_static(b"GET"),
        scheme: Bytes::from_static(b"http"),
        authority: Bytes::from_static(b"example.com"),
        path: Bytes::from_static(path.as_bytes()),
        query: None,
        version: HttpVersion::HTTP_11,
        headers: HeaderBlock::try_from_pairs(headers.iter().copied()).unwrap(),
        client_addr: Bytes::from_static(b"192.0.2.1"),
        client_port: 50000,
        server_name: Bytes::from_static(b"example.com"),
        server_port: 80,
        tls: false,
        params: HeaderBlock::new(),
        body_length: None,
        upgrade: None,
    }
}

fn env(h: &RequestHead) -> Environ {
    build(h, &EnvironConfig::default()).unwrap()
}

fn get<'a>(e: &'a Environ, name: &str) -> Option<&'a str> {
    e.get(name).map(|v| std::str::from_utf8(v).unwrap())
}

fn names(e: &Environ) -> Vec<&str> {
    e.iter()
        .map(|(n, _)| std::str::from_utf8(n).unwrap())
        .collect()
}

#[test]
fn simple_get_has_every_server_variable_in_order() {
    let e = env(&head("/hello", &[("Host", "example.com")]));
    assert_eq!(
        names(&e),
        [
            "REQUEST_METHOD",
            "SCRIPT_NAME",
            "PATH_INFO",
            "QUERY_STRING",
            "REQUEST_URI",
            "REQUEST_SCHEME",
            "SERVER_PROTOCOL",
            "SERVER_NAME",
            "SERVER_PORT",
            "SERVER_SOFTWARE",
            "GATEWAY_INTERFACE",
            "REMOTE_ADDR",
            "REMOTE_PORT",
            "HTTP_HOST",
        ]
    );
    assert_eq!(get(&e, "PATH_INFO"), Some("/hello"));
    assert_eq!(get(&e, "QUERY_STRING"), Some(""));
    assert_eq!(get(&e, "SERVER_PORT"), Some("80"));
    assert_eq!(get(&e, "REMOTE_PORT"), Some("50000"));
    assert_eq!(get(&e, "GATEWAY_INTERFACE"), Some("CGI/1.1"));
    assert_eq!(e.len(), 14);
    assert!(!e.is_empty());
}

#[test]
fn unchanged_values_share_the_head_buffers() {
    let mut h = head("/plain", &[("X-A", "value")]);
    h.query = Some(Bytes::from_static(b"q=1"));
    let e = env(&h);
    let hv = h.headers.iter().next().unwrap().1;
    assert_eq!(e.get("HTTP_X_A").unwrap().as_ptr(), hv.as_ptr());
    assert_eq!(e.get("PATH_INFO").unwrap().as_ptr(), h.path.as_ptr());
    assert_eq!(
        e.get("QUERY_STRING").unwrap().as_ptr(),
        h.query.unwrap().as_ptr()
    );
}

#[test]
fn query_absent_empty_and_request_uri() {
    let mut h = head("/p", &[]);
    assert_eq!(get(&env(&h), "REQUEST_URI"), Some("/p"));
    h.query = Some(Bytes::new());
    let e = env(&h);
    assert_eq!(get(&e, "QUERY_STRING"), Some(""));
    assert_eq!(get(&e, "REQUEST_URI"), Some("/p?"));
    h.query = Some(Bytes::from_static(b"a=%20+b"));
    let e = env(&h);
    assert_eq!(get(&e, "QUERY_STRING"), Some("a=%20+b"));
    assert_eq!(get(&e, "REQUEST_URI"), Some("/p?a=%20+b"));
}

#[test]
fn path_info_is_decoded_bytes() {
    let e = env(&head("/a%2Fb/%FF+%zz", &[]));
    assert_eq!(e.get("PATH_INFO"), Some(&b"/a/b/\xff+%zz"[..]));
    assert_eq!(get(&e, "REQUEST_URI"), Some("/a%2Fb/%FF+%zz"));
}

#[test]
fn mount_prefix_rules() {
    let mut c = EnvironConfig::default();
    c.script_name("/app");
    let cases = [
        ("/app", "/app", ""),
        ("/app/", "/app", "/"),
        ("/app/x/y", "/app", "/x/y"),
        ("/%61pp/x", "/app", "/x"),
        ("/application", "", "/application"),
        ("/app%2Fx", "", "/app/x"),
        ("/other", "", "/other"),
    ];
    for (path, script, info) in cases {
        let e = build(&head(path, &[]), &c).unwrap();
        assert_eq!(get(&e, "SCRIPT_NAME"), Some(script), "{path}");
        assert_eq!(get(&e, "PATH_INFO"), Some(info), "{path}");
    }
    // A directly assigned, non-normal field is normalised by build.
    c.script_name = Bytes::from_static(b"app/");
    let e = build(&head("/app/z", &[]), &c).unwrap();
    assert_eq!(get(&e, "SCRIPT_NAME"), Some("/app"));
    assert_eq!(get(&e, "PATH_INFO"), Some("/z"));
}

#[test]
fn defence_nul_in_target() {
    for path in ["/a%00b", "/a\0b"] {
        assert_eq!(
            build(&head(path, &[]), &EnvironConfig::default()),
            Err(EnvironError::NulInTarget)
        );
    }
    let mut h = head("/a", &[]);
    h.query = Some(Bytes::from_static(b"x=\0"));
    assert_eq!(
        build(&h, &EnvironConfig::default()),
        Err(EnvironError::NulInTarget)
    );
    // %00 in the query stays encoded, so it is fine.
    h.query = Some(Bytes::from_static(b"x=%00"));
    assert!(build(&h, &EnvironConfig::default()).is_ok());
}

#[test]
fn defence_underscore_headers_dropped_by_default() {
    let h = head(
        "/",
        &[
            ("X-Auth-User", "real"),
            ("X_Auth_User", "spoof"),
            ("X.Dot", "d"),
        ],
    );
    let e = env(&h);
    assert_eq!(get(&e, "HTTP_X_AUTH_USER"), Some("real"));
    assert!(e.iter().all(|(n, _)| !n.starts_with(b"HTTP_X.")));
    // Allowed by config: merged in order, never overwritten.
    let mut c = EnvironConfig::default();
    c.allow_underscore_headers(true);
    let e = build(&h, &c).unwrap();
    assert_eq!(get(&e, "HTTP_X_AUTH_USER"), Some("real, spoof"));
    assert_eq!(
        e.get("HTTP_X.DOT"),
        None,
        "other punctuation is always dropped"
    );
}

#[test]
fn defence_proxy_header_never_maps() {
    for allow in [false, true] {
        let mut c = EnvironConfig::default();
        c.allow_underscore_headers(allow);
        let h = head("/", &[("Proxy", "http://evil:8080"), ("PROXY", "x")]);
        let e = build(&h, &c).unwrap();
        assert_eq!(e.get("HTTP_PROXY"), None);
    }
}

#[test]
fn defence_content_headers_only_feed_cgi_variables() {
    let mut c = EnvironConfig::default();
    c.allow_underscore_headers(true);
    let h = head(
        "/",
        &[
            ("Content-Length", "3"),
            ("Content-Type", "text/plain"),
            ("Content_Length", "999"),
            ("content_type", "evil/x"),
        ],
    );
    let e = build(&h, &c).unwrap();
    assert_eq!(get(&e, "CONTENT_LENGTH"), Some("3"));
    assert_eq!(get(&e, "CONTENT_TYPE"), Some("text/plain"));
    assert_eq!(e.get("HTTP_CONTENT_LENGTH"), None);
    assert_eq!(e.get("HTTP_CONTENT_TYPE"), None);
    // Every other header gets the HTTP_ prefix: none can set a server var.
    let e = env(&head(
        "/",
        &[("Server-Name", "evil"), ("Remote-Addr", "1.2.3.4")],
    ));
    assert_eq!(get(&e, "SERVER_NAME"), Some("example.com"));
    assert_eq!(get(&e, "REMOTE_ADDR"), Some("192.0.2.1"));
    assert_eq!(get(&e, "HTTP_SERVER_NAME"), Some("evil"));
}

#[test]
fn defence_content_length_smuggling() {
    let c = EnvironConfig::default();
    let ok = head("/", &[("Content-Length", "5"), ("content-length", "05, 5")]);
    assert_eq!(get(&build(&ok, &c).unwrap(), "CONTENT_LENGTH"), Some("5"));
    let conflict = head("/", &[("Content-Length", "5"), ("Content-Length", "6")]);
    assert_eq!(
        build(&conflict, &c),
        Err(EnvironError::ConflictingContentLength { first: 5, other: 6 })
    );
    let bad = head("/", &[("Content-Length", "abc")]);
    let err = build(&bad, &c).unwrap_err();
    assert_eq!(err.class(), "invalid_content_length");
    assert!(err.to_string().contains("abc"));
    let te = head(
        "/",
        &[("Transfer-Encoding", "chunked"), ("Content-Length", "5")],
    );
    assert_eq!(
        build(&te, &c),
        Err(EnvironError::ContentLengthWithTransferEncoding)
    );
}

#[test]
fn defence_conflicting_content_type_and_duplicate_host() {
    let c = EnvironConfig::default();
    let same = head("/", &[("Content-Type", "a/b"), ("Content-Type", "a/b")]);
    assert_eq!(get(&build(&same, &c).unwrap(), "CONTENT_TYPE"), Some("a/b"));
    let diff = head("/", &[("Content-Type", "a/b"), ("Content-Type", "c/d")]);
    assert_eq!(build(&diff, &c), Err(EnvironError::ConflictingContentType));
    let hosts = head("/", &[("Host", "a"), ("host", "a")]);
    assert_eq!(build(&hosts, &c), Err(EnvironError::DuplicateHost));
}

#[test]
fn errors_are_reported_in_documented_order() {
    let c = EnvironConfig::default();
    // NUL in the target comes before header problems.
    let h = head("/%00", &[("Content-Length", "x")]);
    assert_eq!(build(&h, &c), Err(EnvironError::NulInTarget));
    // Header problems in header order.
    let h = head(
        "/",
        &[("Host", "a"), ("Host", "b"), ("Content-Length", "x")],
    );
    assert_eq!(build(&h, &c), Err(EnvironError::DuplicateHost));
    // TE + CL after the header pass.
    let h = head(
        "/",
        &[
            ("Transfer-Encoding", "chunked"),
            ("Content-Length", "1"),
            ("Content-Length", "2"),
        ],
    );
    assert_eq!(
        build(&h, &c).unwrap_err().class(),
        "conflicting_content_length"
    );
}

#[test]
fn body_length_wins_over_content_length_header() {
    let mut h = head("/", &[("Content-Length", "10")]);
    h.body_length = Some(7);
    assert_eq!(get(&env(&h), "CONTENT_LENGTH"), Some("7"));
    h.headers = HeaderBlock::new();
    assert_eq!(get(&env(&h), "CONTENT_LENGTH"), Some("7"));
    h.body_length = None;
    assert_eq!(env(&h).get("CONTENT_LENGTH"), None);
    // A bad header is refused even when body_length is known.
    h.body_length = Some(7);
    h.headers = HeaderBlock::try_from_pairs([("Content-Length", "-1")]).unwrap();
    assert!(build(&h, &EnvironConfig::default()).is_err());
}

#[test]
fn repeated_headers_and_cookies_are_joined() {
    let e = env(&head(
        "/",
        &[
            ("Accept", "a"),
            ("Cookie", "x=1"),
            ("accept", "b"),
            ("COOKIE", "y=2"),
            ("Foo-Bar", "1"),
            ("foo-bar", "2"),
            ("x-FoO", "z"),
        ],
    ));
    assert_eq!(get(&e, "HTTP_ACCEPT"), Some("a, b"));
    assert_eq!(get(&e, "HTTP_COOKIE"), Some("x=1; y=2"));
    assert_eq!(get(&e, "HTTP_FOO_BAR"), Some("1, 2"));
    assert_eq!(get(&e, "HTTP_X_FOO"), Some("z"));
}

#[test]
fn many_headers_use_the_index_and_keep_order() {
    let owned: Vec<(String, String)> = (0..100)
        .flat_map(|i| {
            [
                (format!("X-H{i}"), format!("a{i}")),
                (format!("x-h{i}"), format!("b{i}")),
            ]
        })
        .collect();
    let mut h = head("/", &[]);
    h.headers = HeaderBlock::try_from_pairs(owned.iter().map(|(n, v)| (n, v))).unwrap();
    let e = env(&h);
    for i in 0..100 {
        let want = format!("a{i}, b{i}");
        assert_eq!(get(&e, &format!("HTTP_X_H{i}")), Some(want.as_str()));
    }
    let http: Vec<_> = names(&e)
        .into_iter()
        .filter(|n| n.starts_with("HTTP_X_H"))
        .collect();
    assert_eq!(http.len(), 100);
    assert_eq!(http[0], "HTTP_X_H0");
    assert_eq!(http[99], "HTTP_X_H99");
}

#[test]
fn server_name_and_port_fallbacks() {
    let mut h = head("/", &[]);
    h.server_name = Bytes::new();
    h.server_port = 0;
    h.authority = Bytes::from_static(b"[2001:db8::5]:8443");
    let e = env(&h);
    assert_eq!(get(&e, "SERVER_NAME"), Some("[2001:db8::5]"));
    assert_eq!(get(&e, "SERVER_PORT"), Some("8443"));
    assert_eq!(get(&e, "HTTP_HOST"), Some("[2001:db8::5]:8443"));

    h.authority = Bytes::new();
    h.tls = true;
    h.scheme = Bytes::new();
    let e = env(&h);
    assert_eq!(get(&e, "SERVER_NAME"), Some("localhost"));
    assert_eq!(get(&e, "SERVER_PORT"), Some("443"));
    assert_eq!(get(&e, "REQUEST_SCHEME"), Some("https"));
    assert_eq!(get(&e, "HTTPS"), Some("on"));
    assert_eq!(e.get("HTTP_HOST"), None);

    let mut c = EnvironConfig::default();
    c.default_server_name("fallback")
        .default_server_port(Some(9000));
    let e = build(&h, &c).unwrap();
    assert_eq!(get(&e, "SERVER_NAME"), Some("fallback"));
    assert_eq!(get(&e, "SERVER_PORT"), Some("9000"));
}

#[test]
fn remote_addr_brackets_and_unknown_port() {
    let mut h = head("/", &[]);
    h.client_addr = Bytes::from_static(b"[2001:db8::1]");
    h.client_port = 0;
    let e = env(&h);
    assert_eq!(get(&e, "REMOTE_ADDR"), Some("2001:db8::1"));
    assert_eq!(e.get("REMOTE_PORT"), None);
}

#[test]
fn params_override_in_place_except_content_length() {
    let mut h = head("/x", &[("Host", "example.com")]);
    h.body_length = Some(4);
    h.params = HeaderBlock::try_from_pairs([
        ("DOCUMENT_ROOT", "/srv"),
        ("SCRIPT_NAME", "/forced"),
        ("HTTP_HOST", "proxy.example"),
        ("CONTENT_LENGTH", "999"),
        ("DOCUMENT_ROOT", "/srv2"),
        ("HTTP_PROXY", "trusted"),
    ])
    .unwrap();
    let e = env(&h);
    assert_eq!(get(&e, "SCRIPT_NAME"), Some("/forced"));
    assert_eq!(get(&e, "HTTP_HOST"), Some("proxy.example"));
    assert_eq!(get(&e, "CONTENT_LENGTH"), Some("4"));
    assert_eq!(get(&e, "DOCUMENT_ROOT"), Some("/srv2"));
    assert_eq!(get(&e, "HTTP_PROXY"), Some("trusted"));
    let n = names(&e);
    assert_eq!(n[1], "SCRIPT_NAME", "overrides keep their position");
    assert_eq!(n.iter().filter(|x| **x == "DOCUMENT_ROOT").count(), 1);
    assert_eq!(&n[n.len() - 2..], ["DOCUMENT_ROOT", "HTTP_PROXY"]);
}

#[test]
fn max_size_limit() {
    let h = head("/", &[("X-Big", "0123456789")]);
    let size = env(&h).size();
    let mut c = EnvironConfig::default();
    c.max_size(Some(size));
    assert!(build(&h, &c).is_ok());
    c.max_size(Some(size - 1));
    assert_eq!(
        build(&h, &c),
        Err(EnvironError::TooLarge {
            size,
            limit: size - 1
        })
    );
}

#[test]
fn protocol_strings() {
    for (v, s) in [
        (HttpVersion::HTTP_10, "HTTP/1.0"),
        (HttpVersion::HTTP_11, "HTTP/1.1"),
        (HttpVersion::HTTP_2, "HTTP/2"),
        (HttpVersion::HTTP_3, "HTTP/3"),
    ] {
        let mut h = head("/", &[]);
        h.version = v;
        assert_eq!(get(&env(&h), "SERVER_PROTOCOL"), Some(s));
    }
}

#[test]
fn json_output_is_latin1_and_escaped() {
    let mut e = Environ::new();
    e.insert("A", Bytes::from_static(b"q\"\\\n\x01\x7f\xe9\xff"));
    e.insert("B", "plain");
    assert_eq!(
        e.to_json_string(),
        r#"{"A":"q\"\\\n\u0001\u007f\u00e9\u00ff","B":"plain"}"#
    );
    assert_eq!(e.insert("B", "new"), Some(Bytes::from_static(b"plain")));
    assert_eq!(e.len(), 2);
    assert_eq!(Environ::new().to_json_string(), "{}");
}

#[test]
fn error_classes_and_messages() {
    let errs = [
        EnvironError::NulInTarget,
        EnvironError::InvalidContentLength { value: "x".into() },
        EnvironError::ConflictingContentLength { first: 1, other: 2 },
        EnvironError::ContentLengthWithTransferEncoding,
        EnvironError::ConflictingContentType,
        EnvironError::DuplicateHost,
        EnvironError::TooLarge { size: 2, limit: 1 },
    ];
    let classes: std::collections::HashSet<_> = errs.iter().map(|e| e.class()).collect();
    assert_eq!(classes.len(), errs.len());
    for e in &errs {
        assert!(!e.to_string().is_empty());
    }
}

/// `check` (what the runtime runs before a handler) refuses exactly what
/// `build` refuses, with the same error, and builds only under a size limit.
#[test]
fn check_refuses_what_build_refuses() {
    let heads = [
        head("/", &[]),
        head("/a%00", &[("Content-Length", "x")]),
        head("/a\0", &[]),
        head("/", &[("Content-Length", "5"), ("content-length", "05, 5")]),
        head("/", &[("Content-Length", "5"), ("Content-Length", "6")]),
        head("/", &[("Content-Length", "abc")]),
        head(
            "/",
            &[("Transfer-Encoding", "chunked"), ("Content-Length", "5")],
        ),
        head("/", &[("Transfer-Encoding", "chunked")]),
        head("/", &[("Content-Type", "a/b"), ("Content-Type", "a/b")]),
        head("/", &[("Content-Type", "a/b"), ("Content-Type", "c/d")]),
        head("/", &[("Host", "a"), ("host", "a")]),
        head(
            "/",
            &[("Host", "a"), ("Host", "b"), ("Content-Length", "x")],
        ),
        head(
            "/",
            &[
                ("X_Under", "1"),
                ("Proxy", "x"),
                ("Cookie", "a"),
                ("cookie", "b"),
            ],
        ),
    ];
    for limit in [None, Some(10), Some(4096)] {
        let mut c = EnvironConfig::default();
        c.max_size(limit);
        for h in &heads {
            match (check(h, &c), build(h, &c)) {
                (Ok(None), Ok(_)) => assert!(limit.is_none()),
                (Ok(Some(a)), Ok(b)) => {
                    assert!(limit.is_some());
                    assert_eq!(a, b);
                }
                (Err(a), Err(b)) => assert_eq!(a, b, "{h:?}"),
                (a, b) => panic!("{h:?} under {limit:?}: check {a:?}, build {b:?}"),
            }
        }
    }
}
