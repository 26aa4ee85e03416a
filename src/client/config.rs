//! Client (proxy-side) settings, each with a documented default.

use std::time::Duration;

use crate::conn::Config as ConnConfig;

/// Default connect timeout (all attempts together): 5 s.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default connect retries after the first attempt: 2.
pub const DEFAULT_CONNECT_RETRIES: u32 = 2;
/// Default first retry backoff (doubles each retry): 25 ms.
pub const DEFAULT_RETRY_BACKOFF: Duration = Duration::from_millis(25);
/// Default time to the response head: 60 s.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Default connections per upstream: 4.
pub const DEFAULT_MAX_CONNECTIONS_PER_UPSTREAM: usize = 4;
/// Default keepalive PING interval on idle pooled connections: 30 s.
pub const DEFAULT_KEEPALIVE: Duration = Duration::from_secs(30);
/// Default consecutive failures that eject an upstream: 3.
pub const DEFAULT_EJECT_AFTER: u32 = 3;
/// Default time an ejected upstream sits out: 10 s.
pub const DEFAULT_EJECT_COOLDOWN: Duration = Duration::from_secs(10);

/// How requests are spread over several upstreams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Balance {
    /// The upstream with the fewest requests in flight (ties rotate).
    #[default]
    LeastOutstanding,
    /// Each upstream in turn.
    RoundRobin,
}

impl std::str::FromStr for Balance {
    type Err = String;
    fn from_str(s: &str) -> Result<Balance, String> {
        match s {
            "least-outstanding" | "least" => Ok(Balance::LeastOutstanding),
            "round-robin" | "rr" => Ok(Balance::RoundRobin),
            _ => Err(format!(
                "unknown balance {s:?}: least-outstanding or round-robin"
            )),
        }
    }
}

/// Everything a [`super::Client`] can be told.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Protocol settings of each connection (windows, limits). The keepalive
    /// PING interval defaults to [`DEFAULT_KEEPALIVE`] here.
    pub conn: ConnConfig,
    /// Time allowed for connecting, all retries included. Default
    /// [`DEFAULT_CONNECT_TIMEOUT`].
    pub connect_timeout: Duration,
    /// Retries after a failed connect. Default [`DEFAULT_CONNECT_RETRIES`].
    pub connect_retries: u32,
    /// First retry delay; doubles each retry. Default [`DEFAULT_RETRY_BACKOFF`].
    pub retry_backoff: Duration,
    /// Time from sending the head to receiving the response head; `None`
    /// waits forever. Default [`DEFAULT_REQUEST_TIMEOUT`].
    pub request_timeout: Option<Duration>,
    /// Most pooled connections per upstream; a new one opens only when every
    /// existing one has the peer's max concurrent streams in flight. Default
    /// [`DEFAULT_MAX_CONNECTIONS_PER_UPSTREAM`]; range 1.. When one client
    /// is shared by several current-thread runtimes (`--threads N`), each
    /// thread keeps its own connections, up to this many per thread.
    pub max_connections_per_upstream: usize,
    /// Load-balancing policy. Default least-outstanding.
    pub balance: Balance,
    /// Consecutive failures (connect, protocol, connection loss) after which
    /// an upstream is ejected. Default [`DEFAULT_EJECT_AFTER`]; 0 disables.
    pub eject_after: u32,
    /// How long an ejected upstream sits out. Default [`DEFAULT_EJECT_COOLDOWN`].
    pub eject_cooldown: Duration,
    /// Largest vars block sent to a classic uwsgi upstream. Default 65535
    /// (the protocol's cap); set it to the uWSGI server's `buffer-size`
    /// (uWSGI's default is 4096) so oversized heads fail here with a clear
    /// error instead of being dropped by uWSGI.
    pub uwsgi_buffer_size: u16,
}

impl Default for ClientConfig {
    fn default() -> ClientConfig {
        let conn = ConnConfig {
            keepalive_interval: Some(DEFAULT_KEEPALIVE),
            ..ConnConfig::default()
        };
        ClientConfig {
            conn,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            connect_retries: DEFAULT_CONNECT_RETRIES,
            retry_backoff: DEFAULT_RETRY_BACKOFF,
            request_timeout: Some(DEFAULT_REQUEST_TIMEOUT),
            max_connections_per_upstream: DEFAULT_MAX_CONNECTIONS_PER_UPSTREAM,
            balance: Balance::default(),
            eject_after: DEFAULT_EJECT_AFTER,
            eject_cooldown: DEFAULT_EJECT_COOLDOWN,
            uwsgi_buffer_size: u16::MAX,
        }
    }
}

impl ClientConfig {
    /// Checks every value against its range.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_connections_per_upstream == 0 {
            return Err("max_connections_per_upstream must be at least 1".into());
        }
        if self.connect_timeout.is_zero() {
            return Err("connect_timeout must be non-zero".into());
        }
        self.conn.validate().map_err(|e| e.to_string())
    }
}
