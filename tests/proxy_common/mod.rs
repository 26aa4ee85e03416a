//! Helpers shared by the proxy end-to-end tests: a test app (routes below)
//! served by `uwire::server::Server` on a per-test Unix socket, the HTTP
//! front (`uwire::proxy::serve`) on 127.0.0.1:0, real HTTP clients (hyper's
//! legacy client, an HTTP/2 prior-knowledge connection, a raw HTTP/1.1
//! socket), and `uwire` child processes.
#![allow(dead_code)] // each test binary uses a different subset

#[path = "../ports/mod.rs"]
mod ports;
#[allow(unused_imports)] // not every test binary starts a TCP server
pub use ports::free_port;

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Empty, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use uwire::client::{Client, ClientConfig, Protocol, Transport, Upstream};
use uwire::proxy::ProxyConfig;
use uwire::server::{
    handler_fn, BindAddr, BoxError, Listener, Metrics, Request as AppRequest, Response,
    ResponseBody, Server, ServerConfig,
};

/// Upper bound for one test; every test wraps its body in [`bounded`].
pub const TEST_TIMEOUT: Duration = Duration::from_secs(40);

/// Runs `fut` with [`TEST_TIMEOUT`]; a hang fails the test instead of
/// stalling the suite.
pub async fn bounded<F: Future>(fut: F) -> F::Output {
    within(TEST_TIMEOUT, "test", fut).await
}

/// Like [`bounded`] with a custom limit and a label in the panic message.
pub async fn within<F: Future>(limit: Duration, what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(limit, fut).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: did not finish within {limit:?}"),
    }
}

/// Polls `cond` every 10 ms until it holds, failing after `limit`.
pub async fn wait_until(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    within(limit, what, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
}

/// A unique socket path under the temp dir; any file left there by an
/// earlier run is removed.
pub fn sock_path(name: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let p = std::env::temp_dir().join(format!(
        "uwire-ptest-{}-{n}-{name}.sock",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&p);
    p
}

/// A uwire upstream on a Unix socket path.
pub fn unix_upstream(path: &Path) -> Upstream {
    Upstream {
        protocol: Protocol::Uwire,
        transport: Transport::Unix(path.to_path_buf()),
    }
}

// ---------------------------------------------------------------------------
// Deterministic payloads
// ---------------------------------------------------------------------------

/// Period of [`Pattern`]: a prime, so it never lines up with chunk sizes.
const PERIOD: usize = 1_000_003;
/// Longest slice [`Pattern::slice`] hands out.
pub const MAX_SLICE: usize = 256 * 1024;

/// A byte pattern where every offset of a long stream has a known value,
/// so a receiver can check each chunk in place (no buffering).
#[derive(Clone)]
pub struct Pattern {
    buf: Bytes,
}

impl Default for Pattern {
    fn default() -> Self {
        Self::new()
    }
}

impl Pattern {
    pub fn new() -> Pattern {
        let buf: Vec<u8> = (0..PERIOD + MAX_SLICE)
            .map(|i| {
                let i = i % PERIOD;
                (i as u32).wrapping_mul(2_654_435_761).rotate_left(7) as u8
            })
            .collect();
        Pattern { buf: buf.into() }
    }

    /// The `len` bytes at stream offset `offset` (zero-copy).
    pub fn slice(&self, offset: u64, len: usize) -> Bytes {
        assert!(len <= MAX_SLICE);
        let start = (offset % PERIOD as u64) as usize;
        self.buf.slice(start..start + len)
    }

    /// Whether `data` is what the stream holds at `offset`.
    pub fn check(&self, offset: u64, data: &[u8]) -> bool {
        let mut off = offset;
        for piece in data.chunks(MAX_SLICE) {
            if self.slice(off, piece.len()) != piece {
                return false;
            }
            off += piece.len() as u64;
        }
        true
    }

    /// A stream of `total` bytes in `chunk`-sized pieces.
    pub fn stream(
        &self,
        total: u64,
        chunk: usize,
    ) -> impl futures_util::Stream<Item = Bytes> + Send + 'static {
        let p = self.clone();
        futures_util::stream::unfold(0u64, move |off| {
            let p = p.clone();
            async move {
                if off >= total {
                    return None;
                }
                let n = chunk.min((total - off) as usize);
                Some((p.slice(off, n), off + n as u64))
            }
        })
    }
}

// ---------------------------------------------------------------------------
// The test app
// ---------------------------------------------------------------------------

/// What the test app shares with the test.
#[derive(Default)]
pub struct AppState {
    /// Name this app reports in `x-upstream` (load-balancing tests).
    pub name: String,
    /// How long `/work` takes.
    pub work_delay: Mutex<Duration>,
    /// Requests inside `/slow` right now, and the most at once.
    pub slow_inflight: AtomicUsize,
    pub slow_started: AtomicUsize,
    pub slow_peak: AtomicUsize,
    /// Requests handled, all routes.
    pub hits: AtomicU64,
    /// Things the app noticed (e.g. `drip cancelled after N chunks`).
    pub events: Mutex<Vec<String>>,
    /// Wakes tests waiting on `events`.
    pub notify: tokio::sync::Notify,
}

impl AppState {
    pub fn event(&self, e: String) {
        self.events.lock().unwrap().push(e);
        self.notify.notify_waiters();
    }

    pub fn events(&self) -> Vec<String> {
        self.events.lock().unwrap().clone()
    }
}

fn query(req: &AppRequest) -> HashMap<String, String> {
    let q = req.head().query.clone().unwrap_or_default();
    String::from_utf8_lossy(&q)
        .split('&')
        .filter(|s| !s.is_empty())
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (kv.to_string(), String::new()),
        })
        .collect()
}

fn text(status: u16, body: impl Into<ResponseBody>) -> Response {
    let mut r = http::Response::new(body.into());
    *r.status_mut() = StatusCode::from_u16(status).unwrap();
    r.headers_mut()
        .insert("content-type", "text/plain".parse().unwrap());
    r
}

/// The test app. Routes:
///
/// * `/hello` -> `hello`
/// * `/id` -> the app's name (also in `x-upstream`)
/// * `/work` -> like `/id` after the app's `work_delay`
/// * `/echo` -> streams the request body back as it arrives
/// * `/environ...` -> the environ as JSON
/// * `/headers` -> the request's header fields as `name: value` lines, then
///   `body-bytes: N` (the body is read first)
/// * `/status?code=N` -> status N with `x-custom` and two `set-cookie`
/// * `/hop` -> a response carrying hop-by-hop fields
/// * `/slow?ms=N&id=X` -> `slow X` after N ms (counts concurrency)
/// * `/buffer` -> reads the whole body, then `len=N`
/// * `/count` -> counts the body, checking it against [`Pattern`]
/// * `/drip?ms=N` -> a never-ending body, one chunk every N ms; notes in
///   `events` when the chunk sender fails (the response was dropped)
/// * `/download?bytes=N` -> N bytes of [`Pattern`]
pub fn test_app(state: Arc<AppState>) -> impl uwire::server::Handler {
    let pattern = Pattern::new();
    handler_fn(move |req: AppRequest| {
        let state = state.clone();
        let pattern = pattern.clone();
        async move {
            state.hits.fetch_add(1, Ordering::Relaxed);
            route(state, pattern, req).await
        }
    })
}

async fn route(
    state: Arc<AppState>,
    pattern: Pattern,
    mut req: AppRequest,
) -> Result<Response, BoxError> {
    let path = String::from_utf8_lossy(&req.head().path).into_owned();
    let q = query(&req);
    let ms =
        |k: &str, d: u64| Duration::from_millis(q.get(k).and_then(|v| v.parse().ok()).unwrap_or(d));
    let with_name = |mut r: Response| {
        r.headers_mut()
            .insert("x-upstream", state.name.parse().unwrap());
        r
    };
    Ok(match path.as_str() {
        "/hello" => text(200, "hello"),
        "/id" => with_name(text(200, state.name.clone())),
        "/work" => {
            let d = *state.work_delay.lock().unwrap();
            tokio::time::sleep(d).await;
            with_name(text(200, state.name.clone()))
        }
        "/echo" => {
            let (_, _, body) = req.into_parts();
            let mut r = text(200, ResponseBody::new(body));
            r.headers_mut()
                .insert("content-type", "application/octet-stream".parse().unwrap());
            r
        }
        p if p.starts_with("/environ") => {
            let mut r = text(200, req.environ().to_json_string());
            r.headers_mut()
                .insert("content-type", "application/json".parse().unwrap());
            r
        }
        "/headers" => {
            let mut out = String::new();
            for (n, v) in req.head().headers.iter() {
                out.push_str(&format!(
                    "{}: {}\n",
                    String::from_utf8_lossy(n).to_ascii_lowercase(),
                    String::from_utf8_lossy(v)
                ));
            }
            let body = req.body_mut().to_bytes().await?;
            out.push_str(&format!("body-bytes: {}\n", body.len()));
            text(200, out)
        }
        "/status" => {
            let code: u16 = q.get("code").and_then(|c| c.parse().ok()).unwrap_or(200);
            http::Response::builder()
                .status(code)
                .header("x-custom", "yes")
                .header("set-cookie", "a=1")
                .header("set-cookie", "b=2")
                .body(ResponseBody::from(format!("status {code}")))?
        }
        "/hop" => http::Response::builder()
            .status(200)
            .header("connection", "x-resp-drop, keep-alive")
            .header("x-resp-drop", "1")
            .header("keep-alive", "timeout=5")
            .header("upgrade", "foo/1")
            .header("transfer-encoding", "chunked")
            .header("trailer", "x-t")
            .header("proxy-connection", "keep-alive")
            .header("x-resp-keep", "1")
            .header("content-length", "3")
            .body(ResponseBody::from("hop"))?,
        "/slow" => {
            state.slow_started.fetch_add(1, Ordering::AcqRel);
            let now = state.slow_inflight.fetch_add(1, Ordering::AcqRel) + 1;
            state.slow_peak.fetch_max(now, Ordering::AcqRel);
            tokio::time::sleep(ms("ms", 100)).await;
            state.slow_inflight.fetch_sub(1, Ordering::AcqRel);
            let id = q.get("id").cloned().unwrap_or_default();
            text(200, format!("slow {id}"))
        }
        "/buffer" => {
            let body = req.body_mut().to_bytes().await?;
            text(200, format!("len={}", body.len()))
        }
        "/count" => {
            let mut n = 0u64;
            let mut ok = true;
            while let Some(chunk) = req.body_mut().data().await {
                let chunk = chunk?;
                ok &= pattern.check(n, &chunk);
                n += chunk.len() as u64;
            }
            text(200, format!("count={n} pattern_ok={ok}"))
        }
        "/drip" => {
            let every = ms("ms", 20);
            let (tx, rx) = mpsc::channel::<Result<Bytes, BoxError>>(1);
            let st = state.clone();
            tokio::spawn(async move {
                let mut sent = 0u64;
                loop {
                    let chunk = Bytes::from(format!("drip {sent}\n"));
                    if tx.send(Ok(chunk)).await.is_err() {
                        st.event(format!("drip cancelled after {sent} chunks"));
                        return;
                    }
                    sent += 1;
                    tokio::time::sleep(every).await;
                }
            });
            let s = futures_util::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|c| (c, rx))
            });
            text(200, ResponseBody::from_stream(s))
        }
        "/download" => {
            let total: u64 = q.get("bytes").and_then(|v| v.parse().ok()).unwrap_or(0);
            use futures_util::StreamExt;
            let s = pattern.stream(total, 64 * 1024).map(Ok::<_, BoxError>);
            let mut r = text(200, ResponseBody::from_stream(s));
            r.headers_mut()
                .insert("content-length", total.to_string().parse().unwrap());
            r
        }
        _ => text(404, "not found"),
    })
}

/// The test app served by `uwire::server::Server` on a Unix socket, in the
/// test's runtime.
pub struct App {
    pub path: PathBuf,
    pub metrics: Arc<Metrics>,
    pub state: Arc<AppState>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<io::Result<()>>>,
}

impl App {
    /// The test app named `name` on a fresh socket, default config.
    pub async fn start(name: &str) -> App {
        App::start_with(name, ServerConfig::default()).await
    }

    /// The test app with `config` on a fresh socket.
    pub async fn start_with(name: &str, config: ServerConfig) -> App {
        App::start_at(&sock_path(name), name, config).await
    }

    /// The test app with `config` on `path`.
    pub async fn start_at(path: &Path, name: &str, config: ServerConfig) -> App {
        let state = Arc::new(AppState {
            name: name.to_string(),
            ..AppState::default()
        });
        let listener = Listener::bind(&BindAddr::Unix(path.to_path_buf()), &config.bind)
            .await
            .expect("bind the app socket");
        let server = Server::new(config);
        let metrics = server.metrics();
        let (tx, rx) = oneshot::channel::<()>();
        let handler = test_app(state.clone());
        let task = tokio::spawn(async move {
            server
                .serve(listener, handler, async {
                    let _ = rx.await;
                })
                .await
        });
        App {
            path: path.to_path_buf(),
            metrics,
            state,
            stop: Some(tx),
            task: Some(task),
        }
    }

    pub fn upstream(&self) -> Upstream {
        unix_upstream(&self.path)
    }

    /// Graceful shutdown; waits (bounded) for `serve` to return.
    pub async fn shutdown(mut self) -> io::Result<()> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let task = self.task.take().expect("shut down twice");
        within(Duration::from_secs(15), "app shutdown", task)
            .await
            .expect("app task panicked")
    }
}

impl Drop for App {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}

/// The HTTP front in the test's runtime, with a clone of its client.
pub struct Proxy {
    pub addr: SocketAddr,
    pub client: Client,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<io::Result<()>>>,
}

impl Proxy {
    /// A front on 127.0.0.1:0 for `upstreams`.
    pub async fn start(upstreams: Vec<Upstream>, ccfg: ClientConfig, pcfg: ProxyConfig) -> Proxy {
        let client = Client::new(upstreams, ccfg).expect("client config");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let c = client.clone();
        let task = tokio::spawn(async move {
            uwire::proxy::serve(listener, c, pcfg, async {
                let _ = rx.await;
            })
            .await
        });
        Proxy {
            addr,
            client,
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// A default front for one app.
    pub async fn to(app: &App) -> Proxy {
        Proxy::start(
            vec![app.upstream()],
            ClientConfig::default(),
            ProxyConfig::default(),
        )
        .await
    }

    pub fn url(&self, path_and_query: &str) -> String {
        format!("http://{}{}", self.addr, path_and_query)
    }

    /// Starts the graceful shutdown without waiting.
    pub fn trigger_shutdown(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }

    /// Whether `serve` has returned.
    pub fn is_finished(&self) -> bool {
        self.task.as_ref().is_none_or(|t| t.is_finished())
    }

    /// Waits (bounded) for `serve` to return.
    pub async fn join(&mut self) -> io::Result<()> {
        let task = self.task.take().expect("joined twice");
        within(Duration::from_secs(15), "proxy shutdown", task)
            .await
            .expect("proxy task panicked")
    }

    pub async fn shutdown(mut self) -> io::Result<()> {
        self.trigger_shutdown();
        self.join().await
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}

// ---------------------------------------------------------------------------
// HTTP clients
// ---------------------------------------------------------------------------

/// Request bodies the test clients send.
pub type ReqBody = BoxBody<Bytes, BoxError>;
/// hyper-util's legacy client over plain TCP.
pub type HttpClient = hyper_util::client::legacy::Client<HttpConnector, ReqBody>;

pub fn http_client() -> HttpClient {
    hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http()
}

pub fn empty() -> ReqBody {
    Empty::<Bytes>::new().map_err(|e| match e {}).boxed()
}

pub fn full(b: impl Into<Bytes>) -> ReqBody {
    Full::new(b.into()).map_err(|e| match e {}).boxed()
}

/// A body without a known length (sent chunked by HTTP/1.1) fed by `rx`.
pub fn channel_body(rx: mpsc::Receiver<Bytes>) -> ReqBody {
    let s = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, BoxError>(Frame::data(b)), rx))
    });
    StreamBody::new(s).boxed()
}

/// A body without a known length made of `stream`'s chunks.
pub fn stream_body<S>(s: S) -> ReqBody
where
    S: futures_util::Stream<Item = Bytes> + Send + Sync + 'static,
{
    use futures_util::StreamExt;
    BodyExt::boxed(StreamBody::new(
        s.map(|b| Ok::<_, BoxError>(Frame::data(b))),
    ))
}

/// A whole response.
#[derive(Debug)]
pub struct Got {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Got {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as the app's environ JSON.
    pub fn environ(&self) -> HashMap<String, String> {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("environ JSON: {e}: {}", self.text()))
    }
}

/// Sends `req` and reads the whole response.
pub async fn fetch(c: &HttpClient, req: Request<ReqBody>) -> Result<Got, BoxError> {
    let resp = c.request(req).await?;
    collect(resp).await
}

pub async fn collect(resp: http::Response<Incoming>) -> Result<Got, BoxError> {
    let (parts, body) = resp.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok(Got {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body,
    })
}

pub async fn get(c: &HttpClient, url: &str) -> Got {
    fetch(c, Request::get(url).body(empty()).unwrap())
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
}

pub async fn post(c: &HttpClient, url: &str, body: impl Into<Bytes>) -> Got {
    fetch(c, Request::post(url).body(full(body)).unwrap())
        .await
        .unwrap_or_else(|e| panic!("POST {url}: {e}"))
}

/// An HTTP/2 (prior knowledge, h2c) connection to `addr`.
pub async fn h2_connect(addr: SocketAddr) -> hyper::client::conn::http2::SendRequest<ReqBody> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .expect("h2 handshake");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    send
}

pub async fn h2_fetch(
    send: &hyper::client::conn::http2::SendRequest<ReqBody>,
    req: Request<ReqBody>,
) -> Result<Got, BoxError> {
    let mut send = send.clone();
    std::future::poll_fn(|cx| send.poll_ready(cx)).await?;
    let resp = send.send_request(req).await?;
    collect(resp).await
}

// ---------------------------------------------------------------------------
// Raw HTTP/1.1
// ---------------------------------------------------------------------------

/// A response read off a raw socket.
#[derive(Debug)]
pub struct Raw {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Whether the body ended as framed (false: the connection closed
    /// before the framing said the body was complete).
    pub complete: bool,
}

impl Raw {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn has(&self, name: &str) -> bool {
        self.header(name).is_some()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A raw HTTP/1.1 connection with a read buffer.
pub struct RawConn {
    pub io: TcpStream,
    buf: Vec<u8>,
}

impl RawConn {
    pub async fn connect(addr: SocketAddr) -> RawConn {
        RawConn {
            io: TcpStream::connect(addr).await.unwrap(),
            buf: Vec::new(),
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.io.write_all(bytes).await
    }

    async fn fill(&mut self) -> io::Result<usize> {
        let mut tmp = [0u8; 16 * 1024];
        let n = self.io.read(&mut tmp).await?;
        self.buf.extend_from_slice(&tmp[..n]);
        Ok(n)
    }

    /// Reads one response head (status and headers); `None` on EOF.
    pub async fn read_head(&mut self) -> io::Result<Option<(u16, Vec<(String, String)>)>> {
        loop {
            let mut hs = [httparse::EMPTY_HEADER; 128];
            let mut r = httparse::Response::new(&mut hs);
            match r.parse(&self.buf) {
                Ok(httparse::Status::Complete(n)) => {
                    let status = r.code.unwrap_or(0);
                    let headers = r
                        .headers
                        .iter()
                        .map(|h| {
                            (
                                h.name.to_ascii_lowercase(),
                                String::from_utf8_lossy(h.value).into_owned(),
                            )
                        })
                        .collect();
                    self.buf.drain(..n);
                    return Ok(Some((status, headers)));
                }
                Ok(httparse::Status::Partial) => {}
                Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
            }
            if self.fill().await? == 0 {
                return Ok(None);
            }
        }
    }

    /// Reads a whole response (the final one; 1xx heads are skipped unless
    /// `keep_interim`). Errors on a malformed response; EOF mid-body gives
    /// `complete: false`.
    pub async fn read_response(&mut self, head_request: bool) -> io::Result<Raw> {
        let (status, headers) = loop {
            match self.read_head().await? {
                None => return Err(io::ErrorKind::UnexpectedEof.into()),
                Some((s, _)) if (100..200).contains(&s) => continue,
                Some(h) => break h,
            }
        };
        let mut raw = Raw {
            status,
            headers,
            body: Vec::new(),
            complete: true,
        };
        if head_request || status == 204 || status == 304 {
            return Ok(raw);
        }
        let chunked = raw
            .header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
        if chunked {
            raw.complete = self.read_chunked(&mut raw.body).await?;
        } else if let Some(n) = raw.header("content-length") {
            let n: usize = n.trim().parse().unwrap();
            while self.buf.len() < n {
                if self.fill().await? == 0 {
                    raw.complete = false;
                    break;
                }
            }
            let take = n.min(self.buf.len());
            raw.body = self.buf.drain(..take).collect();
        } else {
            while self.fill().await? > 0 {}
            raw.body = std::mem::take(&mut self.buf);
        }
        Ok(raw)
    }

    /// Decodes a chunked body; false if the connection ended first.
    async fn read_chunked(&mut self, out: &mut Vec<u8>) -> io::Result<bool> {
        loop {
            let line_end = loop {
                if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                    break i;
                }
                if self.fill().await? == 0 {
                    return Ok(false);
                }
            };
            let line = String::from_utf8_lossy(&self.buf[..line_end]).into_owned();
            let size = usize::from_str_radix(line.split(';').next().unwrap().trim(), 16)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            self.buf.drain(..line_end + 2);
            if size == 0 {
                // Trailers (none expected), then the final CRLF.
                loop {
                    if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                        let empty = i == 0;
                        self.buf.drain(..i + 2);
                        if empty {
                            return Ok(true);
                        }
                    } else if self.fill().await? == 0 {
                        return Ok(false);
                    }
                }
            }
            while self.buf.len() < size + 2 {
                if self.fill().await? == 0 {
                    out.extend_from_slice(&self.buf);
                    self.buf.clear();
                    return Ok(false);
                }
            }
            out.extend_from_slice(&self.buf[..size]);
            self.buf.drain(..size + 2);
        }
    }

    /// Reads until the buffer holds `needle` (consuming through it).
    pub async fn read_until(&mut self, needle: &[u8]) -> io::Result<bool> {
        loop {
            if let Some(i) = self.buf.windows(needle.len()).position(|w| w == needle) {
                self.buf.drain(..i + needle.len());
                return Ok(true);
            }
            if self.fill().await? == 0 {
                return Ok(false);
            }
        }
    }

    /// Bytes received but not consumed yet.
    pub fn buffered(&self) -> &[u8] {
        &self.buf
    }
}

/// Connects, sends `request`, reads one response.
pub async fn raw_exchange(addr: SocketAddr, request: &[u8]) -> Raw {
    let mut c = RawConn::connect(addr).await;
    c.send(request).await.unwrap();
    c.read_response(false).await.unwrap()
}

// ---------------------------------------------------------------------------
// Child processes
// ---------------------------------------------------------------------------

pub fn uwire_bin() -> &'static str {
    env!("CARGO_BIN_EXE_uwire")
}

/// A `uwire` child process; killed when dropped. Its stdout and stderr
/// lines are collected in the background.
pub struct ChildProc {
    pub child: tokio::process::Child,
    pub pid: u32,
    pub stdout: Arc<Mutex<Vec<String>>>,
    pub stderr: Arc<Mutex<Vec<String>>>,
    lines: mpsc::UnboundedReceiver<String>,
}

impl ChildProc {
    /// Starts `uwire args...` with `UWIRE_LOG=warn`.
    pub fn spawn(args: &[&str]) -> ChildProc {
        ChildProc::spawn_with_env(args, &[])
    }

    /// Starts `uwire args...` with `UWIRE_LOG=warn` and `env` set.
    pub fn spawn_with_env(args: &[&str], env: &[(&str, &str)]) -> ChildProc {
        let mut child = tokio::process::Command::new(uwire_bin())
            .args(args)
            .env("UWIRE_LOG", "warn")
            .envs(env.iter().copied())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn uwire");
        let pid = child.id().expect("child pid");
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (tx, lines) = mpsc::unbounded_channel();
        let out = child.stdout.take().unwrap();
        let err = child.stderr.take().unwrap();
        for (pipe, store) in [
            (
                Box::pin(out) as Pin<Box<dyn tokio::io::AsyncRead + Send>>,
                stdout.clone(),
            ),
            (Box::pin(err) as _, stderr.clone()),
        ] {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut r = tokio::io::BufReader::new(pipe).lines();
                while let Ok(Some(l)) = r.next_line().await {
                    store.lock().unwrap().push(l.clone());
                    let _ = tx.send(l);
                }
            });
        }
        ChildProc {
            child,
            pid,
            stdout,
            stderr,
            lines,
        }
    }

    /// Waits (bounded) for an output line containing `needle`.
    pub async fn wait_line(&mut self, needle: &str, limit: Duration) -> String {
        let what = format!("child output line containing {needle:?}");
        let found = tokio::time::timeout(limit, async {
            while let Some(l) = self.lines.recv().await {
                if l.contains(needle) {
                    return Some(l);
                }
            }
            None
        })
        .await;
        match found {
            Ok(Some(l)) => l,
            _ => panic!(
                "{what}: not seen within {limit:?}\nstdout: {:#?}\nstderr: {:#?}",
                self.stdout.lock().unwrap(),
                self.stderr.lock().unwrap()
            ),
        }
    }

    /// Sends `signal`.
    pub fn signal(&self, signal: i32) {
        let rc = unsafe { libc::kill(self.pid as i32, signal) };
        assert_eq!(rc, 0, "kill({}, {signal})", self.pid);
    }

    /// Waits (bounded) for the exit status.
    pub async fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        within(limit, "child exit", self.child.wait())
            .await
            .unwrap()
    }

    /// `VmHWM` (peak resident set) and `VmRSS` in KiB, from /proc.
    pub fn memory_kib(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).unwrap();
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{name} not in /proc/{}/status", self.pid))
        };
        (field("VmHWM:"), field("VmRSS:"))
    }
}

/// Polls until a Unix socket accepts connections.
pub async fn wait_connectable(path: &Path, limit: Duration) {
    within(limit, "socket becomes connectable", async {
        loop {
            if tokio::net::UnixStream::connect(path).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

/// Polls until a TCP address accepts connections.
pub async fn wait_tcp(addr: SocketAddr, limit: Duration) {
    within(limit, "port becomes connectable", async {
        loop {
            if TcpStream::connect(addr).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}
