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
        match Pin::new(&mut self.inner).poll_frame(cx) {
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
        let resp = if declared.is_some_and(|n| n > self.config.max_body_size) {
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
        let headers = req.headers_mut();
        strip_hop_by_hop(headers);
        if self.config.x_forwarded_for {
            let ip = peer.ip().to_string();
            let value = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
                Some(prev) => format!("{prev}, {ip}"),
                None => ip,
            };
            if let Ok(v) = HeaderValue::from_str(&value) {
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
                    .map(|h| h.rsplit_once(':').map(|(h, _)| h).unwrap_or(h).to_string())
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
        let body = Limited {
            inner: body,
            left: self.config.max_body_size,
            exceeded: exceeded.clone(),
        };
        match self.client.request(Request::from_parts(parts, body)).await {
            Ok(resp) => {
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
