//! One request through the front: conformance checks, static files, or
//! the app (with forwarding fields, body limits and timeouts, optional
//! buffering, compression), then the access log.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::access_log::AccessLog;
use super::body::{record_for, BodyFault, LogContext, RequestBody, Tracked};
use super::config::ProxyConfig;
use super::conformance::{self, Verdict};
use super::forwarded;
use super::io::ConnActivity;
use super::response::{error_response, full, ProxyBody};
use super::static_files::StaticFiles;
use crate::client::{BoxError, Client, RequestMeta};

/// `X-Forwarded-For`, named once (a `&str` key is parsed on every use).
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `X-Forwarded-Proto`.
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// RFC 9110 7.6.1: hop-by-hop fields, never forwarded (as constants: no
/// name is parsed per request).
static HOP_BY_HOP: [HeaderName; 9] = [
    http::header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    http::header::TE,
    http::header::TRAILER,
    http::header::TRANSFER_ENCODING,
    http::header::UPGRADE,
    http::header::PROXY_AUTHENTICATE,
    http::header::EXPECT,
];

/// The bit of `n` in a [`spot`] mask: its index in [`HOP_BY_HOP`] (bits
/// 0 to 8), or one of the `SPOT_` bits for the other fields the front
/// looks up (a string match compiles to length and byte comparisons:
/// cheaper than comparing thirteen names).
fn field_index(n: &HeaderName) -> Option<usize> {
    Some(match n.as_str() {
        "connection" => 0,
        "keep-alive" => 1,
        "proxy-connection" => 2,
        "te" => 3,
        "trailer" => 4,
        "transfer-encoding" => 5,
        "upgrade" => 6,
        "proxy-authenticate" => 7,
        "expect" => 8,
        // Not hop-by-hop: fields the front reads (see `spot`).
        "x-forwarded-for" => 9,
        "x-forwarded-proto" => 10,
        "content-length" => 11,
        "accept-encoding" => 12,
        _ => return None,
    })
}

/// The bits of a [`spot`] mask the front tests.
const SPOT_CONNECTION: u16 = 1;
const SPOT_UPGRADE: u16 = 1 << 6;
const SPOT_EXPECT: u16 = 1 << 8;
/// The nine hop-by-hop fields.
const SPOT_HOP_BY_HOP: u16 = (1 << 9) - 1;
const SPOT_XFF: u16 = 1 << 9;
const SPOT_XFP: u16 = 1 << 10;
const SPOT_CONTENT_LENGTH: u16 = 1 << 11;
const SPOT_ACCEPT_ENCODING: u16 = 1 << 12;

/// Which of the fields the front looks at (the hop-by-hop fields, the
/// forwarding fields, `Content-Length`, `Accept-Encoding`) `headers`
/// has, in one pass over the names: a hashed lookup of an absent name
/// costs as much as of a present one, and most requests carry none of
/// them. A bit may outlive its field (a field `Connection` lists is
/// removed later): that costs a lookup that finds nothing. No field the
/// mask tracks is added to a request after it is made.
fn spot(headers: &HeaderMap) -> u16 {
    headers
        .keys()
        .filter_map(field_index)
        .fold(0u16, |m, i| m | 1 << i)
}

/// Removes hop-by-hop fields, including any named in `Connection`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    strip(headers, spot(headers));
}

/// [`strip_hop_by_hop`] for `headers` whose [`spot`] mask is `seen`.
fn strip(headers: &mut HeaderMap, seen: u16) {
    let present = seen & SPOT_HOP_BY_HOP;
    if present == 0 {
        return;
    }
    if present & SPOT_CONNECTION != 0 {
        // The names `Connection` lists (usually `keep-alive` or `close`,
        // with no such field) are made into names only when the message
        // has such a field.
        let listed: Vec<HeaderName> = headers
            .get_all(http::header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|n| headers.contains_key(*n))
            .filter_map(|n| HeaderName::from_bytes(n.as_bytes()).ok())
            .collect();
        for n in listed {
            headers.remove(n);
        }
    }
    for (i, n) in HOP_BY_HOP.iter().enumerate() {
        if present & 1 << i != 0 {
            headers.remove(n);
        }
    }
}

/// An IP address as a header value (`192.0.2.1`, `2001:db8::1`).
pub(crate) fn ip_header_value(ip: std::net::IpAddr) -> HeaderValue {
    HeaderValue::try_from(ip.to_string()).expect("an IP address is a valid header value")
}

/// The size of a request head as HTTP/1.1 would write it: the request line
/// (`METHOD /target HTTP/1.1\r\n`), `name: value\r\n` per field, and the
/// blank line.
pub(crate) fn head_size<B>(req: &Request<B>) -> usize {
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
pub(crate) fn host_without_port(h: &str) -> &str {
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

/// What every connection of a front shares.
pub(crate) struct Shared {
    pub(crate) client: Client,
    pub(crate) config: ProxyConfig,
    pub(crate) statics: StaticFiles,
    /// Present when compression is on.
    pub(crate) compress: Option<super::compress::CompressPredicate>,
    pub(crate) access_log: Option<Arc<AccessLog>>,
}

/// Facts about one downstream connection.
pub(crate) struct ConnInfo {
    /// The client: the TCP peer, or what the PROXY header said.
    pub(crate) peer: SocketAddr,
    /// `peer`'s address as a header value (for `X-Forwarded-For`), made
    /// once per connection.
    pub(crate) peer_ip: HeaderValue,
    pub(crate) local: SocketAddr,
    pub(crate) tls: bool,
    pub(crate) activity: Arc<ConnActivity>,
    /// The server name of the connection's last request (SERVER_NAME):
    /// the requests of a keep-alive connection almost always name the
    /// same host, and a shared `Bytes` is cloned without allocating.
    pub(crate) server_name: std::sync::Mutex<Bytes>,
}

impl ConnInfo {
    /// `host` as a shared `Bytes`: the last request's when it is the same
    /// name, else a copy that becomes the last.
    fn server_name(&self, host: &str) -> Bytes {
        let mut last = self.server_name.lock().unwrap_or_else(|e| e.into_inner());
        if last.as_ref() != host.as_bytes() {
            *last = Bytes::copy_from_slice(host.as_bytes());
        }
        last.clone()
    }
}

pin_project_lite::pin_project! {
    /// A future that cannot fail, as the `Result` hyper and tower want (no
    /// async wrapper: that would hold a second copy of the inner state).
    pub(crate) struct NeverFails<F> {
        #[pin]
        pub(crate) inner: F,
    }
}

impl<F: Future> Future for NeverFails<F> {
    type Output = Result<F::Output, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().inner.poll(cx).map(Ok)
    }
}

/// Handles one request of a connection.
///
/// What needs no waiting is done here, before the future is made: the
/// future then holds only what lives across its awaits (an `async fn`
/// would keep its arguments and their moved-to locals side by side), so
/// it stays small enough for the allocator's fast path.
pub(crate) fn handle(
    shared: Arc<Shared>,
    conn: Arc<ConnInfo>,
    mut req: Request<Incoming>,
) -> impl Future<Output = Response<ProxyBody>> + Send {
    let in_flight = conn.activity.start();
    let seen = spot(req.headers());
    let http1 = req.version() < http::Version::HTTP_2;
    let raw_head = if http1 {
        conn.activity.take_head()
    } else {
        Vec::new()
    };
    // The client the app (and the log) sees.
    let trusted = shared.config.forwarded_allow_ips.contains(conn.peer.ip());
    let client = if trusted && seen & SPOT_XFF != 0 {
        shared.config.forwarded_allow_ips.client(
            conn.peer,
            req.headers()
                .get_all(&X_FORWARDED_FOR)
                .iter()
                .map(HeaderValue::as_bytes),
        )
    } else {
        conn.peer
    };
    let tls = conn.tls
        || (trusted
            && seen & SPOT_XFP != 0
            && forwarded::proto_is_https(
                req.headers()
                    .get_all(&X_FORWARDED_PROTO)
                    .iter()
                    .map(HeaderValue::as_bytes),
            ));
    // Only the access log reads the clock here. Boxed: a record is a few
    // hundred bytes, and without the log the future and the response
    // body would carry its room anyway.
    let log = shared.access_log.as_ref().map(|l| {
        Box::new(LogContext {
            started: Instant::now(),
            log: l.clone(),
            record: record_for(&req, client, tls),
        })
    });
    // (Both fields or no offer.)
    let offer = if seen & (SPOT_CONNECTION | SPOT_UPGRADE) == SPOT_CONNECTION | SPOT_UPGRADE {
        super::upgrade::offer(&req)
    } else {
        None
    };
    // The request is handed on (or dropped) here, before the future is
    // made: the future holds only the answer's future, not the request
    // (a few hundred bytes, copied each time the future moves).
    let next = match route(&shared, &mut req, raw_head) {
        Routed::Done(r) => Next::Done(r),
        // Boxed: a file's future is large and most requests never make one.
        Routed::Static(i) => {
            let shared = shared.clone();
            Next::Boxed(Box::pin(async move { shared.statics.serve(i, &req).await }))
        }
        Routed::App => {
            let svc = AppService {
                shared: shared.clone(),
                conn: conn.clone(),
                client,
                tls,
                offer: offer.clone(),
                seen,
            };
            // HEAD answers carry the identity length; compressing them
            // would describe a body that is never sent.
            // Nor is a 101 (an upgrade offer's answer) compressed.
            // The forwarding future is boxed (with the upstream's future
            // boxed inside, it is small, but moving it into this one cost
            // more in copies than the allocation), as is the compression
            // layer, which most responses skip.
            let compress = (shared.compress.is_some()
                && req.method() != http::Method::HEAD
                && offer.is_none())
            .then(|| {
                if seen & SPOT_ACCEPT_ENCODING != 0 {
                    super::compress::AcceptEncoding::of(req.headers())
                } else {
                    super::compress::AcceptEncoding::default()
                }
            });
            svc.forward(req, compress)
        }
    };
    async move {
        let resp = match next {
            Next::Done(r) => r,
            Next::Boxed(f) => f.await,
            Next::Compress(f, accept) => {
                let resp = f.await;
                match shared.compress.as_ref() {
                    Some(pred) if super::compress::may_apply(pred, &accept, &resp) => {
                        let config = &shared.config.compression;
                        Box::pin(super::compress::apply(config, pred, accept, resp)).await
                    }
                    _ => resp,
                }
            }
        };
        let (mut parts, body) = resp.into_parts();
        let mut log = log.map(|mut l| {
            l.record.status = parts.status.as_u16();
            l
        });
        let pending = parts.extensions.remove::<super::upgrade::Pending>();
        if let (Some(up), Some(offer)) = (pending.and_then(|p| p.take()), offer) {
            // hyper writes the `101`, then the connection loop hands the
            // client's connection to the tunnel.
            let down = conn.activity.expect_upgrade();
            // The line is written when the tunnel ends.
            let log = log.take().map(|mut l| {
                l.record.upgrade = Some(String::from_utf8_lossy(&offer).into_owned());
                l
            });
            super::upgrade::spawn(down, up, conn.activity.start(), log);
        } else if http1 && conn.activity.is_draining() {
            // The server drains: this is the connection's last response.
            parts
                .headers
                .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
        }
        Response::from_parts(parts, Tracked::new(body, in_flight, log).boxed_unsync())
    }
}

/// A boxed future of an answer.
type Answer = Pin<Box<dyn Future<Output = Response<ProxyBody>> + Send>>;

/// What [`handle`]'s future waits for.
enum Next {
    /// Nothing: answered already.
    Done(Response<ProxyBody>),
    /// The static mount's or the app's answer.
    Boxed(Answer),
    /// The app's answer, then the compression layer's (for a client that
    /// accepts these codings).
    Compress(Answer, super::compress::AcceptEncoding),
}

/// Where a request goes.
enum Routed {
    /// Answered already (refused, or `OPTIONS *`).
    Done(Response<ProxyBody>),
    /// To the static mount with this index.
    Static(usize),
    /// To the app.
    App,
}

fn route(shared: &Shared, req: &mut Request<Incoming>, raw_head: Vec<u8>) -> Routed {
    let cfg = &shared.config;
    if let Err((status, why)) = conformance::check_framing(&raw_head, req.method()) {
        return Routed::Done(close_after(error_response(status, why)));
    }
    match conformance::check(req) {
        Err((status, why)) => return Routed::Done(error_response(status, why)),
        Ok(Verdict::OptionsAsterisk) => {
            let mut r = Response::new(full(Bytes::new()));
            r.headers_mut().insert(
                http::header::ALLOW,
                HeaderValue::from_static("GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS"),
            );
            r.headers_mut()
                .insert(http::header::CONTENT_LENGTH, HeaderValue::from_static("0"));
            return Routed::Done(r);
        }
        Ok(Verdict::Forward) => conformance::normalize(req),
    }
    if req.headers().len() > cfg.max_headers {
        // hyper enforces this for HTTP/1 only; HTTP/2 lands here.
        return Routed::Done(error_response(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "too many request header fields",
        ));
    }
    if head_size(req) > cfg.max_header_size {
        // hyper's HTTP/1 read buffer limit is approximate (a head that
        // arrives in one read can exceed it); HTTP/2's header list limit
        // counts differently. This is the exact check for both.
        return Routed::Done(error_response(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "request head too large",
        ));
    }
    match shared.statics.route(req.uri().path()) {
        Some(i) => Routed::Static(i),
        None => Routed::App,
    }
}

/// Asks hyper to close the connection after this response (its framing
/// cannot be trusted).
fn close_after(mut r: Response<ProxyBody>) -> Response<ProxyBody> {
    r.headers_mut()
        .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    r
}

/// A request made ready to forward ([`AppService::prepare`]).
enum Prepared {
    /// Refused before it went anywhere.
    Done(Response<ProxyBody>),
    /// To send now, its body streaming.
    Send(Sending),
    /// To send once its body is read in whole (`request_buffering`).
    Buffer(BufferFirst),
}

/// A request ready to go upstream, and what watches its body.
struct Sending {
    req: Request<http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>>,
    /// Set when the client's side of the body fails; None without a body
    /// (nothing can fail).
    fault: Option<Arc<BodyFault>>,
    /// `Expect: 100-continue` on HTTP/1.1: fires when the body is first
    /// read (or gone); a success head waits for it. None without the
    /// expectation (no channel is made).
    continue_started: Option<tokio::sync::oneshot::Receiver<()>>,
    /// The downstream facts for the head (given to the client directly,
    /// not through the request's extensions).
    meta: RequestMeta,
}

/// A request whose body is read in whole before it is sent.
struct BufferFirst {
    parts: http::request::Parts,
    body: RequestBody<Incoming>,
    fault: Arc<BodyFault>,
    meta: RequestMeta,
}

/// The app behind the client.
struct AppService {
    shared: Arc<Shared>,
    conn: Arc<ConnInfo>,
    client: SocketAddr,
    tls: bool,
    /// The request's upgrade offer ([`super::upgrade::offer`]).
    offer: Option<Bytes>,
    /// The request's [`spot`] mask.
    seen: u16,
}

impl AppService {
    /// Forwards `req` to the app: the answer's future, boxed (then the
    /// compression layer's, given the client's codings), or the answer now
    /// when the request is refused before it goes anywhere. The request is
    /// made ready here, before the future is (see [`handle`]): the future
    /// holds only what lives across its awaits (the boxed upstream future
    /// and the body's watchers), not this service or the request, which is
    /// dropped before hyper reads again (so its read buffer is reclaimed,
    /// not replaced).
    fn forward(
        self,
        req: Request<Incoming>,
        compress: Option<super::compress::AcceptEncoding>,
    ) -> Next {
        let answer: Answer = match self.prepare(req) {
            Prepared::Done(r) => return Next::Done(r),
            Prepared::Send(s) => Box::pin(self.send(s)),
            Prepared::Buffer(b) => Box::pin(async move {
                match self.buffer_body(b).await {
                    Ok(s) => self.send(s).await,
                    Err(r) => r,
                }
            }),
        };
        match compress {
            Some(accept) => Next::Compress(answer, accept),
            None => Next::Boxed(answer),
        }
    }

    /// Everything before the first wait: limits, forwarding fields, the
    /// request's metadata and body guard.
    fn prepare(&self, mut req: Request<Incoming>) -> Prepared {
        let cfg = &self.shared.config;
        let seen = self.seen;
        let declared = (seen & SPOT_CONTENT_LENGTH != 0)
            .then(|| req.headers().get(http::header::CONTENT_LENGTH))
            .flatten()
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if declared.is_some_and(|n| n > cfg.max_body_size) {
            return Prepared::Done(error_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request body too large",
            ));
        }
        let scheme = if self.tls { "https" } else { "http" };
        let expects_continue = req.version() == http::Version::HTTP_11
            && seen & SPOT_EXPECT != 0
            && req
                .headers()
                .get(http::header::EXPECT)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
        let offer = self.offer.clone();
        let headers = req.headers_mut();
        strip(headers, seen);
        // The forwarding fields go after the request's own (the client's
        // head encoder appends them): inserting them into the map would
        // hash them and, for a request with few fields, grow it.
        let mut append_headers = Vec::with_capacity(
            usize::from(cfg.x_forwarded_for) + usize::from(cfg.x_forwarded_proto),
        );
        if cfg.x_forwarded_for {
            // Every incoming field is kept, in order (several fields are one
            // comma-separated list, RFC 9110 5.3), then the peer appended.
            let peer = &self.conn.peer_ip;
            // (`contains_key` and `remove`, not `entry`: an entry reserves
            // room for an insert, and that can grow the map.)
            let forwarded = if seen & SPOT_XFF != 0 {
                let mut value: Vec<u8> = Vec::new();
                for prev in headers.get_all(&X_FORWARDED_FOR) {
                    let prev = prev.as_bytes().trim_ascii();
                    if !prev.is_empty() {
                        value.extend_from_slice(prev);
                        value.extend_from_slice(b", ");
                    }
                }
                value.extend_from_slice(peer.as_bytes());
                headers.remove(&X_FORWARDED_FOR);
                HeaderValue::from_bytes(&value).ok()
            } else {
                Some(peer.clone())
            };
            if let Some(v) = forwarded {
                append_headers.push((X_FORWARDED_FOR, v));
            }
        }
        if cfg.x_forwarded_proto {
            // What the client said is replaced, never passed on.
            if seen & SPOT_XFP != 0 {
                headers.remove(&X_FORWARDED_PROTO);
            }
            append_headers.push((X_FORWARDED_PROTO, HeaderValue::from_static(scheme)));
        }
        let host = req
            .uri()
            .host()
            .or_else(|| {
                req.headers()
                    .get(http::header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .map(host_without_port)
            })
            .filter(|h| !h.is_empty());
        let server_name = match host {
            Some(h) => self.conn.server_name(h),
            None => self.conn.server_name(&self.conn.local.ip().to_string()),
        };
        let meta = RequestMeta {
            client_addr: Some(self.client),
            server_name: Some(server_name),
            server_port: Some(self.conn.local.port()),
            tls: self.tls,
            params: cfg.params.clone(),
            append_headers,
        };
        let (mut parts, body) = req.into_parts();
        if let Some(protocol) = offer {
            parts
                .extensions
                .insert(crate::client::upgrade::Upgrade::new(protocol).limits(cfg.tunnel));
        }
        // The head's scheme (REQUEST_SCHEME) is the connection's (or what a
        // trusted proxy said), never what the client claims in a target.
        let want = if self.tls {
            http::uri::Scheme::HTTPS
        } else {
            http::uri::Scheme::HTTP
        };
        if parts.uri.scheme().is_some_and(|s| *s != want) {
            let mut p = parts.uri.clone().into_parts();
            p.scheme = Some(want);
            if let Ok(u) = http::Uri::from_parts(p) {
                parts.uri = u;
            }
        }
        if http_body::Body::is_end_stream(&body) {
            // No body (most requests): nothing to limit, time or watch,
            // and an empty body in a box allocates nothing.
            return Prepared::Send(Sending {
                req: Request::from_parts(
                    parts,
                    http_body_util::Empty::new()
                        .map_err(|never| match never {})
                        .boxed_unsync(),
                ),
                fault: None,
                continue_started: None,
                meta,
            });
        }
        let fault = Arc::new(BodyFault::default());
        let (started_tx, continue_started) = if expects_continue {
            let (tx, rx) = tokio::sync::oneshot::channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let body = RequestBody::new(
            body,
            cfg.max_body_size,
            cfg.body_read_timeout,
            fault.clone(),
            started_tx,
        );
        if cfg.request_buffering {
            return Prepared::Buffer(BufferFirst {
                parts,
                body,
                fault,
                meta,
            });
        }
        Prepared::Send(Sending {
            req: Request::from_parts(parts, body.boxed_unsync()),
            fault: Some(fault),
            continue_started,
            meta,
        })
    }

    /// Reads the whole request body first (`request_buffering`), then
    /// sends it with its length.
    async fn buffer_body(&self, b: BufferFirst) -> Result<Sending, Response<ProxyBody>> {
        let cfg = &self.shared.config;
        let BufferFirst {
            mut parts,
            body,
            fault,
            meta,
        } = b;
        let buffered = match super::buffer::buffer(
            body,
            cfg.request_buffer_memory,
            cfg.request_buffer_dir.as_deref(),
        )
        .await
        {
            Ok(b) => b,
            Err(e) => {
                if let Some(f) = fault.get() {
                    let (s, why) = f.status();
                    return Err(error_response(s, why));
                }
                tracing::warn!(error = %e, "buffering the request body failed");
                return Err(error_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "could not buffer the request body",
                ));
            }
        };
        parts.headers.insert(
            http::header::CONTENT_LENGTH,
            HeaderValue::from(buffered.len),
        );
        Ok(Sending {
            req: Request::from_parts(parts, buffered.into_body()),
            fault: Some(fault),
            // The body is in whole: nothing waits for it to start.
            continue_started: None,
            meta,
        })
    }

    /// Sends the request upstream and turns the answer into the client's.
    /// The upstream future is made (and boxed) before this future is, so
    /// the request does not take room in it too.
    fn send(&self, s: Sending) -> impl Future<Output = Response<ProxyBody>> + Send + 'static {
        let Sending {
            req,
            fault,
            continue_started,
            meta,
        } = s;
        let upstream = request_boxed(&self.shared.client, req, &meta);
        async move {
            // A client-side body failure wins over whatever the upstream
            // makes of the cut-off request: it is the client's fault (4xx)
            // and must not count against the upstream's health.
            // (Without a body there is no fault to watch.)
            let result = match fault.as_deref() {
                Some(fault) => tokio::select! {
                    biased;
                    f = fault.wait() => Err(f),
                    r = upstream => Ok(r),
                },
                None => Ok(upstream.await),
            };
            let mut resp = match result {
                Err(f) => {
                    let (s, why) = f.status();
                    return close_after(error_response(s, why));
                }
                Ok(Err(e)) => return upstream_failed(fault.as_deref(), &e),
                Ok(Ok(resp)) => resp,
            };
            if let Some(up) = crate::client::upgrade::take(&mut resp) {
                return upgraded(resp, up);
            }
            if let Some(started) = continue_started.filter(|_| resp.status().is_success()) {
                // hyper writes `100 Continue` when the body is first read,
                // but only while no response head has been written. The
                // upstream's head can win that race (an app that answers
                // before reading, like an echo), and a client waiting for
                // 100 would then never send the body. So a success head
                // waits until the client has started the body (or the body
                // is gone: ended, reset, dropped).
                let _ = started.await;
            }
            let (mut parts, body) = resp.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            Response::from_parts(
                parts,
                body.map_err(|e| Box::new(e) as BoxError).boxed_unsync(),
            )
        }
    }
}

/// The answer when the upstream request failed: the client's body fault
/// if there was one (its fault, a 4xx), else the upstream's error.
fn upstream_failed(fault: Option<&BodyFault>, e: &crate::client::Error) -> Response<ProxyBody> {
    if let Some(f) = fault.and_then(BodyFault::get) {
        let (s, why) = f.status();
        return close_after(error_response(s, why));
    }
    tracing::warn!(error = %e, "upstream request failed");
    error_response(e.status_code(), &e.to_string())
}

/// The app accepted an upgrade: a `101` downstream, carrying the tunnel to
/// the handler for the connection loop.
fn upgraded(
    resp: Response<crate::client::Body>,
    up: crate::client::upgrade::Upgraded,
) -> Response<ProxyBody> {
    let (mut parts, _) = resp.into_parts();
    let protocol = parts.headers.get(http::header::UPGRADE).cloned();
    strip_hop_by_hop(&mut parts.headers);
    let protocol = protocol
        .as_ref()
        .map_or(b"websocket".as_slice(), |v| v.as_bytes());
    super::upgrade::set_switch_fields(&mut parts.headers, protocol);
    parts.extensions.insert(super::upgrade::Pending::new(up));
    Response::from_parts(parts, full(Bytes::new()))
}

type UpstreamFuture = Pin<
    Box<dyn Future<Output = Result<Response<crate::client::Body>, crate::client::Error>> + Send>,
>;

/// The client's future, boxed: it is several hundred bytes, and moving
/// it inline through the layers that wrap it (the forwarding future, then
/// `handle`'s) cost more in copies than the allocation (measured with
/// `scripts/bench-cost`: about 500 instructions per request more).
fn request_boxed(
    client: &Client,
    req: Request<http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>>,
    meta: &RequestMeta,
) -> UpstreamFuture {
    Box::pin(client.request_with_meta(req, meta))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A keep-alive connection's requests share one server name while
    /// they name the same host; a request naming another gets its own, and
    /// the next request naming the first host gets that one again.
    #[test]
    fn server_name_is_shared_while_the_host_stays() {
        let info = ConnInfo {
            peer: "127.0.0.1:1".parse().unwrap(),
            peer_ip: ip_header_value("127.0.0.1".parse().unwrap()),
            local: "127.0.0.1:2".parse().unwrap(),
            tls: false,
            activity: Default::default(),
            server_name: Default::default(),
        };
        let a = info.server_name("example.com");
        let b = info.server_name("example.com");
        assert_eq!(a, "example.com");
        assert_eq!(a.as_ptr(), b.as_ptr(), "the same name is not copied again");
        let c = info.server_name("other.example");
        assert_eq!(c, "other.example");
        let d = info.server_name("example.com");
        assert_eq!(d, "example.com");
        assert_eq!(a, b);
    }

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

    #[test]
    fn each_hop_by_hop_field_alone_is_stripped() {
        // The fast check and the removal list must agree.
        for (i, n) in HOP_BY_HOP.iter().enumerate() {
            assert_eq!(field_index(n), Some(i), "{n}");
            let mut h = HeaderMap::new();
            h.insert(n.clone(), HeaderValue::from_static("1"));
            h.insert("x-keep", HeaderValue::from_static("1"));
            strip_hop_by_hop(&mut h);
            assert_eq!(h.len(), 1, "{n}: {h:?}");
        }
        assert_eq!(field_index(&http::header::HOST), None);
    }

    /// The mask reports the forwarding fields, `Content-Length` and
    /// `Accept-Encoding` beside the hop-by-hop fields, in any case, and
    /// nothing else; stripping removes only the hop-by-hop fields (and
    /// what `Connection` lists).
    #[test]
    fn the_looked_up_fields_are_spotted_in_one_pass() {
        let map = |pairs: &[(&'static str, &'static str)]| {
            let mut h = HeaderMap::new();
            for (n, v) in pairs {
                h.append(*n, HeaderValue::from_static(v));
            }
            h
        };
        let spot_strip = |h: &mut HeaderMap| {
            let seen = spot(h);
            strip(h, seen);
            seen
        };
        let mut h = map(&[("host", "a"), ("x-forwarded-protocol", "x")]);
        assert_eq!(spot_strip(&mut h), 0);
        assert_eq!(h.len(), 2);
        let mut h = map(&[("X-Forwarded-For", "192.0.2.1"), ("te", "trailers")]);
        assert_eq!(spot_strip(&mut h), SPOT_XFF | 1 << 3);
        assert_eq!(h.len(), 1, "only the hop-by-hop field goes: {h:?}");
        let mut h = map(&[("x-forwarded-proto", "https"), ("x-forwarded-for", "a")]);
        assert_eq!(spot_strip(&mut h), SPOT_XFF | SPOT_XFP);
        assert_eq!(h.len(), 2);
        let mut h = map(&[
            ("Content-Length", "3"),
            ("accept-encoding", "gzip"),
            ("Expect", "100-continue"),
            ("upgrade", "websocket"),
        ]);
        assert_eq!(
            spot_strip(&mut h),
            SPOT_CONTENT_LENGTH | SPOT_ACCEPT_ENCODING | SPOT_EXPECT | SPOT_UPGRADE
        );
        assert_eq!(h.len(), 2, "{h:?}");
        // Listed in `Connection`: stripped, and still reported (the
        // forwarding step then finds nothing to keep).
        let mut h = map(&[("connection", "x-forwarded-for"), ("x-forwarded-for", "a")]);
        assert_eq!(spot_strip(&mut h), SPOT_CONNECTION | SPOT_XFF);
        assert!(h.is_empty(), "{h:?}");
    }

    /// Names listed in `Connection` in any case, hop-by-hop or not, present
    /// or not, valid or not: exactly the listed fields present go, with
    /// the nine.
    #[test]
    fn connection_listed_names_in_any_case() {
        let mut h = HeaderMap::new();
        for (n, v) in [
            ("connection", "Keep-Alive, CLOSE, X-Foo , bad name,, te"),
            ("keep-alive", "timeout=5"),
            ("x-foo", "1"),
            ("close", "1"),
            ("x-keep", "1"),
            ("x-unlisted", "1"),
        ] {
            h.append(n, HeaderValue::from_static(v));
        }
        strip_hop_by_hop(&mut h);
        let mut left: Vec<_> = h.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["x-keep", "x-unlisted"]);
    }
}
