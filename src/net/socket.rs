//! One connected-socket type for both transports, shared by the server
//! (accepted connections) and the client (upstream connections), so neither
//! repeats a `Unix`/`Tcp` match for every operation.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{tcp, unix, TcpStream, UnixStream};

/// A connected Unix or TCP stream.
#[derive(Debug)]
pub enum Socket {
    /// A Unix stream socket.
    Unix(UnixStream),
    /// A TCP stream (with `TCP_NODELAY` set by whoever made it).
    Tcp(TcpStream),
}

/// The owned read half of a [`Socket`] (no lock per poll, unlike
/// `tokio::io::split`).
#[derive(Debug)]
pub enum ReadHalf {
    /// Of a Unix socket.
    Unix(unix::OwnedReadHalf),
    /// Of a TCP socket.
    Tcp(tcp::OwnedReadHalf),
}

/// The owned write half of a [`Socket`]; dropping it shuts down the write
/// direction.
#[derive(Debug)]
pub enum WriteHalf {
    /// Of a Unix socket.
    Unix(unix::OwnedWriteHalf),
    /// Of a TCP socket.
    Tcp(tcp::OwnedWriteHalf),
}

impl Socket {
    /// Splits the socket into owned halves.
    pub fn into_split(self) -> (ReadHalf, WriteHalf) {
        match self {
            Socket::Unix(s) => {
                let (r, w) = s.into_split();
                (ReadHalf::Unix(r), WriteHalf::Unix(w))
            }
            Socket::Tcp(s) => {
                let (r, w) = s.into_split();
                (ReadHalf::Tcp(r), WriteHalf::Tcp(w))
            }
        }
    }

    /// Makes a later close abortive (`SO_LINGER` 0): the peer reads a
    /// connection reset instead of an orderly end of stream. The only way
    /// to say "this response is cut short" on a close-delimited protocol.
    pub fn set_abortive_close(&self) -> io::Result<()> {
        let sock = match self {
            Socket::Unix(s) => socket2::SockRef::from(s),
            Socket::Tcp(s) => socket2::SockRef::from(s),
        };
        sock.set_linger(Some(std::time::Duration::ZERO))
    }
}

impl WriteHalf {
    /// See [`Socket::set_abortive_close`].
    pub fn set_abortive_close(&self) -> io::Result<()> {
        let sock = match self {
            WriteHalf::Unix(s) => socket2::SockRef::from(s.as_ref()),
            WriteHalf::Tcp(s) => socket2::SockRef::from(s.as_ref()),
        };
        sock.set_linger(Some(std::time::Duration::ZERO))
    }
}

/// Forwards the `AsyncRead`/`AsyncWrite` methods to whichever variant
/// `$self` holds.
macro_rules! either {
    ($self:ident, $s:ident => $e:expr) => {
        match $self.get_mut() {
            Self::Unix($s) => $e,
            Self::Tcp($s) => $e,
        }
    };
}

impl AsyncRead for Socket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        either!(self, s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncRead for ReadHalf {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        either!(self, s => Pin::new(s).poll_read(cx, buf))
    }
}

macro_rules! impl_write {
    ($t:ty) => {
        impl AsyncWrite for $t {
            fn poll_write(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                either!(self, s => Pin::new(s).poll_write(cx, buf))
            }

            fn poll_write_vectored(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                bufs: &[IoSlice<'_>],
            ) -> Poll<io::Result<usize>> {
                either!(self, s => Pin::new(s).poll_write_vectored(cx, bufs))
            }

            fn is_write_vectored(&self) -> bool {
                true
            }

            fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                either!(self, s => Pin::new(s).poll_flush(cx))
            }

            fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                either!(self, s => Pin::new(s).poll_shutdown(cx))
            }
        }
    };
}

impl_write!(Socket);
impl_write!(WriteHalf);
