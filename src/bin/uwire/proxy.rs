//! `uwire proxy` and `uwire quickstart`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use uwire::client::{Balance, Client, ClientConfig, Upstream};
use uwire::proxy::access_log::{AccessLogFormat, AccessLogTarget};
use uwire::proxy::compress::{Algorithm, CompressionConfig};
use uwire::proxy::forwarded::TrustedProxies;
use uwire::proxy::static_files::StaticMount;
use uwire::proxy::{self, Front, ProxyConfig, TlsFiles};
use uwire::server::{demo::Demo, BindAddr, Listener, Server, ServerConfig};

use crate::duration::{parse_busy_poll, parse_duration};
use crate::threads::ON_START;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn parse_param(s: &str) -> Result<(Bytes, Bytes), String> {
    let (n, v) = s
        .split_once('=')
        .ok_or_else(|| format!("--param {s:?}: expected NAME=VALUE"))?;
    if n.is_empty() {
        return Err(format!("--param {s:?}: empty name"));
    }
    Ok((Bytes::from(n.to_string()), Bytes::from(v.to_string())))
}

/// Options shared by `proxy` and `quickstart`.
#[derive(clap::Args, Debug)]
pub struct FrontArgs {
    /// Extra CGI variable for the app, like nginx's uwsgi_param (repeatable).
    #[arg(long = "param", value_parser = parse_param)]
    pub params: Vec<(Bytes, Bytes)>,
    /// Do not append the client address to X-Forwarded-For.
    #[arg(long)]
    pub no_x_forwarded_for: bool,
    /// Do not set X-Forwarded-Proto.
    #[arg(long)]
    pub no_x_forwarded_proto: bool,
    /// Peers trusted to set X-Forwarded-For / X-Forwarded-Proto: comma-separated
    /// IPs and CIDR ranges, or * (default: none). The app then sees the client
    /// they name, and HTTPS when they say https.
    #[arg(long, default_value = "")]
    pub forwarded_allow_ips: TrustedProxies,
    /// Every connection starts with a PROXY protocol v1/v2 header (from a load
    /// balancer); its source address becomes the client address.
    #[arg(long)]
    pub proxy_protocol: bool,
    /// Largest request head in bytes (431 above).
    #[arg(long, default_value_t = proxy::DEFAULT_MAX_HEADER_SIZE)]
    pub max_header_size: usize,
    /// Most request header fields (431 above).
    #[arg(long, default_value_t = proxy::DEFAULT_MAX_HEADERS)]
    pub max_headers: usize,
    /// Largest request body in bytes (413 above).
    #[arg(long, default_value_t = proxy::DEFAULT_MAX_BODY_SIZE)]
    pub max_body_size: u64,
    /// Most downstream connections at once (further ones wait in the backlog).
    #[arg(long, default_value_t = proxy::DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,
    /// Most downstream connections from one IP (0 = no per-IP cap); more are closed.
    #[arg(long, default_value_t = proxy::DEFAULT_MAX_CONNECTIONS_PER_IP)]
    pub max_connections_per_ip: usize,
    /// Time a new connection gets to send its first byte.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub first_byte_timeout: Duration,
    /// Time to receive a whole request head once it started (408), and to
    /// finish a TLS handshake or PROXY header.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub header_read_timeout: Duration,
    /// Longest wait for the next piece of a request body (408).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub body_read_timeout: Duration,
    /// Close an upgraded connection (WebSocket) that carried no byte either
    /// way for this long (0 disables).
    #[arg(long, default_value = "600s", value_parser = parse_duration)]
    pub tunnel_idle_timeout: Duration,
    /// Close an upgraded connection (WebSocket) open this long, busy or not
    /// (0 disables).
    #[arg(long, default_value = "24h", value_parser = parse_duration)]
    pub tunnel_max_duration: Duration,
    /// Idle keep-alive connections close after this.
    #[arg(long, default_value = "75s", value_parser = parse_duration)]
    pub keepalive_timeout: Duration,
    /// An idle HTTP/1 keep-alive connection hands back its HTTP state and
    /// buffers after this (0: at once); its next request builds them again.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub idle_release: Duration,
    /// Longest wait for the client to accept response bytes.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub send_timeout: Duration,
    /// Read each request body completely (memory, then a temporary file)
    /// before it goes to the app, like nginx's request buffering.
    #[arg(long)]
    pub request_buffering: bool,
    /// Bytes of a buffered request body kept in memory before spilling to a file.
    #[arg(long, default_value_t = proxy::DEFAULT_REQUEST_BUFFER_MEMORY)]
    pub request_buffer_memory: usize,
    /// Directory for the temporary files of buffered bodies (default: the system's).
    #[arg(long)]
    pub request_buffer_dir: Option<PathBuf>,
    /// Time to the upstream's response head before answering 504 (0 = no limit).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub request_timeout: Duration,
    /// Time allowed for connecting to an upstream, retries included.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub connect_timeout: Duration,
    /// A PING goes to a uwire/1 upstream connection after this long
    /// without a frame from it, idle or not (0 = never): a peer that died
    /// without closing the socket is found.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub upstream_keepalive: Duration,
    /// A uwire/1 upstream connection whose PING stays unanswered this long
    /// is closed, and the requests in flight on it fail (502).
    #[arg(long, default_value = "20s", value_parser = parse_nonzero_duration)]
    pub upstream_ping_timeout: Duration,
    /// Pooled uwire/1 connections per upstream (per serving thread).
    /// Concurrent requests spread over them before two share one, so an
    /// upstream of several worker processes (`python -m uwire --workers N`)
    /// gets work on each; 1 multiplexes every request over one connection,
    /// which costs a single-process upstream less. [default: 4; 1 for
    /// `quickstart` with one thread, whose app runs on that thread]
    #[arg(long)]
    pub connections_per_upstream: Option<usize>,
    /// Requests queued on one upstream connection within a scheduler turn
    /// that go out in one write (0 or 1: each at once).
    #[arg(long, default_value_t = uwire::conn::DEFAULT_WRITE_BATCH)]
    pub write_batch: usize,
    /// Load balancing: least-outstanding or round-robin.
    #[arg(long, default_value = "least-outstanding")]
    pub balance: Balance,
    /// Grace period for in-flight requests on SIGTERM.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub drain_timeout: Duration,
    /// Serving threads, each with its own event loop on the shared
    /// listening socket and its own upstream connections; a connection and
    /// its requests stay on the thread that accepted it.
    #[arg(long, default_value_t = crate::threads::DEFAULT_THREADS, value_parser = crate::threads::parse_threads)]
    pub threads: usize,
    /// Before a serving thread sleeps, it watches its event loop up to this
    /// long and takes what arrives meanwhile without being woken (much
    /// lower latency at few requests in flight where waking a sleeping CPU
    /// is dear, as on virtual machines); the window shrinks where it finds
    /// nothing, so sparse work costs no polling. At most 10ms; 0: off.
    /// Default: 50us with one thread, off with more (a polling thread
    /// takes the new connections of the shared listening socket before a
    /// sleeping one wakes, so the threads would not share them). See
    /// `uwire::net::busy_poll`.
    #[arg(long, value_parser = parse_busy_poll)]
    pub busy_poll: Option<Duration>,
    /// Largest vars block sent to classic uwsgi upstreams: set it to the
    /// uWSGI server's --buffer-size (uWSGI's default is 4096) so oversized
    /// heads get 431 here instead of being dropped by uWSGI (502).
    #[arg(long, default_value_t = u16::MAX)]
    pub uwsgi_buffer_size: u16,
    /// Serve a directory at a URL prefix without the app: /PREFIX=DIR (repeatable).
    #[arg(long = "static", value_name = "PREFIX=DIR")]
    pub static_mounts: Vec<StaticMount>,
    /// Compress app responses with these algorithms (comma-separated, from
    /// zstd, br, gzip), or off.
    #[arg(long, default_value = "zstd,br,gzip", value_parser = parse_algorithms)]
    pub compress: Algorithms,
    /// Smallest response body compressed, in bytes.
    #[arg(long, default_value_t = uwire::proxy::compress::DEFAULT_COMPRESS_MIN_SIZE)]
    pub compress_min_size: u64,
    /// Compression level (gzip 1-9, br 0-11, zstd 1-19; clamped per algorithm).
    #[arg(long, default_value_t = uwire::proxy::compress::DEFAULT_COMPRESS_LEVEL)]
    pub compress_level: i32,
    /// Compressible content types, comma-separated; a trailing / means a whole
    /// top-level type (default: text/, JSON, JavaScript, XML, SVG, wasm, fonts).
    #[arg(long, value_delimiter = ',')]
    pub compress_types: Vec<String>,
    /// Access log: stderr, stdout, off, or a file path (reopened on SIGHUP).
    #[arg(long, default_value = "stderr")]
    pub access_log: AccessLogTarget,
    /// Access log format: combined (nginx) or json.
    #[arg(long, default_value = "combined")]
    pub access_log_format: AccessLogFormat,
    /// Access log buffer in bytes (nginx's buffer=): lines are written
    /// together when it is full or a line has waited --access-log-flush;
    /// 0 writes each line at once. At most 16 MiB.
    #[arg(long, default_value_t = 0)]
    pub access_log_buffer: usize,
    /// Longest time a buffered access log line waits (nginx's flush=).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub access_log_flush: Duration,
}

/// Parses `--upstream-ping-timeout`: a duration, not zero (every
/// connection would fail at its first PING).
fn parse_nonzero_duration(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d.is_zero() {
        return Err(format!("{s:?}: must be more than zero"));
    }
    Ok(d)
}

/// The parsed `--compress` list.
#[derive(Debug, Clone)]
pub struct Algorithms(pub Vec<Algorithm>);

fn parse_algorithms(s: &str) -> Result<Algorithms, String> {
    if s == "off" || s.is_empty() {
        return Ok(Algorithms(Vec::new()));
    }
    s.split(',')
        .map(str::parse)
        .collect::<Result<_, _>>()
        .map(Algorithms)
}

impl FrontArgs {
    pub(crate) fn configs(&self) -> (ClientConfig, ProxyConfig) {
        let mut c = ClientConfig {
            request_timeout: (!self.request_timeout.is_zero()).then_some(self.request_timeout),
            connect_timeout: self.connect_timeout,
            max_connections_per_upstream: self
                .connections_per_upstream
                .unwrap_or(uwire::client::DEFAULT_MAX_CONNECTIONS_PER_UPSTREAM),
            balance: self.balance,
            uwsgi_buffer_size: self.uwsgi_buffer_size,
            ..ClientConfig::default()
        };
        c.conn.write_batch = self.write_batch;
        c.conn.keepalive_interval =
            (!self.upstream_keepalive.is_zero()).then_some(self.upstream_keepalive);
        c.conn.ping_timeout = self.upstream_ping_timeout;
        let mut compression = CompressionConfig {
            algorithms: self.compress.0.clone(),
            min_size: self.compress_min_size,
            level: self.compress_level,
            ..CompressionConfig::default()
        };
        if !self.compress_types.is_empty() {
            compression.types = self.compress_types.clone();
        }
        let p = ProxyConfig {
            params: self.params.clone(),
            x_forwarded_for: !self.no_x_forwarded_for,
            x_forwarded_proto: !self.no_x_forwarded_proto,
            forwarded_allow_ips: self.forwarded_allow_ips.clone(),
            proxy_protocol: self.proxy_protocol,
            max_header_size: self.max_header_size,
            max_headers: self.max_headers,
            max_body_size: self.max_body_size,
            max_connections: self.max_connections,
            max_connections_per_ip: self.max_connections_per_ip,
            first_byte_timeout: self.first_byte_timeout,
            header_read_timeout: self.header_read_timeout,
            body_read_timeout: self.body_read_timeout,
            keepalive_timeout: self.keepalive_timeout,
            idle_release: self.idle_release,
            send_timeout: self.send_timeout,
            drain_timeout: self.drain_timeout,
            request_buffering: self.request_buffering,
            request_buffer_memory: self.request_buffer_memory,
            request_buffer_dir: self.request_buffer_dir.clone(),
            tls: None,
            static_mounts: self.static_mounts.clone(),
            compression,
            access_log_format: self.access_log_format,
            access_log: self.access_log.clone(),
            access_log_buffer: self.access_log_buffer,
            access_log_flush: self.access_log_flush,
            tunnel: tunnel_limits(self.tunnel_idle_timeout, self.tunnel_max_duration),
        };
        (c, p)
    }
}

/// Options of `uwire proxy`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Upstream app: unix:/path, tcp:host:port, uwsgi+unix:/path, uwsgi+tcp:host:port (repeatable).
    #[arg(long = "upstream", required = true)]
    pub upstreams: Vec<Upstream>,
    /// Force the protocol of every upstream (uwire or uwsgi).
    #[arg(long)]
    pub upstream_protocol: Option<String>,
    /// Address to listen on (HTTP, or HTTPS with --tls-cert).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// TLS certificate chain (PEM, leaf first); with --tls-key the listener
    /// speaks HTTPS (HTTP/2 and HTTP/1.1 by ALPN). Reloaded on SIGHUP.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Also listen on this address for plain HTTP and redirect every request
    /// to HTTPS (308), e.g. 0.0.0.0:80.
    #[arg(long, requires = "tls_cert")]
    pub redirect_listen: Option<SocketAddr>,
    /// Read options from this TOML file ([proxy] table; keys are the long
    /// option names); options on the command line win.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Check the configuration (file, options, certificate, static
    /// directories), print the result and exit.
    #[arg(long)]
    pub check_config: bool,
    #[command(flatten)]
    pub front: FrontArgs,
}

/// Runs `uwire proxy`.
pub async fn run(args: Args) -> Result<(), BoxError> {
    let shutdown = uwire::server::shutdown_signal();
    let mut upstreams = args.upstreams.clone();
    if let Some(p) = &args.upstream_protocol {
        let protocol = match p.as_str() {
            "uwire" => uwire::client::Protocol::Uwire,
            "uwsgi" => uwire::client::Protocol::Uwsgi,
            _ => return Err(format!("--upstream-protocol {p:?}: use uwire or uwsgi").into()),
        };
        for u in &mut upstreams {
            u.protocol = protocol;
        }
    }
    let (ccfg, mut pcfg) = args.front.configs();
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        pcfg.tls = Some(TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
        });
    }
    let client = Client::new(upstreams.clone(), ccfg)?;
    let front = Arc::new(Front::new(client, pcfg.clone())?);
    if args.check_config {
        println!("uwire proxy: configuration OK");
        return Ok(());
    }
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    let scheme = if front.is_tls() { "https" } else { "http" };
    eprintln!(
        "uwire proxy: {scheme}://{} -> {}",
        listener.local_addr()?,
        upstreams
            .iter()
            .map(|u| u.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    // SIGHUP: new certificate for new handshakes, access log reopened.
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let reloader = front.clone();
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            match reloader.reload() {
                Ok(()) => eprintln!("uwire proxy: reloaded (SIGHUP)"),
                Err(e) => eprintln!("uwire proxy: reload failed, keeping the old settings: {e}"),
            }
        }
    });
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    if let Some(addr) = args.redirect_listen {
        let redirect = tokio::net::TcpListener::bind(addr).await?;
        let https_port = listener.local_addr()?.port();
        eprintln!(
            "uwire proxy: redirecting http://{} to https (port {https_port})",
            redirect.local_addr()?
        );
        let mut rx = stop_rx.clone();
        let cfg = pcfg.clone();
        tokio::spawn(async move {
            let stop = async move {
                let _ = rx.wait_for(|v| *v).await;
            };
            if let Err(e) = proxy::serve_redirect(redirect, https_port, &cfg, stop).await {
                eprintln!("uwire proxy: redirect listener failed: {e}");
            }
        });
    }
    let n = args.front.threads;
    let busy_poll = crate::threads::busy_poll(args.front.busy_poll, n);
    let serve_one = move |l, stop: crate::threads::Stop| {
        let front = front.clone();
        async move { Ok(front.serve(l, stop.wait()).await?) }
    };
    let served =
        uwire::net::threads::serve_tcp(n, busy_poll, ON_START, listener, serve_one, shutdown).await;
    let _ = stop_tx.send(true);
    served?;
    eprintln!("uwire proxy: shut down cleanly");
    Ok(())
}

/// Options of `uwire quickstart`.
#[derive(clap::Args, Debug)]
pub struct QuickstartArgs {
    /// HTTP address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Unix socket for the app runtime (default: a fresh temporary path).
    #[arg(long)]
    pub app_socket: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub front: FrontArgs,
}

impl QuickstartArgs {
    /// The front's configurations. With one thread the app runs on the
    /// front's own thread: spreading requests over several connections to
    /// it would only make each write carry fewer frames, so the pool keeps
    /// one unless `--connections-per-upstream` says otherwise.
    pub(crate) fn configs(&self) -> (ClientConfig, ProxyConfig) {
        let (mut c, p) = self.front.configs();
        if self.front.connections_per_upstream.is_none() && self.front.threads == 1 {
            c.max_connections_per_upstream = 1;
        }
        (c, p)
    }

    /// The app half's configuration: built-in defaults, with the front's
    /// write batching (it answers the front's requests).
    pub(crate) fn app_config(&self) -> ServerConfig {
        let mut c = ServerConfig::default();
        c.conn.write_batch = self.front.write_batch;
        c
    }
}

/// Runs `uwire quickstart`: the app runtime with the demo app on a Unix
/// socket and the HTTP front before it, in one process.
pub async fn quickstart(args: QuickstartArgs) -> Result<(), BoxError> {
    let shutdown = uwire::server::shutdown_signal();
    let sock = args.app_socket.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("uwire-quickstart-{}.sock", std::process::id()))
    });
    let scfg = args.app_config();
    let app_listener = Listener::bind(&BindAddr::Unix(sock.clone()), &scfg.bind).await?;
    let server = Server::new(scfg);
    let (ccfg, pcfg) = args.configs();
    let client = Client::new(
        vec![Upstream {
            protocol: uwire::client::Protocol::Uwire,
            transport: uwire::client::Transport::Unix(sock.clone()),
        }],
        ccfg,
    )?;
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    let addr = listener.local_addr()?;
    println!(
        "uwire quickstart: HTTP on http://{addr} -> uwire over unix:{} -> built-in demo app",
        sock.display()
    );
    println!();
    println!("Try:");
    println!("  curl http://{addr}/");
    println!("  curl http://{addr}/environ/some/path?x=1");
    println!("  curl --data-binary @/etc/os-release http://{addr}/echo");
    println!("  head -c 100M /dev/zero | curl -sT - http://{addr}/echo | wc -c");
    println!();
    println!("Ctrl-C stops both.");
    let front = Arc::new(Front::new(client, pcfg)?);
    // Every thread serves both halves: its front's upstream connections go
    // to the app socket, which any thread's runtime may accept.
    let n = args.front.threads;
    let busy_poll = crate::threads::busy_poll(args.front.busy_poll, n);
    let extra = {
        let (front, server) = (front.clone(), server.clone());
        let tcp = crate::threads::share_tcp(&listener, n)?;
        let apps = crate::threads::Handoff::new(
            (1..n)
                .map(|_| app_listener.share())
                .collect::<Result<_, _>>()?,
        );
        move |_i, stop| {
            let l = crate::threads::take_tcp(&tcp)?;
            let a = Listener::from_shared(apps.take()?)?;
            let (front, server) = (front.clone(), server.clone());
            Ok(async move { serve_both(&front, l, &server, a, stop).await })
        }
    };
    let here =
        |stop| async move { serve_both(&front, listener, &server, app_listener, stop).await };
    uwire::net::threads::serve(n, busy_poll, ON_START, extra, here, shutdown).await?;
    println!("uwire quickstart: stopped");
    Ok(())
}

/// The front and the app runtime on this thread until `stop`; the front
/// drains first, then the app.
async fn serve_both(
    front: &Front,
    listener: tokio::net::TcpListener,
    server: &Server,
    app: Listener,
    stop: crate::threads::Stop,
) -> Result<(), BoxError> {
    let (app_stop_tx, app_stop_rx) = tokio::sync::watch::channel(false);
    let app_stop = crate::threads::Stop::from(app_stop_rx);
    let app = server.serve(app, Demo, app_stop.wait());
    let front = async {
        let r = front.serve(listener, stop.wait()).await;
        let _ = app_stop_tx.send(true);
        r
    };
    let (f, a) = tokio::join!(front, app);
    f?;
    a?;
    Ok(())
}

/// Tunnel limits from the two flags (0 disables a limit).
pub fn tunnel_limits(idle: Duration, max: Duration) -> uwire::net::TunnelLimits {
    uwire::net::TunnelLimits {
        idle_timeout: (!idle.is_zero()).then_some(idle),
        max_duration: (!max.is_zero()).then_some(max),
    }
}
