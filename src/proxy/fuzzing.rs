//! Entry point of the `http_front` fuzz target (compiled only with
//! `--cfg fuzzing`, which cargo-fuzz sets): drives the front's HTTP/1
//! request path on arbitrary bytes, in process, with no sockets and no real
//! time (a paused tokio clock).
//!
//! The bytes go through hyper's HTTP/1 server over an in-memory pipe with
//! the front's [`TimedIo`] (which keeps the raw head), then, per request:
//! the framing check on the raw head, the target and Host checks and
//! normalization, the head-size check, the body through [`RequestBody`]
//! (limit, timeout, fault record) to its end, the conversion to a uwire
//! request head, and the environ the app would see.
//!
//! Checks beyond "no panic, no hang": a request whose raw head carries
//! both Content-Length and Transfer-Encoding is never accepted; the body
//! bytes a request yields never exceed the input.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::body::{BodyFault, RequestBody};
use super::conformance::{self, Verdict};
use super::front::head_size;
use super::io::{ConnActivity, IoTimeouts, TimedIo};

thread_local! {
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("fuzz runtime");
}

/// Runs `input` as the bytes a client sent on one connection.
pub fn http1_connection(input: &[u8]) {
    RUNTIME.with(|rt| rt.block_on(drive(input)));
}

async fn drive(input: &[u8]) {
    let (mut client, server) = tokio::io::duplex(64 * 1024);
    let activity = Arc::new(ConnActivity::default());
    let io = TimedIo::new(
        server,
        activity.clone(),
        IoTimeouts {
            first_byte: Duration::from_secs(5),
            header: Duration::from_secs(5),
            keepalive: Duration::from_secs(5),
            send: Duration::from_secs(5),
            max_head: 16 * 1024,
            release: None,
        },
        Some(false),
    );
    let limit = input.len() as u64;
    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
        let activity = activity.clone();
        async move { Ok::<_, std::convert::Infallible>(one_request(req, &activity, limit).await) }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.max_buf_size(16 * 1024).max_headers(100);
    let conn = builder.serve_connection(TokioIo::new(io), svc);
    let server = tokio::spawn(async move {
        let _ = conn.await;
    });
    let input = input.to_vec();
    let writer = async move {
        let _ = client.write_all(&input).await;
        let _ = client.shutdown().await;
        let mut sink = Vec::new();
        let _ = client.read_to_end(&mut sink).await;
    };
    // Paused time: a stuck connection runs into its timeouts at once.
    let _ = tokio::time::timeout(Duration::from_secs(60), writer).await;
    let _ = tokio::time::timeout(Duration::from_secs(60), server).await;
}

async fn one_request(
    mut req: Request<Incoming>,
    activity: &Arc<ConnActivity>,
    limit: u64,
) -> Response<Full<Bytes>> {
    let _in_flight = activity.start();
    let raw = activity.take_head();
    let answer = |status: u16| {
        let mut r = Response::new(Full::new(Bytes::new()));
        *r.status_mut() = http::StatusCode::from_u16(status).unwrap_or_default();
        r
    };
    if let Err((s, _)) = conformance::check_framing(&raw, req.method()) {
        return answer(s.as_u16());
    }
    let raw_has = |name: &[u8]| {
        raw.split(|b| *b == b'\n')
            .take_while(|l| !l.is_empty() && *l != b"\r")
            .any(|l| {
                l.len() > name.len()
                    && l[..name.len()].eq_ignore_ascii_case(name)
                    && l[name.len()] == b':'
            })
    };
    let smuggling = raw.starts_with(req.method().as_str().as_bytes())
        && raw_has(b"content-length")
        && raw_has(b"transfer-encoding");
    match conformance::check(&req) {
        Err((s, _)) => return answer(s.as_u16()),
        Ok(Verdict::OptionsAsterisk) => return answer(200),
        Ok(Verdict::Forward) => conformance::normalize(&mut req),
    }
    assert!(
        !smuggling,
        "a head with Content-Length and Transfer-Encoding was accepted"
    );
    let _ = head_size(&req);
    let (parts, body) = req.into_parts();
    let fault = Arc::new(BodyFault::default());
    let mut body = RequestBody::new(body, limit, Duration::from_secs(5), fault.clone(), None);
    let mut got = 0u64;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => {
                if let Some(d) = f.data_ref() {
                    got += d.len() as u64;
                }
            }
            Err(_) => {
                assert!(
                    fault.get().is_some(),
                    "a body error without a recorded fault"
                );
                return answer(fault.get().map_or(500, |f| f.status().0.as_u16()));
            }
        }
    }
    assert!(got <= limit, "more body bytes than were sent");
    if let Ok(head) = crate::client::request_head(&parts, Some(got), None) {
        let _ = crate::environ::build(&head, &crate::environ::EnvironConfig::default());
    }
    answer(200)
}
