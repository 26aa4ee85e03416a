//! Static files served by the front (`--static`), checked with curl over
//! real sockets: content types, Range, ETag / If-None-Match,
//! Last-Modified / If-Modified-Since, precompressed siblings, HEAD, index
//! files, no listing, no traversal (plain, encoded, symlinks, NUL), and the
//! app never touched. (Issue 12 item 2.)
#![cfg(feature = "cli")]

mod front_common;
mod proxy_common;

use std::sync::atomic::Ordering;

use front_common::*;
use proxy_common::*;
use uwire::proxy::ProxyConfig;

struct Site {
    _dir: tempfile::TempDir,
    _outside: tempfile::TempDir,
    app: App,
    front: RunningFront,
}

async fn site() -> Site {
    let dir = tempdir();
    let root = dir.path().join("public");
    write_site(&root);
    // Precompressed siblings of app.js (their bytes differ, so the test
    // can tell which file was sent).
    std::fs::write(root.join("app.js.br"), b"BROTLI-SIBLING").unwrap();
    std::fs::write(root.join("app.js.gz"), b"GZIP-SIBLING").unwrap();
    // Escapes: a symlink to a file and one to a directory outside.
    let outside = tempdir();
    std::fs::write(outside.path().join("secret.txt"), b"TOP SECRET").unwrap();
    std::os::unix::fs::symlink(outside.path().join("secret.txt"), root.join("leak.txt")).unwrap();
    std::os::unix::fs::symlink(outside.path(), root.join("leakdir")).unwrap();
    std::os::unix::fs::symlink("../../", root.join("up")).unwrap();
    // A symlink that stays inside is fine.
    std::os::unix::fs::symlink("app.css", root.join("alias.css")).unwrap();
    std::fs::write(dir.path().join("beside.txt"), b"NOT PUBLIC").unwrap();
    // A FIFO under the root: opening it for reading would block forever.
    let fifo = std::process::Command::new("mkfifo")
        .arg(root.join("pipe"))
        .status()
        .unwrap();
    assert!(fifo.success());
    let app = App::start("static").await;
    let front = RunningFront::start(
        vec![app.upstream()],
        ProxyConfig {
            static_mounts: vec![format!("/static={}", root.display()).parse().unwrap()],
            ..ProxyConfig::default()
        },
    )
    .await;
    Site {
        _dir: dir,
        _outside: outside,
        app,
        front,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_with_types_validators_and_ranges() {
    bounded(async {
        let s = site().await;
        let u = |p: &str| s.front.http(p);
        for (path, ctype) in [
            ("/static/app.css", "text/css"),
            ("/static/app.js", "text/javascript"),
            ("/static/logo.png", "image/png"),
            ("/static/index.html", "text/html"),
            ("/static/data.json", "application/json"),
        ] {
            let r = curl(&[&u(path)]).await;
            assert_eq!(r.status, 200, "{path}: {r:?}");
            assert!(
                r.header("content-type")
                    .is_some_and(|c| c.starts_with(ctype)),
                "{path}: {:?}",
                r.header("content-type")
            );
        }
        let r = curl(&[&u("/static/logo.png")]).await;
        assert_eq!(r.body, png_4x4());
        let etag = r.header("etag").expect("etag").to_string();
        let modified = r
            .header("last-modified")
            .expect("last-modified")
            .to_string();
        assert_eq!(r.header("accept-ranges"), Some("bytes"));

        // Conditional requests.
        let r = curl(&[
            "-H",
            &format!("If-None-Match: {etag}"),
            &u("/static/logo.png"),
        ])
        .await;
        assert_eq!(r.status, 304);
        assert!(r.body.is_empty());
        let r = curl(&["-H", "If-None-Match: \"other\"", &u("/static/logo.png")]).await;
        assert_eq!(r.status, 200);
        let r = curl(&[
            "-H",
            &format!("If-Modified-Since: {modified}"),
            &u("/static/logo.png"),
        ])
        .await;
        assert_eq!(r.status, 304);
        let r = curl(&[
            "-H",
            "If-Modified-Since: Mon, 01 Jan 2001 00:00:00 GMT",
            &u("/static/logo.png"),
        ])
        .await;
        assert_eq!(r.status, 200);

        // Ranges.
        let r = curl(&["-r", "0-9", &u("/static/big.txt")]).await;
        assert_eq!(r.status, 206);
        assert_eq!(r.text(), "all work a");
        assert_eq!(r.header("content-range"), Some("bytes 0-9/86000"));
        let r = curl(&["-r", "85990-", &u("/static/big.txt")]).await;
        assert_eq!((r.status, r.body.len()), (206, 10));
        let r = curl(&["-r", "90000-", &u("/static/big.txt")]).await;
        assert_eq!(r.status, 416);

        // HEAD: the length, no body.
        let mut c = RawConn::connect(s.front.addr).await;
        c.send(b"HEAD /static/big.txt HTTP/1.1\r\nHost: a\r\n\r\n")
            .await
            .unwrap();
        let r = c.read_response(true).await.unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-length"), Some("86000"));
        // The next response on the connection follows the head directly:
        // no body bytes were sent.
        c.send(b"GET /static/data.json HTTP/1.1\r\nHost: a\r\n\r\n")
            .await
            .unwrap();
        let r = c.read_response(false).await.unwrap();
        assert_eq!((r.status, r.text().as_str()), (200, "{\"ok\": true}\n"));

        // Index files, no listings, other methods.
        let r = curl(&[&u("/static/sub/")]).await;
        assert_eq!((r.status, r.text().as_str()), (200, "<p>sub index</p>\n"));
        let r = curl(&[&u("/static/sub")]).await;
        assert!(matches!(r.status, 301 | 307 | 308), "{r:?}");
        assert_eq!(r.header("location"), Some("/static/sub/"));
        let r = curl(&[&u("/static/empty/")]).await;
        assert_eq!(r.status, 404);
        let r = curl(&[&u("/static/missing.css")]).await;
        assert_eq!(r.status, 404);
        let r = curl(&["-X", "POST", "-d", "x", &u("/static/app.css")]).await;
        assert_eq!(r.status, 405);
        let r = curl(&[&u("/static/alias.css")]).await;
        assert_eq!(r.status, 200);

        // None of it reached the app; other paths do.
        assert_eq!(s.app.state.hits.load(Ordering::Relaxed), 0);
        let r = curl(&[&u("/hello")]).await;
        assert_eq!((r.status, r.text().as_str()), (200, "hello"));
        // A prefix is a whole segment: /staticx is the app's.
        let r = curl(&[&u("/staticx/app.css")]).await;
        assert_eq!(r.status, 404);
        assert_eq!(s.app.state.hits.load(Ordering::Relaxed), 2);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn precompressed_siblings_follow_accept_encoding() {
    bounded(async {
        let s = site().await;
        let u = s.front.http("/static/app.js");
        let r = curl(&["-H", "Accept-Encoding: br", &u]).await;
        assert_eq!(r.header("content-encoding"), Some("br"));
        assert_eq!(r.text(), "BROTLI-SIBLING");
        assert!(r
            .header("content-type")
            .unwrap()
            .starts_with("text/javascript"));
        assert!(r
            .header("vary")
            .is_some_and(|v| v.to_ascii_lowercase().contains("accept-encoding")));
        let r = curl(&["-H", "Accept-Encoding: gzip", &u]).await;
        assert_eq!(r.header("content-encoding"), Some("gzip"));
        assert_eq!(r.text(), "GZIP-SIBLING");
        let r = curl(&["-H", "Accept-Encoding: br;q=0, gzip;q=0.5", &u]).await;
        assert_eq!(r.text(), "GZIP-SIBLING");
        let r = curl(&[&u]).await;
        assert_eq!(r.header("content-encoding"), None);
        assert_eq!(r.text(), front_common::SITE_JS);
        // No sibling: the file itself, whatever the client accepts.
        let r = curl(&[
            "-H",
            "Accept-Encoding: br, gzip",
            &s.front.http("/static/app.css"),
        ])
        .await;
        assert_eq!(r.header("content-encoding"), None);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_path_leaves_the_root() {
    bounded(async {
        let s = site().await;
        let u = |p: &str| s.front.http(p);
        let cases: &[(&str, &[u16])] = &[
            ("/static/../beside.txt", &[400]),
            ("/static/%2e%2e/beside.txt", &[400]),
            ("/static/.%2E/beside.txt", &[400]),
            ("/static/..%2fbeside.txt", &[400]),
            ("/static/sub/../../beside.txt", &[400]),
            ("/static/%00.css", &[400]),
            ("/static/app.css%00.png", &[400]),
            ("/static/leak.txt", &[404]),
            ("/static/leakdir/secret.txt", &[404]),
            ("/static/up/beside.txt", &[404]),
            ("/static//etc/passwd", &[404]),
            ("/static/%2fetc%2fpasswd", &[404]),
            ("/static/pipe", &[404]),
        ];
        let mut failures = Vec::new();
        for (path, want) in cases {
            let r = curl(&["--path-as-is", &u(path)]).await;
            let body = r.text();
            if !want.contains(&r.status)
                || body.contains("SECRET")
                || body.contains("NOT PUBLIC")
                || body.contains("root:")
            {
                failures.push(format!("{path}: {} {body:?}", r.status));
            }
        }
        assert!(failures.is_empty(), "{failures:#?}");
        assert_eq!(s.app.state.hits.load(Ordering::Relaxed), 0);
    })
    .await
}
