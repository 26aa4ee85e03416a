//! The HTTP front (`uwire proxy`): a hyper 1.x server (HTTP/1.1 and HTTP/2,
//! optionally over TLS) that serves static files itself and forwards every
//! other request through a [`Client`] to uwire (or classic uwsgi)
//! upstreams. Everything nginx does in front of an app server, so nginx is
//! optional:
//!
//! * TLS with rustls ([`tls`]): ALPN h2/http1.1, certificate reload
//!   ([`Front::reload`]), and [`serve_redirect`] for an HTTP->HTTPS
//!   listener;
//! * static files ([`static_files`]) with ranges, validators, precompressed
//!   siblings and confinement to the root;
//! * compression of app responses ([`compress`]);
//! * slow-client defences: first-byte, header-read (408), body-read (408),
//!   keep-alive and send timeouts, total and per-IP connection caps
//!   (`io`, `limits`), optional request-body buffering (`buffer`);
//! * trusted forwarding fields and the PROXY protocol ([`forwarded`],
//!   [`proxy_protocol`]);
//! * HTTP/1.1 conformance the app can rely on (`conformance`): Host
//!   required, absolute-form targets, `*`, no smuggling framing;
//! * an access log in nginx's combined format or JSON lines
//!   ([`access_log`]);
//! * idle HTTP/1.1 keep-alive connections that hold no HTTP state or
//!   buffer (`conn`: after [`ProxyConfig::idle_release`] hyper's part is
//!   released, under 3 KiB stays per connection).
//!
//! For the app it fills the request head with the client address, server
//! name and port, and scheme; appends `X-Forwarded-For` and sets
//! `X-Forwarded-Proto` (each can be turned off); strips hop-by-hop headers
//! both ways; lets hyper answer `Expect: 100-continue` when the body is
//! first read; maps upstream failures to 502/503/504 and client body
//! failures to 400/408/413 (never counted against the upstream); and shuts
//! down gracefully.

pub mod access_log;
mod body;
mod buffer;
pub mod compress;
mod config;
mod conformance;
mod conn;
pub mod forwarded;
mod front;
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzzing;
mod io;
mod limits;
pub mod proxy_protocol;
mod response;
pub mod static_files;
pub mod tls;
mod upgrade;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::client::Client;

pub use config::*;
pub use front::strip_hop_by_hop;
pub use response::ProxyBody;

use crate::net::Rewind;
use front::{ConnInfo, Shared};
use io::{ConnActivity, IoTimeouts, Stream, TimedIo};

/// Why a front could not be set up (or reloaded).
#[derive(Debug, thiserror::Error)]
pub enum FrontError {
    /// A setting is out of range.
    #[error("invalid proxy configuration: {0}")]
    Config(String),
    /// The certificate or key.
    #[error("TLS: {0}")]
    Tls(#[from] tls::TlsError),
    /// A static directory.
    #[error("{0}")]
    Static(std::io::Error),
    /// The access log file.
    #[error("access log: {0}")]
    AccessLog(std::io::Error),
}

impl From<FrontError> for std::io::Error {
    fn from(e: FrontError) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, e)
    }
}

/// A configured front: TLS, static mounts and the access log loaded, ready
/// to [`serve`](Front::serve) one listener.
pub struct Front {
    shared: Arc<Shared>,
    tls: Option<tls::TlsState>,
    /// The connection caps, shared by every listener this front serves
    /// (one per thread with `--threads`), so they hold for the process.
    slots: Arc<Semaphore>,
    per_ip: Arc<limits::PerIp>,
}

impl std::fmt::Debug for Front {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Front")
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl Front {
    /// Checks `config` and loads what it names (certificate, static
    /// directories, access log file).
    pub fn new(client: Client, config: ProxyConfig) -> Result<Front, FrontError> {
        config.validate().map_err(FrontError::Config)?;
        let tls = config.tls.as_ref().map(tls::TlsState::new).transpose()?;
        let statics =
            static_files::StaticFiles::new(&config.static_mounts).map_err(FrontError::Static)?;
        let access_log = access_log::AccessLog::open(
            config.access_log_format,
            &config.access_log,
            config.access_log_buffer,
            config.access_log_flush,
        )
        .map_err(FrontError::AccessLog)?;
        let compress = config
            .compression
            .is_enabled()
            .then(|| config.compression.predicate());
        let slots = Arc::new(Semaphore::new(config.max_connections.max(1)));
        let per_ip = limits::PerIp::new(config.max_connections_per_ip);
        Ok(Front {
            shared: Arc::new(Shared {
                client,
                config,
                statics,
                access_log,
                compress,
            }),
            tls,
            slots,
            per_ip,
        })
    }

    /// Re-reads the certificate and key (new handshakes use them; open
    /// connections are untouched) and reopens the access log file. On an
    /// error the old certificate stays in use.
    pub fn reload(&self) -> Result<(), FrontError> {
        if let Some(t) = &self.tls {
            t.reload()?;
        }
        if let Some(l) = &self.shared.access_log {
            l.reopen().map_err(FrontError::AccessLog)?;
        }
        Ok(())
    }

    /// Whether the listener speaks TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Serves `listener` until `shutdown` resolves; then stops accepting
    /// and lets in-flight requests finish for up to the drain timeout.
    /// Several calls may run at once (one listener per thread, each on its
    /// own runtime): they share the connection caps, the access log and
    /// the client.
    pub async fn serve<F>(&self, listener: TcpListener, shutdown: F) -> std::io::Result<()>
    where
        F: std::future::Future<Output = ()>,
    {
        let shared = self.shared.clone();
        let config = &shared.config;
        let local = listener.local_addr()?;
        let slots = self.slots.clone();
        let per_ip = self.per_ip.clone();
        // Every connection task holds a receiver: the drain is over when
        // none is left.
        let (drain, draining) = tokio::sync::watch::channel(false);
        let builders = Arc::new(conn::Builders::new(config));
        let acceptor = self.tls.as_ref().map(|t| t.acceptor().clone());
        tokio::pin!(shutdown);
        tracing::info!(%local, tls = acceptor.is_some(), "uwire proxy listening");
        loop {
            let permit = tokio::select! {
                p = slots.clone().acquire_owned() => p.expect("never closed"),
                _ = &mut shutdown => break,
            };
            let (stream, peer) = tokio::select! {
                r = listener.accept() => match r {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = &mut shutdown => break,
            };
            let Some(ip_slot) = per_ip.try_acquire(peer.ip()) else {
                tracing::debug!(%peer, "per-IP connection cap reached: closing");
                drop(stream);
                continue;
            };
            let _ = stream.set_nodelay(true);
            let setup = Setup {
                shared: shared.clone(),
                builders: builders.clone(),
                acceptor: acceptor.clone(),
                drain: draining.clone(),
                local,
            };
            tokio::spawn(async move {
                let _permit = permit;
                let _ip_slot = ip_slot;
                setup.run(stream, peer).await;
            });
        }
        drop(listener);
        drop(draining);
        tracing::info!("proxy shutting down: draining in-flight requests");
        let _ = drain.send(true);
        if tokio::time::timeout(config.drain_timeout, drain.closed())
            .await
            .is_err()
        {
            tracing::warn!("drain timeout: closing remaining connections");
        }
        // The lines of the requests drained, if the log keeps them.
        if let Some(l) = &shared.access_log {
            l.flush();
        }
        Ok(())
    }
}

/// Everything a new connection's task needs.
struct Setup {
    shared: Arc<Shared>,
    builders: Arc<conn::Builders>,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    drain: tokio::sync::watch::Receiver<bool>,
    local: SocketAddr,
}

impl Setup {
    /// The PROXY header and the TLS handshake: the stream to speak HTTP
    /// on, the client's address, and whether ALPN chose HTTP/2. `None`
    /// when the connection is to be closed.
    async fn preamble(
        &self,
        tcp: TcpStream,
        peer: SocketAddr,
    ) -> Option<(Stream, SocketAddr, Option<bool>)> {
        let cfg = &self.shared.config;
        let mut tcp = tcp;
        let mut client = peer;
        let mut prefix = Bytes::new();
        // Nothing at all within the first-byte timeout: close.
        if tokio::time::timeout(cfg.first_byte_timeout, tcp.readable())
            .await
            .is_err()
        {
            tracing::debug!(%peer, "no first byte in time: closing");
            return None;
        }
        if cfg.proxy_protocol {
            let read = proxy_protocol::read_header(&mut tcp);
            match tokio::time::timeout(cfg.header_read_timeout, read).await {
                Ok(Ok((source, rest))) => {
                    client = source.unwrap_or(peer);
                    prefix = rest;
                }
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "PROXY protocol header refused");
                    return None;
                }
                Err(_) => {
                    tracing::debug!(%peer, "PROXY protocol header timed out");
                    return None;
                }
            }
        }
        let prefixed = Rewind::new(prefix, tcp);
        let (stream, h2) = match &self.acceptor {
            None => (Stream::Plain(prefixed), None),
            Some(acceptor) => {
                let hs = acceptor.accept(prefixed);
                match tokio::time::timeout(cfg.header_read_timeout, hs).await {
                    Ok(Ok(tls)) => {
                        // Without ALPN's answer the first bytes tell.
                        let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                        (Stream::Tls(Box::new(tls)), h2.then_some(true))
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        return None;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "TLS handshake timed out");
                        return None;
                    }
                }
            }
        };
        Some((stream, client, h2))
    }

    /// PROXY header, TLS handshake, then HTTP until the connection ends.
    async fn run(self, tcp: TcpStream, peer: SocketAddr) {
        let cfg = &self.shared.config;
        let needs_preamble = cfg.proxy_protocol || self.acceptor.is_some();
        let (stream, client, h2) = if needs_preamble {
            // Boxed: the preamble's state would otherwise stay in every
            // connection's task for its whole life.
            match Box::pin(self.preamble(tcp, peer)).await {
                Some(done) => done,
                None => return,
            }
        } else {
            (Stream::Plain(Rewind::new(Bytes::new(), tcp)), peer, None)
        };
        let activity = Arc::new(ConnActivity::default());
        let timed = TimedIo::new(
            stream,
            activity.clone(),
            IoTimeouts {
                // The preamble already waited for the first byte.
                first_byte: if needs_preamble {
                    cfg.header_read_timeout
                } else {
                    cfg.first_byte_timeout
                },
                header: cfg.header_read_timeout,
                keepalive: cfg.keepalive_timeout,
                send: cfg.send_timeout,
                max_head: cfg.max_header_size,
                release: Some(cfg.idle_release),
            },
            h2,
        );
        let info = Arc::new(ConnInfo {
            peer: client,
            peer_ip: front::ip_header_value(client.ip()),
            local: self.local,
            tls: self.acceptor.is_some(),
            activity,
            server_name: Default::default(),
        });
        let shared = self.shared.clone();
        // Boxed where made: hyper keeps each request's future in place and
        // would otherwise copy the whole state machine (several KiB) into
        // it, and again on its first poll.
        let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
            Box::pin(front::NeverFails {
                inner: front::handle(shared.clone(), info.clone(), req),
            })
        });
        conn::drive(timed, svc, &self.builders, self.drain).await;
    }
}

/// Serves HTTP on `listener`, forwarding through `client`, until `shutdown`
/// resolves; then stops accepting and lets in-flight requests finish for up
/// to `drain_timeout`. Shorthand for [`Front::new`] + [`Front::serve`].
pub async fn serve<F>(
    listener: TcpListener,
    client: Client,
    config: ProxyConfig,
    shutdown: F,
) -> std::io::Result<()>
where
    F: std::future::Future<Output = ()>,
{
    Front::new(client, config)?.serve(listener, shutdown).await
}

/// Answers every request on `listener` with a permanent redirect (308) to
/// the same host and target over HTTPS on `https_port`, until `shutdown`
/// resolves. Requests without a usable Host get 400. Uses the timeouts
/// and caps of `config` (TLS, static files and upstreams do not apply).
pub async fn serve_redirect<F>(
    listener: TcpListener,
    https_port: u16,
    config: &ProxyConfig,
    shutdown: F,
) -> std::io::Result<()>
where
    F: std::future::Future<Output = ()>,
{
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .max_buf_size(config.max_header_size.max(8192))
        .header_read_timeout(config.header_read_timeout)
        // One request per connection: a redirect ends the conversation.
        .keep_alive(false)
        .timer(TokioTimer::new());
    // A connection gets the first-byte plus the header-read timeout in
    // all; the answer is tiny and needs no body.
    let lifetime = config.first_byte_timeout + config.header_read_timeout;
    let slots = Arc::new(Semaphore::new(config.max_connections.max(1)));
    let per_ip = limits::PerIp::new(config.max_connections_per_ip);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => p.expect("never closed"),
            _ = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let Some(ip_slot) = per_ip.try_acquire(peer.ip()) else {
            continue;
        };
        let svc = hyper::service::service_fn(move |req: Request<Incoming>| async move {
            Ok::<_, Infallible>(redirect(&req, https_port))
        });
        let conn = graceful.watch(builder.serve_connection(TokioIo::new(stream), svc));
        tokio::spawn(async move {
            let _permit = permit;
            let _ip_slot = ip_slot;
            let _ = tokio::time::timeout(lifetime, conn).await;
        });
    }
    let _ = tokio::time::timeout(config.drain_timeout, graceful.shutdown()).await;
    Ok(())
}

fn redirect(req: &Request<Incoming>, https_port: u16) -> Response<ProxyBody> {
    let host = req
        .uri()
        .host()
        .map(str::to_string)
        .or_else(|| {
            req.headers()
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(|h| front::host_without_port(h).to_string())
        })
        .filter(|h| !h.is_empty() && h.parse::<http::uri::Authority>().is_ok());
    let Some(host) = host else {
        return response::error_response(StatusCode::BAD_REQUEST, "a Host field is required");
    };
    let port = if https_port == 443 {
        String::new()
    } else {
        format!(":{https_port}")
    };
    let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let location = format!("https://{host}{port}{target}");
    let mut r = response::error_response(StatusCode::PERMANENT_REDIRECT, &location);
    if let Ok(v) = HeaderValue::from_str(&location) {
        r.headers_mut().insert(http::header::LOCATION, v);
    }
    r
}
