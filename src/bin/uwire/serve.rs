//! `uwire serve`: the app-side runtime with the built-in demo app.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uwire::server::{demo::Demo, BindAddr, Listener, Metrics, Server, ServerConfig};

use crate::duration::{parse_busy_poll, parse_duration};
use crate::threads::ON_START;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn parse_mode(s: &str) -> Result<u32, String> {
    u32::from_str_radix(s.trim_start_matches("0o"), 8)
        .map_err(|e| format!("bad octal mode {s:?}: {e}"))
}

/// Options of `uwire serve`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Where to listen: unix:/path, tcp:HOST:PORT, or systemd[:N] (socket activation).
    #[arg(long, default_value = "unix:/tmp/uwire-app.sock")]
    pub bind: BindAddr,
    /// File mode of the Unix socket, octal.
    #[arg(long, default_value = "660", value_parser = parse_mode)]
    pub socket_mode: u32,
    /// Zero-downtime restart: if a live server listens on the Unix socket
    /// path, take the path over atomically (bind a temporary name, rename
    /// it into place) instead of failing; then SIGTERM the old server, which
    /// drains its connections while new ones come here.
    #[arg(long)]
    pub replace: bool,
    /// Only serve Unix peers with this uid (repeatable; with --allow-gid, either may match).
    #[arg(long = "allow-uid")]
    pub allow_uid: Vec<u32>,
    /// Only serve Unix peers with this gid (repeatable).
    #[arg(long = "allow-gid")]
    pub allow_gid: Vec<u32>,
    /// Serve Prometheus metrics over HTTP on this TCP address (e.g. 127.0.0.1:9100).
    #[arg(long)]
    pub metrics: Option<SocketAddr>,
    /// Most connections open at once.
    #[arg(long, default_value_t = uwire::server::DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,
    /// Most concurrent streams per connection.
    #[arg(long, default_value_t = uwire::conn::DEFAULT_MAX_CONCURRENT_STREAMS)]
    pub max_streams: u32,
    /// Responses of one connection finished within a scheduler turn that go
    /// out in one write (0 or 1: each at once).
    #[arg(long, default_value_t = uwire::conn::DEFAULT_WRITE_BATCH)]
    pub write_batch: usize,
    /// Largest request head in bytes.
    #[arg(long, default_value_t = uwire::frame::DEFAULT_MAX_HEAD_SIZE)]
    pub max_head_size: u32,
    /// Most header fields in one head.
    #[arg(long, default_value_t = uwire::frame::DEFAULT_MAX_HEADER_COUNT)]
    pub max_headers: u32,
    /// Largest request body in bytes.
    #[arg(long, default_value_t = uwire::server::DEFAULT_MAX_BODY_SIZE)]
    pub max_body_size: u64,
    /// Close connections idle this long (0 disables).
    #[arg(long, default_value = "300s", value_parser = parse_duration)]
    pub idle_timeout: Duration,
    /// Answer 504 when a request takes longer (0 disables).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub request_deadline: Duration,
    /// Close an upgraded connection (WebSocket) that carried no byte either
    /// way for this long (0 disables).
    #[arg(long, default_value = "600s", value_parser = parse_duration)]
    pub tunnel_idle_timeout: Duration,
    /// Close an upgraded connection (WebSocket) open this long, busy or not
    /// (0 disables).
    #[arg(long, default_value = "24h", value_parser = parse_duration)]
    pub tunnel_max_duration: Duration,
    /// Time in-flight requests get after SIGTERM.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub drain_timeout: Duration,
    /// How long a graceful drain waits for a client to confirm it has seen
    /// the drain notice before the final GOAWAY (0: drain in one step).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub drain_notice_timeout: Duration,
    /// End a response (RESET, or an abortive close on classic uwsgi) whose
    /// peer takes none of its bytes for this long, and close a connection
    /// whose peer reads nothing for this long (0 disables).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub send_timeout: Duration,
    /// Mount prefix: becomes SCRIPT_NAME, stripped from PATH_INFO.
    #[arg(long, default_value = "")]
    pub script_name: String,
    /// Map headers whose names contain '_' to HTTP_* (off by default: spoofing risk).
    #[arg(long)]
    pub allow_underscore_headers: bool,
    /// Protocol of the socket: auto (uwire/1 or classic uwsgi, detected per
    /// connection), uwire, or uwsgi (nginx uwsgi_pass).
    #[arg(long, default_value = "auto")]
    pub protocol: uwire::server::ProtocolMode,
    /// Largest classic uwsgi vars block accepted (the protocol caps it at 65535).
    #[arg(long, default_value_t = u16::MAX)]
    pub uwsgi_max_block_size: u16,
    /// Time a connection gets to send its first byte, and a classic uwsgi
    /// client its whole request packet.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub uwsgi_head_timeout: Duration,
    /// Bytes of a classic uwsgi request body read ahead of the handler
    /// (nginx stops sending the body once a response starts, so the
    /// response head waits until this much is in).
    #[arg(long, default_value_t = uwire::server::DEFAULT_UWSGI_READ_AHEAD)]
    pub uwsgi_read_ahead: usize,
    /// Serving threads, each with its own event loop on the shared socket;
    /// a connection stays on the thread that accepted it.
    #[arg(long, default_value_t = crate::threads::DEFAULT_THREADS, value_parser = crate::threads::parse_threads)]
    pub threads: usize,
    /// Before a serving thread sleeps, it watches its event loop up to this
    /// long and takes what arrives meanwhile without being woken (much
    /// lower latency at few requests in flight where waking a sleeping CPU
    /// is dear, as on virtual machines); the window shrinks where it finds
    /// nothing, so sparse work costs no polling, and a thread working over
    /// 80% of its time does not poll. At most 10ms; 0: off.
    /// Default: 50us with one thread, off with more (a polling thread
    /// takes the new connections of the shared listening socket before a
    /// sleeping one wakes, so the threads would not share them). See
    /// `uwire::net::busy_poll`.
    #[arg(long, value_parser = parse_busy_poll)]
    pub busy_poll: Option<Duration>,
    /// Read options from this TOML file ([serve] table; keys are the long
    /// option names); options on the command line win.
    #[arg(long)]
    pub config: Option<std::path::PathBuf>,
    /// Check the configuration, print the result and exit.
    #[arg(long)]
    pub check_config: bool,
}

impl Args {
    /// The server configuration these options describe.
    pub fn config(&self) -> ServerConfig {
        let mut c = ServerConfig::default();
        c.bind.socket_mode = self.socket_mode;
        c.bind.replace = self.replace;
        c.allow_uids = self.allow_uid.clone();
        c.allow_gids = self.allow_gid.clone();
        c.max_connections = self.max_connections;
        c.conn.max_concurrent_streams = self.max_streams;
        c.conn.write_batch = self.write_batch;
        c.conn.limits.max_head_size = self.max_head_size;
        c.conn.limits.max_header_count = self.max_headers;
        c.max_body_size = self.max_body_size;
        c.idle_timeout = (!self.idle_timeout.is_zero()).then_some(self.idle_timeout);
        c.request_deadline = (!self.request_deadline.is_zero()).then_some(self.request_deadline);
        c.drain_timeout = self.drain_timeout;
        c.conn.drain_notice_timeout = self.drain_notice_timeout;
        c.tunnel = crate::proxy::tunnel_limits(self.tunnel_idle_timeout, self.tunnel_max_duration);
        c.environ.script_name = self.script_name.clone().into();
        c.environ.allow_underscore_headers = self.allow_underscore_headers;
        c.protocol = self.protocol;
        c.uwsgi_max_block_size = self.uwsgi_max_block_size;
        c.uwsgi_head_timeout = self.uwsgi_head_timeout;
        c.uwsgi_read_ahead = self.uwsgi_read_ahead;
        let send_timeout = (!self.send_timeout.is_zero()).then_some(self.send_timeout);
        c.send_timeout = send_timeout;
        c.conn.write_timeout = send_timeout;
        c
    }
}

/// Serves Prometheus text to any HTTP request on `addr`.
pub async fn metrics_endpoint(addr: SocketAddr, metrics: Arc<Metrics>) -> Result<(), BoxError> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    eprintln!(
        "uwire: metrics on http://{}/metrics",
        listener.local_addr()?
    );
    loop {
        let (mut sock, _) = listener.accept().await?;
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            // Read the request head (bounded); we answer every path the same.
            let _ = tokio::time::timeout(Duration::from_secs(5), sock.read(&mut buf)).await;
            let body = metrics.render_prometheus();
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = sock.write_all(head.as_bytes()).await;
            let _ = sock.write_all(body.as_bytes()).await;
            let _ = sock.shutdown().await;
        });
    }
}

/// Runs `uwire serve`.
pub async fn run(args: Args) -> Result<(), BoxError> {
    let shutdown = uwire::server::shutdown_signal();
    let config = args.config();
    config.validate()?;
    if args.check_config {
        println!("uwire serve: configuration OK");
        return Ok(());
    }
    let listener = Listener::bind(&args.bind, &config.bind).await?;
    eprintln!(
        "uwire: serving the demo app on {} (/, /echo, /environ)",
        listener.local_addr()
    );
    let server = Server::new(config);
    if let Some(addr) = args.metrics {
        let m = server.metrics();
        tokio::spawn(async move {
            if let Err(e) = metrics_endpoint(addr, m).await {
                eprintln!("uwire: metrics endpoint failed: {e}");
            }
        });
    }
    let n = args.threads;
    let busy_poll = crate::threads::busy_poll(args.busy_poll, n);
    let extra = {
        let server = server.clone();
        let shared = crate::threads::Handoff::new(
            (1..n).map(|_| listener.share()).collect::<Result<_, _>>()?,
        );
        move |_i, stop: crate::threads::Stop| {
            let l = Listener::from_shared(shared.take()?)?;
            let server = server.clone();
            Ok(async move { Ok(server.serve(l, Demo, stop.wait()).await?) })
        }
    };
    let here = |stop: crate::threads::Stop| async move {
        Ok(server.serve(listener, Demo, stop.wait()).await?)
    };
    uwire::net::threads::serve(n, busy_poll, ON_START, extra, here, shutdown).await?;
    eprintln!("uwire: shut down cleanly");
    Ok(())
}
