//! `uwire bench`: the uwire/1 client against a running runtime over one
//! Unix-socket connection, a fixed number of requests (or a fixed time)
//! with a fixed number in flight; prints throughput and latency
//! percentiles. `scripts/bench-ipc` runs it across body sizes and in-flight
//! counts next to the raw socket floors and the HTTP/gRPC peers.
//!
//! The load loop ([`drive_with`]) is generic over the request it sends:
//! `examples/bench_peers.rs` includes this file so that hyper HTTP/1.1, h2
//! and tonic are measured by exactly the same loop, clock and percentile
//! code as uwire/1. Keep this file free of other modules of the binary.

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::net::UnixStream;
use uwire::conn::Config;
use uwire::frame::{HeaderBlock, RequestHead};
use uwire::net::{self, SendRequest};

/// The error type of the load loop.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Options of `uwire bench`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The runtime's Unix socket (`uwire serve --bind unix:PATH`).
    #[arg(long)]
    pub socket: PathBuf,
    /// Requests to send in all (the run stops at this count or at
    /// `--seconds`, whichever comes first).
    #[arg(long, default_value_t = 100_000)]
    pub requests: usize,
    /// Stop starting new requests after this many seconds (requests in
    /// flight then finish). Unset: run `--requests` requests.
    #[arg(long)]
    pub seconds: Option<f64>,
    /// Requests in flight at once on the connection.
    #[arg(long, default_value_t = 64)]
    pub in_flight: usize,
    /// Request body size in bytes: 0 sends `GET /`, more POSTs that many
    /// bytes to `/echo` (the demo app echoes them back).
    #[arg(long, default_value_t = 0)]
    pub body_size: usize,
    /// Wake-ups gathered before the client's connection writes (see
    /// `Config::write_batch`; 1 writes each request at once).
    #[arg(long, default_value_t = uwire::conn::DEFAULT_WRITE_BATCH)]
    pub write_batch: usize,
    /// Before a runtime thread sleeps, it watches the event loop up to this
    /// long; see `uwire serve --busy-poll`. 0: off.
    #[arg(long, default_value = "50us", value_parser = crate::duration::parse_busy_poll)]
    pub busy_poll: std::time::Duration,
    /// Print only the requests per second.
    #[arg(long, conflicts_with = "json")]
    pub quiet: bool,
    /// Print one JSON object (requests, seconds, rps, p50_us, p90_us,
    /// p99_us, max_us, response bytes) for scripts.
    #[arg(long)]
    pub json: bool,
}

fn head(body: bool) -> RequestHead {
    RequestHead {
        method: if body { "POST".into() } else { "GET".into() },
        scheme: "http".into(),
        authority: "bench".into(),
        path: if body { "/echo".into() } else { "/".into() },
        headers: HeaderBlock::try_from_pairs([("Host", "bench")]).expect("static header"),
        ..Default::default()
    }
}

/// One request: sends `body` (if any), reads the whole response; returns
/// the number of response body bytes.
async fn one(sender: &SendRequest, body: &Bytes) -> Result<usize, BoxError> {
    let has_body = !body.is_empty();
    let (mut send, resp) = sender.send_request(head(has_body), !has_body).await?;
    let upload = async {
        if has_body {
            send.send_data(body.clone(), true).await?;
        }
        Ok::<_, BoxError>(())
    };
    let download = async {
        let (h, mut b) = resp.await?;
        if h.status != 200 {
            return Err(format!("status {}", h.status).into());
        }
        let mut n = 0;
        while let Some(c) = b.data().await {
            n += c?.len();
        }
        Ok::<_, BoxError>(n)
    };
    let (u, d) = tokio::join!(upload, download);
    u?;
    d
}

/// The result of a run.
#[derive(Debug, Clone)]
pub struct Summary {
    /// Requests completed.
    pub requests: usize,
    /// Wall-clock time of the run.
    pub elapsed: Duration,
    /// Requests completed per second.
    pub rps: f64,
    /// Median latency.
    pub p50: Duration,
    /// 90th percentile latency.
    pub p90: Duration,
    /// 99th percentile latency.
    pub p99: Duration,
    /// Slowest request.
    pub max: Duration,
    /// Response body bytes received in all.
    pub response_bytes: u64,
}

impl Summary {
    /// One JSON object, the machine-readable form `--json` prints.
    pub fn to_json(&self, name: &str, in_flight: usize, body_size: usize) -> String {
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        format!(
            "{{\"impl\":\"{name}\",\"in_flight\":{in_flight},\"body_size\":{body_size},\
             \"requests\":{},\"seconds\":{:.6},\"rps\":{:.1},\"p50_us\":{:.1},\
             \"p90_us\":{:.1},\"p99_us\":{:.1},\"max_us\":{:.1},\"response_bytes\":{}}}",
            self.requests,
            self.elapsed.as_secs_f64(),
            self.rps,
            us(self.p50),
            us(self.p90),
            us(self.p99),
            us(self.max),
            self.response_bytes
        )
    }
}

/// Runs `request` from `in_flight` concurrent workers until `requests` have
/// been started or `limit` has passed, and measures each call's latency.
/// `request` returns the number of response body bytes it read.
pub async fn drive_with<F, Fut>(
    requests: usize,
    limit: Option<Duration>,
    in_flight: usize,
    request: F,
) -> Result<Summary, BoxError>
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<usize, BoxError>> + Send + 'static,
{
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..in_flight.max(1) {
        let (request, next) = (request.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut bytes = 0u64;
            while next.fetch_add(1, Ordering::Relaxed) < requests
                && limit.is_none_or(|l| started.elapsed() < l)
            {
                let t = Instant::now();
                bytes += request().await? as u64;
                lat.push(t.elapsed());
            }
            Ok::<_, BoxError>((lat, bytes))
        }));
    }
    let mut lat = Vec::new();
    let mut response_bytes = 0;
    for w in workers {
        let (l, b) = w.await??;
        lat.extend(l);
        response_bytes += b;
    }
    let elapsed = started.elapsed();
    if lat.is_empty() {
        return Err("no request completed".into());
    }
    lat.sort_unstable();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    Ok(Summary {
        requests: lat.len(),
        elapsed,
        rps: lat.len() as f64 / elapsed.as_secs_f64(),
        p50: pct(0.50),
        p90: pct(0.90),
        p99: pct(0.99),
        max: lat[lat.len() - 1],
        response_bytes,
    })
}

/// Runs `requests` uwire/1 requests with `in_flight` at once over `sender`.
pub async fn drive(
    sender: SendRequest,
    requests: usize,
    limit: Option<Duration>,
    in_flight: usize,
    body_size: usize,
) -> Result<Summary, BoxError> {
    let body = Bytes::from(vec![b'x'; body_size]);
    drive_with(requests, limit, in_flight, move || {
        let (sender, body) = (sender.clone(), body.clone());
        async move { one(&sender, &body).await }
    })
    .await
}

/// Runs `uwire bench`.
pub async fn run(args: Args) -> Result<(), BoxError> {
    let sock = UnixStream::connect(&args.socket).await?;
    let mut config = Config::default();
    config.write_batch(args.write_batch);
    // As the runtime's own client does: registered for reading only, so
    // the wait for an answer is not cut by the runtime reading the request.
    let (sender, conn) = net::client(net::UnixConn::from_tokio(sock)?, config);
    let task = tokio::spawn(conn);
    let limit = match args.seconds {
        Some(s) if s.is_finite() && s > 0.0 => Some(Duration::from_secs_f64(s)),
        Some(s) => return Err(format!("--seconds must be positive, got {s}").into()),
        None => None,
    };
    let s = drive(sender, args.requests, limit, args.in_flight, args.body_size).await?;
    task.abort();
    if args.json {
        println!("{}", s.to_json("uwire", args.in_flight, args.body_size));
    } else if args.quiet {
        println!("{:.0}", s.rps);
    } else {
        println!(
            "uwire/1 IPC: {} requests, {} in flight, {}-byte bodies: {:.0} req/s, p50 {:?}, p99 {:?}",
            s.requests, args.in_flight, args.body_size, s.rps, s.p50, s.p99
        );
    }
    Ok(())
}
