//! An accepted Unix connection that joins the I/O driver only when it has
//! to wait. nginx writes a classic uwsgi request as soon as it connects, so
//! a connection is usually accepted with its whole request buffered, and a
//! small response fits the socket buffer: such a connection is served with
//! plain non-blocking system calls, without the two `epoll_ctl` calls (and
//! the driver bookkeeping) that registering it would cost.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::AsFd;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::UnixStream;

use super::listener::Accepted;
use crate::net::Socket;

/// Accepts connections off a listening Unix socket without registering
/// them (see the module docs). Holds its own descriptor of the socket.
pub(crate) struct RawAcceptor {
    fd: AsyncFd<socket2::Socket>,
}

impl RawAcceptor {
    /// An acceptor for `listener`'s socket.
    pub(crate) fn new(listener: &tokio::net::UnixListener) -> io::Result<RawAcceptor> {
        let fd = socket2::Socket::from(listener.as_fd().try_clone_to_owned()?);
        // SAFETY: `register_with_interest` needs the descriptor to stay open
        // and name the same open file description until the `AsyncFd` is
        // dropped. The `socket2::Socket` is our own duplicate (an
        // `OwnedFd` inside): nothing else can close it, `Socket` has no way
        // to swap its descriptor, and only `get_ref` (shared) is ever used
        // on it, so it is closed exactly when the `AsyncFd` drops it.
        #[allow(unsafe_code)]
        let fd = unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
            .map_err(|e| e.into_parts().1)?;
        Ok(RawAcceptor { fd })
    }

    /// Accepts one connection (non-blocking and close-on-exec).
    pub(crate) async fn accept(&self) -> io::Result<LazyStream> {
        let flags = i32::from(socket2::Type::from(0).nonblocking().cloexec());
        loop {
            let mut guard = self.fd.readable().await?;
            if let Ok(r) = guard.try_io(|s| s.get_ref().accept4(flags)) {
                return r.map(|(s, _)| LazyStream(State::Raw(s)));
            }
        }
    }
}

enum State {
    /// Not registered with the I/O driver (yet).
    Raw(socket2::Socket),
    /// Registered: it had to wait once.
    Registered(UnixStream),
    /// Only while switching.
    Gone,
}

/// See the module docs.
pub(crate) struct LazyStream(State);

impl LazyStream {
    /// The registered stream, registering it now if need be.
    pub(crate) fn registered(&mut self) -> io::Result<&mut UnixStream> {
        if let State::Raw(_) = self.0 {
            let State::Raw(s) = std::mem::replace(&mut self.0, State::Gone) else {
                unreachable!()
            };
            self.0 = State::Registered(UnixStream::from_std(s.into())?);
        }
        match &mut self.0 {
            State::Registered(s) => Ok(s),
            _ => Err(io::Error::other("connection lost while registering")),
        }
    }

    /// The registered stream, consumed.
    pub(crate) fn into_registered(mut self) -> io::Result<UnixStream> {
        self.registered()?;
        match self.0 {
            State::Registered(s) => Ok(s),
            _ => Err(io::Error::other("connection lost while registering")),
        }
    }
}

impl AsyncRead for LazyStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let State::Raw(s) = &this.0 {
            // SAFETY: `recv` only writes initialised bytes into the slice
            // and reports how many; exactly those are marked filled.
            #[allow(unsafe_code)]
            let unfilled: &mut [MaybeUninit<u8>] = unsafe { buf.unfilled_mut() };
            match s.recv(unfilled) {
                Ok(n) => {
                    // SAFETY: the kernel wrote `n` bytes into the start of
                    // `unfilled` (what `recv` returned); those are now
                    // initialised.
                    #[allow(unsafe_code)]
                    unsafe {
                        buf.assume_init(n);
                    }
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        match this.registered() {
            Ok(s) => Pin::new(s).poll_read(cx, buf),
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

impl AsyncWrite for LazyStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let State::Raw(s) = &this.0 {
            match s.send(data) {
                Ok(n) => return Poll::Ready(Ok(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        match this.registered() {
            Ok(s) => Pin::new(s).poll_write(cx, data),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match &mut this.0 {
            State::Raw(s) => Poll::Ready(s.shutdown(std::net::Shutdown::Write)),
            State::Registered(s) => Pin::new(s).poll_shutdown(cx),
            State::Gone => Poll::Ready(Ok(())),
        }
    }
}

impl Accepted for LazyStream {
    fn into_socket(self) -> io::Result<Socket> {
        self.into_registered().map(Socket::Unix)
    }

    fn set_abortive_close(&self) -> io::Result<()> {
        let sock = match &self.0 {
            State::Raw(s) => socket2::SockRef::from(s),
            State::Registered(s) => socket2::SockRef::from(s),
            State::Gone => return Ok(()),
        };
        sock.set_linger(Some(std::time::Duration::ZERO))
    }
}
