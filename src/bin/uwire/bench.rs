//! `uwire bench`: the uwire/1 client against a running runtime over one
//! Unix-socket connection, a fixed number of requests with a fixed number
//! in flight; prints throughput and latency percentiles. `scripts/bench-ipc`
//! runs it across body sizes and in-flight counts next to the raw socket
//! floors and the HTTP/gRPC peers.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::net::UnixStream;
use uwire::conn::Config;
use uwire::frame::{HeaderBlock, RequestHead};
use uwire::net::{self, SendRequest};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Options of `uwire bench`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The runtime's Unix socket (`uwire serve --bind unix:PATH`).
    #[arg(long)]
    pub socket: PathBuf,
    /// Requests to send in all.
    #[arg(long, default_value_t = 100_000)]
    pub requests: usize,
    /// Requests in flight at once on the connection.
    #[arg(long, default_value_t = 64)]
    pub in_flight: usize,
    /// Request body size in bytes: 0 sends `GET /`, more POSTs that many
    /// bytes to `/echo` (the demo app echoes them back).
    #[arg(long, default_value_t = 0)]
    pub body_size: usize,
    /// Print only the summary line.
    #[arg(long)]
    pub quiet: bool,
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

/// One request: sends `body` (if any), reads the whole response.
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
pub struct Summary {
    /// Requests completed per second.
    pub rps: f64,
    /// Median latency.
    pub p50: Duration,
    /// 99th percentile latency.
    pub p99: Duration,
}

/// Runs `requests` requests with `in_flight` at once over `sender`.
pub async fn drive(
    sender: SendRequest,
    requests: usize,
    in_flight: usize,
    body_size: usize,
) -> Result<Summary, BoxError> {
    let body = Bytes::from(vec![b'x'; body_size]);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..in_flight.max(1) {
        let (sender, body, next) = (sender.clone(), body.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < requests {
                let t = Instant::now();
                one(&sender, &body).await?;
                lat.push(t.elapsed());
            }
            Ok::<_, BoxError>(lat)
        }));
    }
    let mut lat = Vec::with_capacity(requests);
    for w in workers {
        lat.extend(w.await??);
    }
    let elapsed = started.elapsed();
    lat.sort_unstable();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    Ok(Summary {
        rps: lat.len() as f64 / elapsed.as_secs_f64(),
        p50: pct(0.50),
        p99: pct(0.99),
    })
}

/// Runs `uwire bench`.
pub async fn run(args: Args) -> Result<(), BoxError> {
    let sock = UnixStream::connect(&args.socket).await?;
    let (sender, conn) = net::client(sock, Config::default());
    let task = tokio::spawn(conn);
    let s = drive(sender, args.requests, args.in_flight, args.body_size).await?;
    task.abort();
    let line = format!(
        "uwire/1 IPC: {} requests, {} in flight, {}-byte bodies: {:.0} req/s, p50 {:?}, p99 {:?}",
        args.requests, args.in_flight, args.body_size, s.rps, s.p50, s.p99
    );
    if args.quiet {
        println!("{:.0}", s.rps);
    } else {
        println!("{line}");
    }
    Ok(())
}
