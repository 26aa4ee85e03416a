//! The soak test behind `scripts/soak` (issue 13; not in CI): a mix of
//! requests through `uwire proxy` -> `uwire serve` (both real child
//! processes of the `uwire` binary given), the resident memory of both
//! sampled every `--sample-secs`, and the growth after warm-up reported as
//! a slope in KiB per 100,000 requests (a least-squares line through the
//! samples taken after the first `--warmup` fraction of the requests).
//!
//! The mix, by request number modulo 1000:
//! * 0..850: `GET /` (small answer);
//! * 850..940: 4 KiB echo;
//! * 940..960: 1 MiB echo, read at full speed;
//! * 960..999: cancellations (injected): a 1 MiB echo whose connection is
//!   dropped after the response head;
//! * 999: a slow reader: a 1 MiB echo read 32 KiB every 10 ms (well within
//!   the send timeout, so it must succeed).
//!
//! Every request that is not a cancellation must succeed with the exact
//! body; the exit status is 1 if any failed.
//!
//! ```text
//! cargo run --release --example soak -- --uwire target/release/uwire --requests 1000000
//! ```

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

struct Args {
    uwire: String,
    requests: u64,
    concurrency: usize,
    sample: Duration,
    warmup: f64,
}

fn parse_args() -> Args {
    let mut a = Args {
        uwire: "target/release/uwire".into(),
        requests: 1_000_000,
        concurrency: 32,
        sample: Duration::from_secs(10),
        warmup: 0.2,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it
            .next()
            .unwrap_or_else(|| usage(&format!("{k} needs a value")));
        match k.as_str() {
            "--uwire" => a.uwire = v.clone(),
            "--requests" => a.requests = num(&k, &v),
            "--concurrency" => a.concurrency = num(&k, &v),
            "--sample-secs" => a.sample = Duration::from_secs(num(&k, &v)),
            "--warmup" => a.warmup = num(&k, &v),
            _ => usage(&format!("unknown option {k}")),
        }
    }
    a
}

fn num<T: std::str::FromStr>(k: &str, v: &str) -> T {
    v.parse()
        .unwrap_or_else(|_| usage(&format!("bad value for {k}: {v}")))
}

fn usage(why: &str) -> ! {
    eprintln!(
        "soak: {why}\nusage: soak [--uwire PATH] [--requests N] [--concurrency N] \
         [--sample-secs S] [--warmup FRACTION]"
    );
    std::process::exit(2)
}

fn rss_kib(pid: u32) -> u64 {
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

/// Starts `uwire args...`; returns the child and the first output line
/// containing `needle`.
async fn start(uwire: &str, args: &[&str], needle: &str) -> (tokio::process::Child, String) {
    let mut child = tokio::process::Command::new(uwire)
        .args(args)
        .env("UWIRE_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| usage(&format!("cannot start {uwire}: {e}")));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let out = child.stdout.take().unwrap();
    let err = child.stderr.take().unwrap();
    for pipe in [
        Box::pin(out) as std::pin::Pin<Box<dyn tokio::io::AsyncRead + Send>>,
        Box::pin(err),
    ] {
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(pipe).lines();
            while let Ok(Some(l)) = lines.next_line().await {
                // Warnings during the soak are worth seeing.
                if !l.contains("uwire") || l.contains("WARN") || l.contains("ERROR") {
                    eprintln!("[child] {l}");
                }
                let _ = tx.send(l);
            }
        });
    }
    let line = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(l) = rx.recv().await {
            if l.contains(needle) {
                return l;
            }
        }
        usage(&format!("{uwire} {args:?} exited before {needle:?}"))
    })
    .await
    .unwrap_or_else(|_| usage(&format!("{uwire} {args:?}: no {needle:?} within 30 s")));
    (child, line)
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Hello,
    SmallEcho,
    BigEcho,
    Cancel,
    SlowReader,
}

fn kind_of(n: u64) -> Kind {
    match n % 1000 {
        0..850 => Kind::Hello,
        850..940 => Kind::SmallEcho,
        940..960 => Kind::BigEcho,
        960..999 => Kind::Cancel,
        _ => Kind::SlowReader,
    }
}

fn payload(seed: u64, n: usize) -> Bytes {
    let tag = format!("<{seed}>");
    tag.bytes().cycle().take(n).collect::<Vec<u8>>().into()
}

async fn connect(addr: SocketAddr) -> Result<http1::SendRequest<Full<Bytes>>, BoxError> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let (send, conn) = http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(send)
}

/// One request; `Ok(true)` when it succeeded, `Ok(false)` for a
/// cancellation (injected), `Err` for a failure.
async fn one(
    conn: &mut Option<http1::SendRequest<Full<Bytes>>>,
    addr: SocketAddr,
    n: u64,
) -> Result<bool, String> {
    let kind = kind_of(n);
    if conn.as_ref().is_none_or(|c| c.is_closed()) {
        *conn = Some(connect(addr).await.map_err(|e| format!("connect: {e}"))?);
    }
    let send = conn.as_mut().unwrap();
    send.ready().await.map_err(|e| format!("ready: {e}"))?;
    let (req, want) = match kind {
        Kind::Hello => (
            http::Request::get("/")
                .header("host", "soak")
                .body(Full::new(Bytes::new())),
            Bytes::from_static(b"Hello from uwire!\n"),
        ),
        _ => {
            let len = if kind == Kind::SmallEcho {
                4096
            } else {
                1 << 20
            };
            let b = payload(n, len);
            (
                http::Request::post("/echo")
                    .header("host", "soak")
                    .body(Full::new(b.clone())),
                b,
            )
        }
    };
    let req = req.map_err(|e| e.to_string())?;
    let fut = async {
        let resp = send
            .send_request(req)
            .await
            .map_err(|e| format!("{n}: send: {e}"))?;
        if resp.status() != 200 {
            return Err(format!("{n}: status {}", resp.status()));
        }
        let mut body = resp.into_body();
        if kind == Kind::Cancel {
            return Ok(false);
        }
        let mut got = Vec::with_capacity(want.len());
        while let Some(f) = body.frame().await {
            let f = f.map_err(|e| format!("{n}: body: {e}"))?;
            if let Ok(d) = f.into_data() {
                got.extend_from_slice(&d);
                if kind == Kind::SlowReader {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
        if got != want {
            return Err(format!("{n}: wrong body ({} bytes)", got.len()));
        }
        Ok(true)
    };
    let r = tokio::time::timeout(Duration::from_secs(60), fut)
        .await
        .unwrap_or_else(|_| Err(format!("{n}: no answer within 60 s")));
    if !matches!(r, Ok(true)) {
        // A cancellation drops its connection mid-answer; a failure
        // starts afresh.
        *conn = None;
    }
    r
}

/// Least-squares slope of `y` over `x`.
fn slope(points: &[(f64, f64)]) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    let n = points.len() as f64;
    let (sx, sy) = points
        .iter()
        .fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
    let (mx, my) = (sx / n, sy / n);
    let (num, den) = points.iter().fold((0.0, 0.0), |(a, b), (x, y)| {
        (a + (x - mx) * (y - my), b + (x - mx) * (x - mx))
    });
    (den > 0.0).then(|| num / den)
}

#[tokio::main]
async fn main() {
    let args = parse_args();
    let sock = std::env::temp_dir().join(format!("uwire-soak-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&sock);
    let bind = format!("unix:{}", sock.display());
    let (serve, _) = start(
        &args.uwire,
        &["serve", "--bind", &bind],
        "uwire: serving the demo app",
    )
    .await;
    let (proxy, line) = start(
        &args.uwire,
        &[
            "proxy",
            "--upstream",
            &bind,
            "--listen",
            "127.0.0.1:0",
            "--access-log",
            "off",
        ],
        "uwire proxy: http://",
    )
    .await;
    let addr: SocketAddr = line
        .split("http://")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| usage(&format!("no address in {line:?}")));
    let (serve_pid, proxy_pid) = (serve.id().unwrap(), proxy.id().unwrap());

    let next = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let ok = Arc::new(AtomicU64::new(0));
    let cancelled = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let t0 = Instant::now();
    let workers: Vec<_> = (0..args.concurrency)
        .map(|_| {
            let (next, done, ok, cancelled, failures) = (
                next.clone(),
                done.clone(),
                ok.clone(),
                cancelled.clone(),
                failures.clone(),
            );
            let total = args.requests;
            tokio::spawn(async move {
                let mut conn = None;
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= total {
                        return;
                    }
                    match one(&mut conn, addr, n).await {
                        Ok(true) => ok.fetch_add(1, Ordering::Relaxed),
                        Ok(false) => cancelled.fetch_add(1, Ordering::Relaxed),
                        Err(e) => {
                            let mut f = failures.lock().unwrap();
                            if f.len() < 20 {
                                eprintln!("soak: failure: {e}");
                            }
                            f.push(e);
                            0
                        }
                    };
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();

    println!("t_s,requests,proxy_rss_kib,serve_rss_kib");
    let mut samples = Vec::new();
    let sample = |samples: &mut Vec<(u64, u64, u64)>| {
        let s = (
            done.load(Ordering::Relaxed),
            rss_kib(proxy_pid),
            rss_kib(serve_pid),
        );
        println!("{:.0},{},{},{}", t0.elapsed().as_secs_f64(), s.0, s.1, s.2);
        samples.push(s);
    };
    sample(&mut samples);
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + args.sample, args.sample);
    while done.load(Ordering::Relaxed) < args.requests {
        tick.tick().await;
        sample(&mut samples);
        if workers.iter().all(|w| w.is_finished()) {
            break;
        }
    }
    for w in workers {
        let _ = w.await;
    }
    sample(&mut samples);
    let secs = t0.elapsed().as_secs_f64();

    let warm = (args.requests as f64 * args.warmup) as u64;
    let after: Vec<_> = samples.iter().filter(|s| s.0 >= warm).collect();
    let per_100k = |pick: fn(&(u64, u64, u64)) -> u64| {
        let pts: Vec<(f64, f64)> = after.iter().map(|s| (s.0 as f64, pick(s) as f64)).collect();
        slope(&pts).map(|m| m * 100_000.0)
    };
    let fmt = |v: Option<f64>| v.map_or("n/a (too few samples)".into(), |v| format!("{v:+.1}"));
    let failed = failures.lock().unwrap().len();
    println!();
    println!(
        "soak: {} requests in {secs:.0} s ({:.0}/s), {} concurrent: {} succeeded, {} cancelled \
         (injected), {failed} failed",
        done.load(Ordering::Relaxed),
        done.load(Ordering::Relaxed) as f64 / secs,
        args.concurrency,
        ok.load(Ordering::Relaxed),
        cancelled.load(Ordering::Relaxed),
    );
    let (first, last) = (after.first(), after.last());
    println!(
        "soak: RSS after warm-up ({} samples from request {warm}): proxy {} -> {} KiB, \
         serve {} -> {} KiB",
        after.len(),
        first.map_or(0, |s| s.1),
        last.map_or(0, |s| s.1),
        first.map_or(0, |s| s.2),
        last.map_or(0, |s| s.2),
    );
    println!(
        "soak: RSS slope after warm-up, KiB per 100k requests: proxy {}, serve {}",
        fmt(per_100k(|s| s.1)),
        fmt(per_100k(|s| s.2)),
    );
    drop(proxy);
    drop(serve);
    let _ = std::fs::remove_file(&sock);
    if failed > 0 {
        std::process::exit(1);
    }
}
