//! A Unix stream socket that waits for room to write only while a write is
//! blocked.
//!
//! tokio registers a socket for read and write readiness at once, edge
//! triggered. A Unix socket tells its writer there is room each time its
//! peer reads (the kernel's `unix_write_space`, unlike TCP, which does so
//! only after a write found the buffer full). So a connection that waits
//! for an answer is woken once more per exchange: the peer read the
//! request, and `epoll_wait` returns with "writable" that nobody waits for.
//! With one request at a time (`wrk -c1` through `uwire proxy`), each of
//! `uwire serve` and the proxy pays a wake-up from idle per request for
//! nothing.
//!
//! [`UnixConn`] registers its descriptor for read readiness only, and
//! writes with plain non-blocking calls. When one would block, it
//! registers a duplicate of the descriptor for write readiness, waits on
//! that, and drops it once a write goes through whole.

use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};

/// A connected Unix stream socket registered with the runtime for read
/// readiness only: a connection that waits for an answer is not woken each
/// time its peer reads what it wrote (see the module docs). Reads and
/// writes as a tokio `UnixStream` does; give it to [`super::client`] or
/// [`super::server`] in place of one. The runtime's `Client` and `uwire
/// serve` use it for every Unix connection.
///
/// ```no_run
/// # async fn run() -> std::io::Result<()> {
/// let stream = tokio::net::UnixStream::connect("/run/app.sock").await?;
/// let (sender, conn) = uwire::net::client(
///     uwire::net::UnixConn::from_tokio(stream)?,
///     Default::default(),
/// );
/// tokio::spawn(conn);
/// # drop(sender);
/// # Ok(())
/// # }
/// ```
pub struct UnixConn {
    read: AsyncFd<socket2::Socket>,
    /// A duplicate of the descriptor registered for write readiness, while
    /// a write waits for room.
    write: Option<AsyncFd<OwnedFd>>,
}

/// Registers `fd` with the runtime's I/O driver for `interest`.
fn register<T: AsRawFd>(fd: T, interest: Interest) -> io::Result<AsyncFd<T>> {
    // SAFETY: `register_with_interest` needs the descriptor to stay open
    // and name the same open file description until the `AsyncFd` is
    // dropped. `fd` is owned (a `socket2::Socket` or an `OwnedFd`, each of
    // which owns its descriptor), it moves into the `AsyncFd`, and only
    // shared references (`get_ref`) are ever taken of it, so nothing can
    // close or replace it while it is registered.
    #[allow(unsafe_code)]
    unsafe { AsyncFd::register_with_interest(fd, interest) }.map_err(|e| e.into_parts().1)
}

/// Reads what `sock` has (one non-blocking `recv`) into the unfilled part
/// of `buf`, marks it filled and returns how many bytes came. The one home
/// of the unsafe step from a `ReadBuf` to the kernel: [`UnixConn`] and the
/// server's not-yet-registered connections both read through it.
pub(crate) fn recv_into(sock: &socket2::Socket, buf: &mut ReadBuf<'_>) -> io::Result<usize> {
    // SAFETY: `recv` only writes initialised bytes into the slice and
    // reports how many; exactly those are marked filled below.
    #[allow(unsafe_code)]
    let unfilled: &mut [MaybeUninit<u8>] = unsafe { buf.unfilled_mut() };
    let n = sock.recv(unfilled)?;
    // SAFETY: the kernel wrote `n` bytes into the start of the unfilled
    // part (what `recv` returned); those are now initialised.
    #[allow(unsafe_code)]
    unsafe {
        buf.assume_init(n);
    }
    buf.advance(n);
    Ok(n)
}

impl UnixConn {
    /// Registers `sock`, a connected Unix stream socket in non-blocking
    /// mode. Must be called inside a tokio runtime with I/O enabled.
    pub(crate) fn new(sock: socket2::Socket) -> io::Result<UnixConn> {
        Ok(UnixConn {
            read: register(sock, Interest::READABLE)?,
            write: None,
        })
    }

    /// Moves a tokio stream over (out of tokio's registration for both
    /// directions and into one for reading). Must be called inside a tokio
    /// runtime with I/O enabled.
    pub fn from_tokio(s: tokio::net::UnixStream) -> io::Result<UnixConn> {
        // `into_std` leaves the socket in non-blocking mode.
        let s = s.into_std()?;
        UnixConn::new(socket2::Socket::from(OwnedFd::from(s)))
    }

    /// Registers a connected std stream (switched to non-blocking mode
    /// here). Must be called inside a tokio runtime with I/O enabled.
    pub fn from_std(s: std::os::unix::net::UnixStream) -> io::Result<UnixConn> {
        s.set_nonblocking(true)?;
        UnixConn::new(socket2::Socket::from(OwnedFd::from(s)))
    }

    /// The socket, unregistered.
    pub(crate) fn into_inner(self) -> socket2::Socket {
        drop(self.write);
        self.read.into_inner()
    }

    /// The socket.
    pub(crate) fn socket(&self) -> &socket2::Socket {
        self.read.get_ref()
    }

    /// One write: straight to the socket, and when the socket is full,
    /// through the write registration, made then and kept until a write
    /// goes through whole (`len` is what `send` was given).
    fn poll_send(
        &mut self,
        cx: &mut Context<'_>,
        len: usize,
        send: impl Fn(&socket2::Socket) -> io::Result<usize>,
    ) -> Poll<io::Result<usize>> {
        let UnixConn { read, write } = self;
        loop {
            let Some(waiter) = write else {
                match send(read.get_ref()) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        let dup = read.get_ref().as_fd().try_clone_to_owned()?;
                        *write = Some(register(dup, Interest::WRITABLE)?);
                        continue;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    r => return Poll::Ready(r),
                }
            };
            let mut guard = ready!(waiter.poll_write_ready(cx))?;
            match guard.try_io(|_| send(read.get_ref())) {
                Ok(Ok(n)) => {
                    if n == len {
                        // Room again: writes go straight to the socket.
                        *write = None;
                    }
                    return Poll::Ready(Ok(n));
                }
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                // Full again (readiness cleared): wait for the next edge.
                Err(_) => {}
            }
        }
    }
}

impl AsFd for UnixConn {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.read.get_ref().as_fd()
    }
}

impl AsRawFd for UnixConn {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.read.get_ref().as_raw_fd()
    }
}

impl std::fmt::Debug for UnixConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnixConn")
            .field("socket", self.read.get_ref())
            .field("waiting_to_write", &self.write.is_some())
            .finish()
    }
}

impl AsyncRead for UnixConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            let mut guard = ready!(this.read.poll_read_ready(cx))?;
            let want = buf.remaining();
            match guard.try_io(|s| recv_into(s.get_ref(), buf)) {
                Ok(Ok(n)) => {
                    if n > 0 && n < want {
                        // The socket is drained (a stream socket's `recv`
                        // returns all it has up to `want`): the next read
                        // waits for the next edge instead of finding out
                        // with a system call, as tokio's own streams do.
                        guard.clear_ready();
                    }
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => {}
            }
        }
    }
}

impl AsyncWrite for UnixConn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().poll_send(cx, data.len(), |s| s.send(data))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let len = bufs.iter().map(|b| b.len()).sum();
        self.get_mut().poll_send(cx, len, |s| s.send_vectored(bufs))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.read.get_ref().shutdown(std::net::Shutdown::Write))
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::os::fd::AsRawFd;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// The epoll interest masks registered for descriptor `fd` (naming the
    /// file it names now: other tests' runtimes may have registered that
    /// number for another socket once), read from the kernel
    /// (`/proc/self/fdinfo` of every epoll descriptor of the process; an
    /// instance may have several descriptors, mio duplicates its own, so
    /// a registration listed twice alike is one).
    fn epoll_masks(fd: i32) -> Vec<u32> {
        use std::os::unix::fs::MetadataExt;
        let Ok(meta) = std::fs::metadata(format!("/proc/self/fd/{fd}")) else {
            return Vec::new();
        };
        let (tfd, ino) = (fd.to_string(), format!("ino:{:x}", meta.ino()));
        let mut seen = std::collections::BTreeSet::new();
        for entry in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
            let Ok(target) = std::fs::read_link(entry.path()) else {
                continue;
            };
            if target.to_string_lossy() != "anon_inode:[eventpoll]" {
                continue;
            }
            let path = format!("/proc/self/fdinfo/{}", entry.file_name().to_string_lossy());
            for line in std::fs::read_to_string(path).unwrap_or_default().lines() {
                let words: Vec<&str> = line.split_whitespace().collect();
                if words.first() == Some(&"tfd:")
                    && words.get(1) == Some(&tfd.as_str())
                    && words.contains(&ino.as_str())
                {
                    seen.insert(words.join(" "));
                }
            }
        }
        seen.iter()
            .map(|line| {
                let words: Vec<&str> = line.split(' ').collect();
                let at = words.iter().position(|w| *w == "events:").unwrap();
                u32::from_str_radix(words[at + 1], 16).unwrap()
            })
            .collect()
    }

    const EPOLLIN: u32 = 0x1;
    const EPOLLOUT: u32 = 0x4;

    fn pair() -> (UnixConn, tokio::net::UnixStream) {
        let (a, b) = tokio::net::UnixStream::pair().unwrap();
        (UnixConn::from_tokio(a).unwrap(), b)
    }

    #[tokio::test]
    async fn registered_for_reading_only() {
        let (conn, _peer) = pair();
        let fd = conn.socket().as_raw_fd();
        let masks = epoll_masks(fd);
        assert_eq!(masks.len(), 1, "one registration: {masks:x?}");
        assert_ne!(masks[0] & EPOLLIN, 0, "{:x}", masks[0]);
        assert_eq!(masks[0] & EPOLLOUT, 0, "no write interest: {:x}", masks[0]);
        // A tokio stream, for contrast, asks for both.
        let (tokio_stream, _) = tokio::net::UnixStream::pair().unwrap();
        let m = epoll_masks(tokio_stream.as_raw_fd());
        assert!(m.len() == 1 && m[0] & EPOLLOUT != 0, "{m:x?}");
    }

    #[tokio::test]
    async fn reads_writes_and_end_of_stream() {
        let (mut conn, mut peer) = pair();
        conn.write_all(b"ping").await.unwrap();
        let mut got = [0u8; 4];
        peer.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"ping");

        // A read that waits for its data (the runtime must wake it).
        let reader = tokio::spawn(async move {
            let mut got = [0u8; 4];
            conn.read_exact(&mut got).await.unwrap();
            (conn, got)
        });
        tokio::task::yield_now().await;
        peer.write_all(b"pong").await.unwrap();
        let (mut conn, got) = reader.await.unwrap();
        assert_eq!(&got, b"pong");

        let slices = [IoSlice::new(b"a"), IoSlice::new(b"bc")];
        assert_eq!(conn.write_vectored(&slices).await.unwrap(), 3);
        conn.shutdown().await.unwrap();
        let mut all = Vec::new();
        peer.read_to_end(&mut all).await.unwrap();
        assert_eq!(all, b"abc");

        drop(peer);
        let mut rest = Vec::new();
        assert_eq!(conn.read_to_end(&mut rest).await.unwrap(), 0);
    }

    /// A write larger than the socket buffer waits for room on a write
    /// registration made for it, which goes once a write goes through
    /// whole; every byte arrives in order.
    #[tokio::test]
    async fn a_blocked_write_waits_on_its_own_registration() {
        let (mut conn, mut peer) = pair();
        let fd = conn.socket().as_raw_fd();
        let big: Vec<u8> = (0..(4usize << 20)).map(|i| (i % 251) as u8).collect();
        let mut sent = 0;
        // Fill the socket: a write that cannot go through whole makes the
        // write registration.
        while conn.write.is_none() {
            let n = std::future::poll_fn(|cx| {
                Pin::new(&mut conn)
                    .poll_write(cx, &big[sent..])
                    .map(|r| r.unwrap())
            });
            sent += tokio::time::timeout(std::time::Duration::from_millis(50), n)
                .await
                .unwrap_or(0);
        }
        let dup = conn.write.as_ref().unwrap().get_ref().as_raw_fd();
        let masks = epoll_masks(dup);
        assert!(
            masks.len() == 1 && masks[0] & EPOLLOUT != 0 && masks[0] & EPOLLIN == 0,
            "{masks:x?}"
        );
        let reader = tokio::spawn(async move {
            let mut all = Vec::new();
            peer.read_to_end(&mut all).await.unwrap();
            all
        });
        conn.write_all(&big[sent..]).await.unwrap();
        assert!(conn.write.is_none(), "the write registration goes");
        assert!(epoll_masks(dup).is_empty(), "and is unregistered");
        conn.shutdown().await.unwrap();
        assert_eq!(reader.await.unwrap(), big);
        let masks = epoll_masks(fd);
        assert!(masks.len() == 1 && masks[0] & EPOLLOUT == 0, "{masks:x?}");
    }

    #[tokio::test]
    async fn into_inner_unregisters() {
        let (conn, _peer) = pair();
        let fd = conn.socket().as_raw_fd();
        let sock = conn.into_inner();
        assert_eq!(sock.as_raw_fd(), fd);
        assert!(epoll_masks(fd).is_empty());
    }
}
