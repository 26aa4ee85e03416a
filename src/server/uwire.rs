//! uwire/1 connections: many concurrent streams on one long-lived
//! connection, each request handed to the [pipeline](super::pipeline) with
//! a [`StreamSink`] that answers on its stream.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::FutureExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::Instrument;

use super::handler::{Body, BodyError};
use super::metrics::ErrorKind;
use super::pipeline::{self, AbortOnDrop, BodyShape, Ctx, OnDrop, Sink, SinkError};
use crate::frame::{HeaderBlock, Reason, ResponseHead};
use crate::net::{self, IncomingRequest, Responder, SendStream};

/// Serves one uwire/1 connection until it closes: accepts its streams, runs
/// each through the pipeline on its own task, closes the connection when
/// idle for `idle_timeout`, and drains it (GOAWAY) once `stop` turns true.
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
        Ok(Err(e)) if e.is_peer_closed() => {
            // Harmless for an idle connection (a probe, a pool dropping a
            // connection); requests it abandoned were counted by their
            // streams (PeerReset).
            tracing::debug!(error = %e, "peer closed the connection");
        }
        Ok(Err(e)) if e.is_protocol() => {
            ctx.metrics.error(ErrorKind::Protocol);
            tracing::warn!(error = %e, "connection closed on a protocol error");
        }
        Ok(Err(e)) => {
            if e.is_io() {
                ctx.metrics.error(ErrorKind::Io);
            }
            tracing::debug!(error = %e, "connection i/o error");
        }
        Err(e) => tracing::error!(error = %e, "connection task failed"),
    }
}

async fn serve_stream(req: IncomingRequest, ctx: &Ctx) {
    let IncomingRequest {
        head,
        body,
        responder,
    } = req;
    let body = Body::new(body, ctx.config.max_body_size, Some(ctx.metrics.clone()));
    let mut sink = StreamSink::Waiting(responder);
    pipeline::serve(ctx, head, body, &mut sink).await;
}

/// Answers one uwire/1 stream: the responder until the head is sent, then
/// the stream's send half.
enum StreamSink {
    Waiting(Responder),
    Sending(SendStream),
    Done,
}

impl Sink for StreamSink {
    const KEEPS_TRANSFER_ENCODING: bool = true;

    async fn closed(&mut self) -> Option<Reason> {
        match self {
            StreamSink::Waiting(r) => r.closed().await,
            StreamSink::Sending(s) => s.closed().await,
            StreamSink::Done => None,
        }
    }

    async fn head_ready(&mut self) -> Result<(), BodyError> {
        // Frames carry the body length: the head may go out at any time.
        Ok(())
    }

    async fn send_head(&mut self, head: ResponseHead, shape: BodyShape) -> Result<(), SinkError> {
        let StreamSink::Waiting(responder) = std::mem::replace(self, StreamSink::Done) else {
            return Err(SinkError::Gone(None));
        };
        let send = responder
            .send_response(head, shape.end)
            .map_err(|_| SinkError::Gone(None))?;
        if !shape.end {
            *self = StreamSink::Sending(send);
        }
        Ok(())
    }

    async fn send_data(&mut self, data: Bytes) -> Result<(), SinkError> {
        let StreamSink::Sending(send) = self else {
            return Err(SinkError::Gone(None));
        };
        // Fails only once the stream is reset (by the proxy, or by the
        // driver on its behalf) or the connection is gone; which one, the
        // stream's `closed` signal tells.
        match send.send_data(data, false).await {
            Ok(()) => Ok(()),
            Err(e) if e.is_remote_reset() => Err(SinkError::Gone(e.reason())),
            Err(_) => Err(SinkError::Gone(send.closed().now_or_never().flatten())),
        }
    }

    async fn send_trailers(&mut self, trailers: HeaderBlock) -> Result<(), SinkError> {
        let StreamSink::Sending(mut send) = std::mem::replace(self, StreamSink::Done) else {
            return Err(SinkError::Gone(None));
        };
        send.send_trailers(trailers)
            .map_err(|_| SinkError::Gone(None))
    }

    async fn finish(&mut self) -> Result<(), SinkError> {
        let StreamSink::Sending(mut send) = std::mem::replace(self, StreamSink::Done) else {
            return Err(SinkError::Gone(None));
        };
        send.finish().await.map_err(|_| SinkError::Gone(None))
    }

    fn abort(&mut self, reason: Reason) {
        match std::mem::replace(self, StreamSink::Done) {
            StreamSink::Waiting(r) => r.reset(reason),
            StreamSink::Sending(s) => s.reset(reason),
            StreamSink::Done => {}
        }
    }
}
