//! What applications implement: a [`Handler`] turns a [`Request`] (head,
//! environ, streaming body) into an `http::Response` with a streaming body.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::BodyExt;

use super::config::ServerConfig;
use crate::environ::{self, Environ};
use crate::frame::RequestHead;
use crate::net::RecvStream;

/// A boxed error.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// A boxed, sendable future.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Errors a request body can yield.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BodyError {
    /// The body grew past the server's `max_body_size`.
    #[error("request body exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The configured limit.
        limit: u64,
    },
    /// The stream was reset or the connection failed.
    #[error("request body aborted: {0}")]
    Aborted(#[from] crate::net::Error),
    /// A classic uwsgi connection ended before `CONTENT_LENGTH` bytes.
    #[error("request body ended after {got} of {expected} bytes")]
    Incomplete {
        /// Declared length.
        expected: u64,
        /// Bytes received.
        got: u64,
    },
}

/// Where a request body comes from.
#[derive(Debug)]
enum Source {
    /// A uwire stream.
    Stream(RecvStream),
    /// Chunks read off a classic uwsgi connection by a reader task.
    Channel {
        rx: tokio::sync::mpsc::UnboundedReceiver<Result<Bytes, BodyError>>,
        /// Byte credit the reader task waits on; returned as chunks are read.
        credit: Arc<tokio::sync::Semaphore>,
        done: bool,
    },
}

/// A streaming request body. Flow-control credit returns to the proxy only
/// as the handler reads, so a handler that reads slowly slows the sender
/// instead of growing memory.
#[derive(Debug)]
pub struct Body {
    inner: Option<Source>,
    read: u64,
    limit: u64,
    metrics: Option<Arc<super::Metrics>>,
}

impl Body {
    pub(crate) fn new(inner: RecvStream, limit: u64, metrics: Option<Arc<super::Metrics>>) -> Body {
        Body {
            inner: Some(Source::Stream(inner)),
            read: 0,
            limit,
            metrics,
        }
    }

    /// A body fed by a reader task (classic uwsgi connections).
    pub(crate) fn channel(
        rx: tokio::sync::mpsc::UnboundedReceiver<Result<Bytes, BodyError>>,
        credit: Arc<tokio::sync::Semaphore>,
        limit: u64,
        metrics: Option<Arc<super::Metrics>>,
    ) -> Body {
        Body {
            inner: Some(Source::Channel {
                rx,
                credit,
                done: false,
            }),
            read: 0,
            limit,
            metrics,
        }
    }

    /// The empty body of a classic uwsgi request without one.
    pub(crate) fn channel_empty(limit: u64, metrics: Option<Arc<super::Metrics>>) -> Body {
        Body {
            inner: None,
            read: 0,
            limit,
            metrics,
        }
    }

    /// An empty body (tests, internal requests).
    pub fn empty() -> Body {
        Body {
            inner: None,
            read: 0,
            limit: 0,
            metrics: None,
        }
    }

    /// The next chunk; `None` at the end.
    pub async fn data(&mut self) -> Option<Result<Bytes, BodyError>> {
        let next = match self.inner.as_mut()? {
            Source::Stream(s) => s.data().await.map(|r| r.map_err(BodyError::from)),
            Source::Channel { rx, credit, done } => {
                if *done {
                    return None;
                }
                let n = rx.recv().await;
                match &n {
                    Some(Ok(b)) => credit.add_permits(b.len()),
                    _ => *done = true,
                }
                n
            }
        };
        match next {
            None => None,
            Some(Err(e)) => Some(Err(e)),
            Some(Ok(b)) => {
                self.read += b.len() as u64;
                if let Some(m) = &self.metrics {
                    m.add_bytes_in(b.len() as u64);
                }
                if self.read > self.limit {
                    if let Some(Source::Stream(s)) = self.inner.take() {
                        s.reset(crate::frame::Reason::LIMIT_EXCEEDED);
                    }
                    // Counted here, once, whatever the handler then does
                    // with the error.
                    if let Some(m) = &self.metrics {
                        m.error(super::ErrorKind::BodyTooLarge);
                    }
                    return Some(Err(BodyError::TooLarge { limit: self.limit }));
                }
                Some(Ok(b))
            }
        }
    }

    /// Reads the whole body into memory (bounded by the server's limit).
    pub async fn to_bytes(&mut self) -> Result<Bytes, BodyError> {
        let mut out = bytes::BytesMut::new();
        while let Some(c) = self.data().await {
            out.extend_from_slice(&c?);
        }
        Ok(out.freeze())
    }

    /// Bytes read so far.
    pub fn bytes_read(&self) -> u64 {
        self.read
    }
}

impl HttpBody for Body {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        let fut = this.data();
        futures_util::pin_mut!(fut);
        match fut.poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(r) => Poll::Ready(r.map(|r| r.map(Frame::data))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            None => true,
            Some(Source::Stream(s)) => s.is_end(),
            Some(Source::Channel { done, .. }) => *done,
        }
    }
}

/// A request as a handler sees it.
#[derive(Debug)]
pub struct Request {
    head: Box<RequestHead>,
    /// Built on first use (see [`Request::environ`]).
    environ: OnceLock<Environ>,
    /// How to build it then; `None` when it was given at construction.
    environ_config: Option<Arc<ServerConfig>>,
    body: Body,
    upgrade: Option<super::upgrade::OnUpgrade>,
}

impl Request {
    /// Assembles a request (the runtime does this; also useful in tests).
    pub fn new(head: RequestHead, environ: Environ, body: Body) -> Request {
        Request::from_boxed(Box::new(head), environ, body)
    }

    /// Assembles a request around a head already boxed.
    pub(crate) fn from_boxed(head: Box<RequestHead>, environ: Environ, body: Body) -> Request {
        Request {
            head,
            environ: OnceLock::from(environ),
            environ_config: None,
            body,
            upgrade: None,
        }
    }

    /// Assembles a request whose head passed [`environ::check`] under
    /// `config.environ` and whose environ is built when first asked for.
    pub(crate) fn checked(
        head: Box<RequestHead>,
        config: Arc<ServerConfig>,
        body: Body,
    ) -> Request {
        Request {
            head,
            environ: OnceLock::new(),
            environ_config: Some(config),
            body,
            upgrade: None,
        }
    }

    /// Attaches the runtime's end of an upgrade offer.
    pub(crate) fn with_upgrade(mut self, on: Option<super::upgrade::OnUpgrade>) -> Request {
        self.upgrade = on;
        self
    }

    /// The protocol the request offers to upgrade to (`websocket`, ...),
    /// when it offers one the runtime can carry (PROTOCOL.md section 7.5).
    pub fn upgrade_protocol(&self) -> Option<&Bytes> {
        self.head.upgrade.as_ref()
    }

    /// Takes the upgrade of a request that offers one (once; `None` after,
    /// or without an offer). Keep the [`OnUpgrade`](super::OnUpgrade) (in a
    /// spawned task) and return a response accepting the offer: `101` (a
    /// 2xx when the method is `CONNECT`); it resolves to the byte stream
    /// once that head has gone out. See [`super::upgrade`].
    pub fn upgrade(&mut self) -> Option<super::upgrade::OnUpgrade> {
        self.upgrade.take()
    }

    /// The head as the proxy sent it (raw header names and order).
    pub fn head(&self) -> &RequestHead {
        &self.head
    }

    /// The CGI/WSGI environ built from the head. The runtime builds it the
    /// first time it is asked for, so a handler that reads only the head
    /// does not pay for it; the request was checked against every rule of
    /// [`environ::build`] before the handler ran, so building cannot fail.
    pub fn environ(&self) -> &Environ {
        self.environ.get_or_init(|| self.build_environ())
    }

    /// Builds the environ of a request made by [`Request::checked`].
    fn build_environ(&self) -> Environ {
        let config = self
            .environ_config
            .as_ref()
            .expect("a request without an environ has the config to build it");
        environ::build(&self.head, &config.environ)
            .expect("environ::check passed on this head with this config")
    }

    /// The body.
    pub fn body_mut(&mut self) -> &mut Body {
        &mut self.body
    }

    /// Splits the request.
    pub fn into_parts(mut self) -> (RequestHead, Environ, Body) {
        let environ = match self.environ.take() {
            Some(environ) => environ,
            None => self.build_environ(),
        };
        (*self.head, environ, self.body)
    }
}

/// A response body: anything implementing `http_body::Body`, boxed.
pub struct ResponseBody {
    inner: http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>,
}

impl std::fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ResponseBody")
    }
}

impl ResponseBody {
    /// Wraps any body.
    pub fn new<B>(body: B) -> ResponseBody
    where
        B: HttpBody + Send + 'static,
        B::Data: Into<Bytes>,
        B::Error: Into<BoxError>,
    {
        ResponseBody {
            inner: IntoBytes { inner: body }.boxed_unsync(),
        }
    }

    /// No body.
    pub fn empty() -> ResponseBody {
        ResponseBody::new(http_body_util::Empty::<Bytes>::new())
    }

    /// A body from a stream of chunks.
    pub fn from_stream<S>(stream: S) -> ResponseBody
    where
        S: futures_util::Stream<Item = Result<Bytes, BoxError>> + Send + 'static,
    {
        use futures_util::StreamExt;
        ResponseBody::new(http_body_util::StreamBody::new(
            stream.map(|r| r.map(Frame::data)),
        ))
    }

    pub(crate) fn into_inner(self) -> http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError> {
        self.inner
    }
}

impl From<Bytes> for ResponseBody {
    fn from(b: Bytes) -> ResponseBody {
        ResponseBody::new(http_body_util::Full::new(b))
    }
}

impl From<&'static str> for ResponseBody {
    fn from(s: &'static str) -> ResponseBody {
        Bytes::from_static(s.as_bytes()).into()
    }
}

impl From<String> for ResponseBody {
    fn from(s: String) -> ResponseBody {
        Bytes::from(s).into()
    }
}

impl From<Vec<u8>> for ResponseBody {
    fn from(v: Vec<u8>) -> ResponseBody {
        Bytes::from(v).into()
    }
}

impl HttpBody for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
}

/// The response type handlers return.
pub type Response = http::Response<ResponseBody>;

/// An application: turns requests into responses. Errors and panics become
/// a 500 for that request only.
pub trait Handler: Send + Sync + 'static {
    /// Handles one request.
    fn call(&self, req: Request) -> BoxFuture<Result<Response, BoxError>>;
}

impl<H: Handler + ?Sized> Handler for Arc<H> {
    fn call(&self, req: Request) -> BoxFuture<Result<Response, BoxError>> {
        (**self).call(req)
    }
}

/// A handler made from an async closure; see [`handler_fn`].
#[derive(Clone)]
pub struct HandlerFn<F> {
    f: F,
}

/// Makes a [`Handler`] from `async fn(Request) -> Result<Response, E>`.
///
/// ```
/// use uwire::server::{handler_fn, Request, Response, ResponseBody};
/// let h = handler_fn(|req: Request| async move {
///     Ok::<_, std::convert::Infallible>(Response::new(ResponseBody::from(format!("{:?}", req.head().path))))
/// });
/// # let _ = h;
/// ```
pub fn handler_fn<F, Fut, E>(f: F) -> HandlerFn<F>
where
    F: Fn(Request) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Response, E>> + Send + 'static,
    E: Into<BoxError>,
{
    HandlerFn { f }
}

impl<F, Fut, E> Handler for HandlerFn<F>
where
    F: Fn(Request) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Response, E>> + Send + 'static,
    E: Into<BoxError>,
{
    fn call(&self, req: Request) -> BoxFuture<Result<Response, BoxError>> {
        let fut = (self.f)(req);
        Box::pin(async move { fut.await.map_err(Into::into) })
    }
}

/// Adapts any `tower::Service<Request>` whose response is an
/// `http::Response<B>` into a [`Handler`]; see [`from_service`].
#[derive(Clone)]
pub struct ServiceHandler<S> {
    svc: S,
}

/// Adapts a `tower::Service` (cloned per request, readiness awaited).
pub fn from_service<S, B>(svc: S) -> ServiceHandler<S>
where
    S: tower_service::Service<Request, Response = http::Response<B>>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: HttpBody + Send + 'static,
    B::Data: Into<Bytes>,
    B::Error: Into<BoxError>,
{
    ServiceHandler { svc }
}

impl<S, B> Handler for ServiceHandler<S>
where
    S: tower_service::Service<Request, Response = http::Response<B>>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: HttpBody + Send + 'static,
    B::Data: Into<Bytes>,
    B::Error: Into<BoxError>,
{
    fn call(&self, req: Request) -> BoxFuture<Result<Response, BoxError>> {
        let mut svc = self.svc.clone();
        Box::pin(async move {
            std::future::poll_fn(|cx| svc.poll_ready(cx))
                .await
                .map_err(Into::into)?;
            let resp = svc.call(req).await.map_err(Into::into)?;
            Ok(resp.map(ResponseBody::new))
        })
    }
}

pin_project_lite::pin_project! {
    /// Adapts a body's data and error types while keeping its size hint
    /// (which `http_body_util`'s `map_frame` drops, and which the runtime
    /// uses to announce a Content-Length and to write small bodies with
    /// their head).
    struct IntoBytes<B> {
        #[pin]
        inner: B,
    }
}

impl<B> HttpBody for IntoBytes<B>
where
    B: HttpBody,
    B::Data: Into<Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.project()
            .inner
            .poll_frame(cx)
            .map(|o| o.map(|r| r.map(|f| f.map_data(Into::into)).map_err(Into::into)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::HeaderBlock;

    fn checked(config: ServerConfig) -> Request {
        let head = RequestHead {
            method: Bytes::from_static(b"GET"),
            path: Bytes::from_static(b"/p"),
            headers: HeaderBlock::try_from_pairs([("X-Id", "7")]).unwrap(),
            ..RequestHead::default()
        };
        assert_eq!(environ::check(&head, &config.environ), Ok(None));
        Request::checked(Box::new(head), Arc::new(config), Body::empty())
    }

    #[test]
    fn a_checked_request_builds_its_environ_when_first_asked() {
        let req = checked(ServerConfig::default());
        assert!(req.environ.get().is_none(), "built before it was asked for");
        let first: *const Environ = req.environ();
        assert_eq!(req.environ().get("HTTP_X_ID"), Some(&b"7"[..]));
        assert_eq!(req.environ().get("PATH_INFO"), Some(&b"/p"[..]));
        assert!(std::ptr::eq(first, req.environ()), "built twice");
    }

    #[test]
    fn into_parts_builds_an_environ_never_asked_for() {
        let mut config = ServerConfig::default();
        config.environ.script_name("/p");
        let environ_config = config.environ.clone();
        let (head, env, _) = checked(config).into_parts();
        assert_eq!(env.get("SCRIPT_NAME"), Some(&b"/p"[..]));
        assert_eq!(env, environ::build(&head, &environ_config).unwrap());
    }
}
