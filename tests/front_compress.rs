//! Compression of app responses (gzip, br, zstd), checked with curl
//! (which decodes all three): only when the client accepts it, the type is
//! compressible and the body large enough; streamed, never buffered whole.
//! (Issue 12 item 3.)
#![cfg(feature = "cli")]

mod front_common;
mod proxy_common;

use std::time::Duration;

use front_common::*;
use proxy_common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uwire::proxy::compress::CompressionConfig;
use uwire::proxy::ProxyConfig;

async fn start(compression: CompressionConfig) -> (App, RunningFront) {
    let app = App::start("gz").await;
    let front = RunningFront::start(
        vec![app.upstream()],
        ProxyConfig {
            compression,
            ..ProxyConfig::default()
        },
    )
    .await;
    (app, front)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_algorithm_round_trips_when_accepted() {
    bounded(async {
        let (_app, front) = start(CompressionConfig::default()).await;
        let url = front.http("/download?bytes=300000");
        let plain = curl(&[&url]).await;
        assert_eq!(plain.status, 200);
        assert_eq!(plain.header("content-encoding"), None);
        assert_eq!(plain.body.len(), 300_000);
        for alg in ["gzip", "br", "zstd"] {
            // --compressed decodes; the header says what was on the wire.
            let r = curl(&[
                "--compressed",
                "-H",
                &format!("Accept-Encoding: {alg}"),
                &url,
            ])
            .await;
            assert_eq!(r.status, 200, "{alg}: {r:?}");
            assert_eq!(r.header("content-encoding"), Some(alg), "{alg}");
            assert_eq!(
                r.header("content-length"),
                None,
                "{alg}: the length changed"
            );
            assert!(r
                .header("vary")
                .is_some_and(|v| v.to_ascii_lowercase().contains("accept-encoding")));
            assert!(r.body == plain.body, "{alg}: decoded body differs");
        }
        // Preference by q-value; refused encodings are never used.
        let r = curl(&[
            "--compressed",
            "-H",
            "Accept-Encoding: gzip;q=0.2, br;q=0.9",
            &url,
        ])
        .await;
        assert_eq!(r.header("content-encoding"), Some("br"));
        let r = curl(&["-H", "Accept-Encoding: identity", &url]).await;
        assert_eq!(r.header("content-encoding"), None);
        let r = curl(&["-H", "Accept-Encoding: gzip;q=0", &url]).await;
        assert_eq!(r.header("content-encoding"), None);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_or_incompressible_responses_are_left_alone() {
    bounded(async {
        let (_app, front) = start(CompressionConfig {
            min_size: 2048,
            ..CompressionConfig::default()
        })
        .await;
        let ae = "Accept-Encoding: gzip, br, zstd";
        // 5 bytes: below the minimum.
        let r = curl(&["-H", ae, &front.http("/hello")]).await;
        assert_eq!(
            (r.header("content-encoding"), r.text().as_str()),
            (None, "hello")
        );
        // Exactly at the minimum: compressed.
        let r = curl(&[
            "--compressed",
            "-H",
            ae,
            &front.http("/download?bytes=2048"),
        ])
        .await;
        assert!(r.header("content-encoding").is_some());
        assert_eq!(r.body.len(), 2048);
        let r = curl(&["-H", ae, &front.http("/download?bytes=2047")]).await;
        assert_eq!(r.header("content-encoding"), None);
        // application/octet-stream is not a compressible type.
        let r = curl(&[
            "-H",
            ae,
            "--data-binary",
            &"x".repeat(5000),
            &front.http("/echo"),
        ])
        .await;
        assert_eq!(r.header("content-encoding"), None);
        assert_eq!(r.body.len(), 5000);

        let (_app2, only_json) = start(CompressionConfig {
            types: vec!["application/json".into()],
            ..CompressionConfig::default()
        })
        .await;
        let r = curl(&["-H", ae, &only_json.http("/download?bytes=5000")]).await;
        assert_eq!(
            r.header("content-encoding"),
            None,
            "text/plain is not listed"
        );
        let (_app3, off) = start(CompressionConfig {
            algorithms: vec![],
            ..CompressionConfig::default()
        })
        .await;
        let r = curl(&["-H", ae, &off.http("/download?bytes=5000")]).await;
        assert_eq!(r.header("content-encoding"), None, "compression off");
    })
    .await
}

/// The layer is skipped where it could not change the answer (the front's
/// fast path); what a client sees must be the same as with it: `Vary` on
/// every response that could be compressed, whatever the request accepted,
/// none on one that could not, and tower-http's 406 when the request
/// refuses every coding, small answer or not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negotiation_headers_are_the_same_whether_or_not_compression_applies() {
    bounded(async {
        let (_app, front) = start(CompressionConfig {
            min_size: 2048,
            ..CompressionConfig::default()
        })
        .await;
        let vary = |r: &CurlOut| {
            r.headers.iter().any(|(n, v)| {
                n.eq_ignore_ascii_case("vary") && v.to_ascii_lowercase().contains("accept-encoding")
            })
        };
        let big = front.http("/download?bytes=4096");
        let small = front.http("/hello");
        // Compressible, no Accept-Encoding at all: identity, but `Vary` says
        // the answer depends on it.
        let r = curl(&[&big]).await;
        assert_eq!((r.status, r.header("content-encoding")), (200, None));
        assert!(vary(&r), "{:?}", r.headers);
        assert_eq!(r.body.len(), 4096);
        let r = curl(&["-H", "Accept-Encoding: gzip", "--compressed", &big]).await;
        assert_eq!(r.header("content-encoding"), Some("gzip"));
        assert!(vary(&r));
        // Too small to compress: untouched, no `Vary`, with or without
        // Accept-Encoding.
        for args in [
            vec![small.as_str()],
            vec!["-H", "Accept-Encoding: gzip, br", &small],
        ] {
            let r = curl(&args).await;
            assert_eq!((r.status, r.text().as_str()), (200, "hello"));
            assert_eq!(r.header("content-encoding"), None);
            assert!(!vary(&r), "{:?}", r.headers);
        }
        // Every coding refused (identity too): 406, for a small answer as
        // for a large one.
        for url in [&small, &big] {
            let r = curl(&["-H", "Accept-Encoding: identity;q=0, *;q=0", url]).await;
            assert_eq!(r.status, 406, "{url}");
            assert!(vary(&r));
        }
        // A refusal that leaves something acceptable changes nothing.
        let r = curl(&["-H", "Accept-Encoding: br;q=0", &small]).await;
        assert_eq!((r.status, r.text().as_str()), (200, "hello"));
        assert!(!vary(&r));
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compression_streams_an_endless_body() {
    bounded(async {
        let (app, front) = start(CompressionConfig::default()).await;
        // /drip never ends: a front that buffered the whole body before
        // compressing would never send a byte.
        let mut s = tokio::net::TcpStream::connect(front.addr).await.unwrap();
        s.write_all(b"GET /drip?ms=1 HTTP/1.1\r\nHost: a\r\nAccept-Encoding: gzip\r\n\r\n")
            .await
            .unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 16 * 1024];
        within(
            Duration::from_secs(20),
            "compressed bytes of an endless body",
            async {
                while got.len() < 2048 {
                    let n = s.read(&mut buf).await.unwrap();
                    assert!(n > 0, "connection closed");
                    got.extend_from_slice(&buf[..n]);
                }
            },
        )
        .await;
        let text = String::from_utf8_lossy(&got);
        assert!(text.starts_with("HTTP/1.1 200"), "{text:.200}");
        assert!(text.to_ascii_lowercase().contains("content-encoding: gzip"));
        drop(s);
        // Going away cancels the app's stream.
        within(Duration::from_secs(20), "drip cancelled", async {
            loop {
                if app
                    .state
                    .events()
                    .iter()
                    .any(|e| e.starts_with("drip cancelled"))
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
    })
    .await
}
