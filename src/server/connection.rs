//! One connection: accept its streams, run each through the handler with the
//! request deadline, stream responses back.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use http_body_util::BodyExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::Instrument;

use super::handler::{Body, BodyError, Handler, Request, Response, ResponseBody};
use super::metrics::{ErrorKind, Metrics};
use super::ServerConfig;
use crate::conn::{ConnError, ConnErrorClass};
use crate::environ;
use crate::frame::{HeaderBlock, Reason, ResponseHead};
use crate::net::{self, IncomingRequest};

pub(crate) struct Ctx {
    pub(crate) handler: Arc<dyn Handler>,
    pub(crate) config: Arc<ServerConfig>,
    pub(crate) metrics: Arc<Metrics>,
}

impl Clone for Ctx {
    fn clone(&self) -> Ctx {
        Ctx {
            handler: self.handler.clone(),
            config: self.config.clone(),
            metrics: self.metrics.clone(),
        }
    }
}

/// Aborts a spawned task when dropped (the connection task may itself be
/// aborted by the server's drain deadline; its driver must not outlive it).
pub(crate) struct AbortOnDrop<T>(pub(crate) tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs `f` when dropped: bookkeeping that must happen even when the task
/// doing it is cancelled.
pub(crate) struct OnDrop<F: FnMut()>(pub(crate) F);

impl<F: FnMut()> Drop for OnDrop<F> {
    fn drop(&mut self) {
        (self.0)()
    }
}

/// Whether the connection ended because the peer closed the transport
/// without a GOAWAY (as opposed to breaking the protocol).
fn is_eof(e: &net::Error) -> bool {
    std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<ConnError>())
        .is_some_and(|c| c.class() == ConnErrorClass::UnexpectedEof)
}

pub(crate) async fn serve<T>(io: T, ctx: Ctx, mut stop: watch::Receiver<bool>)
where
    T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    ctx.metrics.connection_opened();
    let metrics = ctx.metrics.clone();
    let _closed = OnDrop(move || metrics.connection_closed());
    let (mut incoming, task) = net::server(io, ctx.config.conn.clone());
    let mut driver = AbortOnDrop(tokio::spawn(task));
    // Stream tasks; dropping the set (when the connection is gone) cancels
    // handlers that are still running: nobody can receive their answer.
    let mut streams = JoinSet::new();
    let active = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let last_activity = Arc::new(AtomicU64::new(0));
    let idle = ctx.config.idle_timeout;
    let tick = idle.map(|d| (d / 4).clamp(Duration::from_millis(10), Duration::from_secs(1)));
    let mut shutting_down = *stop.borrow();
    if shutting_down {
        incoming.shutdown(Some(ctx.config.drain_timeout));
    }
    loop {
        tokio::select! {
            req = incoming.accept() => {
                let Some(req) = req else { break };
                active.fetch_add(1, Ordering::Relaxed);
                let (ctx, active, last) = (ctx.clone(), active.clone(), last_activity.clone());
                let span = tracing::debug_span!("stream", id = %req.responder.id());
                streams.spawn(
                    async move {
                        let _done = OnDrop(move || {
                            last.store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
                            active.fetch_sub(1, Ordering::Relaxed);
                        });
                        serve_stream(req, &ctx).await;
                    }
                    .instrument(span),
                );
            }
            Some(_) = streams.join_next(), if !streams.is_empty() => {}
            changed = stop.changed(), if !shutting_down => {
                if changed.is_err() || *stop.borrow() {
                    shutting_down = true;
                    incoming.shutdown(Some(ctx.config.drain_timeout));
                }
            }
            _ = tokio::time::sleep(tick.unwrap_or(Duration::from_secs(3600))), if tick.is_some() && !shutting_down => {
                let idle_for = started.elapsed().saturating_sub(Duration::from_millis(last_activity.load(Ordering::Relaxed)));
                if active.load(Ordering::Relaxed) == 0 && idle_for >= idle.unwrap_or(Duration::MAX) {
                    tracing::debug!(?idle_for, "idle timeout: closing connection");
                    shutting_down = true;
                    incoming.shutdown(Some(Duration::ZERO));
                }
            }
        }
    }
    drop(incoming);
    let result = (&mut driver.0).await;
    // The driver has told every open stream how it ended (their `closed`
    // signals fired), so stream tasks finish promptly and account for
    // themselves; give them a moment, then cancel whatever is left.
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while streams.join_next().await.is_some() {}
    })
    .await;
    streams.abort_all();
    match result {
        Ok(Ok(())) => {}
        Ok(Err(e)) if is_eof(&e) => {
            // The peer closed the socket without a GOAWAY: harmless for an
            // idle connection (a probe, a pool dropping a connection), and
            // requests it abandoned were counted by their streams
            // (PeerReset).
            tracing::debug!(error = %e, "peer closed the connection");
        }
        Ok(Err(e)) => {
            if e.is_protocol() {
                ctx.metrics.error(ErrorKind::Protocol);
                tracing::warn!(error = %e, "connection closed on a protocol error");
            } else if e.is_io() {
                ctx.metrics.error(ErrorKind::Io);
                tracing::debug!(error = %e, "connection i/o error");
            }
        }
        Err(e) => tracing::error!(error = %e, "connection task failed"),
    }
}

pub(crate) fn simple(status: u16, msg: &str) -> Response {
    let mut r = Response::new(ResponseBody::from(format!("{msg}\n")));
    *r.status_mut() =
        http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

pub(crate) fn header_block(headers: &http::HeaderMap) -> HeaderBlock {
    let mut b = HeaderBlock::builder();
    for (name, value) in headers {
        // http's types already forbid CR, LF and NUL; a value that still
        // fails is dropped rather than failing the response.
        if b.push(name.as_str().as_bytes(), value.as_bytes()).is_err() {
            tracing::warn!(header = %name, "dropping a response header uwire cannot carry");
        }
    }
    b.finish()
}

/// What became of a request once the handler ran.
pub(crate) enum Outcome {
    /// A response to send.
    Respond(Response),
    /// The peer is gone (reset or disconnected): nothing is sent.
    PeerGone,
    /// The request body was aborted: reset the stream with `CANCEL`.
    Aborted,
}

/// Builds the environ, runs the handler under the request deadline with
/// panics caught, and turns every failure into the response (or outcome)
/// the runtime promises. Shared by the uwire and the classic uwsgi paths.
pub(crate) async fn run_handler<C>(
    ctx: &Ctx,
    head: crate::frame::RequestHead,
    body: Body,
    deadline: Option<tokio::time::Instant>,
    closed: C,
) -> Outcome
where
    C: std::future::Future<Output = Option<Reason>>,
{
    let max_body = ctx.config.max_body_size;
    let environ = match environ::build(&head, &ctx.config.environ) {
        Err(e) => {
            ctx.metrics.error(ErrorKind::BadRequest);
            return Outcome::Respond(simple(400, &format!("bad request: {e}")));
        }
        Ok(_) if head.body_length.is_some_and(|n| n > max_body) => {
            ctx.metrics.error(ErrorKind::BodyTooLarge);
            return Outcome::Respond(simple(413, "request body too large"));
        }
        Ok(env) => env,
    };
    let request = Request::new(head, environ, body);
    // `call` itself may panic (work done before the future is
    // built), as may the future: both are the handler panicking.
    let fut = match std::panic::catch_unwind(AssertUnwindSafe(|| ctx.handler.call(request))) {
        Ok(fut) => AssertUnwindSafe(fut).catch_unwind().left_future(),
        Err(panic) => futures_util::future::ready(Err(panic)).right_future(),
    };
    let run = async {
        match deadline {
            Some(d) => tokio::time::timeout_at(d, fut).await,
            None => Ok(fut.await),
        }
    };
    let outcome = tokio::select! {
        biased;
        outcome = run => outcome,
        reset = closed => {
            // The proxy reset the stream (its client went away) or
            // the connection closed: nobody can receive an answer,
            // so the handler is dropped rather than run to the end.
            if reset.is_some() {
                ctx.metrics.error(ErrorKind::PeerReset);
            }
            return Outcome::PeerGone;
        }
    };
    let response = match outcome {
        Err(_) => {
            ctx.metrics.error(ErrorKind::Deadline);
            simple(504, "request deadline exceeded")
        }
        Ok(Err(_panic)) => {
            ctx.metrics.error(ErrorKind::HandlerPanic);
            tracing::error!("handler panicked; answering 500");
            simple(500, "internal server error")
        }
        Ok(Ok(Err(e))) => match e.downcast_ref::<BodyError>() {
            // Counted by the body when it hit the limit.
            Some(BodyError::TooLarge { .. }) => simple(413, "request body too large"),
            Some(BodyError::Aborted(_)) | Some(BodyError::Incomplete { .. }) => {
                // The peer reset the stream (or the connection died):
                // nobody is left to answer. Counted once here; no
                // response is attempted (it could only fail, and count
                // again).
                ctx.metrics.error(ErrorKind::PeerReset);
                return Outcome::Aborted;
            }
            _ => {
                ctx.metrics.error(ErrorKind::HandlerError);
                tracing::warn!(error = %e, "handler error; answering 500");
                simple(500, "internal server error")
            }
        },
        Ok(Ok(Ok(resp))) => resp,
    };
    if response.status().is_informational() {
        // A 1xx head is interim: the client would wait forever for the final
        // one (or get a body it cannot place).
        ctx.metrics.error(ErrorKind::HandlerError);
        tracing::error!(
            status = response.status().as_u16(),
            "handler returned an interim (1xx) status as its final response; answering 500"
        );
        return Outcome::Respond(simple(500, "internal server error"));
    }
    Outcome::Respond(response)
}

/// Counts a stream as started, and as finished when the returned guard
/// drops (cancellation included); returns the guard and the request deadline.
pub(crate) fn begin_stream(ctx: &Ctx) -> (OnDrop<impl FnMut()>, Option<tokio::time::Instant>) {
    let started = Instant::now();
    ctx.metrics.stream_started();
    let metrics = ctx.metrics.clone();
    let finished = OnDrop(move || metrics.stream_finished(started.elapsed()));
    let deadline = ctx
        .config
        .request_deadline
        .map(|d| tokio::time::Instant::now() + d);
    (finished, deadline)
}

/// Adds `Content-Length` when the body's exact size is known and none is set.
pub(crate) fn announce_length<B: http_body::Body>(headers: &mut http::HeaderMap, body: &B) {
    if !headers.contains_key(http::header::CONTENT_LENGTH) {
        if let Some(n) = body.size_hint().exact() {
            headers.insert(http::header::CONTENT_LENGTH, n.into());
        }
    }
}

async fn serve_stream(req: IncomingRequest, ctx: &Ctx) {
    let (_finished, deadline) = begin_stream(ctx);
    let IncomingRequest {
        head,
        body,
        mut responder,
    } = req;
    let body = Body::new(body, ctx.config.max_body_size, Some(ctx.metrics.clone()));
    let response = match run_handler(ctx, head, body, deadline, responder.closed()).await {
        Outcome::Respond(r) => r,
        Outcome::PeerGone => return,
        Outcome::Aborted => {
            responder.reset(Reason::CANCEL);
            return;
        }
    };
    let (mut parts, body) = response.into_parts();
    let mut body = body.into_inner();
    let end = http_body::Body::is_end_stream(&body);
    // Announce a known length, so an HTTP/1.1 front need not chunk it.
    if !parts.headers.contains_key(http::header::TRANSFER_ENCODING) {
        announce_length(&mut parts.headers, &body);
    }
    let head = ResponseHead {
        status: parts.status.as_u16(),
        reason: None,
        headers: header_block(&parts.headers),
    };
    let Ok(mut send) = responder.send_response(head, end) else {
        return;
    };
    if !end {
        loop {
            let next = AssertUnwindSafe(body.frame()).catch_unwind();
            let next = async {
                match deadline {
                    Some(d) => tokio::time::timeout_at(d, next).await.ok(),
                    None => Some(next.await),
                }
            };
            let next = tokio::select! {
                biased;
                next = next => Ok(next),
                reset = send.closed() => Err(reset),
            };
            let next = match next {
                Ok(Some(next)) => next,
                Ok(None) => {
                    ctx.metrics.error(ErrorKind::Deadline);
                    send.reset(Reason::TIMEOUT);
                    break;
                }
                Err(reset) => {
                    // Reset while the body waited for its next chunk (an
                    // endless event stream, say): stop producing it now.
                    if reset.is_some() {
                        ctx.metrics.error(ErrorKind::PeerReset);
                    }
                    break;
                }
            };
            match next {
                Err(_panic) => {
                    ctx.metrics.error(ErrorKind::HandlerPanic);
                    send.reset(Reason::INTERNAL_ERROR);
                    break;
                }
                Ok(None) => {
                    let _ = send.finish().await;
                    break;
                }
                Ok(Some(Err(e))) => {
                    // A streaming response fed by the request body (an echo)
                    // fails when that body does: keep the request body's
                    // reason rather than blaming the handler.
                    let reason = match e.downcast_ref::<BodyError>() {
                        // Counted by the body when it hit the limit.
                        Some(BodyError::TooLarge { .. }) => Reason::LIMIT_EXCEEDED,
                        Some(BodyError::Aborted(_)) => {
                            ctx.metrics.error(ErrorKind::PeerReset);
                            Reason::CANCEL
                        }
                        _ => {
                            ctx.metrics.error(ErrorKind::HandlerError);
                            tracing::warn!(error = %e, "response body failed; resetting the stream");
                            Reason::INTERNAL_ERROR
                        }
                    };
                    send.reset(reason);
                    break;
                }
                Ok(Some(Ok(frame))) => {
                    let frame = match frame.into_data() {
                        Ok(data) => {
                            let n = data.len() as u64;
                            if send.send_data(data, false).await.is_err() {
                                // The proxy reset the stream: drop the response.
                                ctx.metrics.error(ErrorKind::PeerReset);
                                break;
                            }
                            ctx.metrics.add_bytes_out(n);
                            continue;
                        }
                        Err(f) => f,
                    };
                    if let Ok(trailers) = frame.into_trailers() {
                        let _ = send.send_trailers(header_block(&trailers));
                        break;
                    }
                }
            }
        }
    }
}
