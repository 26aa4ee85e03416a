//! Holds connections or streams open so `scripts/bench-mem` can read what
//! they cost a server in resident memory.
//!
//! * `uwire-idle`: N uwire/1 connections to a runtime, one `GET /` each,
//!   then idle (a pooled connection between requests);
//! * `uwire-streams`: one uwire/1 connection, N `POST /echo` streams whose
//!   request body never ends: the demo handler has answered the head and
//!   waits for body bytes, so each stream is in flight in the runtime;
//! * `http-idle`: N HTTP/1.1 keep-alive connections (one `GET /` each)
//!   to an HTTP server (`uwire proxy`, nginx);
//! * `h2-streams`: N HTTP/2 (prior knowledge) `POST /echo` streams with
//!   open bodies spread over connections of at most 100 streams, to an
//!   HTTP front (`uwire proxy`), each in flight through to the app.
//!
//! Prints `ready N` once everything is established, then holds until stdin
//! closes (or `--hold-seconds` passes) and exits.

use std::convert::Infallible;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use clap::{Parser, Subcommand};
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpStream, UnixStream};
use uwire::frame::{HeaderBlock, RequestHead};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Streams per HTTP/2 connection (below hyper's server default of 200).
const H2_STREAMS_PER_CONNECTION: usize = 100;

#[derive(Parser)]
#[command(about = "Holds idle connections or open streams for memory measurements")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
    /// How many connections or streams.
    #[arg(long, short = 'n', global = true, default_value_t = 1000)]
    count: usize,
    /// Give up holding after this many seconds even if stdin stays open.
    #[arg(long, global = true, default_value_t = 300)]
    hold_seconds: u64,
}

#[derive(Subcommand)]
enum Cmd {
    /// Idle uwire/1 connections to a runtime's Unix socket.
    UwireIdle {
        #[arg(long)]
        socket: PathBuf,
    },
    /// In-flight uwire/1 streams on one connection.
    UwireStreams {
        #[arg(long)]
        socket: PathBuf,
    },
    /// Idle HTTP/1.1 keep-alive connections.
    HttpIdle {
        #[arg(long)]
        addr: std::net::SocketAddr,
    },
    /// In-flight HTTP/2 streams (prior knowledge, cleartext).
    H2Streams {
        #[arg(long)]
        addr: std::net::SocketAddr,
    },
}

fn uwire_head(method: &'static str, path: &'static str) -> RequestHead {
    RequestHead {
        method: method.into(),
        scheme: "http".into(),
        authority: "bench".into(),
        path: path.into(),
        headers: HeaderBlock::try_from_pairs([("Host", "bench")]).expect("static header"),
        ..Default::default()
    }
}

/// Everything that must stay alive while holding.
type Held = Vec<Box<dyn std::any::Any + Send>>;

async fn uwire_idle(socket: PathBuf, n: usize, held: &mut Held) -> Result<(), BoxError> {
    for _ in 0..n {
        let (sender, conn) =
            uwire::net::client(UnixStream::connect(&socket).await?, Default::default());
        held.push(Box::new(tokio::spawn(conn)));
        let (_, resp) = sender.send_request(uwire_head("GET", "/"), true).await?;
        let (head, mut body) = resp.await?;
        if head.status != 200 {
            return Err(format!("GET / answered {}", head.status).into());
        }
        while let Some(c) = body.data().await {
            c?;
        }
        held.push(Box::new(sender));
    }
    Ok(())
}

async fn uwire_streams(socket: PathBuf, n: usize, held: &mut Held) -> Result<(), BoxError> {
    let (sender, conn) =
        uwire::net::client(UnixStream::connect(&socket).await?, Default::default());
    held.push(Box::new(tokio::spawn(conn)));
    let mut pending = Vec::with_capacity(n);
    for _ in 0..n {
        let (send, resp) = sender
            .send_request(uwire_head("POST", "/echo"), false)
            .await?;
        held.push(Box::new(send));
        pending.push(resp);
    }
    for resp in pending {
        let (head, body) = resp.await?;
        if head.status != 200 {
            return Err(format!("POST /echo answered {}", head.status).into());
        }
        held.push(Box::new(body));
    }
    held.push(Box::new(sender));
    Ok(())
}

async fn http_idle(addr: std::net::SocketAddr, n: usize, held: &mut Held) -> Result<(), BoxError> {
    for _ in 0..n {
        let io = TokioIo::new(TcpStream::connect(addr).await?);
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;
        held.push(Box::new(tokio::spawn(conn)));
        let req = http::Request::get("/")
            .header(http::header::HOST, "bench")
            .body(Empty::<Bytes>::new())?;
        let resp = sender.send_request(req).await?;
        if resp.status() != 200 {
            return Err(format!("GET / answered {}", resp.status()).into());
        }
        resp.into_body().collect().await?;
        held.push(Box::new(sender));
    }
    Ok(())
}

type OpenBody =
    StreamBody<tokio_stream::wrappers::ReceiverStream<Result<Frame<Bytes>, Infallible>>>;

async fn h2_streams(addr: std::net::SocketAddr, n: usize, held: &mut Held) -> Result<(), BoxError> {
    let mut left = n;
    while left > 0 {
        let here = left.min(H2_STREAMS_PER_CONNECTION);
        left -= here;
        let io = TokioIo::new(TcpStream::connect(addr).await?);
        let (sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .handshake::<_, OpenBody>(io)
            .await?;
        held.push(Box::new(tokio::spawn(conn)));
        let mut pending = Vec::with_capacity(here);
        for _ in 0..here {
            let (tx, rx) = tokio::sync::mpsc::channel(1);
            held.push(Box::new(tx));
            let req = http::Request::post("http://bench/echo").body(StreamBody::new(
                tokio_stream::wrappers::ReceiverStream::new(rx),
            ))?;
            let mut s = sender.clone();
            pending.push(tokio::spawn(async move {
                s.ready().await?;
                s.send_request(req).await
            }));
        }
        for p in pending {
            let resp = p.await??;
            if resp.status() != 200 {
                return Err(format!("POST /echo answered {}", resp.status()).into());
            }
            held.push(Box::new(resp));
        }
        held.push(Box::new(sender));
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let cli = Cli::parse();
    let n = cli.count;
    let mut held: Held = Vec::new();
    match cli.cmd {
        Cmd::UwireIdle { socket } => uwire_idle(socket, n, &mut held).await?,
        Cmd::UwireStreams { socket } => uwire_streams(socket, n, &mut held).await?,
        Cmd::HttpIdle { addr } => http_idle(addr, n, &mut held).await?,
        Cmd::H2Streams { addr } => h2_streams(addr, n, &mut held).await?,
    }
    println!("ready {n}");
    let mut sink = Vec::new();
    let _ = tokio::time::timeout(
        Duration::from_secs(cli.hold_seconds),
        tokio::io::stdin().read_to_end(&mut sink),
    )
    .await;
    drop(held);
    // stdin is read on a blocking thread the runtime would wait for.
    std::process::exit(0)
}
