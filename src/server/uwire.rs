//! uwire/1 connections: many concurrent streams on one long-lived
//! connection, each request handed to the [pipeline](super::pipeline) with
//! a [`StreamSink`] that answers on its stream.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

use super::handler::{Body, BodyError};
use super::metrics::ErrorKind;
use super::pipeline::{self, BodyShape, Ctx, OnDrop, PollOnce, Sink, SinkError};
use super::upgrade::Upgraded;
use crate::frame::{HeaderBlock, Reason, ResponseHead};
use crate::net::{self, IncomingRequest, RecvStream, Responder, SendStream, Tunnel};

/// Requests started in a row before the driver is polled again: enough to
/// answer a full read's worth together, few enough that a burst of them
/// does not hold up the connection's writes for long.
const ACCEPT_BATCH: usize = 64;

/// Serves one uwire/1 connection until it closes: accepts its streams, runs
/// each through the pipeline, closes the connection when idle for
/// `idle_timeout`, and drains it (GOAWAY) once `stop` turns true.
///
/// Everything runs in this one task: the connection driver (socket and
/// engine) and every stream's pipeline are polled here, so a request goes
/// from its frame to its answer without waking another task or crossing to
/// another thread. A handler with heavy synchronous work should move it off
/// (`spawn_blocking`, or a blocking-thread handler, see `blocking`): it
/// would hold up the other streams of its connection.
pub(crate) async fn serve<T>(io: T, ctx: Ctx, mut stop: watch::Receiver<bool>)
where
    T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    ctx.metrics.connection_opened();
    let metrics = ctx.metrics.clone();
    let _closed = OnDrop(move || metrics.connection_closed());
    let (mut incoming, mut driver) = net::server(io, ctx.config.conn.clone());
    // Dropping the set (when the connection is gone) cancels handlers that
    // are still running: nobody can receive their answer.
    let mut streams = FuturesUnordered::new();
    let idle = ctx.config.idle_timeout;
    let mut last_activity = tokio::time::Instant::now();
    // One timer for the whole connection, re-armed as it fires.
    let idle_timer = tokio::time::sleep(idle.unwrap_or(Duration::from_secs(3600)));
    tokio::pin!(idle_timer);
    let mut accepting = true;
    let mut shutting_down = *stop.borrow();
    if shutting_down {
        incoming.shutdown(Some(ctx.config.drain_timeout));
    }
    // Resolves once `stop` turns true (or its sender is gone). Built once:
    // a `changed()` made anew on every turn of the loop would join and
    // leave the channel's wait list each time, twice per request.
    let stopped = async {
        // Either outcome stops the connection. The value's read guard is
        // dropped here, at once: it is not `Send`, so it may not be held
        // across the loop's awaits.
        let _ = stop.wait_for(|&stop| stop).await;
    };
    tokio::pin!(stopped);
    let result = loop {
        tokio::select! {
            biased;
            res = &mut driver => break res,
            req = incoming.accept(), if accepting => {
                let Some(req) = req else {
                    // The connection is closing; the driver finishes it.
                    accepting = false;
                    continue;
                };
                // Every request the last read brought in is started before
                // the driver runs again, so the answers of those that finish
                // at once leave in one write (one per request would cost a
                // syscall and a wakeup of the peer each).
                let mut next = Some(req);
                let mut started = 0;
                // The allocation of the last stream that finished on its
                // first poll, reused for the next one of this read: most
                // streams do, and a stream's state is over 1 KiB, past the
                // allocator's small-size fast path. It goes with this arm,
                // so an idle connection does not hold it.
                let mut spare = None;
                while let Some(req) = next {
                    // Most handlers answer at once: run the pipeline right
                    // here, and keep it only if it has to wait.
                    let mut task = match spare.take() {
                        Some(mut task) => {
                            // Drops the finished state in place, then moves
                            // the new one in.
                            Pin::set(&mut task, stream_task(req, ctx.clone()));
                            task
                        }
                        None => Box::pin(stream_task(req, ctx.clone())),
                    };
                    if PollOnce(task.as_mut()).await.is_none() {
                        streams.push(task);
                    } else {
                        spare = Some(task);
                        if streams.is_empty() {
                            last_activity = tokio::time::Instant::now();
                        }
                    }
                    started += 1;
                    next = match started < ACCEPT_BATCH {
                        true => incoming.try_accept(),
                        false => None,
                    };
                }
            }
            Some(()) = streams.next(), if !streams.is_empty() => {
                if streams.is_empty() {
                    last_activity = tokio::time::Instant::now();
                }
            }
            _ = &mut stopped, if !shutting_down => {
                shutting_down = true;
                incoming.shutdown(Some(ctx.config.drain_timeout));
            }
            () = &mut idle_timer, if idle.is_some() && !shutting_down => {
                let idle = idle.unwrap_or(Duration::MAX);
                let now = tokio::time::Instant::now();
                if streams.is_empty() && now.duration_since(last_activity) >= idle {
                    tracing::debug!(?idle, "idle timeout: closing connection");
                    shutting_down = true;
                    incoming.shutdown(Some(Duration::ZERO));
                } else {
                    let from = if streams.is_empty() { last_activity } else { now };
                    idle_timer.as_mut().reset(from + idle);
                }
            }
        }
    };
    drop(incoming);
    // The driver has told every open stream how it ended (their `closed`
    // signals fired), so the pipelines finish promptly and account for
    // themselves; give them a moment, then cancel whatever is left.
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while streams.next().await.is_some() {}
    })
    .await;
    drop(streams);
    match result {
        Ok(()) => {}
        Err(e) if e.is_peer_closed() => {
            // Harmless for an idle connection (a probe, a pool dropping a
            // connection); requests it abandoned were counted by their
            // streams (PeerReset).
            tracing::debug!(error = %e, "peer closed the connection");
        }
        Err(e) if e.is_protocol() => {
            ctx.metrics.error(ErrorKind::Protocol);
            tracing::warn!(error = %e, "connection closed on a protocol error");
        }
        Err(e) => {
            if e.is_io() {
                ctx.metrics.error(ErrorKind::Io);
            }
            tracing::debug!(error = %e, "connection i/o error");
        }
    }
}

/// One stream's work.
fn stream_task(req: IncomingRequest, ctx: Ctx) -> StreamTask<impl Future<Output = ()> + Send> {
    let span = tracing::debug_span!("stream", id = %req.responder.id());
    StreamTask {
        span: Some(span),
        inner: serve_stream(req, ctx),
    }
}

pin_project_lite::pin_project! {
    /// A stream's pipeline, polled inside its span. No async wrapper (it
    /// would hold a second copy of the pipeline's state, copied in on the
    /// first poll); the span closes when the stream is done, even if the
    /// finished state is kept for reuse.
    struct StreamTask<F> {
        span: Option<tracing::Span>,
        #[pin]
        inner: F,
    }
}

impl<F: Future<Output = ()>> Future for StreamTask<F> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.project();
        let Some(span) = this.span.as_ref() else {
            return Poll::Ready(());
        };
        let done = {
            let _entered = span.enter();
            this.inner.poll(cx)
        };
        if done.is_ready() {
            *this.span = None;
        }
        done
    }
}

async fn serve_stream(req: IncomingRequest, ctx: Ctx) {
    let IncomingRequest {
        head,
        body,
        responder,
    } = req;
    let metrics = Some(ctx.metrics.clone());
    let (body, mut sink) = if head.upgrade.is_some() {
        // An upgrade offer has no body (PROTOCOL.md 7.5): the client's half
        // is kept for the tunnel, should the handler accept.
        (
            Body::channel_empty(ctx.config.max_body_size, metrics),
            StreamSink::Offered(responder, body),
        )
    } else {
        (
            Body::new(body, ctx.config.max_body_size, metrics),
            StreamSink::Waiting(responder),
        )
    };
    pipeline::serve(&ctx, head, body, &mut sink).await;
}

/// Answers one uwire/1 stream: the responder until the head is sent, then
/// the stream's send half.
enum StreamSink {
    Waiting(Responder),
    /// An upgrade offer: the responder, and the client's half kept for the
    /// tunnel.
    Offered(Responder, RecvStream),
    Sending(SendStream),
    /// The head answering an upgrade offer went out; the client's half is
    /// still kept (a tunnel if the head accepted the offer).
    SendingOffered(SendStream, RecvStream),
    Done,
}

impl Sink for StreamSink {
    const KEEPS_TRANSFER_ENCODING: bool = true;

    async fn closed(&mut self) -> Option<Reason> {
        match self {
            StreamSink::Waiting(r) | StreamSink::Offered(r, _) => r.closed().await,
            StreamSink::Sending(s) | StreamSink::SendingOffered(s, _) => s.closed().await,
            StreamSink::Done => None,
        }
    }

    async fn head_ready(&mut self) -> Result<(), BodyError> {
        // Frames carry the body length: the head may go out at any time.
        Ok(())
    }

    async fn send_head(&mut self, head: ResponseHead, shape: BodyShape) -> Result<(), SinkError> {
        let (responder, kept) = match std::mem::replace(self, StreamSink::Done) {
            StreamSink::Waiting(r) => (r, None),
            StreamSink::Offered(r, recv) => (r, Some(recv)),
            _ => return Err(SinkError::Gone(None)),
        };
        let send = responder
            .send_response(head, shape.end)
            .map_err(|_| SinkError::Gone(None))?;
        if !shape.end {
            *self = match kept {
                Some(recv) => StreamSink::SendingOffered(send, recv),
                None => StreamSink::Sending(send),
            };
        }
        Ok(())
    }

    async fn send_data(&mut self, data: Bytes, last: bool) -> Result<(), SinkError> {
        let (StreamSink::Sending(send) | StreamSink::SendingOffered(send, _)) = self else {
            return Err(SinkError::Gone(None));
        };
        // Fails only once the stream is reset (by the proxy, or by the
        // driver on its behalf) or the connection is gone; which one, the
        // stream's `closed` signal tells.
        let sent = match send.send_data(data, last).await {
            Ok(()) => Ok(()),
            Err(e) if e.is_remote_reset() => Err(SinkError::Gone(e.reason())),
            Err(_) => Err(SinkError::Gone(send.closed().now_or_never().flatten())),
        };
        if last {
            *self = StreamSink::Done;
        }
        sent
    }

    async fn send_trailers(&mut self, trailers: HeaderBlock) -> Result<(), SinkError> {
        let (StreamSink::Sending(mut send) | StreamSink::SendingOffered(mut send, _)) =
            std::mem::replace(self, StreamSink::Done)
        else {
            return Err(SinkError::Gone(None));
        };
        send.send_trailers(trailers)
            .map_err(|_| SinkError::Gone(None))
    }

    async fn finish(&mut self) -> Result<(), SinkError> {
        let (StreamSink::Sending(mut send) | StreamSink::SendingOffered(mut send, _)) =
            std::mem::replace(self, StreamSink::Done)
        else {
            return Err(SinkError::Gone(None));
        };
        send.finish().await.map_err(|_| SinkError::Gone(None))
    }

    fn abort(&mut self, reason: Reason) {
        match std::mem::replace(self, StreamSink::Done) {
            StreamSink::Waiting(r) | StreamSink::Offered(r, _) => r.reset(reason),
            StreamSink::Sending(s) | StreamSink::SendingOffered(s, _) => s.reset(reason),
            StreamSink::Done => {}
        }
    }

    fn take_tunnel(&mut self, ctx: &Ctx) -> Option<Upgraded> {
        match std::mem::replace(self, StreamSink::Done) {
            StreamSink::SendingOffered(send, recv) => Some(Upgraded::tunnel(
                Tunnel::new(send, recv, ctx.config.tunnel),
                Some(ctx.metrics.clone()),
            )),
            other => {
                *self = other;
                None
            }
        }
    }
}
