//! TLS at the front, over real sockets, with certificates from a test CA
//! (rcgen): HTTP/2 and HTTP/1.1 by ALPN (curl), the app told the request
//! was HTTPS, TLS 1.2 as the floor, certificate reload without dropping an
//! open connection, and the HTTP->HTTPS redirect listener. (Issue 12
//! item 1.)
#![cfg(feature = "cli")]

mod front_common;
mod proxy_common;

use std::sync::Arc;

use bytes::Bytes;
use front_common::*;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use proxy_common::*;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use uwire::proxy::ProxyConfig;

async fn tls_front(dir: &std::path::Path, ca: &TestCa, cn: &str) -> (App, RunningFront) {
    let files = ca.write_leaf(dir, cn);
    let app = App::start("tls").await;
    let front = RunningFront::start(
        vec![app.upstream()],
        ProxyConfig {
            tls: Some(files),
            ..ProxyConfig::default()
        },
    )
    .await;
    (app, front)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_h2_and_http11_and_the_app_sees_https() {
    bounded(async {
        let dir = tempdir();
        let ca = TestCa::new();
        let (_app, front) = tls_front(dir.path(), &ca, "uwire one").await;
        let cacert = path_str(dir.path(), "ca.pem");
        let r = curl(&["--cacert", &cacert, "--http2", &front.https("/environ")]).await;
        assert_eq!((r.status, r.version.as_str()), (200, "2"), "{r:?}");
        let env: std::collections::HashMap<String, String> =
            serde_json::from_slice(&r.body).unwrap();
        assert_eq!(env["HTTPS"], "on");
        assert_eq!(env["REQUEST_SCHEME"], "https");
        assert_eq!(env["SERVER_PORT"], front.addr.port().to_string());
        assert_eq!(env["HTTP_X_FORWARDED_PROTO"], "https");
        let r = curl(&["--cacert", &cacert, "--http1.1", &front.https("/environ")]).await;
        assert_eq!((r.status, r.version.as_str()), (200, "1.1"));
        let env: std::collections::HashMap<String, String> =
            serde_json::from_slice(&r.body).unwrap();
        assert_eq!(env["HTTPS"], "on");
        assert_eq!(env["REQUEST_SCHEME"], "https");
        // Bodies both ways.
        let r = curl(&[
            "--cacert",
            &cacert,
            "--data-binary",
            "ping",
            &front.https("/echo"),
        ])
        .await;
        assert_eq!((r.status, r.text().as_str()), (200, "ping"));
        // Plain HTTP on the TLS port gets nowhere.
        let r = curl(&[&front.http("/hello")]).await;
        assert_ne!(r.status, 200);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_below_1_2_is_refused() {
    bounded(async {
        let dir = tempdir();
        let ca = TestCa::new();
        let (_app, front) = tls_front(dir.path(), &ca, "uwire one").await;
        let cacert = path_str(dir.path(), "ca.pem");
        let r = curl(&[
            "--cacert",
            &cacert,
            "--tlsv1.0",
            "--tls-max",
            "1.1",
            &front.https("/hello"),
        ])
        .await;
        assert!(!r.ok && r.status == 0, "{r:?}");
        let r = curl(&[
            "--cacert",
            &cacert,
            "--tlsv1.2",
            "--tls-max",
            "1.2",
            &front.https("/hello"),
        ])
        .await;
        assert_eq!(r.status, 200, "{r:?}");
        let r = curl(&["--cacert", &cacert, "--tlsv1.3", &front.https("/hello")]).await;
        assert_eq!(r.status, 200, "{r:?}");
    })
    .await
}

/// A TLS client trusting `ca_pem`, over which HTTP/1.1 requests run.
async fn tls_conn(
    addr: std::net::SocketAddr,
    ca_pem: &str,
) -> (
    hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    CertificateDer<'static>,
) {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("TLS handshake");
    let cert = tls.get_ref().1.peer_certificates().unwrap()[0]
        .clone()
        .into_owned();
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    (send, cert)
}

async fn get_on(
    send: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    path: &str,
) -> (u16, Bytes) {
    send.ready().await.unwrap();
    let req = http::Request::get(path)
        .header("host", "localhost")
        .body(Empty::new())
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.into_body().collect().await.unwrap().to_bytes())
}

fn leaf_der(pem: &str) -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_reload_keeps_open_connections() {
    bounded(async {
        let dir = tempdir();
        let ca = TestCa::new();
        let (_app, front) = tls_front(dir.path(), &ca, "uwire one").await;
        let first = leaf_der(&std::fs::read_to_string(dir.path().join("cert.pem")).unwrap());
        let (mut old, cert) = tls_conn(front.addr, &ca.pem).await;
        assert_eq!(cert, first);
        assert_eq!(
            get_on(&mut old, "/hello").await,
            (200, Bytes::from("hello"))
        );

        // A broken file: reload fails, the old certificate stays.
        std::fs::write(dir.path().join("cert.pem"), "not a certificate").unwrap();
        assert!(front.front.reload().is_err());
        let (_c, cert) = tls_conn(front.addr, &ca.pem).await;
        assert_eq!(cert, first);

        // A new certificate: new handshakes get it, the open connection
        // goes on with the old one.
        ca.write_leaf(dir.path(), "uwire two");
        let second = leaf_der(&std::fs::read_to_string(dir.path().join("cert.pem")).unwrap());
        front.front.reload().unwrap();
        let (mut new, cert) = tls_conn(front.addr, &ca.pem).await;
        assert_eq!(cert, second);
        assert_eq!(get_on(&mut new, "/hello").await.0, 200);
        assert_eq!(
            get_on(&mut old, "/hello").await,
            (200, Bytes::from("hello"))
        );
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mismatched_key_is_a_startup_error() {
    bounded(async {
        let dir = tempdir();
        let ca = TestCa::new();
        let files = ca.write_leaf(dir.path(), "one");
        let (_, other_key) = ca.leaf("two");
        std::fs::write(&files.key, other_key).unwrap();
        let client = uwire::client::Client::new(
            vec![unix_upstream(&sock_path("nothing"))],
            Default::default(),
        )
        .unwrap();
        let err = uwire::proxy::Front::new(
            client,
            ProxyConfig {
                tls: Some(files),
                ..ProxyConfig::default()
            },
        )
        .unwrap_err();
        assert!(err.to_string().contains("TLS"), "{err}");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_listener_sends_clients_to_https() {
    bounded(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            uwire::proxy::serve_redirect(listener, 8443, &ProxyConfig::default(), async {
                let _ = rx.await;
            })
            .await
        });
        let url = format!("http://{addr}/a/b?c=1");
        let r = curl(&["-H", "Host: shop.example", &url]).await;
        assert_eq!(r.status, 308);
        assert_eq!(
            r.header("location"),
            Some("https://shop.example:8443/a/b?c=1")
        );
        let r = curl(&["-X", "POST", "-d", "x", "-H", "Host: shop.example:80", &url]).await;
        assert_eq!(r.status, 308);
        assert_eq!(
            r.header("location"),
            Some("https://shop.example:8443/a/b?c=1")
        );
        let r = raw_exchange(addr, b"GET / HTTP/1.0\r\n\r\n").await;
        assert_eq!(r.status, 400);
        let _ = tx.send(());
        within(
            std::time::Duration::from_secs(10),
            "redirect shutdown",
            task,
        )
        .await
        .unwrap()
        .unwrap();
    })
    .await
}
