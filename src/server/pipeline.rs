//! The protocol-neutral request pipeline.
//!
//! Every request, whichever protocol carried it, takes one path: [`serve`]
//! counts it, checks it against the environ rules (the environ itself is
//! built when the handler first asks for it), runs the handler under the
//! request deadline with panics caught, and pumps the response into a
//! [`Sink`]. The sink is the only thing a protocol implements:
//! [`super::uwire`] answers on a uwire/1 stream, [`super::uwsgi`] writes an
//! HTTP/1-style response on a classic uwsgi connection. The deadline, the
//! send timeout, the metrics and the mapping of every failure to a status or
//! a reset live here once, so the protocols cannot drift apart. (hyper's
//! split of its dispatcher from the `Http1Transaction` wire roles is the
//! model.)
//!
//! A handler that is not async Rust fits the same seam: it runs its work on
//! a blocking thread, reads the body through
//! [`Body::into_blocking`](super::Body::into_blocking) and streams its
//! answer through [`ResponseBody::channel`](super::ResponseBody::channel);
//! to the pipeline it is one more future and one more body.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::FutureExt;
use http_body_util::BodyExt;
use tokio::time::Instant as Deadline;

use super::handler::{Body, BodyError, Handler, Request, Response, ResponseBody};
use super::metrics::{ErrorKind, Metrics};
use super::upgrade::{Offer, OnUpgrade, Upgraded};
use super::ServerConfig;
use crate::environ;
use crate::frame::{HeaderBlock, Reason, RequestHead, ResponseHead};
use crate::net::{within, within_for};

/// What every request needs: the handler, the configuration, the metrics.
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

/// What follows a response head.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BodyShape {
    /// No body at all: the head ends the response.
    pub(crate) end: bool,
    /// The body's exact size, when known before it is sent (a full buffer).
    pub(crate) exact_len: Option<u64>,
}

/// Why a sink could not take part of a response.
#[derive(Debug)]
pub(crate) enum SinkError {
    /// Nobody can receive the response any more: `Some(reason)` when the
    /// peer said so (uwire RESET, a classic uwsgi peer closing its end),
    /// `None` when the connection ended otherwise.
    Gone(Option<Reason>),
    /// The head cannot be expressed in this protocol; the sink has answered
    /// (or closed) in its own way.
    Unsendable,
}

/// One protocol's way of answering one request. Methods are called in
/// order: [`head_ready`](Sink::head_ready) and [`send_head`](Sink::send_head)
/// once, then [`send_data`](Sink::send_data) any number of times, then
/// [`send_trailers`](Sink::send_trailers) or [`finish`](Sink::finish);
/// [`abort`](Sink::abort) at any point ends the exchange early.
pub(crate) trait Sink: Send {
    /// Whether a `Transfer-Encoding` field from the handler is passed on
    /// (uwire/1 carries fields verbatim) or dropped (classic uwsgi writes
    /// the body raw and closes the connection after it).
    const KEEPS_TRANSFER_ENCODING: bool;

    /// Resolves once nobody can receive the response, with `Some(reason)`
    /// when the peer said so and `None` when it ended otherwise. Must be
    /// cancel-safe and may be awaited again after it resolved.
    fn closed(&mut self) -> impl Future<Output = Option<Reason>> + Send + '_;

    /// Resolves when the response head may go out. Classic uwsgi holds it
    /// until the request body is in (nginx stops sending the body once a
    /// response starts), and fails if the body ended short.
    fn head_ready(&mut self) -> impl Future<Output = Result<(), BodyError>> + Send + '_;

    /// Sends the head; with `shape.end` it also ends the response.
    fn send_head(
        &mut self,
        head: ResponseHead,
        shape: BodyShape,
    ) -> impl Future<Output = Result<(), SinkError>> + Send + '_;

    /// Sends body bytes; resolves once they are handed on or only a bounded
    /// amount waits (backpressure). With `last` these are the final bytes:
    /// the response ends with them (no separate [`finish`](Sink::finish)).
    fn send_data(
        &mut self,
        data: Bytes,
        last: bool,
    ) -> impl Future<Output = Result<(), SinkError>> + Send + '_;

    /// Sends trailers, which end the response (dropped where the protocol
    /// has none).
    fn send_trailers(
        &mut self,
        trailers: HeaderBlock,
    ) -> impl Future<Output = Result<(), SinkError>> + Send + '_;

    /// Ends the response after the last data.
    fn finish(&mut self) -> impl Future<Output = Result<(), SinkError>> + Send + '_;

    /// Ends the exchange early: a uwire RESET with `reason`, an abortive
    /// close on classic uwsgi (the only way to say "cut short" there).
    fn abort(&mut self, reason: Reason);

    /// After the head accepting an upgrade went out (without ending the
    /// response): both directions of the exchange as one byte stream, or
    /// `None` where the exchange cannot carry one.
    fn take_tunnel(&mut self, ctx: &Ctx) -> Option<Upgraded>;
}

/// Runs `f` when dropped: bookkeeping that must happen even when the task
/// doing it is cancelled.
pub(crate) struct OnDrop<F: FnMut()>(pub(crate) F);

impl<F: FnMut()> Drop for OnDrop<F> {
    fn drop(&mut self) {
        (self.0)()
    }
}

/// Aborts a spawned task when dropped (the connection task may itself be
/// aborted by the server's drain deadline; its helpers must not outlive it).
pub(crate) struct AbortOnDrop<T>(pub(crate) tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A plain-text response: `status`, with `msg` and a newline as its body.
/// The runtime answers its refusals and failures so (504 `request deadline
/// exceeded` when the request deadline passes, say); a handler can answer
/// alike.
pub fn text_response(status: u16, msg: &str) -> Response {
    let mut r = Response::new(ResponseBody::from(format!("{msg}\n")));
    *r.status_mut() =
        http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// The wire form of response header fields, plus `content-length: n` when
/// `length` is given and the fields frame the body neither way themselves
/// (no `Content-Length`, no `Transfer-Encoding`): a known length is
/// announced, so an HTTP/1.1 front need not chunk it. Written straight
/// into the block (no header map insert, no allocation for the number);
/// the framing fields are spotted in the same pass that sizes the block.
pub(crate) fn header_block(headers: &http::HeaderMap, length: Option<u64>) -> HeaderBlock {
    let mut size = 0;
    let mut framed = false;
    for (n, v) in headers {
        size += 6 + n.as_str().len() + v.len();
        framed |= n == http::header::CONTENT_LENGTH || n == http::header::TRANSFER_ENCODING;
    }
    let mut digits = itoa::Buffer::new();
    let length = length
        .filter(|_| !framed)
        .map(|n| digits.format(n).as_bytes());
    size += length.map_or(0, |l| 6 + "content-length".len() + l.len());
    let mut b = HeaderBlock::builder_with_capacity(size);
    for (name, value) in headers {
        b.push_field(name, value);
    }
    if let Some(l) = length {
        let _ = b.push(b"content-length", l);
    }
    b.finish()
}

/// What became of a request once the handler ran.
enum Outcome {
    /// A response to send.
    Respond(Response),
    /// The peer is gone (reset or disconnected): nothing is sent.
    PeerGone,
    /// The request body was aborted: end the exchange with `CANCEL`.
    Aborted,
}

/// Serves one decoded request: `head` and `body` in, the response out
/// through `sink`. Every request of every protocol goes through here.
pub(crate) async fn serve<S: Sink>(ctx: &Ctx, head: Box<RequestHead>, body: Body, sink: &mut S) {
    // One clock read for the duration metric and the deadline.
    let start = Deadline::now();
    let started = start.into_std();
    ctx.metrics.stream_started();
    let metrics = ctx.metrics.clone();
    // Counted as finished however this ends, cancellation included.
    let _finished = OnDrop(move || metrics.stream_finished(started.elapsed()));
    let deadline = ctx.config.request_deadline.map(|d| start + d);
    let (offer, on_upgrade) = match head.upgrade.is_some() {
        true => {
            let (o, on) = Offer::new(head.method.clone());
            (Some(o), Some(on))
        }
        false => (None, None),
    };
    let response = match run_handler(ctx, head, body, on_upgrade, deadline, sink).await {
        Outcome::Respond(r) => r,
        Outcome::PeerGone => return,
        Outcome::Aborted => return sink.abort(Reason::CANCEL),
    };
    if let Some(offer) = offer.filter(|o| o.accepted_by(response.status().as_u16())) {
        // Boxed: rare, and its state would widen every request's.
        return Box::pin(accept_upgrade(ctx, sink, response, offer)).await;
    }
    respond(ctx, sink, response, deadline).await
}

/// Sends the head accepting an upgrade and hands the exchange's byte
/// stream to the handler's [`OnUpgrade`]. The response body is not sent:
/// after this head the stream carries the tunnel.
async fn accept_upgrade<S: Sink>(ctx: &Ctx, sink: &mut S, response: Response, offer: Offer) {
    if !offer.is_taken() {
        ctx.metrics.error(ErrorKind::HandlerError);
        tracing::error!(
            status = response.status().as_u16(),
            "handler accepted an upgrade without keeping Request::upgrade(); answering 500"
        );
        return respond(ctx, sink, text_response(500, "internal server error"), None).await;
    }
    let (parts, _body) = response.into_parts();
    let head = ResponseHead {
        status: parts.status.as_u16(),
        reason: None,
        headers: header_block(&parts.headers, None),
    };
    let shape = BodyShape {
        end: false,
        exact_len: None,
    };
    if let Err(e) = sink.send_head(head, shape).await {
        return sink_failed(ctx, e);
    }
    match sink.take_tunnel(ctx) {
        Some(up) => offer.complete(up),
        None => sink.abort(Reason::INTERNAL_ERROR),
    }
}

/// Checks the request against the environ rules, runs the handler under
/// the deadline with panics caught, waits until the head may go out, and
/// turns every failure into the response (or outcome) the runtime promises.
async fn run_handler<S: Sink>(
    ctx: &Ctx,
    head: Box<RequestHead>,
    body: Body,
    on_upgrade: Option<OnUpgrade>,
    deadline: Option<Deadline>,
    sink: &mut S,
) -> Outcome {
    let offered = on_upgrade.is_some();
    let max_body = ctx.config.max_body_size;
    // The environ is built when the handler first asks for it; every
    // refusal it implies is checked now.
    let checked = match environ::check(&head, &ctx.config.environ) {
        Err(e) => {
            ctx.metrics.error(ErrorKind::BadRequest);
            return Outcome::Respond(text_response(400, &format!("bad request: {e}")));
        }
        Ok(_) if head.body_length.is_some_and(|n| n > max_body) => {
            ctx.metrics.error(ErrorKind::BodyTooLarge);
            return Outcome::Respond(text_response(413, "request body too large"));
        }
        Ok(built) => built,
    };
    let request = match checked {
        Some(environ) => Request::from_boxed(head, environ, body),
        None => Request::checked(head, ctx.config.clone(), body),
    }
    .with_upgrade(on_upgrade);
    // `call` itself may panic (work done before the future is built), as
    // may the future: both are the handler panicking.
    let fut = match std::panic::catch_unwind(AssertUnwindSafe(|| ctx.handler.call(request))) {
        Ok(fut) => AssertUnwindSafe(fut).catch_unwind().left_future(),
        Err(panic) => futures_util::future::ready(Err(panic)).right_future(),
    };
    let run = within(deadline, fut);
    let outcome = tokio::select! {
        biased;
        outcome = run => outcome,
        reset = sink.closed() => {
            // The proxy reset the stream (its client went away) or the
            // connection closed: nobody can receive an answer, so the
            // handler is dropped rather than run to the end.
            if reset.is_some() {
                ctx.metrics.error(ErrorKind::PeerReset);
            }
            return Outcome::PeerGone;
        }
    };
    let response = match outcome {
        None => {
            ctx.metrics.error(ErrorKind::Deadline);
            return Outcome::Respond(text_response(504, "request deadline exceeded"));
        }
        Some(Err(_panic)) => {
            ctx.metrics.error(ErrorKind::HandlerPanic);
            tracing::error!("handler panicked; answering 500");
            return Outcome::Respond(text_response(500, "internal server error"));
        }
        Some(Ok(Err(e))) => match body_error_in(&*e) {
            Some(e) => return body_failed(ctx, e),
            None => {
                ctx.metrics.error(ErrorKind::HandlerError);
                tracing::warn!(error = %e, "handler error; answering 500");
                return Outcome::Respond(text_response(500, "internal server error"));
            }
        },
        Some(Ok(Ok(resp))) => resp,
    };
    if response.status().is_informational()
        && !(offered && response.status() == http::StatusCode::SWITCHING_PROTOCOLS)
    {
        // A 1xx head is interim (except a 101 accepting an upgrade offer):
        // the client would wait forever for the final one (or get a body it
        // cannot place).
        ctx.metrics.error(ErrorKind::HandlerError);
        tracing::error!(
            status = response.status().as_u16(),
            "handler returned an interim (1xx) status as its final response; answering 500"
        );
        return Outcome::Respond(text_response(500, "internal server error"));
    }
    match within(deadline, sink.head_ready()).await {
        Some(Ok(())) => Outcome::Respond(response),
        Some(Err(e)) => body_failed(ctx, &e),
        None => {
            ctx.metrics.error(ErrorKind::Deadline);
            Outcome::Respond(text_response(504, "request deadline exceeded"))
        }
    }
}

/// The request body failed before the response head went out.
fn body_failed(ctx: &Ctx, e: &BodyError) -> Outcome {
    match e {
        // Counted by the body when it hit the limit.
        BodyError::TooLarge { .. } => {
            Outcome::Respond(text_response(413, "request body too large"))
        }
        // The peer sent less than it announced and stopped: its request is
        // malformed, and whatever the handler made of a part of it must not
        // pass for the answer to the whole.
        BodyError::Incomplete { expected, got } => {
            ctx.metrics.error(ErrorKind::BadRequest);
            Outcome::Respond(text_response(
                400,
                &format!("bad request: body ended after {got} of {expected} bytes"),
            ))
        }
        // The peer reset the stream (or the connection died): nobody is
        // left to answer. Counted once here.
        BodyError::Aborted(_) => {
            ctx.metrics.error(ErrorKind::PeerReset);
            Outcome::Aborted
        }
    }
}

/// The request-body failure behind a handler's error, if it is one: the
/// error itself, or one it wraps (an `io::Error` from
/// [`BlockingBody`](super::BlockingBody) reads, say), so a failure the
/// peer caused is never blamed on the handler.
fn body_error_in<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a BodyError> {
    let mut next = Some(e);
    while let Some(e) = next {
        if let Some(b) = e.downcast_ref::<BodyError>() {
            return Some(b);
        }
        if let Some(inner) = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            if let Some(b) = inner.downcast_ref::<BodyError>() {
                return Some(b);
            }
        }
        next = e.source();
    }
    None
}

/// Polls a future once (with the task's waker): its output if ready.
/// A plain `Future` rather than an `async fn`, which would trip the
/// compiler's higher-ranked `Send` inference on the handler's future.
pub(crate) struct PollOnce<'a, F>(pub(crate) std::pin::Pin<&'a mut F>);

impl<F: Future> Future for PollOnce<'_, F> {
    type Output = Option<F::Output>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::task::Poll::Ready(match self.0.as_mut().poll(cx) {
            std::task::Poll::Ready(v) => Some(v),
            std::task::Poll::Pending => None,
        })
    }
}

/// Sends the head, then pumps the body into the sink: one chunk at a time,
/// under the request deadline and the send timeout, racing the peer going
/// away, with panics in the body caught.
async fn respond<S: Sink>(ctx: &Ctx, sink: &mut S, response: Response, deadline: Option<Deadline>) {
    let (mut parts, body) = response.into_parts();
    let mut body = body.into_inner();
    if !S::KEEPS_TRANSFER_ENCODING {
        parts.headers.remove(http::header::TRANSFER_ENCODING);
    }
    let shape = BodyShape {
        end: http_body::Body::is_end_stream(&body),
        exact_len: http_body::Body::size_hint(&body).exact(),
    };
    let head = ResponseHead {
        status: parts.status.as_u16(),
        reason: None,
        headers: header_block(&parts.headers, shape.exact_len),
    };
    if let Err(e) = sink.send_head(head, shape).await {
        return sink_failed(ctx, e);
    }
    if shape.end {
        return;
    }
    let send_timeout = ctx.config.send_timeout;
    loop {
        let next = AssertUnwindSafe(body.frame()).catch_unwind();
        let next = tokio::select! {
            biased;
            next = within(deadline, next) => next,
            reset = sink.closed() => {
                // Reset while the body waited for its next chunk (an endless
                // event stream, say): stop producing it now.
                if reset.is_some() {
                    ctx.metrics.error(ErrorKind::PeerReset);
                }
                return;
            }
        };
        let frame = match next {
            None => {
                // The head is out: the only signal left is ending early.
                ctx.metrics.error(ErrorKind::Deadline);
                return sink.abort(Reason::TIMEOUT);
            }
            Some(Err(_panic)) => {
                ctx.metrics.error(ErrorKind::HandlerPanic);
                tracing::error!("response body panicked; resetting the stream");
                return sink.abort(Reason::INTERNAL_ERROR);
            }
            Some(Ok(None)) => {
                if let Err(e) = sink.finish().await {
                    sink_failed(ctx, e);
                }
                return;
            }
            Some(Ok(Some(Err(e)))) => {
                // A streaming response fed by the request body (an echo)
                // fails when that body does: keep the request body's reason
                // rather than blaming the handler.
                let reason = match body_error_in(&*e) {
                    // Counted by the body when it hit the limit.
                    Some(BodyError::TooLarge { .. }) => Reason::LIMIT_EXCEEDED,
                    Some(BodyError::Aborted(_)) | Some(BodyError::Incomplete { .. }) => {
                        ctx.metrics.error(ErrorKind::PeerReset);
                        Reason::CANCEL
                    }
                    None => {
                        ctx.metrics.error(ErrorKind::HandlerError);
                        tracing::warn!(error = %e, "response body failed; resetting the stream");
                        Reason::INTERNAL_ERROR
                    }
                };
                return sink.abort(reason);
            }
            Some(Ok(Some(Ok(frame)))) => frame,
        };
        let frame = match frame.into_data() {
            Ok(data) => {
                let n = data.len() as u64;
                // A body that knows it is done (a full buffer) ends with its
                // data: one frame fewer.
                let last = http_body::Body::is_end_stream(&body);
                match within_for(send_timeout, sink.send_data(data, last)).await {
                    Some(Ok(())) if last => return ctx.metrics.add_bytes_out(n),
                    Some(Ok(())) => ctx.metrics.add_bytes_out(n),
                    Some(Err(e)) => return sink_failed(ctx, e),
                    None => {
                        // The peer took nothing for `send_timeout` (a reader
                        // that stopped reading, or never returns credit):
                        // free what the response holds.
                        ctx.metrics.error(ErrorKind::SendTimeout);
                        tracing::debug!("response made no progress within the send timeout");
                        return sink.abort(Reason::TIMEOUT);
                    }
                }
                continue;
            }
            Err(frame) => frame,
        };
        if let Ok(trailers) = frame.into_trailers() {
            if let Err(e) = sink.send_trailers(header_block(&trailers, None)).await {
                sink_failed(ctx, e);
            }
            return;
        }
    }
}

fn sink_failed(ctx: &Ctx, e: SinkError) {
    match e {
        SinkError::Gone(Some(_)) => ctx.metrics.error(ErrorKind::PeerReset),
        SinkError::Gone(None) => {}
        SinkError::Unsendable => ctx.metrics.error(ErrorKind::HandlerError),
    }
}
