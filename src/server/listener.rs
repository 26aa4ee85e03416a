//! Listening sockets: a Unix socket path, a TCP address, or a socket handed
//! over by systemd socket activation.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::io::{FromRawFd, RawFd};
use std::path::{Path, PathBuf};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener, UnixStream};

use crate::net::Socket;

/// Default mode of a Unix socket file: owner and group may connect.
pub const DEFAULT_SOCKET_MODE: u32 = 0o660;
/// Default listen backlog.
pub const DEFAULT_BACKLOG: i32 = 1024;
/// First file descriptor systemd passes (`SD_LISTEN_FDS_START`).
const SD_LISTEN_FDS_START: RawFd = 3;

/// Where to listen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindAddr {
    /// `unix:/run/app.sock`
    Unix(PathBuf),
    /// `tcp:127.0.0.1:9000`
    Tcp(SocketAddr),
    /// `systemd` or `systemd:N`: the N-th (0-based) socket from `LISTEN_FDS`.
    Systemd(usize),
}

impl std::str::FromStr for BindAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<BindAddr, String> {
        if let Some(p) = s.strip_prefix("unix:") {
            if p.is_empty() {
                return Err("unix: needs a path, e.g. unix:/run/app.sock".into());
            }
            Ok(BindAddr::Unix(PathBuf::from(p)))
        } else if let Some(a) = s.strip_prefix("tcp:") {
            a.parse()
                .map(BindAddr::Tcp)
                .map_err(|e| format!("bad TCP address {a:?}: {e}"))
        } else if s == "systemd" {
            Ok(BindAddr::Systemd(0))
        } else if let Some(n) = s.strip_prefix("systemd:") {
            n.parse()
                .map(BindAddr::Systemd)
                .map_err(|e| format!("bad systemd socket index {n:?}: {e}"))
        } else if s.starts_with('/') {
            Ok(BindAddr::Unix(PathBuf::from(s)))
        } else {
            Err(format!(
                "unknown address {s:?}: use unix:/path, tcp:HOST:PORT or systemd[:N]"
            ))
        }
    }
}

impl fmt::Display for BindAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BindAddr::Unix(p) => write!(f, "unix:{}", p.display()),
            BindAddr::Tcp(a) => write!(f, "tcp:{a}"),
            BindAddr::Systemd(n) => write!(f, "systemd:{n}"),
        }
    }
}

/// Options for binding a Unix socket.
#[derive(Debug, Clone)]
pub struct BindOptions {
    /// File mode set between `bind` and `listen`. Default 0o660.
    pub socket_mode: u32,
    /// Listen backlog. Default 1024.
    pub backlog: i32,
}

impl Default for BindOptions {
    fn default() -> BindOptions {
        BindOptions {
            socket_mode: DEFAULT_SOCKET_MODE,
            backlog: DEFAULT_BACKLOG,
        }
    }
}

/// A socket file this process created: its path and identity (device and
/// inode), so that dropping the listener never removes a file another server
/// has since bound at the same path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketFile {
    /// The path.
    pub path: PathBuf,
    dev: u64,
    ino: u64,
}

impl SocketFile {
    fn of(path: &Path) -> io::Result<SocketFile> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::symlink_metadata(path)?;
        Ok(SocketFile {
            path: path.to_path_buf(),
            dev: m.dev(),
            ino: m.ino(),
        })
    }

    /// Whether the path still names the socket this process created.
    fn is_ours(&self) -> bool {
        use std::os::unix::fs::MetadataExt;
        std::fs::symlink_metadata(&self.path)
            .map(|m| m.file_type().is_socket() && m.dev() == self.dev && m.ino() == self.ino)
            .unwrap_or(false)
    }
}

/// A bound, listening socket. A Unix socket file this process created is
/// removed when the listener is dropped (only if it is still that file).
#[derive(Debug)]
pub enum Listener {
    /// A Unix socket.
    Unix {
        /// The listener.
        listener: UnixListener,
        /// The socket file to remove on drop, if this process created it.
        cleanup: Option<SocketFile>,
    },
    /// A TCP socket.
    Tcp(TcpListener),
}

/// An accepted connection as the protocols need it: a byte stream that can
/// become a plain [`Socket`] (split into owned halves by the classic uwsgi
/// path) and can be closed abortively.
pub(crate) trait Accepted: AsyncRead + AsyncWrite + Send + Unpin + 'static {
    /// The connection as a registered socket.
    fn into_socket(self) -> io::Result<Socket>;
    /// Makes the eventual close abortive (see [`Socket::set_abortive_close`]).
    fn set_abortive_close(&self) -> io::Result<()>;
}

impl Accepted for Socket {
    fn into_socket(self) -> io::Result<Socket> {
        Ok(self)
    }

    fn set_abortive_close(&self) -> io::Result<()> {
        Socket::set_abortive_close(self)
    }
}

impl Listener {
    /// Binds `addr`. Must be called inside a tokio runtime.
    pub async fn bind(addr: &BindAddr, opts: &BindOptions) -> io::Result<Listener> {
        match addr {
            BindAddr::Unix(path) => bind_unix(path, opts).await,
            BindAddr::Tcp(a) => {
                let sock = socket2::Socket::new(
                    socket2::Domain::for_address(*a),
                    socket2::Type::STREAM,
                    None,
                )?;
                sock.set_reuse_address(true)?;
                sock.set_nonblocking(true)?;
                sock.bind(&(*a).into())?;
                sock.listen(opts.backlog)?;
                let std: std::net::TcpListener = sock.into();
                Ok(Listener::Tcp(TcpListener::from_std(std)?))
            }
            BindAddr::Systemd(n) => from_systemd(*n),
        }
    }

    /// A second handle on this listening socket (the same socket, not a
    /// second bind), not yet tied to a runtime: serve it from another
    /// thread's runtime with [`Listener::from_shared`]. The socket file is
    /// removed only when the original listener is dropped.
    pub fn share(&self) -> io::Result<SharedListener> {
        use std::os::fd::AsFd;
        let fd = match self {
            Listener::Unix { listener, .. } => listener.as_fd().try_clone_to_owned()?,
            Listener::Tcp(l) => l.as_fd().try_clone_to_owned()?,
        };
        Ok(match self {
            Listener::Unix { .. } => SharedListener::Unix(fd.into()),
            Listener::Tcp(_) => SharedListener::Tcp(fd.into()),
        })
    }

    /// A listener on a socket from [`Listener::share`], registered with the
    /// current runtime. Must be called inside a tokio runtime.
    pub fn from_shared(shared: SharedListener) -> io::Result<Listener> {
        Ok(match shared {
            SharedListener::Unix(l) => {
                l.set_nonblocking(true)?;
                Listener::Unix {
                    listener: UnixListener::from_std(l)?,
                    cleanup: None,
                }
            }
            SharedListener::Tcp(l) => {
                l.set_nonblocking(true)?;
                Listener::Tcp(TcpListener::from_std(l)?)
            }
        })
    }

    /// Accepts one connection.
    pub async fn accept(&self) -> io::Result<Socket> {
        match self {
            Listener::Unix { listener, .. } => {
                listener.accept().await.map(|(s, _)| Socket::Unix(s))
            }
            Listener::Tcp(l) => {
                let (s, _) = l.accept().await?;
                let _ = s.set_nodelay(true);
                Ok(Socket::Tcp(s))
            }
        }
    }

    /// A printable local address.
    pub fn local_addr(&self) -> String {
        match self {
            Listener::Unix { listener, .. } => match listener.local_addr() {
                Ok(a) => match a.as_pathname() {
                    Some(p) => format!("unix:{}", p.display()),
                    None => "unix:(unnamed)".into(),
                },
                Err(_) => "unix:?".into(),
            },
            Listener::Tcp(l) => match l.local_addr() {
                Ok(a) => format!("tcp:{a}"),
                Err(_) => "tcp:?".into(),
            },
        }
    }

    /// The TCP port, for a TCP listener.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        match self {
            Listener::Tcp(l) => l.local_addr().ok(),
            Listener::Unix { .. } => None,
        }
    }
}

/// A listening socket handed between threads (see [`Listener::share`]).
#[derive(Debug)]
pub enum SharedListener {
    /// A Unix socket.
    Unix(std::os::unix::net::UnixListener),
    /// A TCP socket.
    Tcp(std::net::TcpListener),
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Listener::Unix {
            cleanup: Some(file),
            ..
        } = self
        {
            // Only remove it if it is still our socket: the path may have
            // been deleted and bound again by a newer server.
            if file.is_ours() {
                let _ = std::fs::remove_file(&file.path);
            }
        }
    }
}

async fn bind_unix(path: &Path, opts: &BindOptions) -> io::Result<Listener> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) => {
            // Never delete something that is not a socket.
            if !meta.file_type().is_socket() {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!(
                        "{} exists and is not a socket; refusing to replace it",
                        path.display()
                    ),
                ));
            }
            // A socket file: stale only if nothing answers on it.
            match UnixStream::connect(path).await {
                Ok(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::AddrInUse,
                        format!("{} is in use by a live server", path.display()),
                    ))
                }
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    std::fs::remove_file(path)?;
                }
                Err(e) => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!("cannot tell whether {} is stale: {e}", path.display()),
                    ))
                }
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let sock = socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM, None)?;
    sock.bind(&socket2::SockAddr::unix(path)?)?;
    // The mode is set between bind and listen, so no client can connect
    // while the socket still has the umask's permissions.
    if let Err(e) =
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(opts.socket_mode))
    {
        let _ = std::fs::remove_file(path);
        return Err(e);
    }
    if let Err(e) = sock.listen(opts.backlog) {
        let _ = std::fs::remove_file(path);
        return Err(e);
    }
    sock.set_nonblocking(true)?;
    let std: std::os::unix::net::UnixListener = sock.into();
    let file = SocketFile::of(path)?;
    Ok(Listener::Unix {
        listener: UnixListener::from_std(std)?,
        cleanup: Some(file),
    })
}

/// Takes the `n`-th socket passed by systemd (`LISTEN_PID`, `LISTEN_FDS`).
fn from_systemd(n: usize) -> io::Result<Listener> {
    let invalid = |m: String| io::Error::new(io::ErrorKind::InvalidInput, m);
    let pid: u32 = std::env::var("LISTEN_PID")
        .map_err(|_| {
            invalid("LISTEN_PID is not set: not started by systemd socket activation".into())
        })?
        .parse()
        .map_err(|_| invalid("LISTEN_PID is not a number".into()))?;
    if pid != std::process::id() {
        return Err(invalid(format!("LISTEN_PID {pid} is not this process")));
    }
    let fds: usize = std::env::var("LISTEN_FDS")
        .map_err(|_| invalid("LISTEN_FDS is not set".into()))?
        .parse()
        .map_err(|_| invalid("LISTEN_FDS is not a number".into()))?;
    if n >= fds {
        return Err(invalid(format!(
            "systemd passed {fds} sockets; index {n} does not exist"
        )));
    }
    let fd = SD_LISTEN_FDS_START + n as RawFd;
    let owned = take_fd(fd);
    let sock = socket2::SockRef::from(&owned);
    // systemd hands the descriptors over without FD_CLOEXEC; like
    // sd_listen_fds(), set it so the listening socket does not leak into
    // processes the application spawns.
    sock.set_cloexec(true)?;
    let is_unix = sock.local_addr()?.is_unix();
    if is_unix {
        let std: std::os::unix::net::UnixListener = owned.into();
        std.set_nonblocking(true)?;
        Ok(Listener::Unix {
            listener: UnixListener::from_std(std)?,
            cleanup: None,
        })
    } else {
        let std: std::net::TcpListener = owned.into();
        std.set_nonblocking(true)?;
        Ok(Listener::Tcp(TcpListener::from_std(std)?))
    }
}

#[allow(unsafe_code)]
fn take_fd(fd: RawFd) -> std::os::fd::OwnedFd {
    // SAFETY: systemd's socket-activation protocol hands this process the
    // descriptors LISTEN_FDS_START..LISTEN_FDS_START+LISTEN_FDS, open and
    // owned by nobody else; LISTEN_PID was checked to be this process, and
    // each index is taken at most once per bind call.
    unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn drop_keeps_a_successors_socket() {
        let dir = std::env::temp_dir().join(format!("uwire-bind-succ-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("s.sock");
        let _ = std::fs::remove_file(&path);
        let addr = BindAddr::Unix(path.clone());
        let old = Listener::bind(&addr, &BindOptions::default())
            .await
            .unwrap();
        // Someone deletes the file and a newer server binds the same path.
        std::fs::remove_file(&path).unwrap();
        let new = Listener::bind(&addr, &BindOptions::default())
            .await
            .unwrap();
        drop(old);
        assert!(
            path.exists(),
            "the old listener removed the new server's socket"
        );
        drop(new);
        assert!(
            !path.exists(),
            "the new listener did not clean up its own socket"
        );
        let _ = std::fs::remove_dir(&dir);
    }
}
