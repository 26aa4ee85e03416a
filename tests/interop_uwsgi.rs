//! Interop, case B: `uwire proxy --upstream uwsgi+unix:SOCK` (a child
//! process) in front of a REAL uWSGI running the WSGI apps of
//! `tests/interop_apps/` (environ echo, body echo, Flask, Django).
//!
//! Every request is also sent through a real nginx (`uwsgi_pass` to the same
//! uWSGI, `include uwsgi_params`), so each case shows whether `uwire proxy`
//! is a drop-in replacement for nginx in front of uWSGI: where the two
//! differ, the difference is asserted exactly and explained.
//!
//! Needs nginx and uWSGI (and Flask, Django for their tests); see
//! `tests/interop_common/mod.rs` for the skip policy (`UWIRE_REQUIRE_INTEROP=1`
//! makes a missing tool a failure).

#![cfg(feature = "cli")]

mod interop_common;

use std::time::Duration;

use interop_common::*;

/// A uWSGI (environ app), `uwire proxy` and nginx in front of it, in one
/// directory. Fields drop in order: processes first, the directory last.
struct Stack {
    proxy: UwireProxy,
    nginx: Nginx,
    uwsgi: Uwsgi,
    tools: Tools,
    dir: TempDir,
}

/// nginx `server` directives every site gets: bodies up to 64 MiB and
/// request heads up to 8 x 128 KiB (nginx's defaults are 1 MiB and 4 x 8 KiB).
const NGINX_SERVER: &str = "client_max_body_size 64m; large_client_header_buffers 8 128k;";

impl Stack {
    /// uWSGI with `--buffer-size 65535` (the protocol's maximum; uWSGI's
    /// default is 4096) plus `uwsgi_extra`; the proxy with `proxy_extra`;
    /// nginx's location with `nginx_location`.
    async fn start(
        name: &str,
        uwsgi_extra: &[&str],
        proxy_extra: &[&str],
        nginx_location: &str,
    ) -> Option<Stack> {
        let tools = require(name, &[Tool::Nginx, Tool::Uwsgi])?;
        Some(
            Stack::start_with(
                tools,
                name,
                WsgiApp::Environ,
                uwsgi_extra,
                proxy_extra,
                nginx_location,
            )
            .await,
        )
    }

    async fn start_with(
        tools: Tools,
        name: &str,
        app: WsgiApp,
        uwsgi_extra: &[&str],
        proxy_extra: &[&str],
        nginx_location: &str,
    ) -> Stack {
        let dir = TempDir::new(name);
        let mut args = vec!["--buffer-size", "65535"];
        args.extend_from_slice(uwsgi_extra);
        let uwsgi = Uwsgi::start(&tools, &dir, "app", app, &args).await;
        let proxy = UwireProxy::start(
            &dir,
            "app",
            &format!("uwsgi+unix:{}", uwsgi.sock.display()),
            proxy_extra,
        )
        .await;
        let nginx = Nginx::start(
            &tools,
            &dir,
            &[Site {
                name: "uwsgi",
                upstream: uwsgi.sock.clone(),
                server: NGINX_SERVER.into(),
                location: nginx_location.into(),
            }],
        )
        .await;
        Stack {
            proxy,
            nginx,
            uwsgi,
            tools,
            dir,
        }
    }

    /// The same request through `uwire proxy` and through nginx.
    async fn both(&self, req: &Req) -> (Resp, Resp) {
        (
            req.fetch(self.proxy.addr).await,
            req.fetch(self.nginx.addr("uwsgi")).await,
        )
    }
}

/// The nginx version (`nginx -v`), e.g. `(1, 22)`.
fn nginx_version(tools: &Tools) -> (u32, u32) {
    let out = std::process::Command::new(&tools.nginx)
        .arg("-v")
        .output()
        .expect("nginx -v");
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    let v = text
        .split("nginx/")
        .nth(1)
        .unwrap_or_else(|| panic!("nginx -v: {text}"));
    let mut parts = v.trim().split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

// ---------------------------------------------------------------------------
// B1: GET with a query
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b_get_with_query() {
    bounded(async {
        let Some(s) = Stack::start("b-get", &[], &[], "").await else {
            return;
        };
        let req = Req::get("/environ/a%20b/c?x=1&y=%2F&z")
            .header("User-Agent", "interop/1")
            .header("X-Custom", "v1");
        let (p, n) = s.both(&req).await;
        let (pe, ne) = (p.environ(), n.environ());

        // What uWSGI's application sees behind `uwire proxy`, exactly.
        for (k, v) in [
            ("REQUEST_METHOD", "GET"),
            ("PATH_INFO", "/environ/a b/c"),
            ("QUERY_STRING", "x=1&y=%2F&z"),
            ("REQUEST_URI", "/environ/a%20b/c?x=1&y=%2F&z"),
            ("SERVER_PROTOCOL", "HTTP/1.1"),
            ("REQUEST_SCHEME", "http"),
            ("REMOTE_ADDR", "127.0.0.1"),
            ("SERVER_NAME", "interop.test"),
            ("HTTP_HOST", HOST),
            ("HTTP_USER_AGENT", "interop/1"),
            ("HTTP_X_CUSTOM", "v1"),
            ("HTTP_X_FORWARDED_FOR", "127.0.0.1"),
            ("HTTP_X_FORWARDED_PROTO", "http"),
            ("CONTENT_LENGTH", ""),
            ("CONTENT_TYPE", ""),
            ("wsgi.url_scheme", "http"),
            ("body.length", "0"),
        ] {
            assert_eq!(pe.var(k), v, "{k}");
        }
        assert_eq!(pe.var("SERVER_PORT"), s.proxy.addr.port().to_string());
        assert!(pe.var("REMOTE_PORT").parse::<u16>().unwrap() > 0);
        assert_eq!(
            ne.var("SERVER_PORT"),
            s.nginx.addr("uwsgi").port().to_string()
        );

        // Against nginx -> the same uWSGI: the same CGI variables, except
        // the ports (different listeners), what nginx's config decides
        // (SERVER_NAME is `$server_name`, "" without a server_name;
        // DOCUMENT_ROOT; HTTP_HOST is `$host` in Debian's uwsgi_params),
        // the proxy's X-Forwarded-* and nginx passing `Connection`.
        let mut differ = vec!["REMOTE_PORT", "SERVER_PORT", "SERVER_NAME"];
        if params_set_http_host_to_host(&s.tools) {
            assert_eq!(ne.var("HTTP_HOST"), "interop.test");
            differ.push("HTTP_HOST");
        }
        assert_eq!(ne.var("SERVER_NAME"), "");
        assert_diff(
            "uwire proxy vs nginx, in front of uWSGI",
            &pe,
            &ne,
            &differ,
            &["HTTP_X_FORWARDED_FOR", "HTTP_X_FORWARDED_PROTO"],
            &["DOCUMENT_ROOT", "HTTP_CONNECTION"],
        );
        assert_eq!(ne.var("HTTP_CONNECTION"), "close");
    })
    .await
}

// ---------------------------------------------------------------------------
// B2: 10 MiB POST
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b_post_10_mib_echo() {
    bounded(async {
        let Some(s) = Stack::start("b-post", &[], &[], "").await else {
            return;
        };
        let body = pattern(10 << 20);
        let sha = sha256_hex(&body);
        // uwire proxy streams both ways at once: the echo app answers
        // before it has read the body, and every byte comes back.
        let echo = Req::post("/echo", body.clone()).header("Content-Type", "application/x-test");
        let r = echo.fetch(s.proxy.addr).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.body.len(), body.len(), "echoed length");
        assert!(r.body == body, "echoed bytes differ");
        assert_eq!(r.header("content-type"), Some("application/octet-stream"));

        // nginx does not: once it has sent the upstream's response head to
        // the client it stops sending the request body upstream
        // (ngx_http_upstream_send_request_handler: `header_sent &&
        // !preserve_output` -> dummy write handler). The echo app then waits
        // for a body that never comes until uWSGI's socket-timeout (4 s)
        // and the client gets a truncated response. With uWSGI's
        // `--post-buffering` (uWSGI reads the whole body before calling the
        // app) the same echo passes through nginx.
        let r = echo.send(s.nginx.addr("uwsgi")).await;
        let truncated = match &r {
            Ok(r) => r.status == 200 && r.body.len() < body.len(),
            Err(_) => true,
        };
        assert!(
            truncated,
            "nginx echoed a 10 MiB streaming echo whole: {:?}",
            r.map(|r| r.body.len())
        );
        assert!(
            eventually(Duration::from_secs(3), || async {
                s.uwsgi
                    .proc
                    .log_text()
                    .contains("[uwsgi-body-read] Timeout reading")
            })
            .await
        );
        let buffered = Uwsgi::start(
            &s.tools,
            &s.dir,
            "pb",
            WsgiApp::Environ,
            &["--post-buffering", "65536"],
        )
        .await;
        let nginx = Nginx::start(
            &s.tools,
            &s.dir,
            &[Site {
                name: "pb",
                upstream: buffered.sock.clone(),
                server: NGINX_SERVER.into(),
                location: String::new(),
            }],
        )
        .await;
        let r = echo.fetch(nginx.addr("pb")).await;
        assert_eq!(r.status, 200);
        assert!(
            r.body == body,
            "nginx -> uWSGI --post-buffering: echoed bytes differ"
        );

        // The environ app reads the whole body before answering: fine both ways.
        let req = Req::post("/environ?via=post", body.clone())
            .header("Content-Type", "application/x-test");
        let (p, n) = s.both(&req).await;
        let (pe, ne) = (p.environ(), n.environ());
        for e in [&pe, &ne] {
            assert_eq!(e.var("REQUEST_METHOD"), "POST");
            assert_eq!(e.var("CONTENT_LENGTH"), "10485760");
            assert_eq!(e.var("CONTENT_TYPE"), "application/x-test");
            assert_eq!(e.var("body.length"), "10485760");
            assert_eq!(e.var("body.sha256"), sha);
        }
        // nginx also passes the client's Content-Type and Content-Length
        // headers as HTTP_CONTENT_TYPE/HTTP_CONTENT_LENGTH; the proxy (as
        // RFC 3875 4.1.18 suggests) only sets CONTENT_TYPE/CONTENT_LENGTH.
        assert_eq!(ne.var("HTTP_CONTENT_LENGTH"), "10485760");
        assert_eq!(ne.var("HTTP_CONTENT_TYPE"), "application/x-test");
        assert_eq!(pe.get("HTTP_CONTENT_LENGTH"), None);
        assert_eq!(pe.get("HTTP_CONTENT_TYPE"), None);
    })
    .await
}

// ---------------------------------------------------------------------------
// B3: headers near the 64 KiB vars cap
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b_headers_near_the_64k_vars_cap() {
    bounded(async {
        // The proxy's own head limit (64 KiB by default, 431 above) must be
        // raised for a 64 KiB vars block: the HTTP head is a bit larger.
        let Some(s) = Stack::start("b-cap", &[], &["--max-header-size", "262144"], "").await else {
            return;
        };
        // Calibrate: 64 headers of 1000 bytes, then pad the last one so the
        // block the proxy builds is exactly 65535 bytes.
        let base = Req::get("/environ");
        let r0 = filler_headers(base.clone(), 64, 1000, 0)
            .fetch(s.proxy.addr)
            .await;
        let s0 = r0.environ().block_size();
        let logged = format!("vars in {s0} bytes}}");
        assert!(
            eventually(Duration::from_secs(3), || async {
                s.uwsgi.proc.log_text().contains(&logged)
            })
            .await,
            "uWSGI did not log a block of {s0} bytes (the size computed from its environ)"
        );
        assert!(s0 < 65535);
        let pad = 65535 - s0;

        let r1 = filler_headers(base.clone(), 64, 1000, pad)
            .fetch(s.proxy.addr)
            .await;
        let e1 = r1.environ();
        assert_eq!(e1.block_size(), 65535);
        for i in 0..64 {
            let want = if i == 63 { 1000 + pad } else { 1000 };
            assert_eq!(
                e1.var(&format!("HTTP_X_H{i:04}")),
                "v".repeat(want),
                "header {i}"
            );
        }

        // One byte more: the proxy refuses to build the packet (nothing is
        // sent to uWSGI) and answers 431 naming the limit. (nginx answers
        // 500 in the same situation: see interop_nginx.rs.)
        // uWSGI logs a request after answering it: let the previous
        // request's line land before counting.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let before = s.uwsgi.requests_logged();
        let r2 = filler_headers(base, 64, 1000, pad + 1)
            .fetch(s.proxy.addr)
            .await;
        assert_eq!(r2.status, 431, "{}", r2.text());
        assert!(
            r2.text()
                .contains("vars block of 65536 bytes exceeds the limit of 65535 bytes"),
            "{}",
            r2.text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            s.uwsgi.requests_logged(),
            before,
            "uWSGI saw the refused request"
        );
    })
    .await
}

// ---------------------------------------------------------------------------
// B4: uWSGI's own limits: buffer-size (vars block) and max-vars
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b_uwsgi_buffer_size_and_max_vars() {
    bounded(async {
        let Some(tools) = require("b-limits", &[Tool::Nginx, Tool::Uwsgi]) else {
            return;
        };
        let dir = TempDir::new("b-limits");
        // Three uWSGIs: all defaults (buffer-size 4096, max-vars 64); a
        // 64 KiB buffer; a 64 KiB buffer and 1024 vars.
        let dflt = Uwsgi::start(&tools, &dir, "dflt", WsgiApp::Environ, &[]).await;
        let big = Uwsgi::start(
            &tools,
            &dir,
            "big",
            WsgiApp::Environ,
            &["--buffer-size", "65535"],
        )
        .await;
        let many = Uwsgi::start(
            &tools,
            &dir,
            "many",
            WsgiApp::Environ,
            &["--buffer-size", "65535", "--max-vars", "1024"],
        )
        .await;
        // The proxy's own default is 100 header fields (431 above).
        let px = |u: &Uwsgi, n: &str| {
            let up = format!("uwsgi+unix:{}", u.sock.display());
            let dir = &dir;
            let n = n.to_string();
            async move { UwireProxy::start(dir, &n, &up, &["--max-headers", "1000"]).await }
        };
        let (p_dflt, p_big, p_many) = (
            px(&dflt, "dflt").await,
            px(&big, "big").await,
            px(&many, "many").await,
        );
        let nginx = Nginx::start(
            &tools,
            &dir,
            &[Site {
                name: "dflt",
                upstream: dflt.sock.clone(),
                server: NGINX_SERVER.into(),
                location: String::new(),
            }],
        )
        .await;

        // A ~5 KB vars block: over the default buffer-size.
        let req = filler_headers(Req::get("/environ"), 5, 1000, 0);
        let ok = req.fetch(p_big.addr).await;
        let size = ok.environ().block_size();
        assert!(size > 4096 && size < 65535, "{size}");
        let r = req.fetch(p_dflt.addr).await;
        assert_eq!(r.status, 502, "{}", r.text());
        let line = format!("invalid request block size: {size} (max 4096)...skip");
        assert!(
            eventually(Duration::from_secs(3), || async {
                dflt.proc.log_text().contains(&line)
            })
            .await,
            "uWSGI log lacks {line:?}:\n{}",
            dflt.proc.log_text()
        );
        // nginx in front of the same uWSGI: 502 as well.
        let before = dflt
            .proc
            .log_text()
            .matches("invalid request block size")
            .count();
        let r = req.fetch(nginx.addr("dflt")).await;
        assert_eq!(r.status, 502, "{}", r.text());
        assert!(
            eventually(Duration::from_secs(3), || async {
                dflt.proc
                    .log_text()
                    .matches("invalid request block size")
                    .count()
                    > before
            })
            .await
        );
        // Both keep serving small requests.
        assert_eq!(Req::get("/environ").fetch(p_dflt.addr).await.status, 200);
        assert_eq!(
            Req::get("/environ").fetch(nginx.addr("dflt")).await.status,
            200
        );

        // uWSGI's default max-vars allows 128 vars in all. The proxy sends
        // 15 besides the headers (12 CGI vars, HTTP_HOST, X-Forwarded-For,
        // X-Forwarded-Proto): 113 more headers pass, 114 do not. uWSGI logs
        // "max vec size reached. skip this var." and drops the request
        // without an answer (502). With --max-vars 1024, 300 pass.
        let headers = |n: usize| {
            let mut req = Req::get("/environ");
            for i in 0..n {
                req = req.header(&format!("X-M{i:03}"), &i.to_string());
            }
            req
        };
        let r = headers(113).fetch(p_big.addr).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.environ().cgi().len(), 128);
        let r = headers(114).fetch(p_big.addr).await;
        assert_eq!(r.status, 502, "{}", r.text());
        assert!(
            eventually(Duration::from_secs(3), || async {
                big.proc
                    .log_text()
                    .contains("max vec size reached. skip this var.")
            })
            .await
        );
        let req = headers(300);
        let e = req.fetch(p_many.addr).await.environ();
        for i in 0..300 {
            assert_eq!(e.var(&format!("HTTP_X_M{i:03}")), i.to_string());
        }
    })
    .await
}

// ---------------------------------------------------------------------------
// B5: Cookie twice
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b_cookie_twice() {
    bounded(async {
        let Some(s) = Stack::start("b-cookie", &[], &[], "").await else {
            return;
        };
        let req = Req::get("/environ")
            .header("Cookie", "a=1")
            .header("Cookie", "b=2; c=3")
            .header("X-Dup", "x")
            .header("X-Dup", "y");
        let (p, n) = s.both(&req).await;
        let (pe, ne) = (p.environ(), n.environ());
        // uwire proxy joins repeated headers into one var, Cookie with "; "
        // (RFC 9113 8.2.3), others with ", " (RFC 9110 5.3).
        assert_eq!(pe.var("HTTP_COOKIE"), "a=1; b=2; c=3");
        assert_eq!(pe.var("HTTP_X_DUP"), "x, y");
        // nginx 1.22 sends one var per header line (HTTP_COOKIE twice) and
        // uWSGI's environ keeps the LAST: the first cookie is lost.
        if nginx_version(&s.tools) < (1, 23) {
            assert_eq!(ne.var("HTTP_COOKIE"), "b=2; c=3");
            assert_eq!(ne.var("HTTP_X_DUP"), "y");
        } else {
            let c = ne.var("HTTP_COOKIE");
            assert!(c == "b=2; c=3" || c == "a=1; b=2; c=3", "{c}");
        }
    })
    .await
}

// ---------------------------------------------------------------------------
// B6: header names with an underscore, and Proxy
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b_underscore_and_proxy_headers() {
    bounded(async {
        let Some(s) = Stack::start("b-under", &[], &[], "").await else {
            return;
        };
        let req = Req::get("/environ")
            .header("X_Foo", "under")
            .header("X-Foo", "dash")
            .header("X_Only", "under-only")
            .header("Proxy", "http://evil.example:3128")
            .header("Content_Type", "text/evil");
        let (p, n) = s.both(&req).await;
        let (pe, ne) = (p.environ(), n.environ());
        for (who, e) in [("proxy", &pe), ("nginx", &ne)] {
            // Both drop names with '_' (nginx: underscores_in_headers off).
            assert_eq!(e.var("HTTP_X_FOO"), "dash", "{who}");
            assert_eq!(e.get("HTTP_X_ONLY"), None, "{who}");
            assert_eq!(e.get("HTTP_CONTENT_TYPE"), None, "{who}");
            assert_eq!(e.var("CONTENT_TYPE"), "", "{who}");
        }
        // httpoxy: nginx passes `Proxy` to uWSGI as HTTP_PROXY (unless the
        // config adds `uwsgi_param HTTP_PROXY "";`); uwire proxy never does.
        assert_eq!(pe.get("HTTP_PROXY"), None);
        assert_eq!(ne.var("HTTP_PROXY"), "http://evil.example:3128");
        assert!(
            s.nginx
                .wait_error_log("client sent invalid header line: \"X_Foo: under\"")
                .await,
            "nginx logs the dropped header at info level"
        );
    })
    .await
}

// ---------------------------------------------------------------------------
// B7: chunked upload
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b_chunked_upload() {
    bounded(async {
        let Some(s) = Stack::start("b-chunked", &[], &[], "").await else {
            return;
        };
        let body = pattern(3_000_000);
        let req = Req::new("POST", "/environ")
            .header("Content-Type", "application/x-test")
            .chunked(body.clone(), 100_000);
        let (p, n) = s.both(&req).await;
        let (pe, ne) = (p.environ(), n.environ());
        for (who, e) in [("proxy", &pe), ("nginx", &ne)] {
            // Both buffer the whole body to learn its length: uwsgi frames
            // the body by CONTENT_LENGTH only.
            assert_eq!(e.var("CONTENT_LENGTH"), "3000000", "{who}");
            assert_eq!(e.var("body.length"), "3000000", "{who}");
            assert_eq!(e.var("body.sha256"), sha256_hex(&body), "{who}");
        }
        // nginx also passes the (now false) Transfer-Encoding header;
        // uwire proxy drops hop-by-hop headers.
        assert_eq!(ne.var("HTTP_TRANSFER_ENCODING"), "chunked");
        assert_eq!(pe.get("HTTP_TRANSFER_ENCODING"), None);

        // A 10 MiB chunked upload echoed back (through nginx this needs
        // uWSGI's --post-buffering: see b_post_10_mib_echo).
        let big = pattern(10 << 20);
        let r = Req::new("POST", "/echo")
            .chunked(big.clone(), 65_536)
            .fetch(s.proxy.addr)
            .await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-length"), Some("10485760"));
        assert!(r.body == big, "echoed bytes differ");
    })
    .await
}

/// A chunked upload is buffered (up to `MAX_BUFFERED_BODY`) to learn the
/// CONTENT_LENGTH the uwsgi protocol needs; a larger one gets 413.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b_chunked_upload_over_the_buffer_limit_is_413() {
    bounded(async {
        let Some(s) = Stack::start("b-chunked-big", &[], &[], "").await else {
            return;
        };
        let before = s.uwsgi.requests_logged();
        let r = Req::new("POST", "/environ")
            .chunked(pattern((16 << 20) + 1), 1 << 20)
            .fetch(s.proxy.addr)
            .await;
        assert_eq!(r.status, 413, "{}", r.text());
        assert_eq!(s.uwsgi.requests_logged(), before);
    })
    .await
}

// ---------------------------------------------------------------------------
// B8: the client goes away mid-response
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b_client_disconnect_mid_response() {
    bounded(async {
        // nginx buffers upstream responses by default and would keep
        // reading /drip for seconds after the client left.
        let Some(s) = Stack::start("b-disc", &[], &[], "uwsgi_buffering off;").await else {
            return;
        };
        // A never-ending response: the client reads ~5 lines and leaves.
        // uWSGI's next write fails, the app's generator is closed and says
        // so in the events file.
        for (who, addr) in [("proxy", s.proxy.addr), ("nginx", s.nginx.addr("uwsgi"))] {
            let seen = s.uwsgi.events().len();
            let (status, got) = read_then_disconnect(addr, &Req::get("/drip"), 40).await;
            assert_eq!(status, 200, "{who}");
            assert!(got >= 40, "{who}");
            let stopped = eventually(Duration::from_secs(5), || async {
                s.uwsgi.events().len() > seen
            })
            .await;
            assert!(stopped, "{who}: uWSGI's app never noticed the client left");
            let line = s.uwsgi.events().last().cloned().unwrap();
            let chunks: u32 = line.rsplit(' ').nth(1).unwrap().parse().unwrap();
            assert!(
                chunks < 150,
                "{who}: {line}: the upstream ran on for seconds"
            );
        }
        assert!(s.uwsgi.saw_write_fail(), "uWSGI logged no failed write");

        // A 10 MiB echo abandoned after 1 MiB of response.
        let body = pattern(10 << 20);
        let (status, got) =
            read_then_disconnect(s.proxy.addr, &Req::post("/echo", body), 1 << 20).await;
        assert_eq!(status, 200);
        assert!(got >= 1 << 20);

        // The proxy (and uWSGI) keep serving.
        for _ in 0..3 {
            let r = Req::post("/echo", "still here").fetch(s.proxy.addr).await;
            assert_eq!(r.status, 200);
            assert_eq!(r.body, b"still here");
        }
    })
    .await
}

// ---------------------------------------------------------------------------
// B9, B10: Flask and Django behind uwire proxy
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b_flask_app() {
    bounded(async {
        let Some(tools) = require("b-flask", &[Tool::Nginx, Tool::Uwsgi, Tool::Flask]) else {
            return;
        };
        let s = Stack::start_with(tools, "b-flask", WsgiApp::Flask, &[], &[], "").await;
        let (p, n) = s.both(&Req::get("/hello?name=uwire")).await;
        for r in [&p, &n] {
            assert_eq!(r.status, 200);
            assert_eq!(r.body, b"hello uwire\n");
            assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
        }
        let form = "a=1&b=two+words&b=%E2%9C%93&empty=";
        let req = Req::post("/form?x=1", form)
            .header("Content-Type", "application/x-www-form-urlencoded");
        let (p, n) = s.both(&req).await;
        assert_eq!(p.status, 200, "{}", p.text());
        assert_eq!(
            p.json(),
            serde_json::json!({
                "form": {"a": ["1"], "b": ["two words", "\u{2713}"], "empty": [""]},
                "args": {"x": ["1"]},
                "path": "/form",
                "content_length": form.len(),
            })
        );
        assert_eq!(p.body, n.body, "Flask answers uwire proxy and nginx alike");
        // A GET on a POST route: Flask's 405, passed through.
        let r = Req::get("/form").fetch(s.proxy.addr).await;
        assert_eq!(r.status, 405);
        assert_eq!(r.header("allow").map(|a| a.contains("POST")), Some(true));
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b_django_app() {
    bounded(async {
        let Some(tools) = require("b-django", &[Tool::Nginx, Tool::Uwsgi, Tool::Django]) else {
            return;
        };
        let s = Stack::start_with(tools, "b-django", WsgiApp::Django, &[], &[], "").await;
        let (p, n) = s.both(&Req::get("/environ?x=1&x=2&y=%C3%A9")).await;
        for r in [&p, &n] {
            assert_eq!(r.status, 200, "{}", r.text());
            let j = r.json();
            assert_eq!(
                j["get"],
                serde_json::json!({"x": ["1", "2"], "y": ["\u{e9}"]})
            );
            assert_eq!(j["post"], serde_json::json!({}));
            assert_eq!(j["meta"]["REQUEST_METHOD"], "GET");
            assert_eq!(j["meta"]["PATH_INFO"], "/environ");
            assert_eq!(j["meta"]["QUERY_STRING"], "x=1&x=2&y=%C3%A9");
        }
        assert_eq!(p.json()["meta"]["HTTP_HOST"], HOST);

        let form = "name=uwire&tags=a&tags=b%20c";
        let req =
            Req::post("/environ", form).header("Content-Type", "application/x-www-form-urlencoded");
        let (p, n) = s.both(&req).await;
        for r in [&p, &n] {
            assert_eq!(r.status, 200, "{}", r.text());
            assert_eq!(
                r.json()["post"],
                serde_json::json!({"name": ["uwire"], "tags": ["a", "b c"]})
            );
            assert_eq!(r.json()["meta"]["CONTENT_LENGTH"], form.len().to_string());
        }

        let body = pattern(300_000);
        let req = Req::post("/echo", body.clone()).header("Content-Type", "application/x-test");
        let (p, n) = s.both(&req).await;
        for r in [&p, &n] {
            assert_eq!(r.status, 200);
            assert_eq!(r.header("content-type"), Some("application/x-test"));
            assert!(r.body == body, "Django echo differs");
        }
        // Unknown path: Django's 404 page, identical both ways.
        let (p, n) = s.both(&Req::get("/nope")).await;
        assert_eq!((p.status, n.status), (404, 404));
        assert_eq!(p.body, n.body);
    })
    .await
}
