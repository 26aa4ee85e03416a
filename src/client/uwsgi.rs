//! Classic uwsgi upstreams (a real uWSGI server): one connection per request,
//! as the protocol requires. The packet is built as nginx's `uwsgi_params`
//! would build it, the body streams after it, and the HTTP (or CGI-style)
//! response is parsed and streamed back, dechunked when needed.

use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use http_body::Body as HttpBody;
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::error::{BoxError, Error, Kind};
use super::pool::{connect_raw_with_retry, InflightGuard, UpstreamState};
use super::{header_map, Body, ClientConfig};
use crate::frame::RequestHead;
use crate::net::Socket;
use crate::uwsgi::{
    encode_request, BodyKind, ChunkedDecoder, Dechunked, ResponseHeadParser, UwsgiError,
    UwsgiLimits,
};

/// Largest request body of unknown length (chunked) that is buffered to
/// learn its length, which the uwsgi protocol needs up front (nginx buffers
/// the same way). Larger ones fail with 413.
pub const MAX_BUFFERED_BODY: u64 = 16 * 1024 * 1024;

/// Sends one request to a classic uwsgi upstream.
pub(crate) async fn request<B>(
    up: &Arc<UpstreamState>,
    head: &RequestHead,
    body: &mut Option<B>,
    cfg: &ClientConfig,
) -> Result<http::Response<Body>, Error>
where
    B: HttpBody + Send + 'static,
    B::Data: Buf + Send,
    B::Error: Into<BoxError>,
{
    let guard = up.guard();
    let limits = UwsgiLimits {
        max_block_size: cfg.uwsgi_buffer_size,
        ..UwsgiLimits::default()
    };
    // The packet first: a head that cannot be encoded never opens a socket.
    let mut prefix = BytesMut::new();
    let mut buffered: Option<Bytes> = None;
    let mut length = head.body_length;
    let body_is_empty = body.as_ref().is_none_or(|b| b.is_end_stream());
    if length.is_none() && !body_is_empty {
        // Unknown length (chunked upload): buffer it, bounded.
        let b = body.take().expect("checked above");
        let collected = http_body_util::Limited::new(b, MAX_BUFFERED_BODY as usize)
            .collect()
            .await
            .map_err(|e| {
                if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
                    Error::with(
                        Kind::TooLarge,
                        format!(
                            "a request body of unknown length is buffered for uwsgi up to {MAX_BUFFERED_BODY} bytes"
                        ),
                    )
                } else {
                    Error::with(Kind::InvalidRequest, format!("reading the request body: {e}"))
                }
            })?
            .to_bytes();
        length = Some(collected.len() as u64);
        buffered = Some(collected);
    }
    encode_request(head, length, &limits, &mut prefix).map_err(|e| match e {
        UwsgiError::BlockTooLarge { .. }
        | UwsgiError::TooManyVars { .. }
        | UwsgiError::VarTooLong { .. } => Error::with(Kind::HeadTooLarge, e),
        _ => Error::with(Kind::InvalidRequest, e),
    })?;

    let io = connect_raw_with_retry(&up.addr.transport, cfg).await?;
    exchange(
        io,
        prefix,
        buffered,
        body,
        length.unwrap_or(0),
        &limits,
        guard,
    )
    .await
}

async fn exchange<B>(
    sock: Socket,
    prefix: BytesMut,
    buffered: Option<Bytes>,
    body: &mut Option<B>,
    length: u64,
    limits: &UwsgiLimits,
    guard: InflightGuard,
) -> Result<http::Response<Body>, Error>
where
    B: HttpBody + Send + 'static,
    B::Data: Buf + Send,
    B::Error: Into<BoxError>,
{
    let upload = body.take().filter(|b| !b.is_end_stream());
    if buffered.is_none() && upload.is_none() {
        // Nothing to upload (most requests): one socket, written then read,
        // no writer task and no half-close.
        let mut sock = sock;
        sock.write_all(&prefix)
            .await
            .map_err(|e| Error::with(Kind::NotSent, e))?;
        return read_response(sock, None, limits, guard).await;
    }
    let (rd, mut wr) = sock.into_split();
    wr.write_all(&prefix)
        .await
        .map_err(|e| Error::with(Kind::NotSent, e))?;
    // The body is written by its own task so a response that starts early
    // (an error page) is read while the upload is still going.
    // Dropped with the response body (or on an early error): ends the writer.
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let result = async {
            if let Some(b) = buffered {
                wr.write_all(&b).await?;
            } else if let Some(b) = upload {
                let mut b = std::pin::pin!(b);
                let mut sent = 0u64;
                loop {
                    let next = b.frame().await.map(|r| r.map_err(Into::<BoxError>::into));
                    let Some(frame) = next else { break };
                    let frame = frame.map_err(std::io::Error::other)?;
                    if let Ok(mut data) = frame.into_data() {
                        let chunk = data.copy_to_bytes(data.remaining());
                        sent += chunk.len() as u64;
                        if sent > length {
                            return Err(std::io::Error::other(
                                "request body longer than its Content-Length",
                            ));
                        }
                        wr.write_all(&chunk).await?;
                    }
                }
                if sent < length {
                    return Err(std::io::Error::other(
                        "request body shorter than its Content-Length",
                    ));
                }
            }
            wr.flush().await?;
            Ok::<_, std::io::Error>(())
        };
        let mut done_rx = done_rx;
        tokio::select! {
            r = result => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "uwsgi upload ended");
                }
                // Keep the write half open until the response is read: some
                // servers treat a half-close as an abort.
                let _ = (&mut done_rx).await;
            }
            _ = &mut done_rx => {}
        }
    });

    read_response(rd, Some(done_tx), limits, guard).await
}

/// Reads the response head from `rd`, then hands back a response whose
/// body streams the rest. `writer_done` (the upload task's stop signal)
/// is kept until the body ends.
async fn read_response<R>(
    mut rd: R,
    writer_done: Option<tokio::sync::oneshot::Sender<()>>,
    limits: &UwsgiLimits,
    guard: InflightGuard,
) -> Result<http::Response<Body>, Error>
where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
{
    let mut buf = BytesMut::with_capacity(16 * 1024);
    let mut parser = ResponseHeadParser::new(limits);
    let response = loop {
        match parser.parse(&mut buf) {
            Err(e) => return Err(Error::with(Kind::Upstream, e)),
            Ok(Some(r)) if matches!(r.body, BodyKind::Interim) => {
                parser = ResponseHeadParser::new(limits);
                continue;
            }
            Ok(Some(r)) => break r,
            Ok(None) => {}
        }
        let n = rd
            .read_buf(&mut buf)
            .await
            .map_err(|e| Error::with(Kind::Closed, e))?;
        if n == 0 {
            match parser.parse_eof(&mut buf) {
                Ok(Some(r)) => break r,
                Ok(None) => {
                    return Err(Error::with(
                        Kind::Closed,
                        "uwsgi upstream closed before a response head",
                    ))
                }
                Err(e) => return Err(Error::with(Kind::Upstream, e)),
            }
        }
    };
    let mut headers = header_map(&response.head.headers);
    let mode = match response.body {
        BodyKind::Length(n) => Mode::Length(n),
        BodyKind::Chunked => {
            headers.remove(http::header::TRANSFER_ENCODING);
            headers.remove(http::header::CONTENT_LENGTH);
            Mode::Chunked(Box::new(ChunkedDecoder::new(limits)))
        }
        BodyKind::Close => Mode::Close,
        BodyKind::Empty | BodyKind::Interim | BodyKind::Upgrade => Mode::Done,
    };
    let stream = futures_util::stream::unfold(
        (rd, buf, mode, writer_done),
        |(mut rd, mut buf, mut mode, done)| async move {
            loop {
                match &mut mode {
                    Mode::Done => return None,
                    Mode::Length(0) => return None,
                    Mode::Length(left) => {
                        if !buf.is_empty() {
                            let take = (*left).min(buf.len() as u64) as usize;
                            *left -= take as u64;
                            let chunk = buf.split_to(take).freeze();
                            return Some((
                                Ok(http_body::Frame::data(chunk)),
                                (rd, buf, mode, done),
                            ));
                        }
                    }
                    Mode::Close => {
                        if !buf.is_empty() {
                            let chunk = buf.split().freeze();
                            return Some((
                                Ok(http_body::Frame::data(chunk)),
                                (rd, buf, mode, done),
                            ));
                        }
                    }
                    Mode::Chunked(dec) => match dec.decode(&mut buf) {
                        Ok(Some(Dechunked::Data(d))) => {
                            return Some((Ok(http_body::Frame::data(d)), (rd, buf, mode, done)));
                        }
                        Ok(Some(Dechunked::End)) => return None,
                        Ok(None) => {}
                        Err(e) => {
                            return Some((
                                Err(Error::with(Kind::Upstream, e)),
                                (rd, buf, Mode::Done, done),
                            ));
                        }
                    },
                }
                buf.reserve(16 * 1024);
                match rd.read_buf(&mut buf).await {
                    Ok(0) => {
                        return match mode {
                            Mode::Close => None,
                            _ => Some((
                                Err(Error::with(Kind::Closed, "uwsgi upstream closed mid-body")),
                                (rd, buf, Mode::Done, done),
                            )),
                        };
                    }
                    Ok(_) => {}
                    Err(e) => {
                        return Some((
                            Err(Error::with(Kind::Closed, e)),
                            (rd, buf, Mode::Done, done),
                        ))
                    }
                }
            }
        },
    );
    let mut builder = http::Response::builder().status(response.head.status);
    if let Some(h) = builder.headers_mut() {
        *h = headers;
    }
    builder
        .body(Body::from_stream(Box::pin(stream), Some(guard)))
        .map_err(|e| Error::with(Kind::Upstream, e))
}

enum Mode {
    Length(u64),
    Chunked(Box<ChunkedDecoder>),
    Close,
    Done,
}
