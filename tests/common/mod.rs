//! Helpers shared by the server end-to-end tests: unique socket paths, a
//! server running in the test's runtime, `net::client` connections, a raw
//! frame-level client (for peers that break the rules on purpose), and a
//! `uwire serve` child process.
#![allow(dead_code)] // each test binary uses a different subset

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use uwire::codec::Codec;
use uwire::conn::Config;
use uwire::frame::Limits;
use uwire::frame::{preface, Frame, GoAway, HeaderBlock, RequestHead, Settings, StreamId};
use uwire::net::{self, SendRequest};
use uwire::server::{BindAddr, Handler, Listener, Metrics, Server, ServerConfig};

/// Upper bound for one test; every test wraps its body in [`bounded`].
pub const TEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs `fut` with [`TEST_TIMEOUT`]; a hang fails the test instead of
/// stalling the suite.
pub async fn bounded<F: Future>(fut: F) -> F::Output {
    match tokio::time::timeout(TEST_TIMEOUT, fut).await {
        Ok(v) => v,
        Err(_) => panic!("test did not finish within {TEST_TIMEOUT:?}"),
    }
}

/// Like [`bounded`] with a custom limit and a label in the panic message.
pub async fn within<F: Future>(limit: Duration, what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(limit, fut).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: did not finish within {limit:?}"),
    }
}

/// A unique socket path under the temp dir for this test process; any file
/// left at that path by an earlier run is removed.
pub fn sock_path(name: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("uwire-test-{}-{}", std::process::id(), name));
    let _ = std::fs::remove_file(&p);
    p
}

/// A [`Server`] serving a Unix socket inside the test's runtime.
pub struct TestServer {
    pub path: PathBuf,
    pub metrics: Arc<Metrics>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<io::Result<()>>>,
}

impl TestServer {
    /// Binds `path` (unique per test, see [`sock_path`]) and serves `handler`.
    pub async fn start<H: Handler>(name: &str, config: ServerConfig, handler: H) -> TestServer {
        let path = sock_path(name);
        let listener = Listener::bind(&BindAddr::Unix(path.clone()), &config.bind)
            .await
            .expect("bind the test socket");
        Self::serve(path, listener, config, handler)
    }

    /// Serves an already bound listener.
    pub fn serve<H: Handler>(
        path: PathBuf,
        listener: Listener,
        config: ServerConfig,
        handler: H,
    ) -> TestServer {
        let server = Server::new(config);
        let metrics = server.metrics();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            server
                .serve(listener, handler, async {
                    let _ = rx.await;
                })
                .await
        });
        TestServer {
            path,
            metrics,
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// A new client connection.
    pub async fn client(&self) -> SendRequest {
        connect(&self.path).await
    }

    /// Starts the graceful shutdown without waiting for it.
    pub fn trigger_shutdown(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }

    /// Shuts down and waits (bounded) for `serve` to return.
    pub async fn shutdown(mut self) -> io::Result<()> {
        self.trigger_shutdown();
        self.join().await
    }

    /// Waits (bounded) for `serve` to return.
    pub async fn join(&mut self) -> io::Result<()> {
        let task = self.task.take().expect("joined twice");
        within(Duration::from_secs(15), "server shutdown", task)
            .await
            .expect("server task panicked")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.abort();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A client connection over a Unix socket, its task spawned.
pub async fn connect(path: &Path) -> SendRequest {
    connect_with(path, Config::default()).await
}

/// Like [`connect`] with a client engine configuration.
pub async fn connect_with(path: &Path, config: Config) -> SendRequest {
    let s = UnixStream::connect(path).await.expect("connect");
    let (send, conn) = net::client(s, config);
    tokio::spawn(conn);
    send
}

/// A request head for `method` and `target` (`/path?query`).
pub fn head(method: &str, target: &str) -> RequestHead {
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(Bytes::copy_from_slice(q.as_bytes()))),
        None => (target, None),
    };
    RequestHead {
        method: Bytes::copy_from_slice(method.as_bytes()),
        scheme: "http".into(),
        authority: "test.local".into(),
        path: Bytes::copy_from_slice(path.as_bytes()),
        query,
        headers: HeaderBlock::try_from_pairs([("Host", "test.local")]).unwrap(),
        ..Default::default()
    }
}

/// Sends a request without a body and reads the whole response.
pub async fn get(sender: &SendRequest, target: &str) -> Result<(u16, Bytes), net::Error> {
    request(sender, head("GET", target), None).await
}

/// Sends `head` (with `body` if any, in one DATA frame) and reads the whole
/// response.
pub async fn request(
    sender: &SendRequest,
    head: RequestHead,
    body: Option<Bytes>,
) -> Result<(u16, Bytes), net::Error> {
    let (mut send, resp) = sender.send_request(head, body.is_none()).await?;
    if let Some(b) = body {
        send.send_data(b, true).await?;
    }
    let (head, mut body) = resp.await?;
    let bytes = body.collect(256 << 20).await?;
    Ok((head.status, bytes))
}

/// A frame-level client: writes whatever it is told, decodes what the
/// server sends.
pub struct Raw {
    pub io: UnixStream,
    codec: Codec,
    rbuf: BytesMut,
    eof: bool,
}

impl Raw {
    /// Connects and sends nothing.
    pub async fn connect_silent(path: &Path) -> Raw {
        Raw {
            io: UnixStream::connect(path).await.expect("raw connect"),
            codec: Codec::new(Limits {
                max_head_size: 8 << 20,
                ..Limits::default()
            }),
            rbuf: BytesMut::new(),
            eof: false,
        }
    }

    /// Connects and sends the preface and default SETTINGS.
    pub async fn connect(path: &Path) -> Raw {
        let mut raw = Raw::connect_silent(path).await;
        raw.send_bytes(&preface::PREFACE).await;
        raw.send(Settings::default()).await;
        raw
    }

    pub async fn send_bytes(&mut self, b: &[u8]) {
        self.io.write_all(b).await.expect("raw write");
    }

    pub async fn send(&mut self, f: impl Into<Frame>) {
        let mut b = BytesMut::new();
        f.into().encode(&mut b).expect("encode");
        self.send_bytes(&b).await;
    }

    /// Writes, ignoring errors (the server may have closed already).
    pub async fn try_send(&mut self, f: impl Into<Frame>) -> io::Result<()> {
        let mut b = BytesMut::new();
        f.into().encode(&mut b).expect("encode");
        self.io.write_all(&b).await
    }

    /// The next frame from the server; `None` at end of stream (or on a
    /// connection reset, which is how a closed socket may look).
    pub async fn recv(&mut self) -> Option<Frame> {
        within(Duration::from_secs(10), "raw recv", async {
            loop {
                if let Some(f) = self
                    .codec
                    .decode_frame(&mut self.rbuf)
                    .expect("server sent an undecodable frame")
                {
                    return Some(f);
                }
                if self.eof {
                    return None;
                }
                match self.io.read_buf(&mut self.rbuf).await {
                    Ok(0) | Err(_) => self.eof = true,
                    Ok(_) => {}
                }
            }
        })
        .await
    }

    /// Reads until the server's GOAWAY; returns it and whether the server
    /// then closed the connection. Panics on EOF without a GOAWAY.
    pub async fn expect_goaway(&mut self) -> (GoAway, bool) {
        loop {
            match self.recv().await {
                Some(Frame::GoAway(g)) => {
                    let closed = self.recv().await.is_none();
                    return (g, closed);
                }
                Some(_) => {}
                None => panic!("connection closed without a GOAWAY"),
            }
        }
    }

    /// Reads frames until `pred` matches one; panics at EOF.
    pub async fn until(&mut self, what: &str, mut pred: impl FnMut(&Frame) -> bool) -> Frame {
        loop {
            match self.recv().await {
                Some(f) if pred(&f) => return f,
                Some(_) => {}
                None => panic!("connection closed while waiting for {what}"),
            }
        }
    }
}

/// Stream id `n` (odd).
pub fn sid(n: u32) -> StreamId {
    StreamId::new(n)
}

/// A `uwire serve` child process; killed on drop.
pub struct Child_ {
    pub child: Child,
}

impl Drop for Child_ {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `uwire` binary built for these tests.
pub fn uwire_bin() -> &'static str {
    env!("CARGO_BIN_EXE_uwire")
}

/// Spawns `uwire serve` with `args` (stderr inherited so failures show).
pub fn spawn_serve(args: &[&str]) -> Child_ {
    let child = Command::new(uwire_bin())
        .arg("serve")
        .args(args)
        .env("UWIRE_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn uwire serve");
    Child_ { child }
}

/// Waits (bounded) until something accepts connections on `path`.
pub async fn wait_for_socket(path: &Path) {
    within(Duration::from_secs(20), "socket to appear", async {
        loop {
            if UnixStream::connect(path).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

/// Waits (bounded) for a child to exit; returns its status.
pub async fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    within(limit, "child exit", async {
        loop {
            if let Some(st) = child.try_wait().expect("try_wait") {
                return st;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

/// Our uid and gid.
pub fn ids() -> (u32, u32) {
    // SAFETY: getuid/getgid cannot fail and touch no memory.
    unsafe { (libc::getuid(), libc::getgid()) }
}

/// The routes most tests use:
///
/// * `/hello` -> `hello`
/// * `/id/<x>` -> `<x>` (lets concurrent requests check they got their own answer)
/// * `/sleep/<ms>` -> sleeps, then `slept <ms>`
/// * `/zeros/<n>` -> `n` zero bytes, streamed in 64 KiB chunks
/// * `/echo` -> streams the request body back
/// * `/count` -> reads the whole body, answers its length
/// * `/panic` -> panics before the head
/// * `/panic-body` -> sends the head and one chunk, then panics in the body stream
/// * `/error` -> returns an error
/// * `/stall-body` -> sends the head and one chunk, then never ends
pub fn app() -> impl Handler {
    use futures_util::StreamExt;
    use uwire::server::{handler_fn, BoxError, Request, Response, ResponseBody};
    handler_fn(|mut req: Request| async move {
        let path = String::from_utf8_lossy(&req.head().path).into_owned();
        let ok = |b: ResponseBody| Ok::<_, BoxError>(Response::new(b));
        if path == "/hello" {
            return ok("hello".into());
        }
        if let Some(x) = path.strip_prefix("/id/") {
            return ok(x.to_string().into());
        }
        if let Some(n) = path.strip_prefix("/zeros/") {
            let n: usize = n.parse()?;
            let chunks = (0..n.div_ceil(64 << 10)).map(move |i| {
                let len = (64usize << 10).min(n - i * (64 << 10));
                Ok::<_, BoxError>(Bytes::from(vec![0u8; len]))
            });
            return ok(ResponseBody::from_stream(futures_util::stream::iter(
                chunks,
            )));
        }
        if let Some(ms) = path.strip_prefix("/sleep/") {
            let ms: u64 = ms.parse()?;
            tokio::time::sleep(Duration::from_millis(ms)).await;
            return ok(format!("slept {ms}").into());
        }
        match path.as_str() {
            "/echo" => {
                let (_, _, body) = req.into_parts();
                let s = futures_util::stream::unfold(body, |mut b| async move {
                    b.data()
                        .await
                        .map(|r| (r.map_err(|e| Box::new(e) as BoxError), b))
                });
                ok(ResponseBody::from_stream(s))
            }
            "/count" => {
                let n = req.body_mut().to_bytes().await?.len();
                ok(n.to_string().into())
            }
            "/panic" => panic!("test handler panics on purpose"),
            "/panic-body" => {
                let s = futures_util::stream::iter([0u8, 1]).then(|i| async move {
                    if i == 1 {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        panic!("test body stream panics on purpose");
                    }
                    Ok::<_, BoxError>(Bytes::from_static(b"partial"))
                });
                ok(ResponseBody::from_stream(s))
            }
            "/error" => Err("test handler fails on purpose".into()),
            "/stall-body" => {
                let s = futures_util::stream::once(async {
                    Ok::<_, BoxError>(Bytes::from_static(b"partial"))
                })
                .chain(futures_util::stream::pending());
                ok(ResponseBody::from_stream(s))
            }
            _ => {
                let mut r = Response::new("not found".into());
                *r.status_mut() = http::StatusCode::NOT_FOUND;
                Ok(r)
            }
        }
    })
}

/// Waits (up to 5 s) until the server's counters satisfy `pred`, and
/// returns them. Counters are updated by server tasks a moment after the
/// client sees the matching frame; the caller asserts exact values on the
/// result, so a wrong count still fails.
pub async fn settle(
    metrics: &Metrics,
    pred: impl Fn(&uwire::server::Snapshot) -> bool,
) -> uwire::server::Snapshot {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let s = metrics.snapshot();
        if pred(&s) || tokio::time::Instant::now() >= deadline {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// POSTs `body` to `/echo`, uploading in 64 KiB chunks while reading the
/// echo (a body larger than the flow-control windows cannot be sent first
/// and read afterwards). Returns the status and the echoed bytes.
pub async fn echo(sender: &SendRequest, body: Bytes) -> Result<(u16, Bytes), net::Error> {
    stream_exchange(sender, head("POST", "/echo"), body).await
}

/// Sends `head` with `body`, uploading in 64 KiB chunks while reading the
/// response. Returns the status and the response bytes.
pub async fn stream_exchange(
    sender: &SendRequest,
    head: RequestHead,
    body: Bytes,
) -> Result<(u16, Bytes), net::Error> {
    let (mut send, resp) = sender.send_request(head, false).await?;
    let upload = async move {
        let mut off = 0;
        while off < body.len() {
            let end = (off + (64 << 10)).min(body.len());
            send.send_data(body.slice(off..end), end == body.len())
                .await?;
            off = end;
        }
        if body.is_empty() {
            send.finish().await?;
        }
        Ok::<_, net::Error>(())
    };
    let download = async {
        let (head, mut b) = resp.await?;
        Ok::<_, net::Error>((head.status, b.collect(1 << 30).await?))
    };
    let (u, d) = tokio::join!(upload, download);
    u?;
    d
}
