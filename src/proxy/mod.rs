//! The HTTP front (`uwire proxy`): a hyper 1.x server (HTTP/1.1 and HTTP/2)
//! that forwards every request through a [`Client`] to uwire (or classic
//! uwsgi) upstreams.
//!
//! It fills the request head with the client address, server name and port
//! and scheme; appends `X-Forwarded-For` and sets `X-Forwarded-Proto`
//! (each can be turned off); strips hop-by-hop headers both ways; lets hyper
//! answer `Expect: 100-continue` when the body is first read; maps upstream
//! failures to 502/503/504; logs one access line per request; enforces
//! header-size, body-size and connection limits; and shuts down gracefully.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::client::{BoxError, Client, RequestMeta};

/// Default largest request head (HTTP/1 read buffer): 64 KiB.
pub const DEFAULT_MAX_HEADER_SIZE: usize = 64 * 1024;
/// Default most request header fields: 100.
pub const DEFAULT_MAX_HEADERS: usize = 100;
/// Default largest request body: 1 GiB.
pub const DEFAULT_MAX_BODY_SIZE: u64 = 1 << 30;
/// Default most open downstream connections: 4096.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// Default time to receive a request head: 30 s.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Default time in-flight requests get after shutdown starts: 30 s.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Settings of the HTTP front.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Extra CGI variables passed to the app (like `uwsgi_param`).
    pub params: Vec<(Bytes, Bytes)>,
    /// Append the client address to `X-Forwarded-For`. Default on.
    pub x_forwarded_for: bool,
    /// Set `X-Forwarded-Proto` to the downstream scheme. Default on.
    pub x_forwarded_proto: bool,
    /// Largest request head; larger ones get 431. Default [`DEFAULT_MAX_HEADER_SIZE`].
    pub max_header_size: usize,
    /// Most header fields; more get 431. Default [`DEFAULT_MAX_HEADERS`].
    pub max_headers: usize,
    /// Largest request body; larger ones get 413. Default [`DEFAULT_MAX_BODY_SIZE`].
    pub max_body_size: u64,
    /// Most downstream connections at once. Default [`DEFAULT_MAX_CONNECTIONS`].
    pub max_connections: usize,
    /// Time allowed to receive a request head. Default [`DEFAULT_HEADER_READ_TIMEOUT`].
    pub header_read_timeout: Duration,
    /// Grace period for in-flight requests on shutdown. Default [`DEFAULT_DRAIN_TIMEOUT`].
    pub drain_timeout: Duration,
}

impl Default for ProxyConfig {
    fn default() -> ProxyConfig {
        ProxyConfig {
            params: Vec::new(),
            x_forwarded_for: true,
            x_forwarded_proto: true,
            max_header_size: DEFAULT_MAX_HEADER_SIZE,
            max_headers: DEFAULT_MAX_HEADERS,
            max_body_size: DEFAULT_MAX_BODY_SIZE,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
        }
    }
}

/// The response body the front sends downstream.
pub type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

/// RFC 9110 7.6.1: hop-by-hop fields, never forwarded.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authenticate",
    "expect",
];

/// Removes hop-by-hop fields, including any named in `Connection`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let listed: Vec<HeaderName> = headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for n in listed {
        headers.remove(n);
    }
    for n in HOP_BY_HOP {
        headers.remove(n);
    }
}

/// The size of a request head as HTTP/1.1 would write it: the request line
/// (`METHOD /target HTTP/1.1\r\n`), `name: value\r\n` per field, and the
/// blank line.
fn head_size<B>(req: &Request<B>) -> usize {
    let target = req.uri().path_and_query().map_or(1, |p| p.as_str().len());
    let line = req.method().as_str().len() + 1 + target + " HTTP/1.1\r\n".len();
    let fields: usize = req
        .headers()
        .iter()
        .map(|(n, v)| n.as_str().len() + ": ".len() + v.len() + "\r\n".len())
        .sum();
    line + fields + "\r\n".len()
}

/// The host part of a `Host` value: `example.com:8080` -> `example.com`,
/// `[2001:db8::1]:8443` -> `[2001:db8::1]`, `[2001:db8::1]` unchanged.
fn host_without_port(h: &str) -> &str {
    match h.rsplit_once(':') {
        Some((host, port))
            if port.bytes().all(|b| b.is_ascii_digit())
                && (!host.contains(':') || (host.starts_with('[') && host.ends_with(']'))) =>
        {
            host
        }
        _ => h,
    }
}

fn error_response(status: StatusCode, detail: &str) -> Response<ProxyBody> {
    let text = format!(
        "{} {}\n{detail}\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    let mut r = Response::new(
        Full::new(Bytes::from(text))
            .map_err(|e| match e {})
            .boxed_unsync(),
    );
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// A request body that fails once it grows past a limit, and says so.
struct Limited {
    inner: Incoming,
    left: u64,
    exceeded: Arc<AtomicBool>,
    /// Told (or dropped) once the body yields anything: the client has
    /// started sending it (after `100 Continue`, for `Expect`).
    started: Option<tokio::sync::oneshot::Sender<()>>,
}

#[derive(Debug, thiserror::Error)]
#[error("request body exceeds the limit")]
struct TooLarge;

impl HttpBody for Limited {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if polled.is_ready() {
            if let Some(tx) = self.started.take() {
                let _ = tx.send(());
            }
        }
        match polled {
            Poll::Ready(Some(Ok(f))) => {
                if let Some(d) = f.data_ref() {
                    let n = d.len() as u64;
                    if n > self.left {
                        self.exceeded.store(true, Ordering::Release);
                        return Poll::Ready(Some(Err(Box::new(TooLarge))));
                    }
                    self.left -= n;
                }
                Poll::Ready(Some(Ok(f)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Box::new(e)))),
            other => other.map(|o| o.map(|r| r.map_err(|e| Box::new(e) as BoxError))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

struct Front {
    client: Client,
    config: ProxyConfig,
    local: SocketAddr,
}

impl Front {
    async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        peer: SocketAddr,
    ) -> Response<ProxyBody> {
        let started = Instant::now();
        let method = req.method().clone();
        let uri = req.uri().clone();
        let declared = req
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let resp = if req.headers().len() > self.config.max_headers {
            // hyper enforces this for HTTP/1 only; HTTP/2 lands here.
            error_response(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "too many request header fields",
            )
        } else if head_size(&req) > self.config.max_header_size {
            // hyper's HTTP/1 read buffer limit is approximate (a head that
            // arrives in one read can exceed it); HTTP/2's header list limit
            // counts differently. This is the exact check for both.
            error_response(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "request head too large",
            )
        } else if declared.is_some_and(|n| n > self.config.max_body_size) {
            error_response(StatusCode::PAYLOAD_TOO_LARGE, "request body too large")
        } else {
            self.forward(req, peer).await
        };
        tracing::info!(
            target: "uwire::access",
            client = %peer,
            method = %method,
            uri = %uri,
            status = resp.status().as_u16(),
            ms = started.elapsed().as_secs_f64() * 1000.0,
            "access"
        );
        resp
    }

    async fn forward(&self, mut req: Request<Incoming>, peer: SocketAddr) -> Response<ProxyBody> {
        let scheme = "http";
        let expects_continue = req.version() == http::Version::HTTP_11
            && req
                .headers()
                .get(http::header::EXPECT)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
        let headers = req.headers_mut();
        strip_hop_by_hop(headers);
        if self.config.x_forwarded_for {
            // Every incoming field is kept, in order (several fields are one
            // comma-separated list, RFC 9110 5.3), then the client appended.
            let mut value: Vec<u8> = Vec::new();
            for prev in headers.get_all("x-forwarded-for") {
                let prev = prev.as_bytes().trim_ascii();
                if !prev.is_empty() {
                    value.extend_from_slice(prev);
                    value.extend_from_slice(b", ");
                }
            }
            value.extend_from_slice(peer.ip().to_string().as_bytes());
            if let Ok(v) = HeaderValue::from_bytes(&value) {
                headers.insert("x-forwarded-for", v);
            }
        }
        if self.config.x_forwarded_proto {
            headers.insert("x-forwarded-proto", HeaderValue::from_static(scheme));
        }
        let host = req
            .uri()
            .host()
            .map(str::to_string)
            .or_else(|| {
                req.headers()
                    .get(http::header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .map(|h| host_without_port(h).to_string())
            })
            .unwrap_or_else(|| self.local.ip().to_string());
        let meta = RequestMeta {
            client_addr: Some(peer),
            server_name: Some(Bytes::from(host)),
            server_port: Some(self.local.port()),
            tls: false,
            params: self.config.params.clone(),
        };
        let exceeded = Arc::new(AtomicBool::new(false));
        let (mut parts, body) = req.into_parts();
        parts.extensions.insert(meta);
        let (started_tx, started_rx) = tokio::sync::oneshot::channel();
        let body = Limited {
            inner: body,
            left: self.config.max_body_size,
            exceeded: exceeded.clone(),
            started: Some(started_tx),
        };
        match self.client.request(Request::from_parts(parts, body)).await {
            Ok(resp) => {
                if expects_continue && resp.status().is_success() {
                    // hyper writes `100 Continue` when the body is first
                    // read, but only while no response head has been
                    // written. The upstream's head can win that race (an app
                    // that answers before reading, like an echo), and a
                    // client waiting for 100 would then never send the body.
                    // So a success head waits until the client has started
                    // the body (or the body is gone: ended, reset, dropped).
                    let _ = started_rx.await;
                }
                let (mut parts, body) = resp.into_parts();
                strip_hop_by_hop(&mut parts.headers);
                Response::from_parts(
                    parts,
                    body.map_err(|e| Box::new(e) as BoxError).boxed_unsync(),
                )
            }
            Err(e) => {
                if exceeded.load(Ordering::Acquire) {
                    return error_response(StatusCode::PAYLOAD_TOO_LARGE, "request body too large");
                }
                tracing::warn!(error = %e, "upstream request failed");
                error_response(e.status_code(), &e.to_string())
            }
        }
    }
}

/// Serves HTTP on `listener`, forwarding through `client`, until `shutdown`
/// resolves; then stops accepting and lets in-flight requests finish for up
/// to `drain_timeout`.
pub async fn serve<F>(
    listener: TcpListener,
    client: Client,
    config: ProxyConfig,
    shutdown: F,
) -> std::io::Result<()>
where
    F: std::future::Future<Output = ()>,
{
    let local = listener.local_addr()?;
    let front = Arc::new(Front {
        client,
        config: config.clone(),
        local,
    });
    let slots = Arc::new(Semaphore::new(config.max_connections.max(1)));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .max_buf_size(config.max_header_size.max(8192))
        .max_headers(config.max_headers)
        .header_read_timeout(config.header_read_timeout)
        .timer(hyper_util::rt::TokioTimer::new());
    builder
        .http2()
        .max_header_list_size(config.max_header_size as u32)
        .timer(hyper_util::rt::TokioTimer::new());
    tokio::pin!(shutdown);
    tracing::info!(%local, "uwire proxy listening");
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => p.expect("never closed"),
            _ = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let front = front.clone();
        let svc = hyper::service::service_fn(move |req| {
            let front = front.clone();
            async move { Ok::<_, Infallible>(front.handle(req, peer).await) }
        });
        let conn = builder
            .serve_connection(TokioIo::new(stream), svc)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "downstream connection ended with an error");
            }
        });
    }
    drop(listener);
    tracing::info!("proxy shutting down: draining in-flight requests");
    if tokio::time::timeout(config.drain_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("drain timeout: closing remaining connections");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_without_port_handles_ipv6_literals() {
        assert_eq!(host_without_port("example.com"), "example.com");
        assert_eq!(host_without_port("example.com:8080"), "example.com");
        assert_eq!(host_without_port("[2001:db8::1]"), "[2001:db8::1]");
        assert_eq!(host_without_port("[2001:db8::1]:8443"), "[2001:db8::1]");
        assert_eq!(host_without_port("[::1]:80"), "[::1]");
        // Not a valid Host, left alone rather than cut in the middle.
        assert_eq!(host_without_port("2001:db8::1"), "2001:db8::1");
        assert_eq!(host_without_port("host:port"), "host:port");
    }

    #[test]
    fn head_size_counts_the_http1_wire_form() {
        let req = Request::get("/a?b=1")
            .header("host", "x")
            .header("x-y", "zz")
            .body(())
            .unwrap();
        let wire = "GET /a?b=1 HTTP/1.1\r\nhost: x\r\nx-y: zz\r\n\r\n";
        assert_eq!(head_size(&req), wire.len());
    }

    #[test]
    fn strips_hop_by_hop_and_connection_listed_fields() {
        let mut h = HeaderMap::new();
        for (n, v) in [
            ("connection", "keep-alive, X-Foo"),
            ("connection", "x-bar"),
            ("x-foo", "1"),
            ("x-bar", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "h2c"),
            ("x-keep", "1"),
        ] {
            h.append(n, HeaderValue::from_static(v));
        }
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key("x-keep"));
    }
}
