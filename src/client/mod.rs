//! The proxy side: a [`Client`] that carries `http::Request`s over pooled
//! uwire connections to one or more upstream apps. It is a
//! `tower::Service<http::Request<B>>`, so any tokio/hyper proxy can use it
//! as a backend.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! use http_body_util::{BodyExt, Empty};
//! use uwire::client::{Client, ClientConfig};
//! let client = Client::new(vec!["unix:/run/app.sock".parse()?], ClientConfig::default())?;
//! let req = http::Request::get("http://example/hello").body(Empty::<bytes::Bytes>::new())?;
//! let resp = client.request(req).await?;
//! let body = resp.into_body().collect().await?.to_bytes();
//! # let _ = body; Ok(()) }
//! ```
//!
//! For sockets the caller manages itself, [`handshake`] returns the
//! lower-level `(SendRequest, ConnectionTask)` pair.

mod body;
mod config;
mod error;
mod pool;
pub mod upgrade;
mod upstream;
mod uwsgi;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::{Buf, Bytes};
use futures_util::future::Either;
use futures_util::FutureExt;
use http_body::Body as HttpBody;

pub use body::Body;
pub use config::*;
pub use error::{BoxError, Error};
pub use upstream::{Protocol, Transport, Upstream};

use crate::frame::{HeaderBlock, HttpVersion, RequestHead};
use error::Kind;
use pool::UpstreamState;

pub(crate) use body::header_map;

/// Retries at least this many times a request that never reached the app
/// (refused stream, connection closed before the request was written), even
/// with a single upstream: an app recycling its worker processes refuses
/// streams on each connection it drains, and a retry can meet the next one.
pub const MIN_SAFE_RETRIES: usize = 3;

/// Starts a uwire client connection on a socket the caller opened. Spawn
/// the returned task; open streams with the [`crate::net::SendRequest`].
pub fn handshake<T>(
    io: T,
    config: crate::conn::Config,
) -> (crate::net::SendRequest, crate::net::ConnectionTask)
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    crate::net::client(io, config)
}

/// Facts about the downstream connection that become part of the request
/// head (and so of the app's environ). An HTTP front puts this in the
/// request's extensions, where [`Client::request`] reads it, or hands it to
/// [`Client::request_with_meta`] directly.
#[derive(Debug, Clone, Default)]
pub struct RequestMeta {
    /// The end client's address (REMOTE_ADDR/REMOTE_PORT).
    pub client_addr: Option<SocketAddr>,
    /// The name the request was received on (SERVER_NAME).
    pub server_name: Option<Bytes>,
    /// The port the request was received on (SERVER_PORT).
    pub server_port: Option<u16>,
    /// Whether the downstream connection used TLS.
    pub tls: bool,
    /// Extra CGI variables, like nginx's `uwsgi_param`.
    pub params: Vec<(Bytes, Bytes)>,
    /// Header fields sent after the request's own, in this order (a
    /// front's `X-Forwarded-For`, say). Cheaper than inserting them into
    /// the request's `HeaderMap`, which hashes them and may grow the map;
    /// the caller removes any field of the same name it replaces.
    pub append_headers: Vec<(http::HeaderName, http::HeaderValue)>,
}

struct Inner {
    upstreams: Vec<Arc<UpstreamState>>,
    config: ClientConfig,
    rr: AtomicUsize,
}

/// Carries HTTP requests to upstream apps over pooled uwire connections,
/// with load balancing and passive ejection. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("upstreams", &self.inner.upstreams)
            .finish()
    }
}

fn version(v: http::Version) -> HttpVersion {
    match v {
        http::Version::HTTP_09 => HttpVersion::HTTP_09,
        http::Version::HTTP_10 => HttpVersion::HTTP_10,
        http::Version::HTTP_2 => HttpVersion::HTTP_2,
        http::Version::HTTP_3 => HttpVersion::HTTP_3,
        _ => HttpVersion::HTTP_11,
    }
}

/// The method as bytes; the standard ones without allocating.
fn method_bytes(m: &http::Method) -> Bytes {
    use http::Method;
    let s: &'static str = match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => return Bytes::copy_from_slice(m.as_str().as_bytes()),
    };
    Bytes::from_static(s.as_bytes())
}

/// What the head needs of a request's fields, found in one pass over
/// them (two hashed lookups would cost more than the pass, which sizes
/// the header block anyway).
struct Fields<'a> {
    /// The first `Host` field.
    host: Option<&'a http::HeaderValue>,
    /// The first `Content-Length` field.
    content_length: Option<&'a http::HeaderValue>,
    /// The header block's size, before the appended fields.
    size: usize,
}

impl<'a> Fields<'a> {
    /// Scans `headers`.
    fn of(headers: &'a http::HeaderMap) -> Fields<'a> {
        let mut f = Fields {
            host: None,
            content_length: None,
            size: 0,
        };
        for (n, v) in headers {
            if *n == http::header::HOST {
                f.host.get_or_insert(v);
            } else if *n == http::header::CONTENT_LENGTH {
                f.content_length.get_or_insert(v);
            }
            f.size += field_size(n, v);
        }
        f
    }
}

/// A field's size in a header block.
fn field_size(n: &http::HeaderName, v: &http::HeaderValue) -> usize {
    6 + n.as_str().len() + v.len()
}

/// Builds the request head from the parts of an `http::Request`.
#[cfg(any(test, fuzzing))]
pub(crate) fn request_head(
    parts: &http::request::Parts,
    body_length: Option<u64>,
    meta: Option<&RequestMeta>,
) -> Result<RequestHead, Error> {
    request_head_of(parts, &Fields::of(&parts.headers), body_length, meta)
}

/// [`request_head`] for `parts` whose headers `fields` scanned.
fn request_head_of(
    parts: &http::request::Parts,
    fields: &Fields<'_>,
    body_length: Option<u64>,
    meta: Option<&RequestMeta>,
) -> Result<RequestHead, Error> {
    let default_meta;
    let meta = match meta.or_else(|| parts.extensions.get::<RequestMeta>()) {
        Some(m) => m,
        None => {
            default_meta = RequestMeta::default();
            &default_meta
        }
    };
    let uri = &parts.uri;
    let authority: &[u8] = match uri.authority() {
        Some(a) => a.as_str().as_bytes(),
        None => fields.host.map_or(&[], |h| h.as_bytes()),
    };
    let path = match uri.path() {
        "" | "/" => None,
        p => Some(p.as_bytes()),
    };
    let query = uri.query().map(str::as_bytes);
    // The request's own fields, then the appended ones.
    let all_fields = || {
        parts
            .headers
            .iter()
            .chain(meta.append_headers.iter().map(|(n, v)| (n, v)))
    };
    let fields = fields.size
        + meta
            .append_headers
            .iter()
            .map(|(n, v)| field_size(n, v))
            .sum::<usize>();
    // The head's text fields and its header block share one buffer: one
    // allocation, and cloning the head (a retry keeps it) only counts
    // references instead of copying each `Vec`-backed field into a shared
    // one.
    // 39: the longest client address text; 4: the block's entry count.
    let mut buf = Vec::with_capacity(
        authority.len()
            + path.map_or(0, <[u8]>::len)
            + query.map_or(0, <[u8]>::len)
            + 39
            + 4
            + fields,
    );
    let put = |buf: &mut Vec<u8>, b: &[u8]| {
        let start = buf.len();
        buf.extend_from_slice(b);
        start..buf.len()
    };
    let authority = put(&mut buf, authority);
    let path = path.map(|p| put(&mut buf, p));
    let query = query.map(|q| put(&mut buf, q));
    let client_addr = meta.client_addr.map(|a| {
        let start = buf.len();
        crate::environ::cgi::push_ip(&mut buf, a.ip());
        (start..buf.len(), a.port())
    });
    let block = buf.len();
    let mut headers = crate::frame::HeaderBlockBuilder::appending_to(buf);
    for (n, v) in all_fields() {
        headers.push_field(n, v);
    }
    let offer = parts.extensions.get::<upgrade::Upgrade>();
    if let Some(o) = offer {
        upgrade::add_offer_fields(&mut headers, parts, o);
    }
    let (buf, count) = headers.into_parts();
    let buf = Bytes::from(buf);
    let mut params = HeaderBlock::builder();
    for (n, v) in &meta.params {
        params
            .push(n, v)
            .map_err(|e| Error::with(Kind::InvalidRequest, e))?;
    }
    let scheme = match uri.scheme_str() {
        Some("http") => Bytes::from_static(b"http"),
        Some("https") => Bytes::from_static(b"https"),
        Some(s) => Bytes::copy_from_slice(s.as_bytes()),
        None if meta.tls => Bytes::from_static(b"https"),
        None => Bytes::from_static(b"http"),
    };
    let (client_addr, client_port) = match client_addr {
        Some((at, port)) => (buf.slice(at), port),
        None => (Bytes::new(), 0),
    };
    Ok(RequestHead {
        method: method_bytes(&parts.method),
        scheme,
        authority: buf.slice(authority),
        path: path.map_or(Bytes::from_static(b"/"), |p| buf.slice(p)),
        query: query.map(|q| buf.slice(q)),
        version: version(parts.version),
        headers: HeaderBlock::from_built(buf.slice(block..), count),
        client_addr,
        client_port,
        server_name: meta.server_name.clone().unwrap_or_default(),
        server_port: meta.server_port.unwrap_or(0),
        tls: meta.tls,
        params: params.finish(),
        body_length,
        upgrade: offer.map(|o| o.protocol().clone()),
    })
}

/// The body's length: what the request's `Content-Length` field
/// (`declared`) says, else what the body knows of itself.
fn body_length<B: HttpBody>(declared: Option<&http::HeaderValue>, body: &B) -> Option<u64> {
    let declared = declared
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok());
    // A bodiless request without Content-Length gets no length at all
    // (CONTENT_LENGTH stays unset, as nginx leaves it empty).
    declared.or_else(|| {
        if body.is_end_stream() {
            None
        } else {
            body.size_hint().exact()
        }
    })
}

impl Client {
    /// A client for `upstreams` (at least one).
    pub fn new(upstreams: Vec<Upstream>, config: ClientConfig) -> Result<Client, String> {
        config.validate()?;
        if upstreams.is_empty() {
            return Err("at least one upstream is required".into());
        }
        Ok(Client {
            inner: Arc::new(Inner {
                upstreams: upstreams
                    .into_iter()
                    .map(|u| Arc::new(UpstreamState::new(u)))
                    .collect(),
                config,
                rr: AtomicUsize::new(0),
            }),
        })
    }

    /// A client for the same upstreams, with the same configuration, and
    /// none of this one's connections: what a forked child uses in place
    /// of the client it inherited, whose connections are driven by tasks
    /// of the parent's runtime (their threads do not survive `fork`) over
    /// sockets the parent still writes to.
    pub fn without_connections(&self) -> Client {
        Client {
            inner: Arc::new(Inner {
                upstreams: self
                    .inner
                    .upstreams
                    .iter()
                    .map(|u| Arc::new(UpstreamState::new(u.addr.clone())))
                    .collect(),
                config: self.inner.config.clone(),
                rr: AtomicUsize::new(0),
            }),
        }
    }

    /// In a forked child, closes the descriptors of the pooled
    /// connections this client inherited from its parent, without writing
    /// to them, and forgets the client: nothing of it is used or dropped
    /// again. Returns how many it closed. Take
    /// [`Client::without_connections`] first to go on with the same
    /// upstreams.
    ///
    /// The child would otherwise hold the parent's sockets open until it
    /// exits: when the parent closes a connection, its server would see it
    /// stay open. A descriptor whose number now holds another file (closed
    /// and reused since the fork) is left alone: each is checked to still
    /// hold the socket it was opened with.
    ///
    /// # Safety
    /// The tasks that drive this client's connections must never run in
    /// this process again: true in a child forked from a process whose
    /// runtime ran them on its own threads (a multi-thread runtime, or a
    /// current-thread one on a thread other than the forking one), which
    /// do not exist in the child. Every clone of the client must be
    /// unused from then on too; their connections are closed with it.
    #[allow(unsafe_code)]
    pub unsafe fn close_inherited(self) -> usize {
        let closed = self
            .inner
            .upstreams
            .iter()
            // SAFETY: the caller's contract.
            .map(|u| unsafe { u.close_inherited() })
            .sum();
        std::mem::forget(self);
        closed
    }

    /// The configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// Live pooled connections per upstream, in configuration order.
    pub fn connection_counts(&self) -> Vec<usize> {
        self.inner
            .upstreams
            .iter()
            .map(|u| u.live_connections())
            .collect()
    }

    /// Connections opened so far per upstream (reconnects included).
    pub fn connections_opened(&self) -> Vec<u64> {
        self.inner
            .upstreams
            .iter()
            .map(|u| u.connects.load(Ordering::Relaxed))
            .collect()
    }

    /// Requests in flight per upstream.
    pub fn outstanding(&self) -> Vec<usize> {
        self.inner
            .upstreams
            .iter()
            .map(|u| u.outstanding.load(Ordering::Relaxed))
            .collect()
    }

    /// Which upstreams are ejected right now.
    pub fn ejected(&self) -> Vec<bool> {
        let now = Instant::now();
        self.inner
            .upstreams
            .iter()
            .map(|u| u.is_ejected(now))
            .collect()
    }

    /// Picks an upstream, skipping those in `tried` (a bit per upstream,
    /// the first 64) and ejected ones. Allocates nothing.
    fn pick(&self, tried: u64) -> Option<usize> {
        let ups = &self.inner.upstreams;
        let n = ups.len();
        let is_tried = |i: usize| i < 64 && tried & (1 << i) != 0;
        if n == 1 {
            return (!is_tried(0)).then_some(0);
        }
        let now = Instant::now();
        let start = self.inner.rr.fetch_add(1, Ordering::Relaxed);
        let order = (0..n).map(|i| (start + i) % n).filter(|&i| !is_tried(i));
        let healthy = order.clone().filter(|&i| !ups[i].is_ejected(now));
        let chosen = match self.inner.config.balance {
            Balance::RoundRobin => healthy.clone().next(),
            Balance::LeastOutstanding => {
                healthy.min_by_key(|&i| ups[i].outstanding.load(Ordering::Acquire))
            }
        };
        // Every remaining upstream is ejected: rather than fail outright,
        // try the one whose cool-down ends first.
        chosen.or_else(|| order.min_by_key(|&i| ups[i].ejected_until()))
    }

    /// Sends one request and waits for the response head. The body streams
    /// in both directions; see the module docs.
    ///
    /// The request head is built before the future is made: the future
    /// holds the head, not the `http` parts it came from as well (every
    /// request pays for the size of its future).
    pub fn request<B>(
        &self,
        req: http::Request<B>,
    ) -> impl Future<Output = Result<http::Response<Body>, Error>> + Send + 'static
    where
        B: HttpBody + Send + 'static,
        B::Data: Buf + Send,
        B::Error: Into<BoxError>,
    {
        self.request_inner(req, None)
    }

    /// As [`Client::request`], with the facts about the downstream
    /// connection given here rather than in the request's extensions (a
    /// [`RequestMeta`] there is then ignored). An HTTP front saves the
    /// extension map this way: two allocations and a look-up per request.
    pub fn request_with_meta<B>(
        &self,
        req: http::Request<B>,
        meta: &RequestMeta,
    ) -> impl Future<Output = Result<http::Response<Body>, Error>> + Send + 'static
    where
        B: HttpBody + Send + 'static,
        B::Data: Buf + Send,
        B::Error: Into<BoxError>,
    {
        self.request_inner(req, Some(meta))
    }

    fn request_inner<B>(
        &self,
        req: http::Request<B>,
        meta: Option<&RequestMeta>,
    ) -> impl Future<Output = Result<http::Response<Body>, Error>> + Send + 'static
    where
        B: HttpBody + Send + 'static,
        B::Data: Buf + Send,
        B::Error: Into<BoxError>,
    {
        let (mut parts, body) = req.into_parts();
        let fields = Fields::of(&parts.headers);
        let len = body_length(fields.content_length, &body);
        let head = match request_head_of(&parts, &fields, len, meta) {
            Ok(head) => head,
            Err(e) => return Either::Left(std::future::ready(Err(e))),
        };
        // Only the upgrade offer is needed of the parts from here on.
        let offer = parts
            .extensions
            .remove::<upgrade::Upgrade>()
            .filter(|_| head.upgrade.is_some());
        drop(parts);
        let mut end_stream = body.is_end_stream();
        if head.upgrade.is_some() {
            // The client's half carries the tunnel (PROTOCOL.md 7.5).
            if !end_stream || len.is_some_and(|n| n > 0) {
                return Either::Left(std::future::ready(Err(Error::with(
                    Kind::InvalidRequest,
                    "an upgrade request cannot have a body",
                ))));
            }
            end_stream = false;
        }
        Either::Right(self.attempts(head, offer, end_stream, body))
    }

    /// Sends the request to upstreams until one answers or no retry is
    /// left. Not an `async fn`: that would keep each argument twice in the
    /// future (as the argument, and as the local it moves into); here the
    /// future holds them once, and the attempts only borrow them.
    fn attempts<B>(
        &self,
        head: RequestHead,
        offer: Option<upgrade::Upgrade>,
        end_stream: bool,
        body: B,
    ) -> impl Future<Output = Result<http::Response<Body>, Error>> + Send + 'static
    where
        B: HttpBody + Send + 'static,
        B::Data: Buf + Send,
        B::Error: Into<BoxError>,
    {
        let mut body = Some(body);
        // The future owns a handle on the client (one reference count), so
        // it borrows nothing: a caller can box or store it without keeping
        // the client borrowed, and need not keep its own state beside it.
        let client = self.clone();
        async move {
            let this = &client;
            let cfg = &this.inner.config;
            // The deadline bounds each attempt up to the response head:
            // the wait for it is timed by the connection's own timer (a
            // queue entry, not a timer per request); a connect, or a wait
            // for room under the stream limit, arms a timer of its own.
            let deadline = cfg.request_timeout.map(|d| tokio::time::Instant::now() + d);
            let mut tried: u64 = 0;
            let mut attempts = 0;
            loop {
                let Some(i) = this.pick(tried) else {
                    return Err(Error::new(Kind::NoUpstream));
                };
                if i < 64 {
                    tried |= 1 << i;
                }
                let up = this.inner.upstreams[i].clone();
                let result = match up.addr.protocol {
                    Protocol::Uwire => {
                        this.send_uwire(&up, &head, end_stream, &mut body, offer.as_ref(), deadline)
                            .await
                    }
                    Protocol::Uwsgi if head.upgrade.is_some() => Err(Error::with(
                        Kind::InvalidRequest,
                        "upgrades (WebSocket) are carried only to uwire/1 upstreams",
                    )),
                    // Boxed: its state would otherwise widen every uwire/1
                    // request's future too.
                    Protocol::Uwsgi => {
                        Box::pin(by_deadline(
                            deadline,
                            uwsgi::request(&up, &head, &mut body, cfg),
                        ))
                        .await
                    }
                };
                match result {
                    Ok(resp) => {
                        up.record_success();
                        return Ok(resp);
                    }
                    Err(e) => {
                        if e.is_upstream_failure() {
                            up.record_failure(cfg);
                        }
                        attempts += 1;
                        // Nothing reached the app (connect failure, refused
                        // stream, connection gone before the request was
                        // written) and the body was not consumed: safe to retry,
                        // on another upstream if there is one; a refused stream
                        // (GOAWAY from a restarting app) or a dead pooled
                        // connection may retry the same one.
                        let retryable = e.is_retryable() && body.is_some();
                        let budget = this.inner.upstreams.len().max(MIN_SAFE_RETRIES);
                        if retryable && attempts <= budget {
                            let all = this.inner.upstreams.len().min(64);
                            if tried.count_ones() as usize >= all {
                                if e.is_connect() {
                                    return Err(e);
                                }
                                tried = 0;
                            }
                            tracing::debug!(upstream = %up.addr, error = %e, "retrying");
                            continue;
                        }
                        return Err(e);
                    }
                }
            }
        }
    }

    async fn send_uwire<B>(
        &self,
        up: &Arc<UpstreamState>,
        head: &RequestHead,
        end_stream: bool,
        body: &mut Option<B>,
        offer: Option<&upgrade::Upgrade>,
        deadline: Option<tokio::time::Instant>,
    ) -> Result<http::Response<Body>, Error>
    where
        B: HttpBody + Send + 'static,
        B::Data: Buf + Send,
        B::Error: Into<BoxError>,
    {
        let lease = match up.try_checkout(&self.inner.config) {
            Some(lease) => lease,
            // Boxed: connecting is rare, and its state would widen every
            // request's future.
            None => Box::pin(by_deadline(deadline, up.checkout(&self.inner.config))).await?,
        };
        let method = offer.map(|_| head.method.clone()).unwrap_or_default();
        let open = lease
            .sender
            .send_request_ref(head, end_stream, deadline.map(|d| d.into_std()));
        let (mut send, response) =
            by_deadline(deadline, open.map(|r| r.map_err(Error::from_net))).await?;
        if let Some(offer) = offer {
            let (rhead, recv) = response.await.map_err(Error::from_net)?;
            let mut builder = http::Response::builder().status(rhead.status);
            if let Some(h) = builder.headers_mut() {
                *h = header_map(&rhead.headers);
            }
            if crate::frame::accepts_upgrade(&method, rhead.status) {
                let tunnel = crate::net::Tunnel::new(send, recv, offer.tunnel_limits());
                let up = upgrade::Upgraded::new(tunnel, lease.guard);
                return builder
                    .extension(upgrade::Slot::new(up))
                    .body(Body::empty())
                    .map_err(|e| Error::with(Kind::Upstream, e));
            }
            // Declined: an ordinary response; our (empty) half ends.
            let _ = send.finish_now();
            return builder
                .body(Body::uwire(recv, lease.guard))
                .map_err(|e| Error::with(Kind::Upstream, e));
        }
        // From here on the body belongs to this attempt (an empty body stays
        // behind, so a refused bodiless request can be retried).
        if !end_stream {
            if let Some(b) = body.take() {
                tokio::spawn(body::pump(b, send));
            }
        }
        let (rhead, recv) = response.await.map_err(Error::from_net)?;
        let mut builder = http::Response::builder().status(rhead.status);
        if let Some(h) = builder.headers_mut() {
            *h = header_map(&rhead.headers);
        }
        builder
            .body(Body::uwire(recv, lease.guard))
            .map_err(|e| Error::with(Kind::Upstream, e))
    }
}

/// `fut`, failed with [`Kind::Timeout`] once `deadline` passes
/// ([`crate::net::within`]: no timer unless `fut` has to wait; most waits
/// bounded this way, a pooled connection's checkout or a stream under the
/// peer's limit, end at once).
async fn by_deadline<T>(
    deadline: Option<tokio::time::Instant>,
    fut: impl Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    crate::net::within(deadline, fut)
        .await
        .unwrap_or_else(|| Err(Error::new(Kind::Timeout)))
}

/// A boxed response future.
pub type ResponseFuture = Pin<Box<dyn Future<Output = Result<http::Response<Body>, Error>> + Send>>;

impl<B> tower_service::Service<http::Request<B>> for Client
where
    B: HttpBody + Send + 'static,
    B::Data: Buf + Send,
    B::Error: Into<BoxError>,
{
    type Response = http::Response<Body>;
    type Error = Error;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        // Connections are opened lazily per request; streams queue inside
        // each connection when the app's limit is reached.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> ResponseFuture {
        Box::pin(self.request(req))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head_of(req: http::Request<()>) -> RequestHead {
        let (parts, ()) = req.into_parts();
        request_head(&parts, None, None).unwrap()
    }

    /// Every field comes through as before the fields shared a buffer:
    /// authority from the target or else from Host, path (`/` when empty),
    /// query, the client's address (IPv4 and IPv6), the header fields in
    /// order, the appended ones after them, then the offer's.
    #[test]
    fn request_head_fields() {
        let mut req = http::Request::get("/a/b?x=1&y")
            .header("Host", "example.com:8080")
            .header("x-one", "1")
            .header("x-two", "")
            .body(())
            .unwrap();
        req.extensions_mut().insert(RequestMeta {
            client_addr: Some("[2001:db8::1]:4321".parse().unwrap()),
            server_name: Some(Bytes::from_static(b"example.com")),
            server_port: Some(8080),
            tls: false,
            params: vec![(Bytes::from_static(b"P"), Bytes::from_static(b"v"))],
            append_headers: vec![(
                http::HeaderName::from_static("x-forwarded-for"),
                http::HeaderValue::from_static("2001:db8::1"),
            )],
        });
        req.extensions_mut()
            .insert(upgrade::Upgrade::new("websocket"));
        let h = head_of(req);
        assert_eq!(h.authority, "example.com:8080");
        assert_eq!(h.path, "/a/b");
        assert_eq!(h.query.as_deref(), Some(&b"x=1&y"[..]));
        assert_eq!(h.client_addr, "2001:db8::1");
        assert_eq!(h.client_port, 4321);
        assert_eq!(h.server_name, "example.com");
        assert_eq!(h.upgrade.as_deref(), Some(&b"websocket"[..]));
        let fields: Vec<_> = h.headers.iter().collect();
        assert_eq!(
            fields,
            [
                (&b"host"[..], &b"example.com:8080"[..]),
                (b"x-one", b"1"),
                (b"x-two", b""),
                (b"x-forwarded-for", b"2001:db8::1"),
                (b"connection", b"upgrade"),
                (b"upgrade", b"websocket"),
            ]
        );
        assert_eq!(h.params.get(b"P"), Some(&b"v"[..]));
        // What the codec checks on the way in holds for what was built.
        let again = HeaderBlock::parse(h.headers.as_bytes().clone(), 6).unwrap();
        assert_eq!(again, h.headers);

        let h = head_of(
            http::Request::get("http://target.example/?q")
                .body(())
                .unwrap(),
        );
        assert_eq!(h.authority, "target.example");
        assert_eq!(h.path, "/");
        assert_eq!(h.query.as_deref(), Some(&b"q"[..]));
        assert!(h.client_addr.is_empty() && h.headers.is_empty());
        let h = head_of(http::Request::get("/").body(()).unwrap());
        assert!(h.authority.is_empty() && h.query.is_none());
    }

    /// The text fields and the header block are slices of one buffer, in
    /// that order: one allocation per head, and a clone of the head copies
    /// no bytes.
    #[test]
    fn request_head_fields_share_one_buffer() {
        let mut req = http::Request::get("/p?q")
            .header("host", "h")
            .header("x", "y")
            .body(())
            .unwrap();
        req.extensions_mut().insert(RequestMeta {
            client_addr: Some("10.0.0.1:1".parse().unwrap()),
            ..RequestMeta::default()
        });
        let h = head_of(req);
        let end = |b: &Bytes| b.as_ptr().wrapping_add(b.len());
        assert_eq!(end(&h.authority), h.path.as_ptr());
        assert_eq!(end(&h.path), h.query.as_ref().unwrap().as_ptr());
        assert_eq!(end(h.query.as_ref().unwrap()), h.client_addr.as_ptr());
        assert_eq!(end(&h.client_addr), h.headers.as_bytes().as_ptr());
        let c = h.clone();
        assert_eq!(c.path.as_ptr(), h.path.as_ptr());
    }
}
