//! Server limits and timeouts, each with a documented default.

use std::time::Duration;

use super::listener::BindOptions;
use crate::conn::Config as ConnConfig;
use crate::environ::EnvironConfig;
use crate::net::TunnelLimits;

/// Default cap on open connections: 1024.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Default cap on one request body: 1 GiB.
pub const DEFAULT_MAX_BODY_SIZE: u64 = 1 << 30;
/// Default idle-connection timeout: 5 minutes. Proxies keep pooled
/// connections open; the timeout only reaps ones that stay unused.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Default per-request deadline: 60 s (uWSGI's "harakiri", without the kill).
pub const DEFAULT_REQUEST_DEADLINE: Duration = Duration::from_secs(60);
/// Default time in-flight requests get to finish after shutdown starts: 30 s.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Default send-progress timeout: 60 s (nginx's `send_timeout`).
pub const DEFAULT_SEND_TIMEOUT: Duration = Duration::from_secs(60);

/// Which protocol a listening socket speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProtocolMode {
    /// Decide per connection from its first byte: `0x9A` (the uwire
    /// preface) means uwire/1, anything else classic uwsgi.
    #[default]
    Auto,
    /// uwire/1 only.
    Uwire,
    /// Classic uwsgi only (nginx `uwsgi_pass`).
    Uwsgi,
}

impl std::str::FromStr for ProtocolMode {
    type Err = String;
    fn from_str(s: &str) -> Result<ProtocolMode, String> {
        match s {
            "auto" => Ok(ProtocolMode::Auto),
            "uwire" => Ok(ProtocolMode::Uwire),
            "uwsgi" => Ok(ProtocolMode::Uwsgi),
            _ => Err(format!("unknown protocol {s:?}: auto, uwire or uwsgi")),
        }
    }
}

/// Default time a classic uwsgi client gets to send its request packet: 30 s.
pub const DEFAULT_UWSGI_HEAD_TIMEOUT: Duration = Duration::from_secs(30);

/// Default classic uwsgi body read-ahead: 16 MiB.
pub const DEFAULT_UWSGI_READ_AHEAD: usize = 16 * 1024 * 1024;

/// Everything a [`super::Server`] can be told.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Protocol settings of each connection: max concurrent streams per
    /// connection, windows, max head size and header count (see
    /// [`crate::conn::Config`]).
    pub conn: ConnConfig,
    /// Most connections open at once; further clients wait in the listen
    /// backlog. Default [`DEFAULT_MAX_CONNECTIONS`]; range 1..
    pub max_connections: usize,
    /// Largest request body. A request whose `body_length` hint is larger
    /// gets 413 without reaching the handler. A body that grows past it
    /// while being read is cut off at once: the stream is reset with
    /// LIMIT_EXCEEDED (so the proxy stops uploading) and the handler's read
    /// fails with [`BodyError::TooLarge`](super::BodyError::TooLarge).
    /// Default [`DEFAULT_MAX_BODY_SIZE`].
    pub max_body_size: u64,
    /// Close a connection that has had no stream for this long (GOAWAY).
    /// Default [`DEFAULT_IDLE_TIMEOUT`]; `None` disables it.
    pub idle_timeout: Option<Duration>,
    /// Answer 504 (or RESET with TIMEOUT once the head was sent) when a
    /// request takes longer. Default [`DEFAULT_REQUEST_DEADLINE`]; `None`
    /// disables it.
    pub request_deadline: Option<Duration>,
    /// After shutdown starts, in-flight requests get this long before they
    /// are reset. Default [`DEFAULT_DRAIN_TIMEOUT`].
    pub drain_timeout: Duration,
    /// A response whose peer takes none of its bytes for this long (a
    /// reader that stopped reading, or never returns flow-control credit)
    /// is ended: RESET(TIMEOUT) on uwire/1, an abortive close on classic
    /// uwsgi; what it held is freed. The request deadline bounds the
    /// handler; this bounds the sending. Default [`DEFAULT_SEND_TIMEOUT`];
    /// `None` disables it.
    pub send_timeout: Option<Duration>,
    /// How request heads become environs.
    pub environ: EnvironConfig,
    /// If non-empty (or `allow_gids` is), only Unix peers whose uid is listed
    /// (or whose gid is in `allow_gids`) are served. Unix sockets only.
    pub allow_uids: Vec<u32>,
    /// See `allow_uids`.
    pub allow_gids: Vec<u32>,
    /// Socket file mode and backlog.
    pub bind: BindOptions,
    /// Which protocol connections speak. Default [`ProtocolMode::Auto`].
    pub protocol: ProtocolMode,
    /// Largest classic uwsgi vars block accepted. Default 65535, the
    /// protocol's own cap; range 4..=65535.
    pub uwsgi_max_block_size: u16,
    /// Time a connection gets to send its first byte (auto-detection) and a
    /// classic uwsgi client to send its whole request packet. Default
    /// [`DEFAULT_UWSGI_HEAD_TIMEOUT`].
    pub uwsgi_head_timeout: Duration,
    /// How much of a classic uwsgi request body is read ahead of the
    /// handler. Once nginx has passed a response head on to its client it
    /// stops writing the request body to the upstream, so the runtime holds
    /// the response head back until the whole body is in, reading it ahead
    /// of the handler (an echo streams its answer while reading); past this
    /// much, the head goes out anyway and reads wait for the handler.
    /// Default [`DEFAULT_UWSGI_READ_AHEAD`].
    pub uwsgi_read_ahead: usize,
    /// Idle and lifetime limits of accepted upgrades (WebSockets and other
    /// tunnels): past either, the stream is reset with TIMEOUT (the
    /// connection closed, over classic uwsgi). The request deadline does
    /// not apply once the upgrade is accepted. Defaults
    /// [`crate::net::DEFAULT_TUNNEL_IDLE_TIMEOUT`] and
    /// [`crate::net::DEFAULT_TUNNEL_MAX_DURATION`].
    pub tunnel: TunnelLimits,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            conn: ConnConfig::default(),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_body_size: DEFAULT_MAX_BODY_SIZE,
            idle_timeout: Some(DEFAULT_IDLE_TIMEOUT),
            request_deadline: Some(DEFAULT_REQUEST_DEADLINE),
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            send_timeout: Some(DEFAULT_SEND_TIMEOUT),
            environ: EnvironConfig::default(),
            allow_uids: Vec::new(),
            allow_gids: Vec::new(),
            bind: BindOptions::default(),
            protocol: ProtocolMode::Auto,
            uwsgi_max_block_size: u16::MAX,
            uwsgi_head_timeout: DEFAULT_UWSGI_HEAD_TIMEOUT,
            uwsgi_read_ahead: DEFAULT_UWSGI_READ_AHEAD,
            tunnel: TunnelLimits::default(),
        }
    }
}

impl ServerConfig {
    /// Checks every value against its range.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_connections == 0 {
            return Err("max_connections must be at least 1".into());
        }
        if self.bind.socket_mode > 0o777 {
            return Err(format!(
                "socket mode {:o} is not a permission mode",
                self.bind.socket_mode
            ));
        }
        self.conn.validate().map_err(|e| e.to_string())?;
        self.tunnel.validate()?;
        Ok(())
    }

    /// Whether peers are checked at all: a uid or gid allowlist is set
    /// (`SO_PEERCRED`, Unix sockets only).
    pub fn checks_peers(&self) -> bool {
        !(self.allow_uids.is_empty() && self.allow_gids.is_empty())
    }

    /// Whether a peer with `uid`/`gid` may connect.
    pub fn peer_allowed(&self, uid: u32, gid: u32) -> bool {
        !self.checks_peers() || self.allow_uids.contains(&uid) || self.allow_gids.contains(&gid)
    }
}
