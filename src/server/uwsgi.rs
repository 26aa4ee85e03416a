//! Classic uwsgi connections (nginx `uwsgi_pass`): one request per
//! connection, decoded here and handed to the [pipeline](super::pipeline)
//! with a sink that writes an HTTP/1-style response and closes the
//! connection after it.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch, Semaphore};

use super::handler::{Body, BodyError};
use super::listener::Accepted;
use super::metrics::ErrorKind;
use super::pipeline::{self, AbortOnDrop, BodyShape, Ctx, OnDrop, Sink, SinkError};
use super::upgrade::Upgraded;
use crate::frame::{HeaderBlock, Reason, ResponseHead};
use crate::net::socket::{ReadHalf, WriteHalf};
use crate::uwsgi::{encode_response_head, UwsgiDecoder, UwsgiError, UwsgiLimits};

/// Request bodies are handed to the handler in chunks of at most this size.
const CHUNK: usize = 64 * 1024;

/// How long a bodiless request's handler runs (or its response body waits
/// for its next chunk) before the connection is watched for the peer
/// leaving (which cancels the handler). Measured with
/// nginx -> the Python runtime at 32 connections: watching every connection
/// from the start cost two `epoll_ctl` calls per request, about 7% of the
/// I/O thread's time; a peer that leaves is noticed at most this much later.
const PEER_WATCH_DELAY: Duration = Duration::from_millis(10);

/// Serves a classic uwsgi connection whose first bytes (possibly none yet)
/// are in `buf`.
pub(crate) async fn serve<T: Accepted>(mut io: T, ctx: Ctx, mut buf: BytesMut) {
    ctx.metrics.connection_opened();
    let metrics = ctx.metrics.clone();
    let _closed = OnDrop(move || metrics.connection_closed());
    let limits = UwsgiLimits {
        max_block_size: ctx.config.uwsgi_max_block_size,
        max_body_size: Some(ctx.config.max_body_size),
        ..UwsgiLimits::default()
    };
    let mut decoder = UwsgiDecoder::new(limits);
    let head_deadline = tokio::time::Instant::now() + ctx.config.uwsgi_head_timeout;
    let request = loop {
        match decoder.decode(&mut buf) {
            Ok(Some(r)) => break r,
            Ok(None) => {}
            Err(e) => return reject(&mut io, &ctx, &e).await,
        }
        match tokio::time::timeout_at(head_deadline, io.read_buf(&mut buf)).await {
            Err(_) => {
                tracing::debug!("uwsgi request packet not received in time; closing");
                return;
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "uwsgi connection failed");
                return;
            }
            Ok(Ok(0)) => match decoder.decode_eof(&mut buf) {
                Ok(Some(r)) => break r,
                Ok(None) => return,
                Err(e) => return reject(&mut io, &ctx, &e).await,
            },
            Ok(Ok(_)) => {}
        }
    };
    let mut head = match request.to_request_head() {
        Ok(h) => Box::new(h),
        Err(e) => return reject(&mut io, &ctx, &e).await,
    };
    let expected = request.body_length;
    drop(request);
    if expected == 0 && head.method.as_ref() != b"CONNECT" {
        // The connection is raw after the response head: it can carry a
        // tunnel (nginx switches to one on a 101 to a request that carried
        // `Upgrade`). A request with a body makes no offer.
        head.upgrade = super::upgrade::http1_offer(&head.headers);
    }

    if expected == 0 {
        // No body: no reader task, no channels; the connection is read
        // again only to notice the peer leaving while the handler runs.
        drop(buf);
        let body = Body::channel_empty(ctx.config.max_body_size, Some(ctx.metrics.clone()));
        let mut sink = InPlace {
            io: Some(io),
            head: None,
            aborted: false,
        };
        return pipeline::serve(&ctx, head, body, &mut sink).await;
    }

    let (rd, wr) = match io.into_socket() {
        Ok(s) => s.into_split(),
        Err(e) => {
            tracing::debug!(error = %e, "uwsgi connection failed");
            return;
        }
    };
    // The body follows the packet: a reader task hands it over in chunks
    // through a channel holding up to `uwsgi_read_ahead` bytes (then a slow
    // handler slows the reads), then watches for the peer closing the
    // connection, which is how nginx says its client went away.
    let credit = Arc::new(Semaphore::new(ctx.config.uwsgi_read_ahead.max(CHUNK)));
    let (tx, rx) = mpsc::unbounded_channel::<Result<Bytes, BodyError>>();
    let (state_tx, state_rx) = watch::channel(ReadState::default());
    let _reader = AbortOnDrop(tokio::spawn(read_body(
        rd,
        buf,
        expected,
        credit.clone(),
        tx,
        state_tx,
    )));
    let body = Body::channel(
        rx,
        credit,
        ctx.config.max_body_size,
        Some(ctx.metrics.clone()),
    );
    let mut sink = Split {
        wr,
        state: state_rx,
        head: None,
    };
    pipeline::serve(&ctx, head, body, &mut sink).await;
}

/// What the body reader task has seen, for the sink.
#[derive(Debug, Clone, Copy, Default)]
struct ReadState {
    /// The response head may go out: the whole body is in, or the
    /// read-ahead is full (waiting longer could deadlock).
    ready: bool,
    /// The connection ended before the body did: (declared, received).
    short: Option<(u64, u64)>,
    /// The peer closed the connection after the body (nginx's way of saying
    /// its client went away), or the connection failed.
    gone: bool,
}

/// Reads the request body after the packet (`buf` holds what arrived with
/// it) and then watches the connection for the peer leaving.
async fn read_body(
    mut rd: ReadHalf,
    mut buf: BytesMut,
    expected: u64,
    credit: Arc<Semaphore>,
    tx: mpsc::UnboundedSender<Result<Bytes, BodyError>>,
    state: watch::Sender<ReadState>,
) {
    let mut left = expected;
    let mut deliver = true;
    while left > 0 {
        if buf.is_empty() {
            buf.reserve(CHUNK);
            let read = rd.read_buf(&mut buf).await;
            if let Ok(1..) = read {
                continue;
            }
            // The body ended short. A failed read means the peer is gone;
            // a plain end of input may be a half-close by a peer that still
            // reads, which deserves an answer (400) rather than silence.
            let got = expected - left;
            let _ = tx.send(Err(BodyError::Incomplete { expected, got }));
            state.send_modify(|s| {
                s.ready = true;
                s.short = Some((expected, got));
                s.gone = read.is_err();
            });
            return;
        }
        let take = (left.min(CHUNK as u64) as usize).min(buf.len());
        let chunk = buf.split_to(take).freeze();
        left -= take as u64;
        if !deliver {
            continue;
        }
        // Wait for room in the read-ahead (the handler returns credit as it
        // reads); while waiting, the head may go out.
        let permit = match credit.try_acquire_many(take as u32) {
            Ok(p) => Ok(p),
            Err(_) => {
                state.send_modify(|s| s.ready = true);
                credit.acquire_many(take as u32).await
            }
        };
        match permit {
            Ok(p) => p.forget(),
            Err(_) => deliver = false,
        }
        if deliver && tx.send(Ok(chunk)).is_err() {
            // The handler dropped its body: discard the rest.
            deliver = false;
        }
    }
    drop(tx);
    state.send_modify(|s| s.ready = true);
    loop {
        buf.clear();
        match rd.read_buf(&mut buf).await {
            Ok(0) | Err(_) => {
                state.send_modify(|s| s.gone = true);
                return;
            }
            // Bytes after the body: uwsgi has no pipelining; ignore them.
            Ok(_) => {}
        }
    }
}

/// Writes a small complete HTTP response (for refusals).
async fn write_simple<W: AsyncWrite + Unpin>(wr: &mut W, status: u16, msg: &str) {
    let reason = http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    let body = format!("{msg}\n");
    let text = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = wr.write_all(text.as_bytes()).await;
    let _ = wr.shutdown().await;
}

/// Refuses a request whose packet could not be decoded.
async fn reject<W: AsyncWrite + Unpin>(wr: &mut W, ctx: &Ctx, e: &UwsgiError) {
    let kind = if matches!(e, UwsgiError::BodyTooLarge { .. }) {
        ErrorKind::BodyTooLarge
    } else {
        ErrorKind::BadRequest
    };
    ctx.metrics.error(kind);
    match e.suggested_status() {
        Some(status) => {
            tracing::warn!(class = e.class(), error = %e, status, "refusing a uwsgi request");
            write_simple(wr, status, &e.to_string()).await;
        }
        None => {
            tracing::warn!(class = e.class(), error = %e, "closing a uwsgi connection");
        }
    }
}

/// The HTTP/1 form of `head`, or `None` (logged) if it has none.
fn encode_head(head: &ResponseHead) -> Option<BytesMut> {
    let mut out = BytesMut::with_capacity(512);
    match encode_response_head(head, &mut out) {
        Ok(()) => Some(out),
        Err(e) => {
            tracing::error!(error = %e, "response head cannot be written as HTTP/1.1; answering 500");
            None
        }
    }
}

/// The largest first body chunk copied into the held-back head's buffer.
const COPY_INTO_HEAD: usize = 4096;

/// Writes `data`, preceded by a head still held back (a head is held when
/// the body's size is known, so a small response goes out in one write).
async fn write_with_head<W: AsyncWrite + Unpin>(
    wr: &mut W,
    head: &mut Option<BytesMut>,
    data: &[u8],
) -> Result<(), SinkError> {
    let written = match head.take() {
        // A small first chunk rides in the head's buffer; a large one goes
        // beside it in vectored writes, not copied.
        Some(mut out) if data.len() <= COPY_INTO_HEAD => {
            out.extend_from_slice(data);
            wr.write_all(&out).await
        }
        Some(out) => {
            wr.write_all_buf(&mut bytes::Buf::chain(&out[..], data))
                .await
        }
        None => wr.write_all(data).await,
    };
    written.map_err(|_| SinkError::Gone(Some(Reason::CANCEL)))
}

/// Sends `head` (held back when the body's size is known and non-zero),
/// or a 500 when it cannot be written as HTTP/1.1.
async fn start<W: AsyncWrite + Unpin>(
    wr: &mut W,
    held: &mut Option<BytesMut>,
    head: &ResponseHead,
    shape: BodyShape,
) -> Result<(), SinkError> {
    let Some(out) = encode_head(head) else {
        write_simple(wr, 500, "internal server error").await;
        return Err(SinkError::Unsendable);
    };
    *held = Some(out);
    if shape.end || shape.exact_len.is_none() {
        // No body, or a streamed one: the head goes now.
        write_with_head(wr, held, &[]).await?;
    }
    Ok(())
}

/// A connection whose request had no body: nothing else reads it, so the
/// peer closing is noticed by reading it in place (only while the pipeline
/// waits: for the handler, or for the next chunk of a streamed response).
struct InPlace<T> {
    /// `None` once an accepted upgrade took the connection.
    io: Option<T>,
    head: Option<BytesMut>,
    aborted: bool,
}

impl<T: Accepted> Sink for InPlace<T> {
    const KEEPS_TRANSFER_ENCODING: bool = false;

    async fn closed(&mut self) -> Option<Reason> {
        // Most handlers answer well within the delay, and watching the
        // connection from the start would register it with the I/O driver
        // (two `epoll_ctl` calls, see `lazy`) for nothing: nginx stays
        // until it has the response. A handler still running after the
        // delay is watched, and dropped when the peer leaves.
        tokio::time::sleep(PEER_WATCH_DELAY).await;
        let io = self.io.as_mut()?;
        // Small: this buffer is part of every connection task's state.
        let mut scratch = [0u8; 64];
        loop {
            match io.read(&mut scratch).await {
                Ok(0) | Err(_) => return Some(Reason::CANCEL),
                // Bytes after the packet: uwsgi has no pipelining; ignore
                // them.
                Ok(_) => {}
            }
        }
    }

    async fn head_ready(&mut self) -> Result<(), BodyError> {
        Ok(())
    }

    async fn send_head(&mut self, head: ResponseHead, shape: BodyShape) -> Result<(), SinkError> {
        let io = self.io.as_mut().ok_or(SinkError::Gone(None))?;
        start(io, &mut self.head, &head, shape).await
    }

    async fn send_data(&mut self, data: Bytes, _last: bool) -> Result<(), SinkError> {
        // The end of the response is the connection closing, right after.
        let io = self.io.as_mut().ok_or(SinkError::Gone(None))?;
        write_with_head(io, &mut self.head, &data).await
    }

    async fn send_trailers(&mut self, _trailers: HeaderBlock) -> Result<(), SinkError> {
        // A close-delimited response cannot carry trailers.
        self.finish().await
    }

    async fn finish(&mut self) -> Result<(), SinkError> {
        // The connection is dropped (closed, which the peer reads as the end
        // of the response) right after; a `shutdown` first would only cost a
        // system call.
        let io = self.io.as_mut().ok_or(SinkError::Gone(None))?;
        write_with_head(io, &mut self.head, &[]).await
    }

    fn abort(&mut self, _reason: Reason) {
        if !self.aborted {
            self.aborted = true;
            self.head = None;
            if let Some(Err(e)) = self.io.as_ref().map(|io| io.set_abortive_close()) {
                tracing::debug!(error = %e, "cannot make the close abortive");
            }
        }
    }

    fn take_tunnel(&mut self, ctx: &Ctx) -> Option<Upgraded> {
        // The head went out with `send_head` (a body of unknown length is
        // never held back).
        let sock = match self.io.take()?.into_socket() {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(error = %e, "uwsgi connection failed");
                return None;
            }
        };
        Some(Upgraded::socket(
            sock,
            ctx.config.tunnel,
            Some(ctx.metrics.clone()),
        ))
    }
}

/// A connection whose read half belongs to the body reader task, which
/// reports readiness, a short body and the peer closing.
struct Split {
    wr: WriteHalf,
    state: watch::Receiver<ReadState>,
    head: Option<BytesMut>,
}

impl Sink for Split {
    const KEEPS_TRANSFER_ENCODING: bool = false;

    async fn closed(&mut self) -> Option<Reason> {
        let gone = self.state.wait_for(|s| s.gone).await.is_ok();
        if !gone {
            // The reader stopped without seeing the peer leave (the body
            // ended short on a half-close): the peer may still read.
            std::future::pending::<()>().await;
        }
        Some(Reason::CANCEL)
    }

    async fn head_ready(&mut self) -> Result<(), BodyError> {
        let Ok(s) = self.state.wait_for(|s| s.ready).await else {
            return Ok(());
        };
        match s.short {
            Some((expected, got)) => Err(BodyError::Incomplete { expected, got }),
            None => Ok(()),
        }
    }

    async fn send_head(&mut self, head: ResponseHead, shape: BodyShape) -> Result<(), SinkError> {
        start(&mut self.wr, &mut self.head, &head, shape).await
    }

    async fn send_data(&mut self, data: Bytes, last: bool) -> Result<(), SinkError> {
        write_with_head(&mut self.wr, &mut self.head, &data).await?;
        if last {
            self.finish().await?;
        }
        Ok(())
    }

    async fn send_trailers(&mut self, _trailers: HeaderBlock) -> Result<(), SinkError> {
        self.finish().await
    }

    async fn finish(&mut self) -> Result<(), SinkError> {
        write_with_head(&mut self.wr, &mut self.head, &[]).await?;
        // The reader task holds the read half until it is aborted, which
        // may close the socket a little later: say the response is over now.
        let _ = self.wr.shutdown().await;
        Ok(())
    }

    fn abort(&mut self, _reason: Reason) {
        self.head = None;
        if let Err(e) = self.wr.set_abortive_close() {
            tracing::debug!(error = %e, "cannot make the close abortive");
        }
    }

    fn take_tunnel(&mut self, _ctx: &Ctx) -> Option<Upgraded> {
        // A request with a body makes no upgrade offer.
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The held-back head goes out first and only once, whether the first
    /// chunk is copied into its buffer or written beside it.
    #[tokio::test]
    async fn held_head_then_data_at_both_sizes() {
        for len in [0, 1, COPY_INTO_HEAD, COPY_INTO_HEAD + 1, 1 << 20] {
            let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let mut head = Some(BytesMut::from(&b"HTTP/1.1 200 OK\r\n\r\n"[..]));
            let mut out: Vec<u8> = Vec::new();
            write_with_head(&mut out, &mut head, &data).await.unwrap();
            assert!(head.is_none());
            write_with_head(&mut out, &mut head, b"more").await.unwrap();
            let mut want = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
            want.extend_from_slice(&data);
            want.extend_from_slice(b"more");
            assert!(out == want, "first chunk of {len} bytes");
        }
    }
}
