//! Classic uwsgi connections (nginx `uwsgi_pass`): one request per
//! connection, the same handlers, environ rules, limits, deadline and panic
//! isolation as uwire streams. Also the per-connection protocol detector.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch, Semaphore};

use super::connection::{
    self, announce_length, begin_stream, header_block, run_handler, AbortOnDrop, Ctx, OnDrop,
    Outcome,
};
use super::handler::{Body, BodyError};
use super::metrics::ErrorKind;
use super::rewind::Rewind;
use super::ProtocolMode;
use crate::frame::{preface, Reason, ResponseHead};
use crate::uwsgi::{encode_response_head, UwsgiDecoder, UwsgiError, UwsgiLimits};

/// Serves one accepted connection in the configured protocol, detecting it
/// from the first byte in `auto` mode.
pub(crate) async fn serve_detect<T: UwsgiIo>(mut io: T, ctx: Ctx, stop: watch::Receiver<bool>) {
    match ctx.config.protocol {
        ProtocolMode::Uwire => connection::serve(io, ctx, stop).await,
        ProtocolMode::Uwsgi => serve_uwsgi(io, ctx).await,
        ProtocolMode::Auto => {
            // A connection that ends before its first byte is still counted.
            let uncounted = |ctx: &Ctx| {
                ctx.metrics.connection_opened();
                ctx.metrics.connection_closed();
            };
            // Read whatever has arrived (usually the whole uwsgi packet or
            // the uwire preface and SETTINGS) and classify by its first byte.
            let mut first = BytesMut::with_capacity(16 * 1024);
            let n =
                match tokio::time::timeout(ctx.config.uwsgi_head_timeout, io.read_buf(&mut first))
                    .await
                {
                    Ok(Ok(n)) => n,
                    Ok(Err(e)) => {
                        tracing::debug!(error = %e, "connection failed before its first byte");
                        return uncounted(&ctx);
                    }
                    Err(_) => {
                        tracing::debug!("connection sent nothing in time; closing");
                        return uncounted(&ctx);
                    }
                };
            if n == 0 {
                return uncounted(&ctx);
            }
            // The uwire preface starts with 0x9A, which no uwsgi packet can
            // (docs/PROTOCOL.md, "Connection preface").
            if preface::is_uwire_first_byte(first[0]) {
                connection::serve(Rewind::new(first.freeze(), io), ctx, stop).await
            } else {
                serve_uwsgi_with(io, ctx, first).await
            }
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

/// A connection the classic uwsgi path can split into owned halves, for
/// the reader task that streams a request body (the concrete streams'
/// own halves, rather than `tokio::io::split`, which locks on every poll).
pub(crate) trait UwsgiIo: AsyncRead + AsyncWrite + Send + Unpin + 'static {
    /// The read half.
    type Read: AsyncRead + Send + Unpin + 'static;
    /// The write half.
    type Write: AsyncWrite + Send + Unpin + 'static;
    /// Splits the connection.
    fn into_halves(self) -> std::io::Result<(Self::Read, Self::Write)>;
}

impl UwsgiIo for tokio::net::UnixStream {
    type Read = tokio::net::unix::OwnedReadHalf;
    type Write = tokio::net::unix::OwnedWriteHalf;
    fn into_halves(self) -> std::io::Result<(Self::Read, Self::Write)> {
        Ok(self.into_split())
    }
}

impl UwsgiIo for tokio::net::TcpStream {
    type Read = tokio::net::tcp::OwnedReadHalf;
    type Write = tokio::net::tcp::OwnedWriteHalf;
    fn into_halves(self) -> std::io::Result<(Self::Read, Self::Write)> {
        Ok(self.into_split())
    }
}

/// Where the response goes, and how the peer going away is noticed.
trait Sink {
    type W: AsyncWrite + Unpin;
    fn writer(&mut self) -> &mut Self::W;
    /// Resolves once the peer has closed the connection (or it failed).
    fn gone(&mut self) -> impl std::future::Future<Output = Option<Reason>> + Send + '_;
    /// Ends the response (the connection closes when the sink is dropped).
    fn finish(&mut self) -> impl std::future::Future<Output = ()> + Send + '_;
}

/// A connection whose request had no body: nothing else reads it, so the
/// peer closing is noticed by reading it in place, and only while waiting
/// (for the handler, or for the next chunk of a streamed response).
struct Whole<T>(T);

impl<T: AsyncRead + AsyncWrite + Send + Unpin> Sink for Whole<T> {
    type W = T;
    fn writer(&mut self) -> &mut T {
        &mut self.0
    }
    async fn gone(&mut self) -> Option<Reason> {
        // Small: this future is part of every connection task's state.
        let mut scratch = [0u8; 64];
        loop {
            match self.0.read(&mut scratch).await {
                Ok(0) | Err(_) => return Some(Reason::CANCEL),
                // Bytes after the packet: uwsgi has no pipelining; ignore
                // them.
                Ok(_) => {}
            }
        }
    }
    fn finish(&mut self) -> impl std::future::Future<Output = ()> + Send + '_ {
        // Nothing: the connection is dropped (closed, which the peer reads
        // as the end of the response) right after; a `shutdown` first would
        // only cost a system call.
        std::future::ready(())
    }
}

/// A connection whose read half belongs to the body reader task, which
/// reports the peer closing.
struct Halves<W> {
    wr: W,
    gone: watch::Receiver<bool>,
}

impl<W: AsyncWrite + Send + Unpin> Sink for Halves<W> {
    type W = W;
    fn writer(&mut self) -> &mut W {
        &mut self.wr
    }
    async fn gone(&mut self) -> Option<Reason> {
        let _ = self.gone.wait_for(|g| *g).await;
        Some(Reason::CANCEL)
    }
    async fn finish(&mut self) {
        // The reader task holds the read half until it is aborted, which
        // may close the socket a little later: say the response is over now.
        let _ = self.wr.shutdown().await;
    }
}

pub(crate) async fn serve_uwsgi<T: UwsgiIo>(io: T, ctx: Ctx) {
    serve_uwsgi_with(io, ctx, BytesMut::with_capacity(8 * 1024)).await
}

/// Serves a classic uwsgi connection whose first bytes are already in `buf`.
async fn serve_uwsgi_with<T: UwsgiIo>(mut io: T, ctx: Ctx, mut buf: BytesMut) {
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
    let head = match request.to_request_head() {
        Ok(h) => h,
        Err(e) => return reject(&mut io, &ctx, &e).await,
    };
    let expected = request.body_length;
    drop(request);

    let (_finished, deadline) = begin_stream(&ctx);

    if expected == 0 {
        // No body: no reader task, no channels; the connection is read
        // again only to notice the peer leaving while the handler runs.
        drop(buf);
        let mut sink = Whole(io);
        let body = Body::channel_empty(ctx.config.max_body_size, Some(ctx.metrics.clone()));
        let response = match run_handler(&ctx, head, body, deadline, sink.gone()).await {
            Outcome::Respond(r) => r,
            Outcome::PeerGone | Outcome::Aborted => return,
        };
        return respond(&ctx, &mut sink, response, deadline).await;
    }

    let (mut rd, wr) = match io.into_halves() {
        Ok(h) => h,
        Err(e) => {
            tracing::debug!(error = %e, "uwsgi connection failed");
            return;
        }
    };
    // The body follows the packet: a reader task hands it over in chunks of
    // at most CHUNK bytes through a channel holding up to `uwsgi_read_ahead`
    // bytes (then a slow handler slows the reads), then watches for the peer
    // closing the connection, which is how nginx says its client went away.
    const CHUNK: usize = 64 * 1024;
    let credit = Arc::new(Semaphore::new(ctx.config.uwsgi_read_ahead.max(CHUNK)));
    let (tx, rx) = mpsc::unbounded_channel::<Result<Bytes, BodyError>>();
    let reader_credit = credit.clone();
    let (gone_tx, gone_rx) = watch::channel(false);
    // Whether the response may start: nginx stops sending the request body
    // once the response begins, so the head waits until the whole body is
    // in (or the read-ahead is full, when waiting longer could deadlock).
    let (ready_tx, mut ready_rx) = watch::channel(false);
    let _reader = AbortOnDrop(tokio::spawn(async move {
        let mut left = expected;
        let mut deliver = true;
        loop {
            if left > 0 && !buf.is_empty() {
                let take = (left.min(CHUNK as u64) as usize).min(buf.len());
                let chunk = buf.split_to(take).freeze();
                left -= take as u64;
                if deliver {
                    // Wait for room in the read-ahead (the handler returns
                    // credit as it reads).
                    let permit = match reader_credit.try_acquire_many(take as u32) {
                        Ok(p) => Ok(p),
                        Err(_) => {
                            let _ = ready_tx.send(true);
                            reader_credit.acquire_many(take as u32).await
                        }
                    };
                    match permit {
                        Ok(p) => p.forget(),
                        Err(_) => deliver = false,
                    }
                }
                if deliver && tx.send(Ok(chunk)).is_err() {
                    // The handler dropped its body: discard the rest.
                    deliver = false;
                }
                continue;
            }
            if left == 0 {
                break;
            }
            buf.reserve(CHUNK);
            match rd.read_buf(&mut buf).await {
                Ok(0) | Err(_) => {
                    let _ = tx.send(Err(BodyError::Incomplete {
                        expected,
                        got: expected - left,
                    }));
                    let _ = ready_tx.send(true);
                    let _ = gone_tx.send(true);
                    return;
                }
                Ok(_) => {}
            }
        }
        drop(tx);
        let _ = ready_tx.send(true);
        loop {
            buf.clear();
            match rd.read_buf(&mut buf).await {
                Ok(0) | Err(_) => {
                    let _ = gone_tx.send(true);
                    return;
                }
                // Bytes after the body: uwsgi has no pipelining; ignore them.
                Ok(_) => {}
            }
        }
    }));
    let mut sink = Halves { wr, gone: gone_rx };

    let body = Body::channel(
        rx,
        credit,
        ctx.config.max_body_size,
        Some(ctx.metrics.clone()),
    );
    let response = match run_handler(&ctx, head, body, deadline, sink.gone()).await {
        Outcome::Respond(r) => r,
        Outcome::PeerGone | Outcome::Aborted => return,
    };
    let _ = ready_rx.wait_for(|r| *r).await;
    respond(&ctx, &mut sink, response, deadline).await
}

/// Writes the handler's response as HTTP/1.1 and closes the connection.
async fn respond<S: Sink>(
    ctx: &Ctx,
    sink: &mut S,
    response: super::handler::Response,
    deadline: Option<tokio::time::Instant>,
) {
    let (mut parts, body) = response.into_parts();
    let mut body = body.into_inner();
    // The body goes out raw and the connection closes after it, so
    // transfer codings do not apply; a known length is announced.
    parts.headers.remove(http::header::TRANSFER_ENCODING);
    announce_length(&mut parts.headers, &body);
    let head = ResponseHead {
        status: parts.status.as_u16(),
        reason: None,
        headers: header_block(&parts.headers),
    };
    let mut out = BytesMut::with_capacity(512);
    if let Err(e) = encode_response_head(&head, &mut out) {
        ctx.metrics.error(ErrorKind::HandlerError);
        tracing::error!(error = %e, "response head cannot be written as HTTP/1.1; answering 500");
        return write_simple(sink.writer(), 500, "internal server error").await;
    }
    // A body of known size (a full buffer) goes out with the head in one
    // write; anything else streams after it.
    let mut head_out = Some(out);
    if http_body::Body::size_hint(&body).exact().is_none() {
        if let Some(out) = head_out.take() {
            if sink.writer().write_all(&out).await.is_err() {
                ctx.metrics.error(ErrorKind::PeerReset);
                return;
            }
        }
    }
    loop {
        let next = std::panic::AssertUnwindSafe(body.frame());
        let next = futures_util::FutureExt::catch_unwind(next);
        let next = async {
            match deadline {
                Some(d) => tokio::time::timeout_at(d, next).await.ok(),
                None => Some(next.await),
            }
        };
        let next = tokio::select! {
            biased;
            next = next => next,
            _ = sink.gone() => {
                ctx.metrics.error(ErrorKind::PeerReset);
                return;
            }
        };
        match next {
            None => {
                // Deadline: the head is out, so the only signal left is
                // closing early (nginx reports a truncated response).
                ctx.metrics.error(ErrorKind::Deadline);
                return;
            }
            Some(Err(_panic)) => {
                ctx.metrics.error(ErrorKind::HandlerPanic);
                return;
            }
            Some(Ok(None)) => {
                if let Some(out) = head_out.take() {
                    if sink.writer().write_all(&out).await.is_err() {
                        ctx.metrics.error(ErrorKind::PeerReset);
                        return;
                    }
                }
                break;
            }
            Some(Ok(Some(Err(e)))) => {
                if !matches!(
                    e.downcast_ref::<BodyError>(),
                    Some(BodyError::TooLarge { .. })
                ) {
                    ctx.metrics.error(ErrorKind::HandlerError);
                }
                tracing::warn!(error = %e, "response body failed; closing the uwsgi connection");
                return;
            }
            Some(Ok(Some(Ok(frame)))) => {
                if let Ok(data) = frame.into_data() {
                    let n = data.len() as u64;
                    let wr = sink.writer();
                    let written = match head_out.take() {
                        Some(mut out) => {
                            out.extend_from_slice(&data);
                            wr.write_all(&out).await
                        }
                        None => wr.write_all(&data).await,
                    };
                    if written.is_err() {
                        ctx.metrics.error(ErrorKind::PeerReset);
                        return;
                    }
                    ctx.metrics.add_bytes_out(n);
                }
                // Trailers cannot be carried by a close-delimited response.
            }
        }
    }
    sink.finish().await;
}
