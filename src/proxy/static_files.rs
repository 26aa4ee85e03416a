//! Static files served by the front itself (`--static /static=./public`),
//! with tower-http's [`ServeDir`]: Range requests, ETag / If-None-Match,
//! Last-Modified / If-Modified-Since, precompressed `.br` / `.gz` / `.zst`
//! siblings chosen by `Accept-Encoding`, content types from the extension,
//! HEAD, `index.html` for directories and never a directory listing.
//!
//! What ServeDir does not do, this module adds:
//!
//! * **Confinement.** Files are opened through `Confined`, a ServeDir
//!   backend that resolves every path with `openat2(RESOLVE_BENEATH)`
//!   relative to the root directory: `..` and symlinks (absolute or
//!   relative) that leave the root fail in the kernel, with no check-then-
//!   open race. Where `openat2` is missing (Linux before 5.6, some
//!   seccomp filters) the resolved path is canonicalized and checked
//!   against the root instead.
//! * **Clear rejections.** A target whose decoded path holds a NUL byte or
//!   a `..` segment (also percent-encoded) gets 400 before touching the
//!   file system.
//! * **Inline file I/O.** `Confined` opens, stats and reads on the
//!   calling task instead of tokio's blocking pool (one thread hop per
//!   call): on page-cached files that is several times cheaper, and it is
//!   what nginx does without `aio`. Files on slow network storage would
//!   stall the worker thread while they are read.

use std::fs::{File as StdFile, Metadata as StdMetadata};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response, StatusCode, Uri};
use http_body_util::BodyExt;
use tower_http::services::fs::{Backend, File as FsFile, ServeDir};

use super::response::ProxyBody;

/// Chunk size of file reads: 128 KiB, half the syscalls of ServeDir's
/// 64 KiB default on large files. Small files do not pay for it: only the
/// part a read can fill is initialized (see `ConfinedFile`).
const READ_CHUNK: usize = 128 * 1024;

/// One `--static PREFIX=DIR` mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticMount {
    /// URL path prefix, `/` followed by segments, no trailing slash (or
    /// exactly `/`).
    pub prefix: String,
    /// The directory served under it.
    pub root: PathBuf,
}

impl FromStr for StaticMount {
    type Err = String;

    /// `/static=./public`.
    fn from_str(s: &str) -> Result<StaticMount, String> {
        let (prefix, root) = s
            .split_once('=')
            .ok_or_else(|| format!("static mount {s:?}: expected /PREFIX=DIR"))?;
        if !prefix.starts_with('/') {
            return Err(format!("static mount {s:?}: the prefix must start with /"));
        }
        if prefix.contains(['?', '#', '%']) || prefix.split('/').any(|seg| seg == "..") {
            return Err(format!("static mount {s:?}: invalid prefix"));
        }
        if root.is_empty() {
            return Err(format!("static mount {s:?}: empty directory"));
        }
        let trimmed = prefix.trim_end_matches('/');
        Ok(StaticMount {
            prefix: if trimmed.is_empty() {
                "/".into()
            } else {
                trimmed.into()
            },
            root: PathBuf::from(root),
        })
    }
}

/// The mounted directories, ready to serve.
pub(crate) struct StaticFiles {
    mounts: Vec<(
        String,
        ServeDir<tower_http::services::fs::DefaultServeDirFallback, Confined>,
    )>,
}

impl StaticFiles {
    /// Opens every mount's root; fails if one is not a readable directory.
    pub(crate) fn new(mounts: &[StaticMount]) -> io::Result<StaticFiles> {
        let mut out = Vec::with_capacity(mounts.len());
        for m in mounts {
            let backend = Confined::open(&m.root).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("static directory {}: {e}", m.root.display()),
                )
            })?;
            let base = backend.root_path.as_ref().clone();
            let mut dir = ServeDir::with_backend(base, backend)
                .precompressed_br()
                .precompressed_gzip()
                .precompressed_zstd()
                .with_buf_chunk_size(READ_CHUNK)
                .append_index_html_on_directories(true);
            if m.prefix != "/" {
                dir = dir.redirect_path_prefix(m.prefix.clone());
            }
            out.push((m.prefix.clone(), dir));
        }
        // Longest prefix first, so /static/img wins over /static.
        out.sort_by_key(|m| std::cmp::Reverse(m.0.len()));
        Ok(StaticFiles { mounts: out })
    }

    /// The mount serving `path`, if any.
    pub(crate) fn route(&self, path: &str) -> Option<usize> {
        self.mounts.iter().position(|(prefix, _)| {
            prefix == "/"
                || path == prefix
                || (path.starts_with(prefix.as_str())
                    && path.as_bytes().get(prefix.len()) == Some(&b'/'))
        })
    }

    /// Serves `req` from mount `i` (see [`Self::route`]).
    pub(crate) async fn serve<B>(&self, i: usize, req: &Request<B>) -> Response<ProxyBody> {
        let (prefix, dir) = &self.mounts[i];
        let path = req.uri().path();
        if let Err(why) = check_path(path) {
            return super::response::error_response(StatusCode::BAD_REQUEST, why);
        }
        let rest = if prefix == "/" {
            path
        } else {
            &path[prefix.len()..]
        };
        let rest = if rest.is_empty() { "/" } else { rest };
        let pq = match req.uri().query() {
            Some(q) => format!("{rest}?{q}"),
            None => rest.to_string(),
        };
        let Ok(uri) = Uri::builder().path_and_query(pq).build() else {
            return super::response::error_response(StatusCode::BAD_REQUEST, "bad path");
        };
        let mut inner = Request::new(http_body_util::Empty::<Bytes>::new());
        *inner.method_mut() = req.method().clone();
        *inner.uri_mut() = uri;
        *inner.version_mut() = req.version();
        *inner.headers_mut() = req.headers().clone();
        let req = inner;
        let resp = match dir.clone().try_call(req).await {
            Ok(r) => r,
            // Without a fallback service, ServeDir reports a missing file
            // (or one outside the root, see Confined) as an error.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound
                        | io::ErrorKind::PermissionDenied
                        | io::ErrorKind::NotADirectory
                ) =>
            {
                return super::response::error_response(StatusCode::NOT_FOUND, "no such file");
            }
            Err(e) => {
                tracing::warn!(error = %e, "static file failed");
                return super::response::error_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "static file read failed",
                );
            }
        };
        resp.map(|b| {
            b.map_err(|e| Box::new(e) as crate::client::BoxError)
                .boxed_unsync()
        })
    }
}

/// Rejects NUL bytes and `..` segments, percent-encoded or not.
fn check_path(path: &str) -> Result<(), &'static str> {
    let decoded: Vec<u8> = percent_encoding::percent_decode_str(path).collect();
    if decoded.contains(&0) {
        return Err("NUL byte in the path");
    }
    if decoded
        .split(|b| *b == b'/' || *b == b'\\')
        .any(|seg| seg == b"..")
    {
        return Err("path traversal (..) is not allowed");
    }
    Ok(())
}

/// A ServeDir backend confined to one directory (see the module docs).
#[derive(Clone, Debug)]
pub(crate) struct Confined {
    root: Arc<OwnedFd>,
    root_path: Arc<PathBuf>,
}

impl Confined {
    fn open(root: &Path) -> io::Result<Confined> {
        let canonical = std::fs::canonicalize(root)?;
        let dir = StdFile::open(&canonical)?;
        if !dir.metadata()?.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                "not a directory",
            ));
        }
        Ok(Confined {
            root: Arc::new(OwnedFd::from(dir)),
            root_path: Arc::new(canonical),
        })
    }

    /// Opens `path` (under the root) for reading. `O_NONBLOCK` so a FIFO
    /// cannot stall the thread (it is refused afterwards, see
    /// [`regular_or_dir`]); on regular files it changes nothing.
    fn open_beneath(&self, path: &Path) -> io::Result<(StdFile, StdMetadata)> {
        use rustix::fs::{Mode, OFlags, ResolveFlags};
        let rel = path
            .strip_prefix(self.root_path.as_path())
            .map_err(|_| io::Error::from(io::ErrorKind::NotFound))?;
        let rel = if rel.as_os_str().is_empty() {
            Path::new(".")
        } else {
            rel
        };
        let flags = OFlags::CLOEXEC | OFlags::RDONLY | OFlags::NOCTTY | OFlags::NONBLOCK;
        let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS;
        let file = match rustix::fs::openat2(self.root.as_ref(), rel, flags, Mode::empty(), resolve)
        {
            Ok(fd) => StdFile::from(fd),
            // Leaving the root: as if the file were not there.
            Err(rustix::io::Errno::XDEV) | Err(rustix::io::Errno::LOOP) => {
                return Err(io::ErrorKind::NotFound.into())
            }
            Err(rustix::io::Errno::NOSYS) | Err(rustix::io::Errno::PERM) => {
                self.open_checked(path)?
            }
            Err(e) => return Err(e.into()),
        };
        let meta = regular_or_dir(file.metadata()?)?;
        Ok((file, meta))
    }

    /// The fallback without `openat2`: canonicalize, check, open.
    fn open_checked(&self, path: &Path) -> io::Result<StdFile> {
        use std::os::unix::fs::OpenOptionsExt;
        let real = std::fs::canonicalize(path)?;
        if !real.starts_with(self.root_path.as_path()) {
            return Err(io::ErrorKind::NotFound.into());
        }
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
            .open(&real)
    }
}

/// Only regular files and directories are served (no FIFOs, devices or
/// sockets that happen to sit under the root).
fn regular_or_dir(meta: StdMetadata) -> io::Result<StdMetadata> {
    if meta.is_file() || meta.is_dir() {
        Ok(meta)
    } else {
        Err(io::ErrorKind::NotFound.into())
    }
}

thread_local! {
    /// The file the last `metadata` call on this thread opened. ServeDir
    /// asks for a path's metadata (is it a directory?) and then opens it,
    /// back to back within one poll on one thread: keeping the descriptor
    /// saves an open, a stat and a close per request. At most one
    /// descriptor per worker thread stays open.
    static LAST_OPENED: std::cell::RefCell<Option<(PathBuf, StdFile, StdMetadata)>> =
        const { std::cell::RefCell::new(None) };
}

impl Backend for Confined {
    type File = ConfinedFile;
    type Metadata = StdMetadata;
    type OpenFuture = std::future::Ready<io::Result<ConfinedFile>>;
    type MetadataFuture = std::future::Ready<io::Result<StdMetadata>>;

    fn open(&self, path: PathBuf) -> Self::OpenFuture {
        let cached = LAST_OPENED.with(|l| {
            let mut l = l.borrow_mut();
            match l.take() {
                Some((p, file, meta)) if p == path => Some((file, meta)),
                other => {
                    *l = other;
                    None
                }
            }
        });
        let opened = match cached {
            Some(x) => Ok(x),
            None => self.open_beneath(&path),
        };
        std::future::ready(opened.map(|(file, meta)| {
            let len = meta.len();
            ConfinedFile {
                file,
                meta,
                seek: None,
                len,
                left: len,
            }
        }))
    }

    fn metadata(&self, path: PathBuf) -> Self::MetadataFuture {
        std::future::ready(self.open_beneath(&path).map(|(file, meta)| {
            LAST_OPENED.with(|l| *l.borrow_mut() = Some((path, file, meta.clone())));
            meta
        }))
    }
}

/// A file opened by `Confined`; reads and seeks run inline.
#[derive(Debug)]
pub(crate) struct ConfinedFile {
    file: StdFile,
    /// Taken once at open (ServeDir asks for it again).
    meta: StdMetadata,
    seek: Option<io::Result<u64>>,
    /// Size when opened, and what is left from the position.
    len: u64,
    left: u64,
}

impl tokio::io::AsyncRead for ConfinedFile {
    fn poll_read(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // Zero (initialize) only what the file can still fill, not the
        // whole read buffer: a 4 KiB file read into a 64 KiB buffer must
        // not cost a 64 KiB memset.
        let want = buf.remaining().min(this.left.max(8192) as usize);
        let dst = buf.initialize_unfilled_to(want);
        let n = this.file.read(dst)?;
        buf.advance(n);
        this.left = this.left.saturating_sub(n as u64);
        Poll::Ready(Ok(()))
    }
}

impl tokio::io::AsyncSeek for ConfinedFile {
    fn start_seek(self: Pin<&mut Self>, position: SeekFrom) -> io::Result<()> {
        let this = self.get_mut();
        let pos = this.file.seek(position);
        if let Ok(p) = pos {
            this.left = this.len.saturating_sub(p);
        }
        this.seek = Some(pos);
        Ok(())
    }

    fn poll_complete(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<u64>> {
        let this = self.get_mut();
        match this.seek.take() {
            Some(r) => Poll::Ready(r),
            None => Poll::Ready(this.file.stream_position()),
        }
    }
}

impl FsFile for ConfinedFile {
    type Metadata = StdMetadata;
    type MetadataFuture<'a> = std::future::Ready<io::Result<StdMetadata>>;

    fn metadata(&self) -> Self::MetadataFuture<'_> {
        std::future::ready(Ok(self.meta.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts_parse() {
        let m: StaticMount = "/static/=./public".parse().unwrap();
        assert_eq!(m.prefix, "/static");
        assert_eq!(m.root, PathBuf::from("./public"));
        assert_eq!("/=/srv".parse::<StaticMount>().unwrap().prefix, "/");
        assert!("static=./p".parse::<StaticMount>().is_err());
        assert!("/a".parse::<StaticMount>().is_err());
        assert!("/a/../b=/x".parse::<StaticMount>().is_err());
    }

    #[test]
    fn paths_with_nul_or_dotdot_are_refused() {
        assert!(check_path("/static/a.css").is_ok());
        assert!(check_path("/static/a..b").is_ok());
        assert!(check_path("/static/%00.css").is_err());
        assert!(check_path("/static/../etc/passwd").is_err());
        assert!(check_path("/static/%2e%2e/etc/passwd").is_err());
        assert!(check_path("/static/.%2E/x").is_err());
        assert!(check_path("/static/..%5cx").is_err());
    }
}
