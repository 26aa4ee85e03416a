//! An accepted Unix connection that joins the I/O driver only when it has
//! to wait. nginx writes a classic uwsgi request as soon as it connects, so
//! a connection is usually accepted with its whole request buffered, and a
//! small response fits the socket buffer: such a connection is served with
//! plain non-blocking system calls, without the two `epoll_ctl` calls (and
//! the driver bookkeeping) that registering it would cost. One that has to
//! wait is registered for reading only ([`UnixConn`]): a Unix socket
//! reports room to write each time its peer reads, which would wake an
//! idle server once per request for nothing.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::UnixStream;

use super::listener::Accepted;
use crate::net::unix::recv_into;
use crate::net::{Socket, UnixConn};

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
    /// Registered: it had to wait once (for reading only, see
    /// [`UnixConn`]).
    Registered(UnixConn),
    /// Only while switching.
    Gone,
}

/// See the module docs.
pub(crate) struct LazyStream(State);

impl LazyStream {
    /// The peer's user and group ids (`SO_PEERCRED`: the credentials it
    /// had when it connected).
    pub(crate) fn peer_ids(&self) -> io::Result<(u32, u32)> {
        let cred = match &self.0 {
            State::Raw(s) => rustix::net::sockopt::socket_peercred(s),
            State::Registered(c) => rustix::net::sockopt::socket_peercred(c.socket()),
            State::Gone => return Err(io::Error::other("connection lost while registering")),
        }?;
        Ok((cred.uid.as_raw(), cred.gid.as_raw()))
    }

    /// The registered stream, registering it now if need be.
    pub(crate) fn registered(&mut self) -> io::Result<&mut UnixConn> {
        if let State::Raw(_) = self.0 {
            let State::Raw(s) = std::mem::replace(&mut self.0, State::Gone) else {
                unreachable!()
            };
            self.0 = State::Registered(UnixConn::new(s)?);
        }
        match &mut self.0 {
            State::Registered(s) => Ok(s),
            _ => Err(io::Error::other("connection lost while registering")),
        }
    }

    /// A write: one non-blocking attempt on the raw socket, and if it
    /// would block (or the stream is registered already), the registered
    /// stream's poll, which waits for room.
    fn poll_send(
        &mut self,
        raw: impl FnOnce(&socket2::Socket) -> io::Result<usize>,
        registered: impl FnOnce(&mut UnixConn) -> Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        if let State::Raw(s) = &self.0 {
            match raw(s) {
                Ok(n) => return Poll::Ready(Ok(n)),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        match self.registered() {
            Ok(s) => registered(s),
            Err(e) => Poll::Ready(Err(e)),
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
            match recv_into(s, buf) {
                Ok(_) => return Poll::Ready(Ok(())),
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
        self.get_mut()
            .poll_send(|s| s.send(data), |s| Pin::new(s).poll_write(cx, data))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().poll_send(
            |s| s.send_vectored(bufs),
            |s| Pin::new(s).poll_write_vectored(cx, bufs),
        )
    }

    fn is_write_vectored(&self) -> bool {
        true
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
    /// A tokio stream (registered for both directions), for the classic
    /// uwsgi path, which splits it.
    fn into_socket(self) -> io::Result<Socket> {
        let sock = match self.0 {
            State::Raw(s) => s,
            State::Registered(c) => c.into_inner(),
            State::Gone => return Err(io::Error::other("connection lost while registering")),
        };
        UnixStream::from_std(OwnedFd::from(sock).into()).map(Socket::Unix)
    }

    fn set_abortive_close(&self) -> io::Result<()> {
        let sock = match &self.0 {
            State::Raw(s) => socket2::SockRef::from(s),
            State::Registered(s) => socket2::SockRef::from(s.socket()),
            State::Gone => return Ok(()),
        };
        sock.set_linger(Some(std::time::Duration::ZERO))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::IoSlice;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A vectored write sends every slice in order, before and after the
    /// stream joins the I/O driver, and one that does not fit the socket
    /// buffer waits for room instead of failing.
    #[tokio::test]
    async fn vectored_writes_raw_and_registered() {
        let dir = std::env::temp_dir().join(format!("uwire-lazy-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("s.sock");
        let _ = std::fs::remove_file(&path);
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let acceptor = RawAcceptor::new(&listener).unwrap();
        let mut client = UnixStream::connect(&path).await.unwrap();
        let mut server = acceptor.accept().await.unwrap();
        assert!(server.is_write_vectored());

        let slices = [
            IoSlice::new(b"head"),
            IoSlice::new(b"-"),
            IoSlice::new(b"body"),
        ];
        let n = server.write_vectored(&slices).await.unwrap();
        assert_eq!(n, 9);
        assert!(
            matches!(server.0, State::Raw(_)),
            "a write that fits stays raw"
        );
        let mut got = [0u8; 9];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"head-body");

        // Far more than a socket buffer holds: the raw send fills it, the
        // stream registers and the rest goes once the client reads.
        let big = vec![7u8; 4 << 20];
        let reader = tokio::spawn(async move {
            let mut all = Vec::new();
            let mut buf = vec![0u8; 64 * 1024];
            while all.len() < (4 << 20) + 3 {
                let n = client.read(&mut buf).await.unwrap();
                assert!(n > 0);
                all.extend_from_slice(&buf[..n]);
            }
            all
        });
        let mut sent = 0;
        let tail = b"end";
        while sent < big.len() + tail.len() {
            let slices: Vec<IoSlice<'_>> = if sent < big.len() {
                vec![IoSlice::new(&big[sent..]), IoSlice::new(tail)]
            } else {
                vec![IoSlice::new(&tail[sent - big.len()..])]
            };
            sent += server.write_vectored(&slices).await.unwrap();
        }
        assert!(matches!(server.0, State::Registered(_)));
        let all = reader.await.unwrap();
        assert_eq!(all.len(), big.len() + 3);
        assert!(all[..big.len()].iter().all(|&b| b == 7));
        assert_eq!(&all[big.len()..], b"end");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
