//! `uwire selftest`: the codec and the connection engine end to end over a
//! real Unix socket.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;
use uwire::conn::Config;
use uwire::frame::{HeaderBlock, RequestHead, ResponseHead};
use uwire::net::{self, IncomingRequest, SendRequest};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Options of `uwire selftest`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Number of requests.
    #[arg(long, default_value_t = 5000)]
    requests: usize,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 128)]
    concurrency: usize,
    /// Client connections the requests are spread over.
    #[arg(long, default_value_t = 2)]
    connections: usize,
    /// Size of the one large body streamed through /echo, in MiB.
    #[arg(long, default_value_t = 64)]
    large_mib: usize,
}

async fn handle(req: IncomingRequest) -> Result<(), BoxError> {
    let IncomingRequest {
        head,
        mut body,
        responder,
    } = req;
    let echo = &head.path[..] == b"/echo";
    let mut h = HeaderBlock::builder();
    let ctype: &[u8] = if echo {
        b"application/octet-stream"
    } else {
        b"text/plain"
    };
    h.push(b"Content-Type", ctype)?;
    let mut out = responder.send_response(
        ResponseHead {
            status: 200,
            reason: None,
            headers: h.finish(),
        },
        false,
    )?;
    if echo {
        while let Some(chunk) = body.data().await {
            out.send_data(chunk?, false).await?;
        }
        out.finish().await?;
    } else {
        out.send_data(Bytes::from_static(b"hello from uwire\n"), true)
            .await?;
    }
    Ok(())
}

async fn serve(listener: UnixListener) {
    loop {
        let Ok((sock, _)) = listener.accept().await else {
            return;
        };
        // Registered for reading only, as `uwire serve` registers its
        // Unix connections (see `net::UnixConn`).
        let Ok(sock) = net::UnixConn::from_tokio(sock) else {
            continue;
        };
        tokio::spawn(async move {
            let (mut incoming, conn) = net::server(sock, Config::default());
            tokio::spawn(conn);
            while let Some(req) = incoming.accept().await {
                tokio::spawn(async move {
                    if let Err(e) = handle(req).await {
                        // The cancellation check below resets one stream on purpose.
                        let expected = e.downcast_ref::<net::Error>().is_some_and(|e| e.is_reset());
                        if !expected {
                            eprintln!("selftest server: handler error: {e}");
                        }
                    }
                });
            }
        });
    }
}

fn request(method: &str, path: &str, n: usize) -> RequestHead {
    let mut h = HeaderBlock::builder();
    h.push(b"Host", b"selftest")
        .and_then(|h| h.push(b"X-Request-Number", n.to_string().as_bytes()))
        .expect("static headers are valid");
    RequestHead {
        method: Bytes::copy_from_slice(method.as_bytes()),
        scheme: "http".into(),
        authority: "selftest".into(),
        path: Bytes::copy_from_slice(path.as_bytes()),
        headers: h.finish(),
        ..Default::default()
    }
}

/// A deterministic body of `len` bytes for request `n`.
fn body_for(n: usize, len: usize) -> Bytes {
    (0..len)
        .map(|i| (i.wrapping_mul(31) ^ n) as u8)
        .collect::<Vec<_>>()
        .into()
}

async fn echo(
    sender: &SendRequest,
    n: usize,
    body: Bytes,
    chunk: usize,
) -> Result<usize, BoxError> {
    let (mut send, resp) = sender
        .send_request(request("POST", "/echo", n), false)
        .await?;
    let expect = body.clone();
    let upload = async move {
        let mut off = 0;
        while off < body.len() {
            let end = (off + chunk).min(body.len());
            send.send_data(body.slice(off..end), false).await?;
            off = end;
        }
        send.finish().await?;
        Ok::<_, BoxError>(())
    };
    let download = async {
        let (head, mut rbody) = resp.await?;
        if head.status != 200 {
            return Err(format!("request {n}: status {}", head.status).into());
        }
        let mut off = 0;
        while let Some(c) = rbody.data().await {
            let c = c?;
            if expect.len() < off + c.len() || expect[off..off + c.len()] != c[..] {
                return Err(format!("request {n}: echoed bytes differ at offset {off}").into());
            }
            off += c.len();
        }
        if off != expect.len() {
            return Err(format!("request {n}: echoed {off} bytes, sent {}", expect.len()).into());
        }
        Ok::<_, BoxError>(off)
    };
    let (u, d) = tokio::join!(upload, download);
    u?;
    d
}

async fn hello(sender: &SendRequest, n: usize) -> Result<usize, BoxError> {
    let (_send, resp) = sender.send_request(request("GET", "/", n), true).await?;
    let (head, mut body) = resp.await?;
    let b = body.collect(1 << 20).await?;
    if head.status != 200 || &b[..] != b"hello from uwire\n" {
        return Err(format!("request {n}: unexpected response {} {:?}", head.status, b).into());
    }
    Ok(b.len())
}

/// Runs the selftest.
pub async fn run(args: Args) -> Result<(), BoxError> {
    let path: PathBuf =
        std::env::temp_dir().join(format!("uwire-selftest-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)?;
    let server = tokio::spawn(serve(listener));

    let mut senders = Vec::new();
    let mut tasks = Vec::new();
    for _ in 0..args.connections.max(1) {
        let sock = net::UnixConn::from_tokio(UnixStream::connect(&path).await?)?;
        let (sender, conn) = net::client(sock, Config::default());
        tasks.push(tokio::spawn(conn));
        senders.push(sender);
    }
    let rtt = senders[0].ping().await?;
    println!(
        "selftest: {} connections over {}",
        senders.len(),
        path.display()
    );
    println!("selftest: PING round trip {rtt:?}");

    // Many concurrent small requests, half GET, half POST /echo with varied bodies.
    let started = Instant::now();
    let sem = Arc::new(Semaphore::new(args.concurrency.max(1)));
    let mut joins = Vec::with_capacity(args.requests);
    for n in 0..args.requests {
        let permit = sem.clone().acquire_owned().await?;
        let sender = senders[n % senders.len()].clone();
        joins.push(tokio::spawn(async move {
            let _permit = permit;
            if n % 2 == 0 {
                hello(&sender, n).await
            } else {
                let len = (n * 997) % (48 * 1024);
                echo(&sender, n, body_for(n, len), 16 * 1024).await
            }
        }));
    }
    let mut bytes = 0usize;
    for j in joins {
        bytes += j.await??;
    }
    let small = started.elapsed();
    println!(
        "selftest: {} requests ({} concurrent) ok in {:.2?}: {:.0} req/s, {} body bytes checked",
        args.requests,
        args.concurrency,
        small,
        args.requests as f64 / small.as_secs_f64(),
        bytes
    );

    // One large streamed body, with small requests running beside it on the same connection.
    let large = args.large_mib * 1024 * 1024;
    let started = Instant::now();
    let big = {
        let sender = senders[0].clone();
        tokio::spawn(async move { echo(&sender, 1_000_000, body_for(7, large), 64 * 1024).await })
    };
    let mut side = 0;
    while !big.is_finished() && side < 10_000 {
        hello(&senders[0], side).await?;
        side += 1;
    }
    let n = big.await??;
    let el = started.elapsed();
    println!(
        "selftest: {} MiB echoed in {:.2?} ({:.0} MiB/s each way) while {} small requests shared the connection",
        n / (1024 * 1024),
        el,
        args.large_mib as f64 / el.as_secs_f64(),
        side
    );

    // Cancellation: a request whose response is dropped must not disturb the connection.
    {
        let (mut send, resp) = senders[0]
            .send_request(request("POST", "/echo", 42), false)
            .await?;
        send.send_data(body_for(1, 1024), false).await?;
        drop(resp);
        drop(send);
        hello(&senders[0], 43).await?;
        println!("selftest: cancelled stream reset; connection still serves");
    }

    // Graceful close: dropping every handle lets each connection drain and close cleanly.
    drop(senders);
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(10), t).await???;
    }
    println!("selftest: connections closed gracefully");
    server.abort();
    let _ = std::fs::remove_file(&path);
    println!("selftest: OK");
    Ok(())
}
