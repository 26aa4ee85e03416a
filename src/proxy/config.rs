//! Settings of the HTTP front: one [`ProxyConfig`], every limit and timeout
//! with a `DEFAULT_*` constant.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;

use super::access_log::{AccessLogFormat, AccessLogTarget, DEFAULT_ACCESS_LOG_FLUSH};
use super::compress::CompressionConfig;
use super::forwarded::TrustedProxies;
use super::static_files::StaticMount;

/// Default largest request head (HTTP/1 read buffer): 64 KiB.
pub const DEFAULT_MAX_HEADER_SIZE: usize = 64 * 1024;
/// Default most request header fields: 100.
pub const DEFAULT_MAX_HEADERS: usize = 100;
/// Default largest request body: 1 GiB.
pub const DEFAULT_MAX_BODY_SIZE: u64 = 1 << 30;
/// Default most open downstream connections: 4096.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// Default most open downstream connections from one client IP: 0 (no
/// cap of its own; [`DEFAULT_MAX_CONNECTIONS`] still holds).
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 0;
/// Default time a new connection gets to send its first byte (before the
/// HTTP/1-vs-HTTP/2 detection, the TLS handshake and the PROXY header): 10 s.
pub const DEFAULT_FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time to receive a whole request head once its first byte has
/// arrived (HTTP/1; answered 408), and to finish a TLS handshake or a PROXY
/// header: 30 s.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Default longest wait for the next piece of a request body (answered
/// 408): 60 s, like nginx's `client_body_timeout`.
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Default time an idle keep-alive connection (no request in flight) stays
/// open: 75 s, like nginx's `keepalive_timeout`.
pub const DEFAULT_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(75);
/// Default time an idle HTTP/1 keep-alive connection keeps its HTTP state
/// and buffers before handing them back: 1 s.
pub const DEFAULT_IDLE_RELEASE: Duration = Duration::from_secs(1);
/// Default longest wait for the client to accept more response bytes
/// before the connection is closed: 60 s, like nginx's `send_timeout`.
pub const DEFAULT_SEND_TIMEOUT: Duration = Duration::from_secs(60);
/// Default time in-flight requests get after shutdown starts: 30 s.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Default part of a buffered request body kept in memory before it spills
/// to a temporary file: 1 MiB.
pub const DEFAULT_REQUEST_BUFFER_MEMORY: usize = 1024 * 1024;

/// Settings of the HTTP front.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Extra CGI variables passed to the app (like `uwsgi_param`).
    pub params: Vec<(Bytes, Bytes)>,
    /// Append the client address to `X-Forwarded-For`. Default on.
    pub x_forwarded_for: bool,
    /// Set `X-Forwarded-Proto` to the downstream scheme. Default on.
    pub x_forwarded_proto: bool,
    /// Peers whose `X-Forwarded-For` / `X-Forwarded-Proto` are believed
    /// (the app then sees the client they name). Default: none.
    pub forwarded_allow_ips: TrustedProxies,
    /// Every connection starts with a PROXY protocol (v1 or v2) header,
    /// whose source address becomes the client address. Default off.
    pub proxy_protocol: bool,
    /// Largest request head; larger ones get 431. Default [`DEFAULT_MAX_HEADER_SIZE`].
    pub max_header_size: usize,
    /// Most header fields; more get 431. Default [`DEFAULT_MAX_HEADERS`].
    pub max_headers: usize,
    /// Largest request body; larger ones get 413. Default [`DEFAULT_MAX_BODY_SIZE`].
    pub max_body_size: u64,
    /// Most downstream connections at once. Default [`DEFAULT_MAX_CONNECTIONS`].
    pub max_connections: usize,
    /// Most downstream connections from one IP address (0 = no per-IP
    /// cap); more are closed at once. Default [`DEFAULT_MAX_CONNECTIONS_PER_IP`].
    pub max_connections_per_ip: usize,
    /// Time a connection gets to send its first byte. Default [`DEFAULT_FIRST_BYTE_TIMEOUT`].
    pub first_byte_timeout: Duration,
    /// Time allowed to receive a request head. Default [`DEFAULT_HEADER_READ_TIMEOUT`].
    pub header_read_timeout: Duration,
    /// Longest wait for request body bytes. Default [`DEFAULT_BODY_READ_TIMEOUT`].
    pub body_read_timeout: Duration,
    /// Idle keep-alive connections close after this. Default [`DEFAULT_KEEPALIVE_TIMEOUT`].
    pub keepalive_timeout: Duration,
    /// An HTTP/1 keep-alive connection idle this long hands its HTTP state
    /// and read and write buffers (some 24 KiB) back and waits for its
    /// next request holding none; that request builds them again. Zero
    /// releases as soon as the connection turns idle; a value at or above
    /// the keep-alive timeout never releases. Default [`DEFAULT_IDLE_RELEASE`].
    pub idle_release: Duration,
    /// Longest wait for the client to take response bytes. Default [`DEFAULT_SEND_TIMEOUT`].
    pub send_timeout: Duration,
    /// Grace period for in-flight requests on shutdown. Default [`DEFAULT_DRAIN_TIMEOUT`].
    pub drain_timeout: Duration,
    /// Read every request body completely before the request goes to the
    /// app (memory up to [`Self::request_buffer_memory`], then a temporary
    /// file), so a slow upload never holds an app stream. Default off.
    pub request_buffering: bool,
    /// Bytes of a buffered body kept in memory. Default [`DEFAULT_REQUEST_BUFFER_MEMORY`].
    pub request_buffer_memory: usize,
    /// Directory of the temporary files of buffered bodies (default: the
    /// system temporary directory).
    pub request_buffer_dir: Option<PathBuf>,
    /// TLS on the listener (certificate and key files). Default none.
    pub tls: Option<TlsFiles>,
    /// Directories served by the front itself, by URL prefix.
    pub static_mounts: Vec<StaticMount>,
    /// Compression of app responses.
    pub compression: CompressionConfig,
    /// Access log line format.
    pub access_log_format: AccessLogFormat,
    /// Where access log lines go. Default off (`uwire proxy`: standard error).
    pub access_log: AccessLogTarget,
    /// Bytes of access log lines kept in memory and written together
    /// (nginx's `buffer=`); 0, the default, writes each line at once. At
    /// most [`super::access_log::MAX_ACCESS_LOG_BUFFER`].
    pub access_log_buffer: usize,
    /// Longest time a buffered line waits (nginx's `flush=`). Default
    /// [`DEFAULT_ACCESS_LOG_FLUSH`].
    pub access_log_flush: Duration,
    /// Idle and lifetime limits of upgraded connections (WebSockets):
    /// past either, the tunnel is cut (the app's stream reset with
    /// `TIMEOUT`). Defaults [`crate::net::DEFAULT_TUNNEL_IDLE_TIMEOUT`] and
    /// [`crate::net::DEFAULT_TUNNEL_MAX_DURATION`].
    pub tunnel: crate::net::TunnelLimits,
}

/// PEM files of the certificate chain and its private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, leaf first (PEM).
    pub cert: PathBuf,
    /// The private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

impl Default for ProxyConfig {
    fn default() -> ProxyConfig {
        ProxyConfig {
            params: Vec::new(),
            x_forwarded_for: true,
            x_forwarded_proto: true,
            forwarded_allow_ips: TrustedProxies::default(),
            proxy_protocol: false,
            max_header_size: DEFAULT_MAX_HEADER_SIZE,
            max_headers: DEFAULT_MAX_HEADERS,
            max_body_size: DEFAULT_MAX_BODY_SIZE,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_ip: DEFAULT_MAX_CONNECTIONS_PER_IP,
            first_byte_timeout: DEFAULT_FIRST_BYTE_TIMEOUT,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            body_read_timeout: DEFAULT_BODY_READ_TIMEOUT,
            keepalive_timeout: DEFAULT_KEEPALIVE_TIMEOUT,
            idle_release: DEFAULT_IDLE_RELEASE,
            send_timeout: DEFAULT_SEND_TIMEOUT,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            request_buffering: false,
            request_buffer_memory: DEFAULT_REQUEST_BUFFER_MEMORY,
            request_buffer_dir: None,
            tls: None,
            static_mounts: Vec::new(),
            compression: CompressionConfig::default(),
            access_log_format: AccessLogFormat::default(),
            access_log: AccessLogTarget::default(),
            access_log_buffer: 0,
            access_log_flush: DEFAULT_ACCESS_LOG_FLUSH,
            tunnel: crate::net::TunnelLimits::default(),
        }
    }
}

impl ProxyConfig {
    /// Checks the values that have a valid range; says which one is wrong.
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("first_byte_timeout", self.first_byte_timeout),
            ("header_read_timeout", self.header_read_timeout),
            ("body_read_timeout", self.body_read_timeout),
            ("keepalive_timeout", self.keepalive_timeout),
            ("send_timeout", self.send_timeout),
        ];
        for (name, d) in positive {
            if d.is_zero() {
                return Err(format!("{name} must be above zero"));
            }
        }
        if self.max_connections == 0 {
            return Err("max_connections must be at least 1".into());
        }
        if self.max_headers == 0 {
            return Err("max_headers must be at least 1".into());
        }
        if self.max_header_size < 1024 {
            return Err("max_header_size must be at least 1024".into());
        }
        if u32::try_from(self.max_header_size).is_err() {
            return Err("max_header_size must fit in 32 bits".into());
        }
        super::access_log::check_buffering(self.access_log_buffer, self.access_log_flush)?;
        let mut prefixes = std::collections::HashSet::new();
        for m in &self.static_mounts {
            if !prefixes.insert(m.prefix.as_str()) {
                return Err(format!("static prefix {} is mounted twice", m.prefix));
            }
        }
        self.compression.validate()
    }
}
