//! The app-side runtime: accepts connections, turns each request into a
//! CGI/WSGI environ plus a streaming body, dispatches it to a [`Handler`]
//! and streams the response back.
//!
//! How it is laid out, in the order a connection meets it:
//!
//! * `listener`: Unix, TCP and systemd sockets ([`Listener`], [`BindAddr`]);
//!   `lazy` serves plain Unix connections without registering them with
//!   the I/O driver until they would block;
//! * `detect`: one socket speaks uwire/1 and classic uwsgi; the first byte
//!   decides ([`ProtocolMode`]);
//! * `uwire` and `uwsgi`: one file per protocol, each decoding requests and
//!   implementing the pipeline's sink for its wire form;
//! * `pipeline`: the one request path every protocol shares (environ,
//!   handler under the deadline with panics caught, response pump, send
//!   timeout, metrics);
//! * `handler` and `blocking`: what applications implement ([`Handler`],
//!   [`Request`], [`Body`], [`Response`]), including handlers that run on
//!   blocking threads;
//! * `metrics` and `config`.
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! use uwire::server::{handler_fn, BindAddr, Listener, Request, Response, Server, ServerConfig};
//! let config = ServerConfig::default();
//! let listener = Listener::bind(&"unix:/tmp/app.sock".parse::<BindAddr>().unwrap(), &config.bind).await?;
//! let app = handler_fn(|_req: Request| async { Ok::<_, std::convert::Infallible>(Response::new("hello\n".into())) });
//! Server::new(config).serve(listener, app, uwire::server::shutdown_signal()).await
//! # }
//! ```

mod blocking;
mod config;
pub mod demo;
mod detect;
mod gate;
mod handler;
mod lazy;
mod listener;
mod metrics;
mod pipeline;
pub mod upgrade;
mod uwire;
mod uwsgi;
#[cfg(feature = "websocket")]
pub mod websocket;

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::net::Socket;

pub use blocking::{BlockingBody, BodySender, ResponseClosed};
pub use config::*;
pub use gate::{AcceptGate, ConnProtocol};
pub use handler::{
    from_service, handler_fn, Body, BodyError, BoxError, BoxFuture, Handler, HandlerFn, Request,
    Response, ResponseBody, ServiceHandler,
};
pub use listener::{
    BindAddr, BindOptions, Listener, SharedListener, SocketFile, DEFAULT_BACKLOG,
    DEFAULT_SOCKET_MODE,
};
pub use metrics::{ErrorKind, Metrics, Snapshot, LATENCY_BUCKETS};
pub use pipeline::text_response;
pub use upgrade::{OnUpgrade, UpgradeError, Upgraded};

/// A uwire server: configuration plus the metrics its connections update.
#[derive(Clone)]
pub struct Server {
    config: Arc<ServerConfig>,
    metrics: Arc<Metrics>,
    gate: Option<Arc<dyn AcceptGate>>,
    /// The connection cap, shared by every `serve` call of this server (and
    /// its clones), so it holds for the process however many threads serve.
    slots: Arc<Semaphore>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("config", &self.config)
            .field("metrics", &self.metrics)
            .field("gate", &self.gate.is_some())
            .finish()
    }
}

impl Server {
    /// A server with `config`.
    pub fn new(config: ServerConfig) -> Server {
        Server {
            slots: Arc::new(Semaphore::new(config.max_connections.max(1))),
            config: Arc::new(config),
            metrics: Arc::new(Metrics::default()),
            gate: None,
        }
    }

    /// Consults `gate` before every accept and reports each connection's
    /// open, protocol and close to it (see [`AcceptGate`]).
    pub fn with_gate(mut self, gate: impl AcceptGate) -> Server {
        self.gate = Some(Arc::new(gate));
        self
    }

    /// The live counters.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// The configuration.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// Serves `listener` with `handler` until `shutdown` resolves, then shuts
    /// down gracefully: stops accepting (removing the socket file), sends
    /// GOAWAY on every connection, lets in-flight requests finish for up to
    /// `drain_timeout`, and returns once every connection is closed.
    ///
    /// Thread-per-core: call it on several threads at once, each with its
    /// own current-thread runtime and a [`Listener::share`] of one socket,
    /// with clones of this server (they share metrics and the connection
    /// cap). A connection then lives on the thread that accepted it.
    pub async fn serve<H, F>(&self, listener: Listener, handler: H, shutdown: F) -> io::Result<()>
    where
        H: Handler,
        F: Future<Output = ()>,
    {
        self.config
            .validate()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        if matches!(listener, Listener::Tcp(_)) && self.config.checks_peers() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "peer uid/gid allowlists need a Unix socket (SO_PEERCRED)",
            ));
        }
        let handler: Arc<dyn Handler> = Arc::new(handler);
        let slots = self.slots.clone();
        let (stop_tx, stop_rx) = watch::channel(false);
        // Unix connections are accepted unregistered (see `lazy`).
        let raw = match &listener {
            Listener::Unix { listener: l, .. } => Some(lazy::RawAcceptor::new(l)?),
            Listener::Tcp(_) => None,
        };
        let mut conns = JoinSet::new();
        let mut next_id: u64 = 0;
        tokio::pin!(shutdown);
        tracing::info!(addr = %listener.local_addr(), "uwire server listening");
        loop {
            // Reap finished connection tasks so the set does not grow.
            while conns.try_join_next().is_some() {}
            let permit = tokio::select! {
                p = slots.clone().acquire_owned() => p.expect("semaphore is never closed"),
                _ = &mut shutdown => break,
            };
            if let Some(gate) = &self.gate {
                tokio::select! {
                    _ = gate.ready() => {}
                    _ = &mut shutdown => break,
                }
            }
            let stream = tokio::select! {
                s = accept(&listener, raw.as_ref()) => s,
                _ = &mut shutdown => break,
            };
            let stream = match stream {
                Ok(s) => s,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            if let Accepted::Lazy(ref s) = stream {
                if self.config.checks_peers() {
                    let ids = s.peer_ids().ok();
                    if !ids.is_some_and(|(uid, gid)| self.config.peer_allowed(uid, gid)) {
                        tracing::warn!(
                            uid = ids.map(|i| i.0),
                            gid = ids.map(|i| i.1),
                            "peer denied by uid/gid allowlist; closing before reading any frame"
                        );
                        self.metrics.error(ErrorKind::PeerDenied);
                        continue;
                    }
                }
            }
            next_id += 1;
            let span = tracing::info_span!("conn", id = next_id);
            let ctx = pipeline::Ctx {
                handler: handler.clone(),
                config: self.config.clone(),
                metrics: self.metrics.clone(),
            };
            let stop = stop_rx.clone();
            let gated = self.gate.as_ref().map(gate::GateGuard::open);
            // Boxed here, where it is made: a connection's future is a few
            // KiB (every protocol's state machine), and spawning it unboxed
            // copies it several times on its way into the task.
            conns.spawn(Box::pin(
                async move {
                    let _permit = permit;
                    match stream {
                        Accepted::Lazy(s) => detect::serve(s, ctx, stop, gated).await,
                        Accepted::Socket(s) => detect::serve(s, ctx, stop, gated).await,
                    }
                }
                .instrument(span),
            ));
        }
        drop(raw);
        drop(listener);
        tracing::info!(
            connections = conns.len(),
            "shutting down: GOAWAY sent, draining"
        );
        let _ = stop_tx.send(true);
        let grace = self.config.drain_timeout + Duration::from_secs(2);
        let drained =
            tokio::time::timeout(grace, async { while conns.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            tracing::warn!(
                remaining = conns.len(),
                "drain timeout: aborting remaining connections"
            );
            conns.shutdown().await;
        }
        Ok(())
    }
}

/// A connection as the accept loop got it.
enum Accepted {
    /// Off the unregistered fast path (see `lazy`).
    Lazy(lazy::LazyStream),
    /// Off the listener.
    Socket(Socket),
}

async fn accept(listener: &Listener, raw: Option<&lazy::RawAcceptor>) -> io::Result<Accepted> {
    match raw {
        Some(raw) => raw.accept().await.map(Accepted::Lazy),
        None => listener.accept().await.map(Accepted::Socket),
    }
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{signal, SignalKind};
    // Registered now, not when first polled: a SIGTERM that arrives between
    // this call and the first poll is still seen (call it before binding).
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    async move {
        match (term, int) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            _ => std::future::pending().await,
        }
    }
}
