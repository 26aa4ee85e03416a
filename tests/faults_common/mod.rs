//! Helpers of the fault-injection tests (`tests/faults_*.rs`): `uwire
//! serve` and `uwire proxy` as child processes, their descriptors and
//! resident memory read from /proc, HTTP/1.1 exchanges on fresh
//! connections classified by how they ended, and the tally every scenario
//! prints as one row of issue 13's table (`FAULTS| ...`; run the tests with
//! `--nocapture` to see them).
#![allow(dead_code)] // each test binary uses a different subset

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::BodyExt;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::proxy_common::{ChildProc, ReqBody};
use uwire::server::BoxError;

/// Environment for children whose resident memory a test measures:
/// mimalloc (the binary's allocator) returns freed pages to the system
/// lazily, as its threads allocate and free again; without the delay the
/// RSS shows what the process holds, not what the allocator keeps in
/// reserve.
pub const MEASURE_ENV: &[(&str, &str)] = &[("MIMALLOC_PURGE_DELAY", "0")];

/// How long a child gets to start.
pub const START: Duration = Duration::from_secs(20);

/// `uwire serve --bind unix:SOCK extra...`, up and connectable.
pub async fn serve_child(sock: &Path, extra: &[&str]) -> ChildProc {
    serve_child_with_env(sock, extra, &[]).await
}

/// [`serve_child`] with `env` set.
pub async fn serve_child_with_env(sock: &Path, extra: &[&str], env: &[(&str, &str)]) -> ChildProc {
    let bind = format!("unix:{}", sock.display());
    let mut args = vec!["serve", "--bind", &bind];
    args.extend_from_slice(extra);
    let mut child = ChildProc::spawn_with_env(&args, env);
    child.wait_line("uwire: serving the demo app", START).await;
    child
}

/// `uwire proxy --upstream UP --listen 127.0.0.1:0 --access-log off
/// extra...`, up; its address is read from its start-up line.
pub async fn proxy_child(upstream: &str, extra: &[&str]) -> (ChildProc, SocketAddr) {
    proxy_child_with_env(upstream, extra, &[]).await
}

/// [`proxy_child`] with `env` set.
pub async fn proxy_child_with_env(
    upstream: &str,
    extra: &[&str],
    env: &[(&str, &str)],
) -> (ChildProc, SocketAddr) {
    let mut args = vec![
        "proxy",
        "--upstream",
        upstream,
        "--listen",
        "127.0.0.1:0",
        "--access-log",
        "off",
    ];
    args.extend_from_slice(extra);
    let mut child = ChildProc::spawn_with_env(&args, env);
    let line = child.wait_line("uwire proxy: http://", START).await;
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    (child, addr)
}

// ---------------------------------------------------------------------------
// /proc
// ---------------------------------------------------------------------------

/// Open descriptors of `pid`.
pub fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// What each open descriptor of `pid` points at (for failure messages).
pub fn fd_list(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .map(|p| p.display().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// `VmRSS` of `pid` in KiB (0 once the process is gone).
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Polls until `pid` has at most `limit` descriptors; on timeout, panics
/// with what is still open.
pub async fn wait_fds_at_most(pid: u32, limit: usize, within: Duration, what: &str) {
    let t = tokio::time::Instant::now();
    while fd_count(pid) > limit {
        if t.elapsed() > within {
            panic!(
                "{what}: {} descriptors after {within:?}, want at most {limit}: {:?}",
                fd_count(pid),
                fd_list(pid)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Samples the resident set of a process in the background.
pub struct RssSampler {
    samples: Arc<Mutex<Vec<u64>>>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl RssSampler {
    /// Samples `pid` every `every`.
    pub fn start(pid: u32, every: Duration) -> RssSampler {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (samples.clone(), stop.clone());
        let task = tokio::spawn(async move {
            while !st.load(Ordering::Relaxed) {
                s.lock().unwrap().push(rss_kib(pid));
                tokio::time::sleep(every).await;
            }
        });
        RssSampler {
            samples,
            stop,
            task,
        }
    }

    /// The largest sample so far.
    pub fn peak(&self) -> u64 {
        self.samples
            .lock()
            .unwrap()
            .iter()
            .copied()
            .max()
            .unwrap_or(0)
    }

    /// Stops sampling; returns the samples.
    pub async fn finish(self) -> Vec<u64> {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        self.samples.lock().unwrap().clone()
    }
}

// ---------------------------------------------------------------------------
// HTTP/1.1 on fresh connections
// ---------------------------------------------------------------------------

/// A client connection to the proxy: hyper's HTTP/1.1 client on one TCP
/// connection, without the pooling client's automatic retries (every
/// outcome is seen as it happened).
pub async fn h1(addr: SocketAddr) -> Result<http1::SendRequest<ReqBody>, BoxError> {
    let tcp = TcpStream::connect(addr).await?;
    let _ = tcp.set_nodelay(true);
    let (send, conn) = http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(send)
}

/// How an exchange ended.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    /// 200 and the expected body.
    Ok,
    /// This status (the body was read completely).
    Status(u16),
    /// 200, then the body failed (the connection was aborted).
    Aborted,
    /// 200 and a body that ended cleanly but is not the expected one
    /// (always a loss: a truncated answer passed as complete).
    Corrupt,
    /// No response: connecting failed.
    ConnectFailed,
    /// No response: the connection closed (or failed) before a head.
    NoResponse,
    /// Nothing happened before the deadline.
    Hang,
}

impl Outcome {
    /// A short name for tallies.
    pub fn name(&self) -> String {
        match self {
            Outcome::Ok => "ok".into(),
            Outcome::Status(s) => format!("status {s}"),
            Outcome::Aborted => "aborted body".into(),
            Outcome::Corrupt => "corrupt body".into(),
            Outcome::ConnectFailed => "connect failed".into(),
            Outcome::NoResponse => "no response".into(),
            Outcome::Hang => "hang".into(),
        }
    }
}

/// Sends `req` on `send` and reads the whole response within `limit`,
/// comparing a 200 body with `want`.
pub async fn exchange(
    send: &mut http1::SendRequest<ReqBody>,
    req: Request<ReqBody>,
    want: &[u8],
    limit: Duration,
) -> Outcome {
    let fut = async {
        if send.ready().await.is_err() {
            return Outcome::NoResponse;
        }
        let resp = match send.send_request(req).await {
            Ok(r) => r,
            Err(_) => return Outcome::NoResponse,
        };
        let status = resp.status().as_u16();
        match resp.into_body().collect().await.map(|b| b.to_bytes()) {
            Ok(b) if status == 200 && b == want => Outcome::Ok,
            Ok(_) if status == 200 => Outcome::Corrupt,
            Ok(_) => Outcome::Status(status),
            Err(_) if status == 200 => Outcome::Aborted,
            Err(_) => Outcome::Status(status),
        }
    };
    tokio::time::timeout(limit, fut)
        .await
        .unwrap_or(Outcome::Hang)
}

/// A request body of `data` sent in `pieces` chunks, `gap` apart (a body
/// still arriving when a fault hits). Sent chunked (no length).
pub fn trickle(data: Bytes, pieces: usize, gap: Duration) -> ReqBody {
    let step = data.len().div_ceil(pieces.max(1)).max(1);
    let chunks: Vec<Bytes> = (0..data.len())
        .step_by(step)
        .map(|i| data.slice(i..(i + step).min(data.len())))
        .collect();
    let s = futures_util::stream::unfold((chunks, 0usize), move |(c, i)| async move {
        if i >= c.len() {
            return None;
        }
        if i > 0 {
            tokio::time::sleep(gap).await;
        }
        let frame = hyper::body::Frame::data(c[i].clone());
        Some((Ok::<_, BoxError>(frame), (c, i + 1)))
    });
    http_body_util::StreamBody::new(s).boxed()
}

/// `n` bytes of a recognisable pattern, different per `seed`.
pub fn payload(seed: usize, n: usize) -> Bytes {
    let tag = format!("<{seed}>");
    tag.bytes().cycle().take(n).collect::<Vec<u8>>().into()
}

// ---------------------------------------------------------------------------
// The tally: one row of the table
// ---------------------------------------------------------------------------

/// Outcomes of one scenario: requests sent, succeeded, failed the way the
/// fault makes them fail (by kind), and lost (anything else; must be 0).
#[derive(Debug, Default)]
pub struct Tally {
    pub scenario: String,
    pub injected: String,
    pub sent: usize,
    pub ok: usize,
    pub expected: BTreeMap<String, usize>,
    pub lost: BTreeMap<String, usize>,
}

impl Tally {
    pub fn new(scenario: &str, injected: &str) -> Tally {
        Tally {
            scenario: scenario.into(),
            injected: injected.into(),
            ..Tally::default()
        }
    }

    /// Counts one request that succeeded.
    pub fn ok(&mut self) {
        self.sent += 1;
        self.ok += 1;
    }

    /// Counts one request that failed as the fault must make it fail.
    pub fn expected(&mut self, kind: &str) {
        self.sent += 1;
        *self.expected.entry(kind.into()).or_default() += 1;
    }

    /// Counts one request lost (a wrong outcome).
    pub fn lost(&mut self, kind: &str) {
        self.sent += 1;
        *self.lost.entry(kind.into()).or_default() += 1;
    }

    pub fn expected_total(&self) -> usize {
        self.expected.values().sum()
    }

    pub fn lost_total(&self) -> usize {
        self.lost.values().sum()
    }

    fn kinds(m: &BTreeMap<String, usize>) -> String {
        if m.is_empty() {
            return String::new();
        }
        let v: Vec<String> = m.iter().map(|(k, n)| format!("{k}: {n}")).collect();
        format!(" ({})", v.join(", "))
    }

    /// Prints the row and fails the test if anything was lost.
    pub fn report(&self) {
        println!(
            "FAULTS| {} | {} | sent {} | succeeded {} | failed as expected {}{} | lost {}{}",
            self.scenario,
            self.injected,
            self.sent,
            self.ok,
            self.expected_total(),
            Tally::kinds(&self.expected),
            self.lost_total(),
            Tally::kinds(&self.lost),
        );
        assert_eq!(
            self.lost_total(),
            0,
            "{}: lost requests: {:?}",
            self.scenario,
            self.lost
        );
        assert_eq!(self.sent, self.ok + self.expected_total());
    }
}

// ---------------------------------------------------------------------------
// The runtime's metrics endpoint
// ---------------------------------------------------------------------------

/// `uwire serve` with `--metrics 127.0.0.1:0`: the child and the metrics
/// address it printed.
pub async fn serve_child_with_metrics(sock: &Path, extra: &[&str]) -> (ChildProc, SocketAddr) {
    serve_child_with_metrics_env(sock, extra, &[]).await
}

/// [`serve_child_with_metrics`] with `env` set.
pub async fn serve_child_with_metrics_env(
    sock: &Path,
    extra: &[&str],
    env: &[(&str, &str)],
) -> (ChildProc, SocketAddr) {
    let mut args = vec!["--metrics", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let mut child = serve_child_with_env(sock, &args, env).await;
    let line = child.wait_line("uwire: metrics on http://", START).await;
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|s| s.split('/').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    (child, addr)
}

/// The runtime's Prometheus samples, `name{labels}` -> value.
pub async fn metrics(addr: SocketAddr) -> BTreeMap<String, f64> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = TcpStream::connect(addr).await.expect("metrics endpoint");
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.rsplit_once(' '))
        .filter_map(|(k, v)| Some((k.to_string(), v.parse().ok()?)))
        .collect()
}

/// One sample of [`metrics`] (0 when absent).
pub async fn metric(addr: SocketAddr, name: &str) -> f64 {
    metrics(addr).await.get(name).copied().unwrap_or(0.0)
}

/// Polls the metrics until `cond` holds on them (bounded).
pub async fn wait_metrics(
    addr: SocketAddr,
    within: Duration,
    what: &str,
    cond: impl Fn(&BTreeMap<String, f64>) -> bool,
) -> BTreeMap<String, f64> {
    let t = tokio::time::Instant::now();
    loop {
        let m = metrics(addr).await;
        if cond(&m) {
            return m;
        }
        if t.elapsed() > within {
            panic!("{what}: not reached within {within:?}; metrics: {m:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A uwire/1 connection to a runtime's Unix socket, its task spawned.
pub async fn uwire_conn(sock: &Path) -> uwire::net::SendRequest {
    let s = tokio::net::UnixStream::connect(sock)
        .await
        .expect("connect");
    let (send, conn) = uwire::net::client(s, uwire::conn::Config::default());
    tokio::spawn(conn);
    send
}

/// A uwire request head for `method` and `path`.
pub fn uwire_head(method: &str, path: &str) -> uwire::frame::RequestHead {
    uwire::frame::RequestHead {
        method: Bytes::copy_from_slice(method.as_bytes()),
        scheme: "http".into(),
        authority: "faults.test".into(),
        path: Bytes::copy_from_slice(path.as_bytes()),
        headers: uwire::frame::HeaderBlock::try_from_pairs([("Host", "faults.test")]).unwrap(),
        ..Default::default()
    }
}

/// A classic uwsgi request packet (vars block) for `method` and `path` with
/// a body of `content_length` bytes to follow.
pub fn uwsgi_packet(method: &str, path: &str, content_length: usize) -> Vec<u8> {
    let mut packet = bytes::BytesMut::new();
    let cl = content_length.to_string();
    uwire::uwsgi::encode_packet(
        0,
        0,
        &[
            ("REQUEST_METHOD", method),
            ("REQUEST_URI", path),
            ("PATH_INFO", path),
            ("QUERY_STRING", ""),
            ("SERVER_PROTOCOL", "HTTP/1.1"),
            ("SERVER_NAME", "faults.test"),
            ("SERVER_PORT", "80"),
            ("REMOTE_ADDR", "127.0.0.1"),
            ("CONTENT_LENGTH", cl.as_str()),
        ],
        &uwire::uwsgi::UwsgiLimits::default(),
        &mut packet,
    )
    .unwrap();
    packet.to_vec()
}

/// `GET path` in origin form with a Host header (what a browser sends;
/// hyper's connection-level client adds no Host of its own).
pub fn get_req(path: &str) -> Request<ReqBody> {
    Request::get(path)
        .header("host", "faults.test")
        .body(crate::proxy_common::empty())
        .unwrap()
}

/// `POST path` with `body`, origin form, with a Host header.
pub fn post_req(path: &str, body: ReqBody) -> Request<ReqBody> {
    Request::post(path)
        .header("host", "faults.test")
        .body(body)
        .unwrap()
}
