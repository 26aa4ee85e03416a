//! `uwire proxy` and `uwire quickstart`.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use uwire::client::{Balance, Client, ClientConfig, Upstream};
use uwire::proxy::{self, ProxyConfig};
use uwire::server::{demo::Demo, BindAddr, Listener, Server, ServerConfig};

use crate::serve::parse_duration;

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
    /// Largest request head in bytes (431 above).
    #[arg(long, default_value_t = proxy::DEFAULT_MAX_HEADER_SIZE)]
    pub max_header_size: usize,
    /// Most request header fields (431 above).
    #[arg(long, default_value_t = proxy::DEFAULT_MAX_HEADERS)]
    pub max_headers: usize,
    /// Largest request body in bytes (413 above).
    #[arg(long, default_value_t = proxy::DEFAULT_MAX_BODY_SIZE)]
    pub max_body_size: u64,
    /// Most downstream connections at once.
    #[arg(long, default_value_t = proxy::DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,
    /// Time to the upstream's response head before answering 504 (0 = no limit).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub request_timeout: Duration,
    /// Time allowed for connecting to an upstream, retries included.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub connect_timeout: Duration,
    /// Pooled connections per upstream.
    #[arg(long, default_value_t = uwire::client::DEFAULT_MAX_CONNECTIONS_PER_UPSTREAM)]
    pub connections_per_upstream: usize,
    /// Load balancing: least-outstanding or round-robin.
    #[arg(long, default_value = "least-outstanding")]
    pub balance: Balance,
    /// Grace period for in-flight requests on SIGTERM.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub drain_timeout: Duration,
    /// Largest vars block sent to classic uwsgi upstreams: set it to the
    /// uWSGI server's --buffer-size (uWSGI's default is 4096) so oversized
    /// heads get 431 here instead of being dropped by uWSGI (502).
    #[arg(long, default_value_t = u16::MAX)]
    pub uwsgi_buffer_size: u16,
}

impl FrontArgs {
    fn configs(&self) -> (ClientConfig, ProxyConfig) {
        let c = ClientConfig {
            request_timeout: (!self.request_timeout.is_zero()).then_some(self.request_timeout),
            connect_timeout: self.connect_timeout,
            max_connections_per_upstream: self.connections_per_upstream,
            balance: self.balance,
            uwsgi_buffer_size: self.uwsgi_buffer_size,
            ..ClientConfig::default()
        };
        let p = ProxyConfig {
            params: self.params.clone(),
            x_forwarded_for: !self.no_x_forwarded_for,
            x_forwarded_proto: !self.no_x_forwarded_proto,
            max_header_size: self.max_header_size,
            max_headers: self.max_headers,
            max_body_size: self.max_body_size,
            max_connections: self.max_connections,
            drain_timeout: self.drain_timeout,
            ..ProxyConfig::default()
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
    /// HTTP address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
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
    let (ccfg, pcfg) = args.front.configs();
    let client = Client::new(upstreams.clone(), ccfg)?;
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    eprintln!(
        "uwire proxy: http://{} -> {}",
        listener.local_addr()?,
        upstreams
            .iter()
            .map(|u| u.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    proxy::serve(listener, client, pcfg, shutdown).await?;
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

/// Runs `uwire quickstart`: the app runtime with the demo app on a Unix
/// socket and the HTTP front before it, in one process.
pub async fn quickstart(args: QuickstartArgs) -> Result<(), BoxError> {
    let shutdown = uwire::server::shutdown_signal();
    let sock = args.app_socket.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("uwire-quickstart-{}.sock", std::process::id()))
    });
    let scfg = ServerConfig::default();
    let app_listener = Listener::bind(&BindAddr::Unix(sock.clone()), &scfg.bind).await?;
    let server = Server::new(scfg);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let app = {
        let mut rx = stop_rx.clone();
        tokio::spawn(async move {
            let stop = async move {
                let _ = rx.wait_for(|v| *v).await;
            };
            server.serve(app_listener, Demo, stop).await
        })
    };
    let (ccfg, pcfg) = args.front.configs();
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
    proxy::serve(listener, client, pcfg, shutdown).await?;
    let _ = stop_tx.send(true);
    app.await??;
    println!("uwire quickstart: stopped");
    Ok(())
}
