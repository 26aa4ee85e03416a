//! Interop, cases A and C: a REAL nginx (`uwsgi_pass unix:SOCK; include
//! uwsgi_params;`, private config) in front of
//!
//! * A: `uwire serve --bind unix:SOCK` (child process, demo app: `/`,
//!   `/echo`, `/environ`), speaking classic uwsgi on that socket;
//! * C: a REAL uWSGI running `tests/interop_apps/environ_app.py` (with
//!   `--buffer-size 65535 --post-buffering 65536`, see below),
//!
//! with the same nginx `server` settings for both. Every case sends the
//! same request to both and asserts, for the CGI variables both define,
//! that the runtime's environ equals uWSGI's: drop-in compatibility. Where
//! they differ on purpose the difference is asserted exactly (see
//! `docs/nginx.md`, "What changes for the application").
//!
//! The uWSGI checks come first in each test, so a failure of the uwire
//! side never hides the reference behaviour.
//!
//! Needs nginx and uWSGI; see `tests/interop_common/mod.rs` for the skip
//! policy (`UWIRE_REQUIRE_INTEROP=1` makes a missing tool a failure).

#![cfg(feature = "cli")]

mod interop_common;

use std::time::Duration;

use interop_common::*;

/// nginx, `uwire serve` and uWSGI in one directory. Fields drop in order:
/// processes first, the directory last.
struct Stack {
    nginx: Nginx,
    serve: Serve,
    uwsgi: Uwsgi,
    tools: Tools,
    dir: TempDir,
}

/// `server` directives of every site: bodies up to 64 MiB (nginx's default
/// is 1 MiB).
const SERVER_BASE: &str = "client_max_body_size 64m;";

/// What uWSGI is run with for the comparison. `--buffer-size 65535`: the
/// protocol's maximum vars block (uWSGI's default, 4096, refuses bigger
/// heads). `--post-buffering 65536`: uWSGI reads the whole request body
/// before calling the app, which a streaming echo needs behind nginx
/// (nginx stops sending the request body once the response head is out).
const UWSGI_BASE: [&str; 4] = ["--buffer-size", "65535", "--post-buffering", "65536"];

impl Stack {
    async fn start(
        name: &str,
        server: &str,
        location: &str,
        uwsgi_extra: &[&str],
    ) -> Option<Stack> {
        Stack::start_sites(name, server, location, uwsgi_extra, &[]).await
    }

    /// Sites `uwire` (-> uwire serve) and `uwsgi` (-> uWSGI) with `server`
    /// and `location` directives, plus `extra` sites as given.
    async fn start_sites(
        name: &str,
        server: &str,
        location: &str,
        uwsgi_extra: &[&str],
        extra: &[(&'static str, &str, &str)],
    ) -> Option<Stack> {
        let tools = require(name, &[Tool::Nginx, Tool::Uwsgi])?;
        let dir = TempDir::new(name);
        let mut args = UWSGI_BASE.to_vec();
        args.extend_from_slice(uwsgi_extra);
        let uwsgi = Uwsgi::start(&tools, &dir, "uwsgi", WsgiApp::Environ, &args).await;
        // A bounded deadline: a request that cannot finish fails in
        // seconds, not after the default 60 s.
        let serve = Serve::start(&dir, &["--request-deadline", "10s"]).await;
        let mut sites = vec![
            Site {
                name: "uwire",
                upstream: serve.sock.clone(),
                server: format!("{SERVER_BASE} {server}"),
                location: location.into(),
            },
            Site {
                name: "uwsgi",
                upstream: uwsgi.sock.clone(),
                server: format!("{SERVER_BASE} {server}"),
                location: location.into(),
            },
        ];
        for (n, s, l) in extra {
            sites.push(Site {
                name: n,
                upstream: uwsgi.sock.clone(),
                server: s.to_string(),
                location: l.to_string(),
            });
        }
        let nginx = Nginx::start(&tools, &dir, &sites).await;
        Some(Stack {
            nginx,
            serve,
            uwsgi,
            tools,
            dir,
        })
    }

    fn uwire(&self) -> std::net::SocketAddr {
        self.nginx.addr("uwire")
    }

    fn uwsgi_site(&self) -> std::net::SocketAddr {
        self.nginx.addr("uwsgi")
    }

    /// The same request to uWSGI, then to the runtime; both environs.
    async fn environs(&self, req: &Req) -> (Environ, Environ) {
        let theirs = req.fetch(self.uwsgi_site()).await.environ();
        let r = req.fetch(self.uwire()).await;
        assert_eq!(
            r.status,
            200,
            "nginx -> uwire runtime: {}\nruntime log:\n{}",
            r.text(),
            self.serve.proc.log_text()
        );
        (r.environ(), theirs)
    }
}

/// The differences between the runtime's environ and uWSGI's behind the
/// same nginx that every request shows (asserted by every case):
///
/// * `SERVER_PORT`, `REMOTE_PORT`: two nginx listeners, two connections;
/// * `SERVER_NAME`: nginx sends `$server_name`, `""` when the `server` has
///   none; uWSGI passes that on, the runtime never leaves it empty (CGI
///   requires it) and falls back to the host of `HTTP_HOST`;
/// * runtime only: `GATEWAY_INTERFACE` and `SERVER_SOFTWARE` (RFC 3875
///   meta-variables uWSGI does not add) and `SCRIPT_NAME` (`""`: the
///   runtime's mount prefix);
/// * uWSGI only: `CONTENT_LENGTH`/`CONTENT_TYPE` when nginx sent them
///   empty (no body, no type): the runtime leaves them out (PEP 3333 "may
///   be empty or absent").
const DIFFER: [&str; 3] = ["SERVER_PORT", "REMOTE_PORT", "SERVER_NAME"];
const ONLY_RUNTIME: [&str; 3] = ["GATEWAY_INTERFACE", "SCRIPT_NAME", "SERVER_SOFTWARE"];

fn with<'a>(base: &[&'a str], more: &[&'a str]) -> Vec<&'a str> {
    base.iter().chain(more).copied().collect()
}

/// Asserts the runtime's environ matches uWSGI's except for [`DIFFER`],
/// [`ONLY_RUNTIME`] and what the case lists.
#[track_caller]
fn assert_drop_in(
    what: &str,
    ours: &Environ,
    theirs: &Environ,
    differ: &[&str],
    only_theirs: &[&str],
) {
    assert_diff(
        what,
        ours,
        theirs,
        &with(&DIFFER, differ),
        &ONLY_RUNTIME,
        only_theirs,
    );
    assert_eq!(theirs.var("SERVER_NAME"), "");
    assert_eq!(
        ours.var("SERVER_NAME"),
        ours.var("HTTP_HOST").split(':').next().unwrap()
    );
    assert_eq!(ours.var("SCRIPT_NAME"), "");
    assert_eq!(ours.var("GATEWAY_INTERFACE"), "CGI/1.1");
}

// ---------------------------------------------------------------------------
// GET with a query
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_with_query() {
    bounded(async {
        let Some(s) = Stack::start("a-get", "", "", &[]).await else {
            return;
        };
        let req = Req::get("/environ/a%20b/c?x=1&y=%2F&z")
            .header("User-Agent", "interop/1")
            .header("X-Custom", "v1");
        let (ours, theirs) = s.environs(&req).await;
        let host = nginx_http_host(&s.tools, HOST);
        let docroot = format!("{}/html", s.dir.path.display());
        for (who, e, port) in [
            ("uWSGI", &theirs, s.uwsgi_site().port()),
            ("runtime", &ours, s.uwire().port()),
        ] {
            for (k, v) in [
                ("REQUEST_METHOD", "GET"),
                ("PATH_INFO", "/environ/a b/c"),
                ("QUERY_STRING", "x=1&y=%2F&z"),
                ("REQUEST_URI", "/environ/a%20b/c?x=1&y=%2F&z"),
                ("SERVER_PROTOCOL", "HTTP/1.1"),
                ("REQUEST_SCHEME", "http"),
                ("REMOTE_ADDR", "127.0.0.1"),
                ("HTTP_HOST", host.as_str()),
                ("HTTP_USER_AGENT", "interop/1"),
                ("HTTP_X_CUSTOM", "v1"),
                ("HTTP_CONNECTION", "close"),
                ("DOCUMENT_ROOT", docroot.as_str()),
            ] {
                assert_eq!(e.var(k), v, "{who}: {k}");
            }
            assert_eq!(e.var("SERVER_PORT"), port.to_string(), "{who}");
            assert!(e.var("REMOTE_PORT").parse::<u16>().unwrap() > 0, "{who}");
        }
        assert_eq!(theirs.var("CONTENT_LENGTH"), "");
        assert_eq!(theirs.var("CONTENT_TYPE"), "");
        assert_drop_in(
            "GET",
            &ours,
            &theirs,
            &[],
            &["CONTENT_LENGTH", "CONTENT_TYPE"],
        );

        // A target nginx normalises: PATH_INFO is nginx's $document_uri
        // (dot segments resolved, slashes merged, %2F decoded), REQUEST_URI
        // the raw target. The runtime routes on nginx's PATH_INFO.
        let req = Req::get("/environ//x/../y/./z%2Fw?q=1");
        let (ours, theirs) = s.environs(&req).await;
        for e in [&ours, &theirs] {
            assert_eq!(e.var("PATH_INFO"), "/environ/y/z/w");
            assert_eq!(e.var("REQUEST_URI"), "/environ//x/../y/./z%2Fw?q=1");
            assert_eq!(e.var("QUERY_STRING"), "q=1");
        }
        assert_drop_in(
            "normalised GET",
            &ours,
            &theirs,
            &[],
            &["CONTENT_LENGTH", "CONTENT_TYPE"],
        );

        // `--protocol auto`: the same socket serves uwire/1 too (uwire proxy
        // -> runtime), next to nginx's classic uwsgi connections.
        let proxy = UwireProxy::start(
            &s.dir,
            "uwire",
            &format!("unix:{}", s.serve.sock.display()),
            &[],
        )
        .await;
        let e = Req::get("/environ/a%20b?x=1")
            .fetch(proxy.addr)
            .await
            .environ();
        assert_eq!(e.var("PATH_INFO"), "/environ/a b");
        assert_eq!(e.var("QUERY_STRING"), "x=1");
        assert_eq!(e.var("HTTP_HOST"), HOST);

        // The demo's other routes, byte for byte.
        let r = Req::get("/").fetch(s.uwire()).await;
        assert_eq!(
            (r.status, r.body.as_slice()),
            (200, &b"Hello from uwire!\n"[..])
        );
        let r = Req::get("/nope").fetch(s.uwire()).await;
        assert_eq!(r.status, 404);
        assert_eq!(r.body, b"not found: try /, /echo or /environ\n");
    })
    .await
}

// ---------------------------------------------------------------------------
// 10 MiB POST
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_10_mib_echo() {
    bounded(async {
        let Some(s) = Stack::start("a-post", "", "", &[]).await else {
            return;
        };
        let body = pattern(10 << 20);
        let echo = Req::post("/echo", body.clone()).header("Content-Type", "application/x-test");
        let r = echo.fetch(s.uwsgi_site()).await;
        assert_eq!(r.status, 200);
        assert!(r.body == body, "nginx -> uWSGI: echoed bytes differ");

        let r = echo.fetch(s.uwire()).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("content-type"), Some("application/octet-stream"));
        assert_eq!(
            r.body.len(),
            body.len(),
            "nginx -> uwire runtime: echoed length"
        );
        assert!(
            r.body == body,
            "nginx -> uwire runtime: echoed bytes differ"
        );

        // A form POST: CONTENT_LENGTH and CONTENT_TYPE. nginx also sends
        // the client's headers as HTTP_CONTENT_LENGTH/HTTP_CONTENT_TYPE,
        // which uWSGI passes on and the runtime drops (they could only
        // contradict CONTENT_*, RFC 3875 4.1.18).
        let form = "a=1&b=two+words";
        let req = Req::post("/environ?f=1", form)
            .header("Content-Type", "application/x-www-form-urlencoded");
        let (ours, theirs) = s.environs(&req).await;
        for e in [&ours, &theirs] {
            assert_eq!(e.var("REQUEST_METHOD"), "POST");
            assert_eq!(e.var("CONTENT_LENGTH"), form.len().to_string());
            assert_eq!(e.var("CONTENT_TYPE"), "application/x-www-form-urlencoded");
        }
        assert_eq!(theirs.var("body.sha256"), sha256_hex(form.as_bytes()));
        assert_eq!(theirs.var("HTTP_CONTENT_LENGTH"), form.len().to_string());
        assert_drop_in(
            "POST",
            &ours,
            &theirs,
            &[],
            &["HTTP_CONTENT_LENGTH", "HTTP_CONTENT_TYPE"],
        );

        // The runtime keeps serving (the demo's /environ above never read
        // its body: the runtime discarded it).
        let r = Req::post("/echo", "small").fetch(s.uwire()).await;
        assert_eq!((r.status, r.body.as_slice()), (200, &b"small"[..]));
    })
    .await
}

// ---------------------------------------------------------------------------
// Headers near the 64 KiB vars cap
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_headers_near_the_64k_vars_cap() {
    bounded(async {
        // nginx's default large_client_header_buffers (4 x 8 KiB) refuse a
        // 64 KiB head long before the uwsgi cap: the `defaults` site shows
        // it; the others raise it.
        let Some(s) = Stack::start_sites(
            "a-cap",
            "large_client_header_buffers 8 128k;",
            "",
            &[],
            &[("defaults", "", "")],
        )
        .await
        else {
            return;
        };
        let base = Req::get("/environ");
        let line = filler_headers(base.clone(), 1, 9000, 0)
            .fetch(s.nginx.addr("defaults"))
            .await;
        assert_eq!(
            line.status, 400,
            "one 9000-byte header line, default buffers"
        );
        assert!(line.text().contains("Request Header Or Cookie Too Large"));
        let total = filler_headers(base.clone(), 40, 1000, 0)
            .fetch(s.nginx.addr("defaults"))
            .await;
        assert_eq!(total.status, 400, "40 KB of headers, default buffers");

        // Calibrate on uWSGI: 64 headers of 1000 bytes, then pad the last
        // so the vars block nginx builds is exactly 65535 bytes.
        let e0 = filler_headers(base.clone(), 64, 1000, 0)
            .fetch(s.uwsgi_site())
            .await
            .environ();
        let pad = 65535 - e0.block_size();
        let at_cap = filler_headers(base.clone(), 64, 1000, pad);
        let (ours, theirs) = s.environs(&at_cap).await;
        assert_eq!(theirs.block_size(), 65535);
        for i in 0..64 {
            let want = "v".repeat(if i == 63 { 1000 + pad } else { 1000 });
            assert_eq!(
                theirs.var(&format!("HTTP_X_H{i:04}")),
                want,
                "uWSGI: header {i}"
            );
            assert_eq!(
                ours.var(&format!("HTTP_X_H{i:04}")),
                want,
                "runtime: header {i}"
            );
        }
        assert_drop_in(
            "65535-byte vars block",
            &ours,
            &theirs,
            &[],
            &["CONTENT_LENGTH", "CONTENT_TYPE"],
        );

        // One byte more: nginx itself refuses to build the packet, answers
        // 500 and logs "[alert] ... uwsgi request is too big: 65536".
        // Neither upstream sees a connection. (uWSGI logs a request after
        // answering it: let the previous request's line land first.)
        tokio::time::sleep(Duration::from_millis(300)).await;
        let uwsgi_before = s.uwsgi.requests_logged();
        let conns_before = s.serve.metric("uwire_connections_total").await;
        let over = filler_headers(base, 64, 1000, pad + 1);
        for site in [s.uwsgi_site(), s.uwire()] {
            let r = over.fetch(site).await;
            assert_eq!(r.status, 500, "{}", r.text());
        }
        assert!(
            s.nginx
                .wait_error_log("uwsgi request is too big: 65536")
                .await
        );
        assert_eq!(
            s.nginx
                .error_log_text()
                .matches("uwsgi request is too big: 65536")
                .count(),
            2
        );
        assert_eq!(s.uwsgi.requests_logged(), uwsgi_before);
        assert_eq!(
            s.serve.metric("uwire_connections_total").await,
            conns_before
        );
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_many_small_headers() {
    bounded(async {
        // uWSGI needs --max-vars for 300 headers (its default drops the
        // request: see interop_uwsgi.rs); the runtime accepts up to 1024
        // vars by default.
        let Some(s) = Stack::start("a-many", "", "", &["--max-vars", "1024"]).await else {
            return;
        };
        let mut req = Req::get("/environ");
        for i in 0..300 {
            req = req.header(&format!("X-M{i:03}"), &format!("value {i}"));
        }
        let (ours, theirs) = s.environs(&req).await;
        for i in 0..300 {
            let k = format!("HTTP_X_M{i:03}");
            assert_eq!(theirs.var(&k), format!("value {i}"));
            assert_eq!(ours.var(&k), format!("value {i}"));
        }
        assert_drop_in(
            "300 headers",
            &ours,
            &theirs,
            &[],
            &["CONTENT_LENGTH", "CONTENT_TYPE"],
        );
    })
    .await
}

// ---------------------------------------------------------------------------
// Cookie twice
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cookie_twice() {
    bounded(async {
        let Some(s) = Stack::start("a-cookie", "", "", &[]).await else {
            return;
        };
        let req = Req::get("/environ")
            .header("Cookie", "a=1")
            .header("Cookie", "b=2; c=3")
            .header("X-Dup", "x")
            .header("X-Dup", "y");
        let (ours, theirs) = s.environs(&req).await;
        // nginx 1.22 sends one var per header line: HTTP_COOKIE twice,
        // HTTP_X_DUP twice. uWSGI's environ is a dict: the last one wins
        // and the first cookie is lost. The runtime joins them in order,
        // Cookie with "; " (RFC 9113 8.2.3), others with ", " (RFC 9110
        // 5.3): what the application would see behind uwire proxy, or behind
        // an nginx that joins the lines itself.
        assert_eq!(ours.var("HTTP_COOKIE"), "a=1; b=2; c=3");
        assert_eq!(ours.var("HTTP_X_DUP"), "x, y");
        let joined_by_nginx = theirs.var("HTTP_COOKIE") == "a=1; b=2; c=3";
        if joined_by_nginx {
            assert_drop_in(
                "Cookie twice",
                &ours,
                &theirs,
                &["HTTP_X_DUP"],
                &["CONTENT_LENGTH", "CONTENT_TYPE"],
            );
        } else {
            assert_eq!(theirs.var("HTTP_COOKIE"), "b=2; c=3");
            assert_eq!(theirs.var("HTTP_X_DUP"), "y");
            assert_drop_in(
                "Cookie twice",
                &ours,
                &theirs,
                &["HTTP_COOKIE", "HTTP_X_DUP"],
                &["CONTENT_LENGTH", "CONTENT_TYPE"],
            );
        }
    })
    .await
}

// ---------------------------------------------------------------------------
// Header names with an underscore; Proxy
// ---------------------------------------------------------------------------

fn underscore_request() -> Req {
    Req::get("/environ")
        .header("X_Foo", "under")
        .header("X-Foo", "dash")
        .header("X_Only", "under-only")
        .header("Proxy", "http://evil.example:3128")
        .header("Content_Type", "text/evil")
        .header("Content_Length", "999")
        .header("X-Remote-User", "evil-dash")
        .header("X_Remote_User", "evil-under")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_underscore_headers_default_off() {
    bounded(async {
        // nginx's default `underscores_in_headers off`: names with '_'
        // never leave nginx (logged at info: "client sent invalid header
        // line"). `uwsgi_param HTTP_X_REMOTE_USER` is the way to pass a
        // trusted value: nginx then skips client headers mapping to it.
        let Some(s) = Stack::start(
            "a-under-off",
            "",
            "uwsgi_param HTTP_X_REMOTE_USER trusted;",
            &[],
        )
        .await
        else {
            return;
        };
        let (ours, theirs) = s.environs(&underscore_request()).await;
        for (who, e) in [("uWSGI", &theirs), ("runtime", &ours)] {
            assert_eq!(e.var("HTTP_X_FOO"), "dash", "{who}");
            assert_eq!(e.get("HTTP_X_ONLY"), None, "{who}");
            assert_eq!(e.var("HTTP_X_REMOTE_USER"), "trusted", "{who}");
        }
        assert!(
            s.nginx
                .wait_error_log("client sent invalid header line: \"X_Foo: under\"")
                .await
        );
        // httpoxy: nginx passes `Proxy` as HTTP_PROXY; uWSGI hands it to the
        // app, the runtime never does.
        assert_eq!(theirs.var("HTTP_PROXY"), "http://evil.example:3128");
        assert_eq!(ours.get("HTTP_PROXY"), None);
        assert_drop_in(
            "underscores off",
            &ours,
            &theirs,
            &[],
            &["CONTENT_LENGTH", "CONTENT_TYPE", "HTTP_PROXY"],
        );
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_underscore_headers_on() {
    bounded(async {
        // `underscores_in_headers on`: nginx maps X_Foo to HTTP_X_FOO like
        // X-Foo; past nginx nobody can tell them apart.
        let Some(s) = Stack::start(
            "a-under-on",
            "underscores_in_headers on;",
            "uwsgi_param HTTP_X_REMOTE_USER trusted;",
            &[],
        )
        .await
        else {
            return;
        };
        let (ours, theirs) = s.environs(&underscore_request()).await;
        // An underscore name alone arrives in both.
        assert_eq!(theirs.var("HTTP_X_ONLY"), "under-only");
        assert_eq!(ours.var("HTTP_X_ONLY"), "under-only");
        // X_Foo then X-Foo: two HTTP_X_FOO vars. uWSGI keeps the last, so
        // whichever line comes last wins silently; the runtime keeps both,
        // in order: neither can pass for the other.
        assert_eq!(theirs.var("HTTP_X_FOO"), "dash");
        assert_eq!(ours.var("HTTP_X_FOO"), "under, dash");
        // A trusted uwsgi_param still hides both spellings of the client's
        // header: nginx matches headers to params by the mapped name.
        assert_eq!(theirs.var("HTTP_X_REMOTE_USER"), "trusted");
        assert_eq!(ours.var("HTTP_X_REMOTE_USER"), "trusted");
        // Content_Type / Content_Length become HTTP_CONTENT_TYPE /
        // HTTP_CONTENT_LENGTH: uWSGI hands them to the app next to the real
        // CONTENT_TYPE/CONTENT_LENGTH; the runtime drops them, so they can
        // neither change the body framing nor pass for the real type.
        assert_eq!(theirs.var("HTTP_CONTENT_TYPE"), "text/evil");
        assert_eq!(theirs.var("HTTP_CONTENT_LENGTH"), "999");
        assert_eq!(theirs.var("CONTENT_LENGTH"), "");
        for k in [
            "HTTP_CONTENT_TYPE",
            "HTTP_CONTENT_LENGTH",
            "CONTENT_TYPE",
            "CONTENT_LENGTH",
            "HTTP_PROXY",
        ] {
            assert_eq!(ours.get(k), None, "runtime: {k}");
        }
        assert_drop_in(
            "underscores on",
            &ours,
            &theirs,
            &["HTTP_X_FOO"],
            &[
                "CONTENT_LENGTH",
                "CONTENT_TYPE",
                "HTTP_CONTENT_LENGTH",
                "HTTP_CONTENT_TYPE",
                "HTTP_PROXY",
            ],
        );
    })
    .await
}

// ---------------------------------------------------------------------------
// Chunked upload
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_upload() {
    bounded(async {
        let Some(s) = Stack::start("a-chunked", "", "", &[]).await else {
            return;
        };
        // nginx buffers a chunked body to learn its length (uwsgi frames
        // the body by CONTENT_LENGTH only), and still passes the client's
        // Transfer-Encoding header as HTTP_TRANSFER_ENCODING.
        let body = pattern(3_000_000);
        let req = Req::new("POST", "/environ").chunked(body.clone(), 100_000);
        let (ours, theirs) = s.environs(&req).await;
        assert_eq!(theirs.var("body.sha256"), sha256_hex(&body));
        for e in [&ours, &theirs] {
            assert_eq!(e.var("CONTENT_LENGTH"), "3000000");
            assert_eq!(e.var("HTTP_TRANSFER_ENCODING"), "chunked");
        }
        assert_drop_in("chunked", &ours, &theirs, &[], &["CONTENT_TYPE"]);

        let big = pattern(10 << 20);
        let echo = Req::new("POST", "/echo").chunked(big.clone(), 65_536);
        let r = echo.fetch(s.uwsgi_site()).await;
        assert_eq!(r.status, 200);
        assert!(r.body == big, "nginx -> uWSGI: echoed bytes differ");
        let r = echo.fetch(s.uwire()).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(
            r.body.len(),
            big.len(),
            "nginx -> uwire runtime: echoed length"
        );
        assert!(r.body == big, "nginx -> uwire runtime: echoed bytes differ");
    })
    .await
}

// ---------------------------------------------------------------------------
// The client goes away mid-response
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_disconnect_mid_response() {
    bounded(async {
        // Without `uwsgi_buffering off` nginx would read the whole response
        // into its buffers and temp files whatever the client does.
        let Some(s) = Stack::start("a-disconnect", "", "uwsgi_buffering off;", &[]).await else {
            return;
        };
        // A 10 MiB echo; the client reads 64 KiB of it and leaves.
        let body = pattern(10 << 20);
        let req = Req::post("/echo", body);

        // uWSGI: its write fails once nginx has closed the upstream
        // connection, and it logs so.
        let (status, got) = read_then_disconnect(s.uwsgi_site(), &req, 64 << 10).await;
        assert_eq!(status, 200);
        assert!(got >= 64 << 10);
        assert!(
            eventually(Duration::from_secs(5), || async {
                s.uwsgi.saw_write_fail()
            })
            .await,
            "uWSGI never saw the connection end"
        );
        assert_eq!(Req::get("/environ").fetch(s.uwsgi_site()).await.status, 200);

        // The runtime: nginx closes the uwsgi connection; the runtime must
        // see the stream end (peer_reset counted, nothing left active) and
        // keep serving.
        let resets = s
            .serve
            .metric("uwire_errors_total{kind=\"peer_reset\"}")
            .await;
        let (status, got) = read_then_disconnect(s.uwire(), &req, 64 << 10).await;
        assert_eq!(status, 200);
        assert!(got >= 64 << 10);
        let ended = eventually(Duration::from_secs(5), || async {
            let m = s.serve.metrics().await;
            m.get("uwire_streams_active") == Some(&0.0)
                && m.get("uwire_connections_active") == Some(&0.0)
                && m.get("uwire_errors_total{kind=\"peer_reset\"}")
                    .copied()
                    .unwrap_or(0.0)
                    > resets
        })
        .await;
        let m = s.serve.metrics().await;
        assert_eq!(
            m.get("uwire_streams_active"),
            Some(&0.0),
            "stream still active: {m:#?}"
        );
        assert_eq!(
            m.get("uwire_connections_active"),
            Some(&0.0),
            "connection still open: {m:#?}"
        );
        assert!(
            ended,
            "the runtime saw the stream end but did not count it as peer_reset \
             (errors: {:?})",
            m.iter()
                .filter(|(k, v)| k.starts_with("uwire_errors_total") && **v > 0.0)
                .collect::<Vec<_>>()
        );
        for _ in 0..3 {
            let r = Req::post("/echo", "still here").fetch(s.uwire()).await;
            assert_eq!((r.status, r.body.as_slice()), (200, &b"still here"[..]));
        }
        assert_eq!(Req::get("/environ").fetch(s.uwire()).await.status, 200);
    })
    .await
}
