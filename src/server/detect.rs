//! Protocol detection: one listening socket speaks uwire/1 and classic
//! uwsgi. In `auto` mode the first bytes of a connection decide (the uwire
//! preface starts with `0x9A`, which no uwsgi packet can); the bytes read to
//! decide are put back in front of the stream ([`Rewind`]) so the chosen
//! protocol reads it untouched.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::sync::watch;

use super::listener::Accepted;
use super::pipeline::Ctx;
use super::{uwire, uwsgi, ProtocolMode};
use crate::frame::preface;

/// Serves one accepted connection in the configured protocol, detecting it
/// from the first bytes in `auto` mode.
pub(crate) async fn serve<T: Accepted>(mut io: T, ctx: Ctx, stop: watch::Receiver<bool>) {
    match ctx.config.protocol {
        ProtocolMode::Uwire => uwire::serve(io, ctx, stop).await,
        ProtocolMode::Uwsgi => uwsgi::serve(io, ctx, BytesMut::with_capacity(8 * 1024)).await,
        ProtocolMode::Auto => {
            // Read whatever has arrived (usually the whole uwsgi packet, or
            // the uwire preface and SETTINGS) and classify by its first byte.
            let mut first = BytesMut::with_capacity(16 * 1024);
            let n =
                match tokio::time::timeout(ctx.config.uwsgi_head_timeout, io.read_buf(&mut first))
                    .await
                {
                    Ok(Ok(n)) => n,
                    Ok(Err(e)) => {
                        tracing::debug!(error = %e, "connection failed before its first byte");
                        0
                    }
                    Err(_) => {
                        tracing::debug!("connection sent nothing in time; closing");
                        0
                    }
                };
            if n == 0 {
                // A connection that ends before its first byte is still
                // counted.
                ctx.metrics.connection_opened();
                ctx.metrics.connection_closed();
                return;
            }
            if preface::is_uwire_first_byte(first[0]) {
                uwire::serve(Rewind::new(first.freeze(), io), ctx, stop).await
            } else {
                uwsgi::serve(io, ctx, first).await
            }
        }
    }
}

/// `inner` with `prefix` read first.
#[derive(Debug)]
pub(crate) struct Rewind<T> {
    prefix: Bytes,
    inner: T,
}

impl<T> Rewind<T> {
    pub(crate) fn new(prefix: Bytes, inner: T) -> Rewind<T> {
        Rewind { prefix, inner }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Rewind<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            if self.prefix.is_empty() {
                // Release the detection buffer now rather than with the
                // connection.
                self.prefix = Bytes::new();
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Rewind<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn prefix_then_inner() {
        let inner: &[u8] = b"world";
        let mut r = Rewind::new(Bytes::from_static(b"hello "), inner);
        let mut s = String::new();
        r.read_to_string(&mut s).await.unwrap();
        assert_eq!(s, "hello world");
    }
}
