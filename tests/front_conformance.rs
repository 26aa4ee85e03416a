//! HTTP/1.1 conformance and request smuggling at the front, over real
//! sockets: every malformed or ambiguous request gets its exact status and
//! never reaches the app as a request it could act on; a client's broken
//! body is a 400 and never counts against the upstream's health.
//! (Issue 13, items 5 and 6, and its smuggling list.)
#![cfg(feature = "cli")]

mod proxy_common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use proxy_common::*;
use uwire::client::ClientConfig;
use uwire::proxy::ProxyConfig;

async fn setup(cfg: ProxyConfig) -> (App, Proxy) {
    let app = App::start("conf").await;
    let proxy = Proxy::start(vec![app.upstream()], ClientConfig::default(), cfg).await;
    (app, proxy)
}

/// Sends `req` on a fresh connection and returns the status (0 when the
/// connection closed without a response).
async fn status_of(proxy: &Proxy, req: &[u8]) -> (u16, String) {
    status_after(proxy, req, false).await
}

/// Like [`status_of`]; `half_close` ends the client's side after `req`.
async fn status_after(proxy: &Proxy, req: &[u8], half_close: bool) -> (u16, String) {
    let mut c = RawConn::connect(proxy.addr).await;
    c.send(req).await.unwrap();
    if half_close {
        tokio::io::AsyncWriteExt::shutdown(&mut c.io).await.unwrap();
    }
    match within(Duration::from_secs(20), "response", c.read_response(false)).await {
        Ok(r) => (r.status, r.text()),
        Err(_) => (0, String::new()),
    }
}

fn hits(app: &App) -> u64 {
    app.state.hits.load(Ordering::Relaxed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http11_without_host_is_400_and_never_reaches_the_app() {
    bounded(async {
        let (app, proxy) = setup(ProxyConfig::default()).await;
        let (s, body) = status_of(&proxy, b"GET /hello HTTP/1.1\r\n\r\n").await;
        assert_eq!(s, 400, "{body}");
        assert!(body.contains("Host"), "{body}");
        // Two Host fields, and an invalid one.
        let (s, _) = status_of(&proxy, b"GET /hello HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n").await;
        assert_eq!(s, 400);
        let (s, _) = status_of(&proxy, b"GET /hello HTTP/1.1\r\nHost: a b\r\n\r\n").await;
        assert_eq!(s, 400);
        assert_eq!(hits(&app), 0);
        // HTTP/1.0 may omit Host; HTTP/1.1 with Host is fine.
        let (s, body) = status_of(&proxy, b"GET /hello HTTP/1.0\r\n\r\n").await;
        assert_eq!((s, body.as_str()), (200, "hello"));
        let (s, _) = status_of(&proxy, b"GET /hello HTTP/1.1\r\nHost: a\r\n\r\n").await;
        assert_eq!(s, 200);
        assert_eq!(hits(&app), 2);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absolute_form_target_gives_the_app_the_targets_authority() {
    bounded(async {
        let (_app, proxy) = setup(ProxyConfig::default()).await;
        let req =
            b"GET http://target.example:8081/environ/x?q=1 HTTP/1.1\r\nHost: other.example\r\n\r\n";
        let r = raw_exchange(proxy.addr, req).await;
        assert_eq!(r.status, 200, "{}", r.text());
        let env: std::collections::HashMap<String, String> =
            serde_json::from_slice(&r.body).unwrap();
        assert_eq!(env["HTTP_HOST"], "target.example:8081");
        assert_eq!(env["SERVER_NAME"], "target.example");
        assert_eq!(env["PATH_INFO"], "/environ/x");
        assert_eq!(env["QUERY_STRING"], "q=1");
        // A scheme other than http(s) is refused.
        let (s, _) = status_of(&proxy, b"GET ftp://t/x HTTP/1.1\r\nHost: t\r\n\r\n").await;
        assert_eq!(s, 400);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asterisk_target_is_answered_by_the_front() {
    bounded(async {
        let (app, proxy) = setup(ProxyConfig::default()).await;
        let (s, _) = status_of(&proxy, b"GET * HTTP/1.1\r\nHost: a\r\n\r\n").await;
        assert_eq!(s, 400);
        let mut c = RawConn::connect(proxy.addr).await;
        c.send(b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n")
            .await
            .unwrap();
        let r = c.read_response(false).await.unwrap();
        assert_eq!(r.status, 200);
        assert!(r.header("allow").is_some_and(|a| a.contains("GET")));
        // CONNECT is not proxied.
        let (s, _) = status_of(&proxy, b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n").await;
        assert_eq!(s, 405);
        assert_eq!(hits(&app), 0);
    })
    .await
}

/// Request smuggling forms: each is refused with its exact status and the
/// app never sees a request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smuggling_forms_are_refused_before_the_app() {
    bounded(async {
        let (app, proxy) = setup(ProxyConfig::default()).await;
        let cases: &[(&str, &[u8], u16)] = &[
            (
                "CL + TE",
                b"POST /buffer HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /hello HTTP/1.1\r\nHost: a\r\n\r\n",
                400,
            ),
            (
                "TE + CL",
                b"POST /buffer HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 30\r\n\r\n0\r\n\r\n",
                400,
            ),
            (
                "CL + TE with bare LF line ends",
                b"POST /buffer HTTP/1.1\nHost: a\nContent-Length: 4\nTransfer-Encoding: chunked\n\n0\r\n\r\n",
                400,
            ),
            (
                "CL + TE behind a leading CRLF",
                b"\r\nPOST /buffer HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                400,
            ),
            (
                "duplicate CL behind empty lines",
                b"\r\n\n\r\nPOST /buffer HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
                400,
            ),
            (
                "duplicate equal CL",
                b"POST /buffer HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
                400,
            ),
            (
                "conflicting CL",
                b"POST /buffer HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 5\r\n\r\nabcde",
                400,
            ),
            (
                "CL list",
                b"POST /buffer HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\nabc",
                400,
            ),
            (
                "signed CL",
                b"POST /buffer HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\nabc",
                400,
            ),
            (
                "obs-fold",
                b"POST /buffer HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\nContent-Length: 3\r\n\r\nabc",
                400,
            ),
            (
                "obs-fold on TE",
                b"POST /buffer HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
                400,
            ),
            (
                "TE not ending in chunked",
                b"POST /buffer HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
                400,
            ),
            (
                "TE unknown",
                b"POST /buffer HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
                400,
            ),
            (
                "space before colon",
                b"POST /buffer HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
                400,
            ),
            (
                "bare CR in a field",
                b"POST /buffer HTTP/1.1\r\nHost: a\r\nX-A: b\rContent-Length: 3\r\n\r\nabc",
                400,
            ),
            (
                "NUL in a field",
                b"POST /buffer HTTP/1.1\r\nHost: a\r\nX-A: b\0c\r\nContent-Length: 3\r\n\r\nabc",
                400,
            ),
        ];
        let mut failures = Vec::new();
        for (name, req, want) in cases {
            let before = hits(&app);
            let (got, body) = status_of(&proxy, req).await;
            let reached = hits(&app) - before;
            if got != *want || reached != 0 {
                failures.push(format!(
                    "{name}: status {got} (want {want}), reached the app {reached}x: {body:?}"
                ));
            }
        }
        assert!(failures.is_empty(), "{failures:#?}");
    })
    .await
}

/// The malformed chunked bodies from the outside probe, and more: each is
/// the client's fault (400), with request buffering nothing reaches the
/// app, and without it the upstream is never ejected for it.
const BAD_CHUNKS: &[(&str, &[u8])] = &[
    ("leading spaces in the size", b"  5\r\nhello\r\n0\r\n\r\n"),
    ("0x prefix", b"0x5\r\nhello\r\n0\r\n\r\n"),
    (
        "size overflow",
        b"fffffffffffffffffff\r\nhello\r\n0\r\n\r\n",
    ),
    ("bare LF chunk lines", b"5\nhello\n0\n\n"),
    ("negative size", b"-5\r\nhello\r\n0\r\n\r\n"),
    ("no CRLF after data", b"5\r\nhelloX0\r\n\r\n"),
    ("non-hex size", b"g\r\nhello\r\n0\r\n\r\n"),
    ("data longer than size", b"3\r\nhello\r\n0\r\n\r\n"),
    ("cut short (client half-closes)", b"5\r\nhel"),
];

fn chunked_request(body: &[u8]) -> Vec<u8> {
    let mut r = b"POST /buffer HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    r.extend_from_slice(body);
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_chunked_bodies_are_400_and_never_blamed_on_the_upstream() {
    bounded(async {
        let (app, proxy) = setup(ProxyConfig::default()).await;
        let mut failures = Vec::new();
        for round in 0..2 {
            for (name, body) in BAD_CHUNKS {
                let cut = name.starts_with("cut short");
                let (got, text) = status_after(&proxy, &chunked_request(body), cut).await;
                if got != 400 {
                    failures.push(format!("round {round}, {name}: status {got}: {text:?}"));
                }
            }
        }
        assert!(failures.is_empty(), "{failures:#?}");
        // Far more failures than the ejection threshold, none counted.
        assert_eq!(proxy.client.ejected(), [false]);
        wait_until(Duration::from_secs(10), "no request left in flight", || {
            proxy.client.outstanding() == [0]
        })
        .await;
        let c = http_client();
        let r = post(&c, &proxy.url("/buffer"), "fine").await;
        assert_eq!((r.status, r.text().as_str()), (200, "len=4"));
        drop(app);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_request_buffering_malformed_bodies_never_reach_the_app() {
    bounded(async {
        let (app, proxy) = setup(ProxyConfig {
            request_buffering: true,
            ..ProxyConfig::default()
        })
        .await;
        let mut failures = Vec::new();
        for (name, body) in BAD_CHUNKS {
            let cut = name.starts_with("cut short");
            let (got, text) = status_after(&proxy, &chunked_request(body), cut).await;
            if got != 400 {
                failures.push(format!("{name}: status {got}: {text:?}"));
            }
        }
        assert!(failures.is_empty(), "{failures:#?}");
        assert_eq!(hits(&app), 0);
        let (s, text) = status_of(
            &proxy,
            &chunked_request(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
        )
        .await;
        assert_eq!((s, text.as_str()), (200, "len=11"));
    })
    .await
}
