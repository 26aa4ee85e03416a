//! The peers `scripts/bench-ipc` and `scripts/bench-e2e` measure uwire
//! against, on the same workload as the demo app (`GET /` answers
//! "Hello from uwire!\n", `POST /echo` streams the body back):
//!
//! * `h1-server` / `h1-client`: hyper HTTP/1.1 over a Unix socket; the
//!   client is hyper-util's keep-alive pool (one connection per request in
//!   flight, reused);
//! * `h2-server` / `h2-client`: hyper HTTP/2 over one Unix-socket
//!   connection, all streams multiplexed on it;
//! * `grpc-server` / `grpc-client`: tonic gRPC over one Unix-socket
//!   connection, a unary `bench.Echo/Echo` (an empty request answers the
//!   greeting, any other is echoed), hand-written prost message and
//!   service, so no `protoc` and no code generation;
//! * `hello`: a bare hyper HTTP/1.1 server on TCP, the front's ceiling row
//!   of the end-to-end suite.
//!
//! Every client runs the very load loop of `uwire bench` (this example
//! includes `src/bin/uwire/bench.rs`) and prints the same JSON line. The
//! flow-control windows are set to uwire's defaults (256 KiB per stream,
//! 1 MiB per connection) so HTTP/2 and gRPC are not throttled by smaller
//! ones, and the allocator is the `uwire` binary's (mimalloc).
//!
//! ```text
//! cargo run --release --example bench_peers -- h2-server --socket /tmp/h2.sock &
//! cargo run --release --example bench_peers -- h2-client --socket /tmp/h2.sock --in-flight 64 --json
//! ```

#[allow(dead_code)]
#[path = "../src/bin/uwire/bench.rs"]
mod bench;
#[path = "../src/bin/uwire/duration.rs"]
mod duration;

/// The allocator of the `uwire` binary, so the peers and uwire differ in
/// their protocol stacks, not in malloc.
#[global_allocator]
static ALLOC: uwire::alloc::Mi = uwire::alloc::Mi;

use std::convert::Infallible;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bench::BoxError;
use bytes::Bytes;
use clap::{Parser, Subcommand};
use http::{Request, Response, Uri};
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, UnixListener, UnixStream};

const HELLO: &[u8] = b"Hello from uwire!\n";
const STREAM_WINDOW: u32 = 256 * 1024;
const CONNECTION_WINDOW: u32 = 1024 * 1024;
const MAX_STREAMS: u32 = 4096;
const GRPC_PATH: &str = "/bench.Echo/Echo";

#[derive(Parser)]
#[command(about = "HTTP/1.1, HTTP/2 and gRPC peers of the uwire benchmarks")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Args, Clone)]
struct ServerArgs {
    /// Unix socket to listen on (replaced if it exists).
    #[arg(long)]
    socket: PathBuf,
}

#[derive(clap::Args, Clone)]
struct ClientArgs {
    /// The server's Unix socket.
    #[arg(long)]
    socket: PathBuf,
    /// Requests to send in all (or until `--seconds`).
    #[arg(long, default_value_t = 100_000)]
    requests: usize,
    /// Stop starting new requests after this many seconds.
    #[arg(long)]
    seconds: Option<f64>,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 64)]
    in_flight: usize,
    /// 0: `GET /` (the greeting); more: POST that many bytes to `/echo`.
    #[arg(long, default_value_t = 0)]
    body_size: usize,
    /// Print the JSON line (the default prints a sentence).
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum Cmd {
    /// hyper HTTP/1.1 server on a Unix socket.
    H1Server(ServerArgs),
    /// hyper-util keep-alive pool client (HTTP/1.1) over a Unix socket.
    H1Client(ClientArgs),
    /// hyper HTTP/2 server on a Unix socket.
    H2Server(ServerArgs),
    /// hyper HTTP/2 client, one connection, all requests multiplexed.
    H2Client(ClientArgs),
    /// tonic gRPC server (unary echo) on a Unix socket.
    GrpcServer(ServerArgs),
    /// tonic gRPC client, one channel (one HTTP/2 connection).
    GrpcClient(ClientArgs),
    /// Bare hyper HTTP/1.1 hello/echo server on TCP.
    Hello {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8081")]
        listen: std::net::SocketAddr,
        /// Runtime threads: 1 runs tokio's current-thread runtime, more a
        /// multi-thread runtime with that many workers.
        #[arg(long, default_value_t = 1)]
        threads: usize,
    },
}

type HttpBody = BoxBody<Bytes, hyper::Error>;

/// The demo app's `/` and `/echo`, for hyper.
async fn handle(req: Request<Incoming>) -> Result<Response<HttpBody>, Infallible> {
    let (ctype, body) = if req.uri().path() == "/echo" {
        ("application/octet-stream", req.into_body().boxed())
    } else {
        (
            "text/plain; charset=utf-8",
            Full::new(Bytes::from_static(HELLO))
                .map_err(|never| match never {})
                .boxed(),
        )
    };
    let mut resp = Response::new(body);
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(ctype),
    );
    Ok(resp)
}

fn bind_unix(path: &PathBuf) -> std::io::Result<UnixListener> {
    let _ = std::fs::remove_file(path);
    UnixListener::bind(path)
}

async fn h1_server(a: ServerArgs) -> Result<(), BoxError> {
    let listener = bind_unix(&a.socket)?;
    loop {
        let (s, _) = listener.accept().await?;
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(s), hyper::service::service_fn(handle))
                .await;
        });
    }
}

async fn h2_server(a: ServerArgs) -> Result<(), BoxError> {
    let listener = bind_unix(&a.socket)?;
    loop {
        let (s, _) = listener.accept().await?;
        tokio::spawn(async move {
            let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .max_concurrent_streams(MAX_STREAMS)
                .initial_stream_window_size(STREAM_WINDOW)
                .initial_connection_window_size(CONNECTION_WINDOW)
                .serve_connection(TokioIo::new(s), hyper::service::service_fn(handle))
                .await;
        });
    }
}

async fn hello_server(listen: std::net::SocketAddr) -> Result<(), BoxError> {
    let listener = TcpListener::bind(listen).await?;
    loop {
        let (s, _) = listener.accept().await?;
        let _ = s.set_nodelay(true);
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(s), hyper::service::service_fn(handle))
                .await;
        });
    }
}

/// Connects every request of a client to the one Unix socket, whatever the
/// URI says (hyper-util's pool and tonic's channel both take a connector).
#[derive(Clone)]
struct UnixConnector(Arc<PathBuf>);

impl tower::Service<Uri> for UnixConnector {
    type Response = TokioIo<UnixStream>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = std::io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Uri) -> Self::Future {
        let path = self.0.clone();
        Box::pin(async move { Ok(TokioIo::new(UnixStream::connect(&*path).await?)) })
    }
}

fn http_request(body: &Bytes) -> Request<Full<Bytes>> {
    let (method, uri) = if body.is_empty() {
        (http::Method::GET, "http://bench/")
    } else {
        (http::Method::POST, "http://bench/echo")
    };
    Request::builder()
        .method(method)
        .uri(uri)
        .body(Full::new(body.clone()))
        .expect("static request")
}

/// Reads a whole response body, checks the status; returns its length.
async fn read_response(resp: Response<Incoming>) -> Result<usize, BoxError> {
    if resp.status() != 200 {
        return Err(format!("status {}", resp.status()).into());
    }
    let mut body = resp.into_body();
    let mut n = 0;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            n += data.len();
        }
    }
    Ok(n)
}

fn limit(a: &ClientArgs) -> Result<Option<Duration>, BoxError> {
    match a.seconds {
        Some(s) if s.is_finite() && s > 0.0 => Ok(Some(Duration::from_secs_f64(s))),
        Some(s) => Err(format!("--seconds must be positive, got {s}").into()),
        None => Ok(None),
    }
}

fn report(name: &str, a: &ClientArgs, s: &bench::Summary) {
    if a.json {
        println!("{}", s.to_json(name, a.in_flight, a.body_size));
    } else {
        println!(
            "{name}: {} requests, {} in flight, {}-byte bodies: {:.0} req/s, p50 {:?}, p99 {:?}",
            s.requests, a.in_flight, a.body_size, s.rps, s.p50, s.p99
        );
    }
}

async fn h1_client(a: ClientArgs) -> Result<(), BoxError> {
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(usize::MAX)
        .build::<_, Full<Bytes>>(UnixConnector(Arc::new(a.socket.clone())));
    let body = Bytes::from(vec![b'x'; a.body_size]);
    let s = bench::drive_with(a.requests, limit(&a)?, a.in_flight, move || {
        let (client, body) = (client.clone(), body.clone());
        async move { read_response(client.request(http_request(&body)).await?).await }
    })
    .await?;
    report("hyper-h1", &a, &s);
    Ok(())
}

async fn h2_client(a: ClientArgs) -> Result<(), BoxError> {
    let io = TokioIo::new(UnixStream::connect(&a.socket).await?);
    let (sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .handshake::<_, Full<Bytes>>(io)
        .await?;
    let task = tokio::spawn(conn);
    let body = Bytes::from(vec![b'x'; a.body_size]);
    let s = bench::drive_with(a.requests, limit(&a)?, a.in_flight, move || {
        let (mut sender, body) = (sender.clone(), body.clone());
        async move {
            sender.ready().await?;
            read_response(sender.send_request(http_request(&body)).await?).await
        }
    })
    .await?;
    task.abort();
    report("hyper-h2", &a, &s);
    Ok(())
}

/// The one message of the gRPC echo.
#[derive(Clone, PartialEq, prost::Message)]
struct EchoMsg {
    #[prost(bytes = "bytes", tag = "1")]
    data: Bytes,
}

type Codec = tonic_prost::ProstCodec<EchoMsg, EchoMsg>;

/// The unary method: an empty request gets the greeting, any other is
/// echoed.
#[derive(Clone, Copy)]
struct EchoMethod;

impl tonic::server::UnaryService<EchoMsg> for EchoMethod {
    type Response = EchoMsg;
    type Future = std::future::Ready<Result<tonic::Response<EchoMsg>, tonic::Status>>;

    fn call(&mut self, req: tonic::Request<EchoMsg>) -> Self::Future {
        let data = req.into_inner().data;
        let data = if data.is_empty() {
            Bytes::from_static(HELLO)
        } else {
            data
        };
        std::future::ready(Ok(tonic::Response::new(EchoMsg { data })))
    }
}

/// The service: what tonic-build would generate for `service Echo`, by
/// hand (one route).
#[derive(Clone, Copy)]
struct EchoService;

impl tower::Service<Request<tonic::body::Body>> for EchoService {
    type Response = Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<tonic::body::Body>) -> Self::Future {
        if req.uri().path() != GRPC_PATH {
            let resp = tonic::Status::unimplemented(req.uri().path().to_string()).into_http();
            return Box::pin(std::future::ready(Ok(resp)));
        }
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(Codec::default());
            Ok(grpc.unary(EchoMethod, req).await)
        })
    }
}

async fn grpc_server(a: ServerArgs) -> Result<(), BoxError> {
    let listener = bind_unix(&a.socket)?;
    tonic::transport::Server::builder()
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_concurrent_streams(MAX_STREAMS)
        .serve_with_incoming(
            EchoService,
            tokio_stream::wrappers::UnixListenerStream::new(listener),
        )
        .await?;
    Ok(())
}

async fn grpc_client(a: ClientArgs) -> Result<(), BoxError> {
    let channel = tonic::transport::Endpoint::from_static("http://bench")
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .buffer_size(a.in_flight.max(1024))
        .connect_with_connector(UnixConnector(Arc::new(a.socket.clone())))
        .await?;
    let grpc = tonic::client::Grpc::new(channel);
    let body = Bytes::from(vec![b'x'; a.body_size]);
    let path = http::uri::PathAndQuery::from_static(GRPC_PATH);
    let s = bench::drive_with(a.requests, limit(&a)?, a.in_flight, move || {
        let (mut grpc, data, path) = (grpc.clone(), body.clone(), path.clone());
        async move {
            grpc.ready().await?;
            let resp = grpc
                .unary(
                    tonic::Request::new(EchoMsg { data }),
                    path,
                    Codec::default(),
                )
                .await?;
            Ok(resp.into_inner().data.len())
        }
    })
    .await?;
    report("tonic-grpc", &a, &s);
    Ok(())
}

fn main() -> Result<(), BoxError> {
    let cli = Cli::parse();
    // The same runtime as the `uwire` command (a worker per core, or
    // TOKIO_WORKER_THREADS), except `hello --threads 1`.
    let rt = match &cli.cmd {
        Cmd::Hello { threads, .. } if *threads <= 1 => {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
        }
        Cmd::Hello { threads, .. } => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(*threads)
            .enable_all()
            .build()?,
        _ => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?,
    };
    rt.block_on(async move {
        match cli.cmd {
            Cmd::H1Server(a) => h1_server(a).await,
            Cmd::H1Client(a) => h1_client(a).await,
            Cmd::H2Server(a) => h2_server(a).await,
            Cmd::H2Client(a) => h2_client(a).await,
            Cmd::GrpcServer(a) => grpc_server(a).await,
            Cmd::GrpcClient(a) => grpc_client(a).await,
            Cmd::Hello { listen, .. } => hello_server(listen).await,
        }
    })
}
