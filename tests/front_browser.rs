//! A real browser: headless Chromium loads a page over HTTPS (HTTP/2 by
//! ALPN) from `uwire proxy`, with a certificate this test makes, in front
//! of `uwire serve` (the runtime's demo app). The page's CSS, JavaScript
//! and image come from `--static`; its script fetches JSON from the app.
//! The test asserts on the rendered DOM (what the script found: scheme,
//! HTTPS, protocols, image size, computed colour), on a screenshot's size,
//! and on the proxy's access log. (Issue 12 item 8.)
//!
//! Needs Debian's `chromium` (installed by .ci/run). Without it the test
//! prints SKIP, unless UWIRE_REQUIRE_INTEROP=1 (CI), where it fails.
#![cfg(feature = "cli")]

mod front_common;
mod proxy_common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use front_common::*;
use proxy_common::*;

fn chromium() -> Option<&'static str> {
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|b| {
            std::process::Command::new(b)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
}

/// Runs headless Chromium with the flags a root CI box needs.
async fn run_chromium(bin: &str, profile: &Path, extra: &[String]) -> std::process::Output {
    let mut cmd = tokio::process::Command::new(bin);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--ignore-certificate-errors",
        "--hide-scrollbars",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(extra)
    .env("HOME", profile)
    .stdin(std::process::Stdio::null())
    .kill_on_drop(true);
    within(Duration::from_secs(90), "chromium", cmd.output())
        .await
        .expect("run chromium")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_renders_a_page_served_over_https_h2_with_static_assets_and_app_json() {
    let Some(bin) = chromium() else {
        if std::env::var("UWIRE_REQUIRE_INTEROP").as_deref() == Ok("1") {
            panic!("chromium is not installed (UWIRE_REQUIRE_INTEROP=1)");
        }
        println!("SKIP: chromium is not installed");
        return;
    };
    within(Duration::from_secs(300), "browser test", async {
        let dir = tempdir();
        let public = dir.path().join("public");
        write_site(&public);
        let ca = TestCa::new();
        let files = ca.write_leaf(dir.path(), "uwire browser test");
        let sock = dir.path().join("app.sock");
        let bind = format!("unix:{}", sock.display());
        let _app = ChildProc::spawn(&["serve", "--bind", &bind]);
        wait_connectable(&sock, Duration::from_secs(15)).await;
        let log = dir.path().join("access.log");
        let upstream = format!("unix:{}", sock.display());
        let cert = files.cert.to_string_lossy().into_owned();
        let key = files.key.to_string_lossy().into_owned();
        let mount = format!("/static={}", public.display());
        let log_s = log.to_string_lossy().into_owned();
        let mut proxy = ChildProc::spawn(&[
            "proxy",
            "--upstream",
            &upstream,
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
            "--static",
            &mount,
            "--access-log",
            &log_s,
        ]);
        let line = proxy
            .wait_line("uwire proxy: https://", Duration::from_secs(15))
            .await;
        let addr: SocketAddr = line
            .split("https://")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .and_then(|s| s.parse().ok())
            .unwrap();
        let url = format!("https://127.0.0.1:{}/static/index.html", addr.port());

        // The DOM after the page's script ran.
        let profile = dir.path().join("profile-dom");
        let out = run_chromium(
            bin,
            &profile,
            &[
                "--virtual-time-budget=10000".into(),
                "--dump-dom".into(),
                url.clone(),
            ],
        )
        .await;
        let dom = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let text = |id: &str| -> String {
            let open = format!("<p id=\"{id}\">");
            dom.split(&open)
                .nth(1)
                .and_then(|s| s.split("</p>").next())
                .unwrap_or("")
                .to_string()
        };
        assert_eq!(
            text("status"),
            "loaded /environ/from-js",
            "DOM:\n{dom}\nstderr:\n{stderr}"
        );
        assert_eq!(text("scheme"), "scheme https");
        assert_eq!(text("https"), "https on");
        assert_eq!(text("image"), "image 4x4");
        assert_eq!(text("color"), "color rgb(0, 128, 0)");
        let protocols = text("protocol");
        let mut words = protocols.split_whitespace();
        assert_eq!(words.next(), Some("protocol"));
        assert_eq!(words.next(), Some("h2"), "the page itself: {protocols}");
        let resources: Vec<&str> = words.next().unwrap_or("").split(',').collect();
        assert!(resources.len() >= 3, "{protocols}");
        assert!(resources.iter().all(|p| *p == "h2"), "{protocols}");

        // A screenshot of the rendered page.
        let shot = dir.path().join("shot.png");
        let profile = dir.path().join("profile-shot");
        let out = run_chromium(
            bin,
            &profile,
            &[
                "--virtual-time-budget=10000".into(),
                "--window-size=800,600".into(),
                format!("--screenshot={}", shot.display()),
                url.clone(),
            ],
        )
        .await;
        let png = std::fs::read(&shot).unwrap_or_else(|e| {
            panic!(
                "no screenshot ({e}): {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        assert_eq!(png_size(&png), Some((800, 600)));
        assert!(png.len() > 2000, "a blank screenshot? {} bytes", png.len());

        // The proxy saw every piece over HTTP/2.
        let logged = std::fs::read_to_string(&log).unwrap();
        for want in [
            "\"GET /static/index.html HTTP/2.0\" 200",
            "\"GET /static/app.css HTTP/2.0\" 200",
            "\"GET /static/app.js HTTP/2.0\" 200",
            "\"GET /static/logo.png HTTP/2.0\" 200",
            "\"GET /environ/from-js?x=1 HTTP/2.0\" 200",
        ] {
            assert!(
                logged.contains(want),
                "{want} not in the access log:\n{logged}"
            );
        }
    })
    .await
}
