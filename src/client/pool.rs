//! Per-upstream state: the pool of long-lived uwire connections, the
//! in-flight counters the balancer reads, and passive-ejection bookkeeping.

use std::io;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::{TcpStream, UnixStream};

use super::error::{Error, Kind};
use super::upstream::{Transport, Upstream};
use super::ClientConfig;
use crate::net::{self, SendRequest, Socket};

/// One pooled connection.
struct Pooled {
    sender: SendRequest,
    inflight: Arc<AtomicU32>,
    /// The thread whose single-threaded runtime drives the connection, if
    /// it is one: requests from that thread use it first, so a request and
    /// its connection never wake each other across threads.
    home: Option<std::thread::ThreadId>,
    /// The connection's socket, as it was when opened (see
    /// [`UpstreamState::close_inherited`]).
    socket: Option<SocketId>,
}

/// Which socket a descriptor held when a connection was opened: its
/// number, and the device and inode of the socket behind it, which tell a
/// descriptor still holding that socket from one whose number was reused
/// for another file since.
#[derive(Debug, Clone, Copy)]
struct SocketId {
    fd: std::os::fd::RawFd,
    dev: u64,
    ino: u64,
}

impl SocketId {
    /// The socket `fd` holds now, if it holds one.
    fn of(fd: std::os::fd::RawFd) -> Option<SocketId> {
        let st = fstat(fd)?;
        (rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Socket).then_some(
            SocketId {
                fd,
                dev: st.st_dev,
                ino: st.st_ino,
            },
        )
    }

    /// Closes the descriptor if it still holds the socket it held when
    /// this was taken; whether it did.
    ///
    /// # Safety
    /// Nothing in the process may use the descriptor again (see
    /// [`UpstreamState::close_inherited`]).
    #[allow(unsafe_code)]
    unsafe fn close_if_same(self) -> bool {
        match SocketId::of(self.fd) {
            Some(now) if now.dev == self.dev && now.ino == self.ino => {
                // SAFETY: the caller's contract; `fd` is open (just
                // checked) and holds the connection's socket.
                unsafe { rustix::io::close(self.fd) };
                true
            }
            _ => false,
        }
    }
}

/// `fstat(fd)`, `None` when it fails (a closed descriptor).
#[allow(unsafe_code)]
fn fstat(fd: std::os::fd::RawFd) -> Option<rustix::fs::Stat> {
    // SAFETY: the borrow lasts for this one call, during which nothing in
    // this thread closes `fd`; a number that is not open makes fstat fail
    // with EBADF, nothing worse.
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    rustix::fs::fstat(fd).ok()
}

/// The pool affinity of the calling task: its thread when it runs on a
/// current-thread runtime (one of several such threads, each with its own
/// connections), else none (one pool shared by a multi-thread runtime).
fn home() -> Option<std::thread::ThreadId> {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::CurrentThread) => Some(std::thread::current().id()),
        _ => None,
    }
}

/// A checked-out connection: the sender plus a guard that counts the
/// request as in flight until dropped.
pub(crate) struct Lease {
    pub(crate) sender: SendRequest,
    pub(crate) guard: InflightGuard,
}

/// Decrements the in-flight counters when the request (and its response
/// body) is done.
#[derive(Debug)]
pub(crate) struct InflightGuard {
    conn: Arc<AtomicU32>,
    upstream: Arc<UpstreamState>,
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.conn.fetch_sub(1, Ordering::AcqRel);
        self.upstream.outstanding.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Everything known about one upstream.
pub(crate) struct UpstreamState {
    pub(crate) addr: Upstream,
    conns: Mutex<Vec<Pooled>>,
    connect_lock: tokio::sync::Mutex<()>,
    /// When the last connect attempt failed, and how (see `checkout`).
    last_connect_failure: Mutex<Option<(Instant, Kind, String)>>,
    pub(crate) outstanding: AtomicUsize,
    /// Where the next pick starts its walk over the pool (see `pick`).
    rotor: AtomicUsize,
    failures: AtomicU32,
    ejected_until: Mutex<Option<Instant>>,
    pub(crate) connects: AtomicU64,
}

impl std::fmt::Debug for UpstreamState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamState")
            .field("addr", &self.addr)
            .field("outstanding", &self.outstanding.load(Ordering::Relaxed))
            .finish()
    }
}

enum Pick {
    Use(Lease),
    Connect,
}

impl UpstreamState {
    pub(crate) fn new(addr: Upstream) -> UpstreamState {
        UpstreamState {
            addr,
            conns: Mutex::new(Vec::new()),
            connect_lock: tokio::sync::Mutex::new(()),
            last_connect_failure: Mutex::new(None),
            outstanding: AtomicUsize::new(0),
            rotor: AtomicUsize::new(0),
            failures: AtomicU32::new(0),
            ejected_until: Mutex::new(None),
            connects: AtomicU64::new(0),
        }
    }

    /// Live pooled connections.
    pub(crate) fn live_connections(&self) -> usize {
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        conns.retain(|c| !c.sender.is_closed());
        conns.len()
    }

    /// Closes the descriptors of this upstream's pooled connections that
    /// still hold the sockets they were opened with; how many it closed.
    /// The connections themselves are left as they are (the caller never
    /// uses or drops them).
    ///
    /// # Safety
    /// Nothing in the process may use these connections again: their
    /// tasks must never run here (as in a forked child, where the threads
    /// of the runtime that drove them do not exist).
    #[allow(unsafe_code)]
    pub(crate) unsafe fn close_inherited(&self) -> usize {
        let conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        conns
            .iter()
            .filter_map(|c| c.socket)
            // SAFETY: the caller's contract.
            .filter(|s| unsafe { s.close_if_same() })
            .count()
    }

    /// Counts a request as outstanding on this upstream (before any lease).
    pub(crate) fn begin(self: &Arc<Self>) -> Arc<AtomicU32> {
        self.outstanding.fetch_add(1, Ordering::AcqRel);
        Arc::new(AtomicU32::new(1))
    }

    /// A guard for a request that needs no pooled connection (uwsgi).
    pub(crate) fn guard(self: &Arc<Self>) -> InflightGuard {
        InflightGuard {
            conn: self.begin(),
            upstream: self.clone(),
        }
    }

    fn lease(self: &Arc<Self>, p: &Pooled) -> Lease {
        p.inflight.fetch_add(1, Ordering::AcqRel);
        self.outstanding.fetch_add(1, Ordering::AcqRel);
        Lease {
            sender: p.sender.clone(),
            guard: InflightGuard {
                conn: p.inflight.clone(),
                upstream: self.clone(),
            },
        }
    }

    fn pick(self: &Arc<Self>, max_conns: usize) -> Pick {
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        conns.retain(|c| !c.sender.is_closed());
        // With per-thread runtimes each thread keeps its own connections
        // (up to `max_conns` each), as nginx workers do.
        let home = home();
        let mine = |c: &&Pooled| c.home == home && !c.sender.is_going_away();
        // The least busy connection; ties go round the pool. Were the first
        // one always to win a tie, a lightly loaded pool would send nearly
        // every request over one connection, and so to the one worker
        // process that accepted it (the others would get the overflow).
        let start = match conns.len() {
            0 | 1 => 0,
            n => self.rotor.fetch_add(1, Ordering::Relaxed) % n,
        };
        let (head, tail) = conns.split_at(start);
        let best = tail
            .iter()
            .chain(head)
            .filter(mine)
            .min_by_key(|c| c.inflight.load(Ordering::Acquire));
        match best {
            None => Pick::Connect,
            Some(c) => {
                // Every connection busy and room for another: connect, so
                // concurrent requests spread over up to `max_conns`
                // connections before they share one. Filling a connection
                // to the peer's stream limit first would send them all to
                // whichever worker process accepted it: an ASGI worker
                // allows 128 streams, and took a whole pool's load while
                // its siblings idled. Past that, the least busy connection
                // takes the stream, queueing it at the peer's limit.
                let usable = conns.iter().filter(mine).count();
                if c.inflight.load(Ordering::Acquire) == 0 || usable >= max_conns {
                    Pick::Use(self.lease(c))
                } else {
                    Pick::Connect
                }
            }
        }
    }

    /// A connection with room for one more stream, connecting if needed.
    /// A pooled connection with room for one more stream, if there is
    /// one (no waiting, no connecting).
    pub(crate) fn try_checkout(self: &Arc<Self>, cfg: &ClientConfig) -> Option<Lease> {
        match self.pick(cfg.max_connections_per_upstream) {
            Pick::Use(l) => Some(l),
            _ => None,
        }
    }

    pub(crate) async fn checkout(self: &Arc<Self>, cfg: &ClientConfig) -> Result<Lease, Error> {
        if let Pick::Use(l) = self.pick(cfg.max_connections_per_upstream) {
            return Ok(l);
        }
        let waiting_since = Instant::now();
        let _one_connect_at_a_time = self.connect_lock.lock().await;
        if let Pick::Use(l) = self.pick(cfg.max_connections_per_upstream) {
            return Ok(l);
        }
        // A connect attempt (retries included) that failed while this
        // request waited for its turn is as fresh as one of its own would
        // be: share the failure instead of trying again. Otherwise the
        // requests queued behind a dead upstream fail one after another,
        // each after a whole retry sequence (or connect timeout) of its own.
        if let Some((at, kind, why)) = &*self
            .last_connect_failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
        {
            if *at >= waiting_since {
                return Err(Error::with(
                    *kind,
                    format!("{why} (a concurrent request's attempt, just now)"),
                ));
            }
        }
        let (sender, socket) = match connect_with_retry(&self.addr.transport, cfg).await {
            Ok(s) => s,
            Err(e) => {
                *self
                    .last_connect_failure
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()) =
                    Some((Instant::now(), e.kind(), source_text(&e)));
                return Err(e);
            }
        };
        self.connects.fetch_add(1, Ordering::Relaxed);
        let pooled = Pooled {
            sender,
            inflight: Arc::new(AtomicU32::new(0)),
            home: home(),
            socket,
        };
        let lease = self.lease(&pooled);
        self.conns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(pooled);
        Ok(lease)
    }

    /// Whether the upstream is ejected at `now`.
    pub(crate) fn is_ejected(&self, now: Instant) -> bool {
        self.ejected_until
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some_and(|t| now < t)
    }

    /// When the ejection ends (for choosing among all-ejected upstreams).
    pub(crate) fn ejected_until(&self) -> Option<Instant> {
        *self.ejected_until.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn record_success(&self) {
        self.failures.store(0, Ordering::Release);
    }

    pub(crate) fn record_failure(&self, cfg: &ClientConfig) {
        let n = self.failures.fetch_add(1, Ordering::AcqRel) + 1;
        if cfg.eject_after > 0 && n >= cfg.eject_after {
            self.failures.store(0, Ordering::Release);
            *self.ejected_until.lock().unwrap_or_else(|e| e.into_inner()) =
                Some(Instant::now() + cfg.eject_cooldown);
            tracing::warn!(upstream = %self.addr, cooldown = ?cfg.eject_cooldown, "upstream ejected after {n} consecutive failures");
        }
    }
}

/// What caused `e`, for repeating it to requests that share the failure.
fn source_text(e: &Error) -> String {
    std::error::Error::source(e).map_or_else(String::new, |s| s.to_string())
}

/// A freshly connected byte stream. A Unix socket is not yet registered
/// with the runtime: the caller picks how (see [`net::UnixConn`]), so it
/// is registered once.
enum Opened {
    Unix(socket2::Socket),
    Tcp(TcpStream),
}

/// Opens one raw byte stream to `transport`.
async fn open(transport: &Transport) -> io::Result<Opened> {
    match transport {
        #[cfg(target_os = "linux")]
        Transport::Unix(p) => Ok(Opened::Unix(connect_unix_now(p)?)),
        #[cfg(not(target_os = "linux"))]
        Transport::Unix(p) => {
            // `into_std` leaves the socket in non-blocking mode.
            let s = UnixStream::connect(p).await?.into_std()?;
            Ok(Opened::Unix(std::os::fd::OwnedFd::from(s).into()))
        }
        Transport::Tcp(a) => {
            let s = TcpStream::connect(a.as_str()).await?;
            let _ = s.set_nodelay(true);
            Ok(Opened::Tcp(s))
        }
    }
}

/// A non-blocking Unix stream connect. On Linux it never waits: it succeeds
/// or fails (`EAGAIN` with the listener's backlog full) at once, so there
/// is nothing to wait for and no `SO_ERROR` to check afterwards (tokio's
/// connect does both: a system call per classic uwsgi request).
#[cfg(target_os = "linux")]
fn connect_unix_now(path: &std::path::Path) -> io::Result<socket2::Socket> {
    use socket2::{Domain, SockAddr, Socket as RawSocket, Type};
    let s = RawSocket::new(Domain::UNIX, Type::STREAM.nonblocking().cloexec(), None)?;
    s.connect(&SockAddr::unix(path)?)?;
    Ok(s)
}

/// Connects, retrying with exponential backoff, all within the connect timeout.
async fn open_with_retry(transport: &Transport, cfg: &ClientConfig) -> Result<Opened, Error> {
    let deadline = tokio::time::Instant::now() + cfg.connect_timeout;
    let mut backoff = cfg.retry_backoff;
    let mut attempt = 0;
    loop {
        match tokio::time::timeout_at(deadline, open(transport)).await {
            Err(_) => return Err(Error::new(Kind::ConnectTimeout)),
            Ok(Ok(io)) => return Ok(io),
            Ok(Err(e)) => {
                if attempt >= cfg.connect_retries {
                    return Err(Error::with(Kind::Connect, e));
                }
                attempt += 1;
                let wake = tokio::time::Instant::now() + backoff;
                if wake >= deadline {
                    return Err(Error::with(Kind::Connect, e));
                }
                tokio::time::sleep_until(wake).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

/// Connects as [`open_with_retry`] does and registers the stream with
/// tokio for both directions: the classic uwsgi client's byte stream.
pub(crate) async fn connect_raw_with_retry(
    transport: &Transport,
    cfg: &ClientConfig,
) -> Result<Socket, Error> {
    match open_with_retry(transport, cfg).await? {
        Opened::Unix(s) => UnixStream::from_std(std::os::fd::OwnedFd::from(s).into())
            .map(Socket::Unix)
            .map_err(|e| Error::with(Kind::Connect, e)),
        Opened::Tcp(s) => Ok(Socket::Tcp(s)),
    }
}

/// Opens a pooled connection and spawns its task: its sender, and which
/// socket it runs on.
async fn connect_with_retry(
    transport: &Transport,
    cfg: &ClientConfig,
) -> Result<(SendRequest, Option<SocketId>), Error> {
    use std::os::fd::AsRawFd;
    let ((sender, task), socket) = match open_with_retry(transport, cfg).await? {
        // Registered for reading only (see `UnixConn`): waiting for an
        // answer, the connection is not woken when the app reads the
        // request.
        Opened::Unix(s) => {
            let socket = SocketId::of(s.as_raw_fd());
            let io = net::UnixConn::new(s).map_err(|e| Error::with(Kind::Connect, e))?;
            (net::client(io, cfg.conn.clone()), socket)
        }
        Opened::Tcp(s) => {
            let socket = SocketId::of(s.as_raw_fd());
            (net::client(Socket::Tcp(s), cfg.conn.clone()), socket)
        }
    };
    tokio::spawn(async move {
        if let Err(e) = task.await {
            tracing::debug!(error = %e, "upstream connection ended");
        }
    });
    Ok((sender, socket))
}

#[cfg(test)]
mod tests {
    use super::SocketId;
    use std::io::Read;
    use std::os::fd::{AsRawFd, IntoRawFd};
    use std::os::unix::net::UnixStream;

    /// A descriptor is closed only while it holds the socket it was
    /// opened with: once its number holds another socket, it is left alone.
    /// (Descriptor numbers are never left free here: the other tests of
    /// this binary open files on other threads.)
    #[test]
    #[allow(unsafe_code)]
    fn close_if_same_spares_a_reused_number() {
        // The same socket: closed, as its peer sees.
        let (a, mut peer) = UnixStream::pair().unwrap();
        let id = SocketId::of(a.as_raw_fd()).unwrap();
        let _released = a.into_raw_fd();
        // SAFETY: the descriptor was released from its owner just above.
        assert!(unsafe { id.close_if_same() });
        assert_eq!(peer.read(&mut [0; 1]).unwrap(), 0, "end of stream");

        // The number now holding another socket (dup2 puts `c` in place
        // of `b` at once): left open.
        let (b, _b_peer) = UnixStream::pair().unwrap();
        let (c, mut c_peer) = UnixStream::pair().unwrap();
        let id = SocketId::of(b.as_raw_fd()).unwrap();
        // SAFETY: both descriptors are open; `b`'s number then holds `c`'s
        // socket, and `b` owns that number still (it closes it on drop).
        assert!(unsafe { libc::dup2(c.as_raw_fd(), b.as_raw_fd()) } >= 0);
        // SAFETY: the number holds another socket, which is left alone.
        assert!(!unsafe { id.close_if_same() });
        drop(c);
        c_peer.set_nonblocking(true).unwrap();
        let open = c_peer.read(&mut [0; 1]).unwrap_err();
        assert_eq!(open.kind(), std::io::ErrorKind::WouldBlock, "still open");
        drop(b);

        // Not a socket at all: nothing to take.
        let f = std::fs::File::open("/proc/self/stat").unwrap();
        assert!(SocketId::of(f.as_raw_fd()).is_none());
    }
}
