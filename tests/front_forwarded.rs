//! Behind a load balancer, over real sockets: `--forwarded-allow-ips`
//! (X-Forwarded-For / -Proto believed only from listed peers) and the
//! PROXY protocol v1/v2 on the listener (plain and under TLS); the app sees
//! the real client either way. Also request-body buffering and the access
//! log formats, which need the same in-process front. (Issue 12 items 4,
//! 5 and 7.)
#![cfg(feature = "cli")]

mod front_common;
mod proxy_common;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use front_common::*;
use proxy_common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uwire::proxy::access_log::{AccessLogFormat, AccessLogTarget};
use uwire::proxy::ProxyConfig;

async fn start(cfg: ProxyConfig) -> (App, RunningFront) {
    let app = App::start("lb").await;
    let front = RunningFront::start(vec![app.upstream()], cfg).await;
    (app, front)
}

fn environ(r: &Raw) -> HashMap<String, String> {
    assert_eq!(r.status, 200, "{}", r.text());
    serde_json::from_slice(&r.body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_fields_are_believed_only_from_listed_peers() {
    bounded(async {
        let req = b"GET /environ HTTP/1.1\r\nHost: a\r\n\
            X-Forwarded-For: 203.0.113.9, 10.1.2.3\r\nX-Forwarded-Proto: https\r\n\r\n";
        // Trusted: 127.0.0.1 (the test's peer) and the inner hop 10.0.0.0/8.
        let (_app, trusted) = start(ProxyConfig {
            forwarded_allow_ips: "127.0.0.1, 10.0.0.0/8".parse().unwrap(),
            ..ProxyConfig::default()
        })
        .await;
        let env = environ(&raw_exchange(trusted.addr, req).await);
        assert_eq!(env["REMOTE_ADDR"], "203.0.113.9");
        assert_eq!(env["HTTPS"], "on");
        assert_eq!(env["REQUEST_SCHEME"], "https");
        assert_eq!(env["HTTP_X_FORWARDED_PROTO"], "https");
        assert_eq!(
            env["HTTP_X_FORWARDED_FOR"],
            "203.0.113.9, 10.1.2.3, 127.0.0.1"
        );

        // Not listed: nothing the peer says is believed.
        let (_app2, untrusted) = start(ProxyConfig {
            forwarded_allow_ips: "10.0.0.0/8".parse().unwrap(),
            ..ProxyConfig::default()
        })
        .await;
        let env = environ(&raw_exchange(untrusted.addr, req).await);
        assert_eq!(env["REMOTE_ADDR"], "127.0.0.1");
        assert!(!env.contains_key("HTTPS"));
        assert_eq!(env["REQUEST_SCHEME"], "http");
        assert_eq!(env["HTTP_X_FORWARDED_PROTO"], "http");

        // The default trusts nobody.
        let (_app3, default) = start(ProxyConfig::default()).await;
        let env = environ(&raw_exchange(default.addr, req).await);
        assert_eq!(env["REMOTE_ADDR"], "127.0.0.1");
        assert!(!env.contains_key("HTTPS"));
    })
    .await
}

fn proxy_v2_ipv4(src: [u8; 4], sport: u16) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.extend_from_slice(&[0x21, 0x11, 0, 12]);
    h.extend_from_slice(&src);
    h.extend_from_slice(&[127, 0, 0, 1]);
    h.extend_from_slice(&sport.to_be_bytes());
    h.extend_from_slice(&443u16.to_be_bytes());
    h
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_protocol_v1_and_v2_set_the_client_address() {
    bounded(async {
        let (app, front) = start(ProxyConfig {
            proxy_protocol: true,
            first_byte_timeout: Duration::from_secs(2),
            ..ProxyConfig::default()
        })
        .await;
        let get = b"GET /environ HTTP/1.1\r\nHost: a\r\n\r\n";
        let mut v1 = b"PROXY TCP4 198.51.100.7 127.0.0.1 40123 443\r\n".to_vec();
        v1.extend_from_slice(get);
        let env = environ(&raw_exchange(front.addr, &v1).await);
        assert_eq!(env["REMOTE_ADDR"], "198.51.100.7");
        assert_eq!(env["REMOTE_PORT"], "40123");
        assert_eq!(env["HTTP_X_FORWARDED_FOR"], "198.51.100.7");

        let mut v1_6 = b"PROXY TCP6 2001:db8::7 ::1 40124 443\r\n".to_vec();
        v1_6.extend_from_slice(get);
        let env = environ(&raw_exchange(front.addr, &v1_6).await);
        assert_eq!(env["REMOTE_ADDR"], "2001:db8::7");

        let mut v2 = proxy_v2_ipv4([192, 0, 2, 33], 5555);
        v2.extend_from_slice(get);
        let env = environ(&raw_exchange(front.addr, &v2).await);
        assert_eq!(env["REMOTE_ADDR"], "192.0.2.33");
        assert_eq!(env["REMOTE_PORT"], "5555");

        // The header split over several writes.
        let mut c = RawConn::connect(front.addr).await;
        c.send(b"PROXY TCP4 203.0.1").await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        c.send(b"13.5 127.0.0.1 1 2\r\nGET /environ HTTP/1.1\r\nHost: a\r\n\r\n")
            .await
            .unwrap();
        let env = environ(&c.read_response(false).await.unwrap());
        assert_eq!(env["REMOTE_ADDR"], "203.0.113.5");

        // UNKNOWN (a health check) keeps the peer's address.
        let mut unknown = b"PROXY UNKNOWN\r\n".to_vec();
        unknown.extend_from_slice(get);
        let env = environ(&raw_exchange(front.addr, &unknown).await);
        assert_eq!(env["REMOTE_ADDR"], "127.0.0.1");

        // No header, or a broken one: closed without an answer.
        let hits = app.state.hits.load(Ordering::Relaxed);
        for bad in [
            &get[..],
            b"PROXY TCP4 nonsense\r\n\r\n",
            b"PROXY TCP9 1.2.3.4 1.2.3.4 1 2\r\n",
        ] {
            let mut s = tokio::net::TcpStream::connect(front.addr).await.unwrap();
            s.write_all(bad).await.unwrap();
            let mut out = Vec::new();
            let _ = within(Duration::from_secs(10), "closed", s.read_to_end(&mut out)).await;
            assert!(out.is_empty(), "{:?}", String::from_utf8_lossy(&out));
        }
        assert_eq!(app.state.hits.load(Ordering::Relaxed), hits);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_protocol_before_tls() {
    bounded(async {
        let dir = tempdir();
        let ca = TestCa::new();
        let files = ca.write_leaf(dir.path(), "lb");
        let (_app, front) = start(ProxyConfig {
            proxy_protocol: true,
            tls: Some(files),
            ..ProxyConfig::default()
        })
        .await;
        // curl sends the v1 header itself.
        let r = curl(&[
            "--haproxy-protocol",
            "--cacert",
            &path_str(dir.path(), "ca.pem"),
            &front.https("/environ"),
        ])
        .await;
        assert_eq!(r.status, 200, "{r:?}");
        let env: HashMap<String, String> = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(env["HTTPS"], "on");
        assert_eq!(env["REMOTE_ADDR"], "127.0.0.1");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_buffering_holds_the_body_until_complete() {
    bounded(async {
        let dir = tempdir();
        let (app, front) = start(ProxyConfig {
            request_buffering: true,
            // 64 KiB in memory, the rest in a temporary file.
            request_buffer_memory: 64 * 1024,
            request_buffer_dir: Some(dir.path().to_path_buf()),
            ..ProxyConfig::default()
        })
        .await;
        let total: u64 = 3 * 1024 * 1024 + 17;
        let pattern = Pattern::new();
        let mut c = RawConn::connect(front.addr).await;
        c.send(format!("POST /count HTTP/1.1\r\nHost: a\r\nContent-Length: {total}\r\n\r\n").as_bytes())
            .await
            .unwrap();
        // Most of the body, slowly: the app sees nothing yet.
        let mut sent = 0u64;
        while sent < total - 1000 {
            let n = (256 * 1024).min(total - 1000 - sent) as usize;
            c.send(&pattern.slice(sent, n)).await.unwrap();
            sent += n as u64;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(app.state.hits.load(Ordering::Relaxed), 0, "the app saw a partial upload");
        c.send(&pattern.slice(sent, (total - sent) as usize)).await.unwrap();
        let r = c.read_response(false).await.unwrap();
        assert_eq!(r.text(), format!("count={total} pattern_ok=true"));
        // Chunked uploads get a length, and small ones stay in memory.
        let r = raw_exchange(
            front.addr,
            b"POST /environ HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        )
        .await;
        assert_eq!(environ(&r)["CONTENT_LENGTH"], "3");
        // The spill file is anonymous: nothing is left in the directory.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_in_combined_and_json_formats() {
    bounded(async {
        let dir = tempdir();
        let combined = dir.path().join("access.log");
        let json = dir.path().join("access.json");
        let (_a1, f1) = start(ProxyConfig {
            access_log: AccessLogTarget::File(combined.clone()),
            access_log_format: AccessLogFormat::Combined,
            ..ProxyConfig::default()
        })
        .await;
        let (_a2, f2) = start(ProxyConfig {
            access_log: AccessLogTarget::File(json.clone()),
            access_log_format: AccessLogFormat::Json,
            ..ProxyConfig::default()
        })
        .await;
        for f in [&f1, &f2] {
            let r = curl(&["-A", "tester/1.0", "-e", "http://ref.example/", &f.http("/download?bytes=1234")]).await;
            assert_eq!(r.status, 200);
            let r = curl(&["-A", "say \"hi\"", &f.http("/nope?%22x%22")]).await;
            assert_eq!(r.status, 404);
        }
        let read_lines = |p: &std::path::Path, n: usize| {
            let p = p.to_path_buf();
            async move {
                within(Duration::from_secs(10), "access log lines", async {
                    loop {
                        let t = std::fs::read_to_string(&p).unwrap_or_default();
                        let lines: Vec<String> = t.lines().map(str::to_string).collect();
                        if lines.len() >= n {
                            return lines;
                        }
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                })
                .await
            }
        };
        let lines = read_lines(&combined, 2).await;
        let re_ok = lines[0].starts_with("127.0.0.1 - - [")
            && lines[0].ends_with("] \"GET /download?bytes=1234 HTTP/1.1\" 200 1234 \"http://ref.example/\" \"tester/1.0\"");
        assert!(re_ok, "{}", lines[0]);
        assert!(lines[1].contains("\"GET /nope?%22x%22 HTTP/1.1\" 404 "), "{}", lines[1]);
        assert!(lines[1].ends_with("\"-\" \"say \\x22hi\\x22\""), "{}", lines[1]);
        let lines = read_lines(&json, 2).await;
        let v: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(v["status"], 200);
        assert_eq!(v["bytes_sent"], 1234);
        assert_eq!(v["method"], "GET");
        assert_eq!(v["uri"], "/download?bytes=1234");
        assert_eq!(v["user_agent"], "tester/1.0");
        assert_eq!(v["remote_addr"], "127.0.0.1");
        let v: serde_json::Value = serde_json::from_str(&lines[1]).unwrap();
        assert_eq!(v["uri"], "/nope?%22x%22");
        assert_eq!(v["user_agent"], "say \"hi\"");
        // Reopen after rotation.
        std::fs::rename(&json, dir.path().join("access.json.1")).unwrap();
        f2.front.reload().unwrap();
        let _ = curl(&[&f2.http("/hello")]).await;
        let lines = read_lines(&json, 1).await;
        assert!(lines[0].contains("\"/hello\""), "{}", lines[0]);
    })
    .await
}
