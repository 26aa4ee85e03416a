//! One worker process: the crate's [`Server`] on the inherited listening
//! sockets (uwire/1 and classic uwsgi, environ, limits, deadline, drain),
//! with the WSGI app as its handler, until a signal or a recycle reason
//! stops it.

use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use tokio::sync::watch;
use uwire::net::busy_poll;
use uwire::server::{Listener, ProtocolMode, Server, ServerConfig};

use crate::table::{now_ms, SharedTable, Table, DRAINING, SERVING};
use crate::wsgi::{self, AccessLog, ErrorStream, FileWrapper, WsgiConstants, WsgiHandler};

/// Why a worker stopped (also stored in its table slot).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DrainReason {
    Signal = 1,
    MaxRequests = 2,
    StuckThread = 3,
    Orphaned = 4,
}

impl DrainReason {
    fn as_str(self) -> &'static str {
        match self {
            DrainReason::Signal => "signal",
            DrainReason::MaxRequests => "max-requests",
            DrainReason::StuckThread => "stuck-thread",
            DrainReason::Orphaned => "orphaned",
        }
    }
}

/// A worker's settings, read from a dict the CLI builds.
#[derive(FromPyObject)]
#[pyo3(from_item_all)]
pub struct WorkerConfig {
    threads: usize,
    workers: usize,
    max_requests: u64,
    timeout: f64,
    timeout_grace: f64,
    graceful_timeout: f64,
    root_path: String,
    protocol: String,
    access_log: Option<String>,
    max_streams: u32,
    max_body_size: u64,
    idle_timeout: f64,
    max_connections: usize,
    tunnel_idle_timeout: f64,
    tunnel_max_duration: f64,
    master_pid: u32,
    slot: Option<usize>,
    /// Seconds an idle thread polls for work before it sleeps (0: off).
    busy_poll: f64,
}

fn secs(s: f64) -> Option<Duration> {
    (s > 0.0).then(|| Duration::from_secs_f64(s))
}

/// The `--busy-poll` window of `secs` seconds: 0 (off) to
/// [`busy_poll::MAX_BUSY_POLL`].
pub(crate) fn busy_poll_window(secs: f64) -> PyResult<Duration> {
    let max = busy_poll::MAX_BUSY_POLL;
    match Duration::try_from_secs_f64(secs) {
        Ok(d) if d <= max => Ok(d),
        _ => Err(PyValueError::new_err(format!(
            "busy_poll {secs}: from 0 to {} seconds",
            max.as_secs_f64()
        ))),
    }
}

/// Builds a runtime whose threads poll for `window` before they sleep
/// (see `uwire::net::busy_poll::build`, which warns where that cannot be
/// set up).
pub(crate) fn polling_runtime(
    builder: &mut tokio::runtime::Builder,
    window: Duration,
) -> PyResult<tokio::runtime::Runtime> {
    busy_poll::build(builder.enable_all(), window)
        .map(|(rt, _)| rt)
        .map_err(|e| PyOSError::new_err(e.to_string()))
}

impl WorkerConfig {
    fn server_config(&self) -> PyResult<ServerConfig> {
        let mut c = ServerConfig::default();
        c.conn.max_concurrent_streams = self.max_streams.max(1);
        c.request_deadline = secs(self.timeout);
        c.drain_timeout = Duration::from_secs_f64(self.graceful_timeout.max(0.0));
        c.environ.script_name(self.root_path.clone());
        c.protocol = self
            .protocol
            .parse::<ProtocolMode>()
            .map_err(PyValueError::new_err)?;
        c.max_body_size = self.max_body_size;
        c.idle_timeout = secs(self.idle_timeout);
        c.max_connections = self.max_connections.max(1);
        c.tunnel = uwire::net::TunnelLimits {
            idle_timeout: secs(self.tunnel_idle_timeout),
            max_duration: secs(self.tunnel_max_duration),
        };
        c.validate().map_err(PyValueError::new_err)?;
        Ok(c)
    }
}

/// A listener on a descriptor inherited from the master (duplicated, so
/// the worker owns its copy; never removes the socket file).
fn inherited(fd: RawFd) -> std::io::Result<Listener> {
    // SAFETY: `dup` of a descriptor the caller passed as open; the copy is
    // owned by the `OwnedFd` alone.
    let copy = unsafe { libc::dup(fd) };
    if copy < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `copy` is a fresh descriptor nobody else owns.
    let owned = unsafe { OwnedFd::from_raw_fd(copy) };
    let sock = socket2::SockRef::from(&owned);
    sock.set_cloexec(true)?;
    sock.set_nonblocking(true)?;
    if sock.local_addr()?.is_unix() {
        let std: std::os::unix::net::UnixListener = owned.into();
        Ok(Listener::Unix {
            listener: tokio::net::UnixListener::from_std(std)?,
            cleanup: None,
        })
    } else {
        let std: std::net::TcpListener = owned.into();
        Ok(Listener::Tcp(tokio::net::TcpListener::from_std(std)?))
    }
}

/// Serves `app` on the listening sockets `fds` until SIGTERM/SIGINT (or a
/// recycle reason: `--max-requests`, a thread stuck past `--timeout`, the
/// master gone), then drains and returns the reason. Blocks with the GIL
/// released; the app runs on `threads` Python threads.
///
/// With `asgi` (a bridge whose event loop runs on another thread), `app`
/// is not called here: requests go to the loop (see `crate::asgi`).
#[pyfunction]
#[pyo3(signature = (app, fds, config, table=None, asgi=None))]
pub fn serve(
    py: Python<'_>,
    app: Py<PyAny>,
    fds: Vec<RawFd>,
    config: WorkerConfig,
    table: Option<Py<SharedTable>>,
    asgi: Option<Py<crate::asgi::Bridge>>,
) -> PyResult<&'static str> {
    let server_config = config.server_config()?;
    // Python's larger blocks come from glibc's malloc (the module's own
    // from mimalloc), on the few threads that run Python here (app threads
    // that take turns under the GIL): two malloc arenas are plenty, and
    // each arena more is resident memory per worker.
    // SAFETY: mallopt has no preconditions; a failure leaves the default.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
    if fds.is_empty() {
        return Err(PyValueError::new_err("no listening socket to serve"));
    }
    let threads = config.threads.max(1);
    let table: Option<(Table, usize)> = match (table, config.slot) {
        (Some(t), Some(i)) => Some((t.get().table.clone(), i)),
        _ => None,
    };
    // The I/O thread polls its event loop before it sleeps, as `uwire
    // serve` does (see `uwire::net::busy_poll`); the app threads watch
    // their channel alike (`wsgi::next_job`).
    let window = busy_poll_window(config.busy_poll)?;
    let rt = polling_runtime(&mut tokio::runtime::Builder::new_current_thread(), window)?;
    let access = match &config.access_log {
        Some(p) if !p.is_empty() => {
            Some(Arc::new(AccessLog::open(p).map_err(|e| {
                PyOSError::new_err(format!("access log {p}: {e}"))
            })?))
        }
        _ => None,
    };
    let consts = WsgiConstants {
        version: PyTuple::new(py, [1, 0])?.unbind(),
        errors: Py::new(py, ErrorStream::new())?.into_any(),
        file_wrapper: py.get_type::<FileWrapper>().into_any().unbind(),
        multithread: threads > 1,
        multiprocess: config.workers > 1,
    };
    let busy: Option<Arc<dyn Fn(i64) + Send + Sync>> = table.clone().map(|(t, i)| {
        Arc::new(move |d: i64| {
            let b = &t.slot(i).busy;
            if d > 0 {
                b.fetch_add(1, Ordering::Relaxed);
            } else {
                b.fetch_sub(1, Ordering::Relaxed);
            }
        }) as Arc<dyn Fn(i64) + Send + Sync>
    });
    let shared = Arc::new(wsgi::App {
        app,
        consts,
        handle: rt.handle().clone(),
        access,
        busy,
        busy_poll: window,
        watching: AtomicBool::new(false),
        queued: AtomicUsize::new(0),
        writes: AtomicBool::new(false),
    });
    // An ASGI app runs on its event loop's thread, not on a pool. A WSGI
    // app with one thread also runs on this one, the I/O thread, where it
    // can (`wsgi::Inline`).
    let inline = asgi.is_none() && threads == 1;
    let pool = if asgi.is_some() { 0 } else { threads };
    let (jobs, slots, handles) = wsgi::start_pool(shared.clone(), pool, inline);
    // This thread runs the I/O loop below.
    let inline = inline.then(|| {
        Arc::new(wsgi::Inline::here(
            shared.clone(),
            jobs.clone(),
            slots.clone(),
            pool,
        ))
    });
    let io_side = inline.clone();
    let stand_in = inline.as_ref().map(|i| i.stand_in());

    let (stop_tx, stop_rx) = watch::channel::<Option<DrainReason>>(None);
    let stop_tx = Arc::new(stop_tx);
    let served = Arc::new(AtomicU64::new(0));
    let on_request = {
        let (stop_tx, served, table) = (stop_tx.clone(), served.clone(), table.clone());
        let limit = config.max_requests;
        Arc::new(move || {
            let n = served.fetch_add(1, Ordering::Relaxed) + 1;
            if let Some((t, i)) = &table {
                t.slot(*i).requests.store(n, Ordering::Relaxed);
            }
            if limit > 0 && n == limit {
                stop_tx.send_if_modified(|r| {
                    r.is_none()
                        .then(|| *r = Some(DrainReason::MaxRequests))
                        .is_some()
                });
            }
        }) as Arc<dyn Fn() + Send + Sync>
    };
    let handler = match &asgi {
        Some(b) => AnyHandler::Asgi(crate::asgi::AsgiHandler::new(
            b.get(),
            rt.handle().clone(),
            bytes::Bytes::from(config.root_path.clone().into_bytes()),
            on_request,
        )),
        None => AnyHandler::Wsgi(WsgiHandler {
            app: shared,
            jobs,
            on_request,
            inline,
        }),
    };
    let timeout_ms = (config.timeout * 1000.0) as u64;
    let grace_ms = (config.timeout_grace.max(0.0) * 1000.0) as u64;
    let master_pid = config.master_pid;

    let outcome: std::io::Result<DrainReason> = py.detach(move || {
        let main = async move {
            // The I/O thread hands its free pages back once a second, as
            // the `uwire` binary's serving threads do.
            uwire::alloc::spawn_upkeep();
            let mut listeners = Vec::with_capacity(fds.len());
            for fd in &fds {
                listeners.push(inherited(*fd)?);
            }
            let mut server = Server::new(server_config);
            if let Some((t, i)) = &table {
                server = server.with_gate(crate::table::Gate::new(t.clone(), *i));
            }
            let mut tasks = tokio::task::JoinSet::new();
            for l in listeners {
                let (server, handler) = (server.clone(), handler.clone());
                let mut rx = stop_rx.clone();
                tasks.spawn(async move {
                    let stop = async move {
                        let _ = rx.wait_for(|r| r.is_some()).await;
                    };
                    server.serve(l, handler, stop).await
                });
            }
            drop(handler);
            // Signals, heartbeat and watchdog run on a thread of their own:
            // this one may be running the app (`wsgi::Inline`). Its signal
            // handlers are registered before the master can see this
            // worker serving.
            let control = spawn_control(Control {
                stop_tx: stop_tx.clone(),
                stop_rx: stop_rx.clone(),
                table: table.clone(),
                slots: slots.clone(),
                timeout_ms,
                grace_ms,
                master_pid,
                stand_in,
            })?;
            if let Some((t, i)) = &table {
                let s = t.slot(*i);
                s.pid.store(std::process::id() as u64, Ordering::Release);
                s.heartbeat_ms.store(now_ms(), Ordering::Release);
                s.state.store(SERVING, Ordering::Release);
                t.bump();
            }
            tracing::info!(threads, "worker serving");
            let mut failed = None;
            while let Some(r) = tasks.join_next().await {
                match r {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => failed = Some(e),
                    Err(e) => failed = Some(std::io::Error::other(e.to_string())),
                }
                // One listener failing stops the others too.
                stop_tx.send_if_modified(|r| {
                    r.is_none()
                        .then(|| *r = Some(DrainReason::Signal))
                        .is_some()
                });
            }
            control.stop();
            match failed {
                Some(e) => Err(e),
                None => Ok((*stop_rx.borrow()).unwrap_or(DrainReason::Signal)),
            }
        };
        let result = match &io_side {
            Some(inline) => inline.drive(&rt, main),
            None => rt.block_on(main),
        };
        // Its hold on the job channel too: idle app threads exit below.
        drop(io_side);
        drop(rt);
        // The job channel is closed now: idle app threads exit. A thread
        // still stuck in the app is left behind (the process exits).
        let deadline = std::time::Instant::now() + Duration::from_secs(1);
        while handles.iter().any(|h| !h.is_finished()) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        result
    });
    match outcome {
        Ok(reason) => Ok(reason.as_str()),
        Err(e) => Err(PyOSError::new_err(e.to_string())),
    }
}

/// The WSGI pool or the ASGI bridge.
#[derive(Clone)]
enum AnyHandler {
    Wsgi(WsgiHandler),
    Asgi(crate::asgi::AsgiHandler),
}

impl uwire::server::Handler for AnyHandler {
    fn call(
        &self,
        req: uwire::server::Request,
    ) -> uwire::server::BoxFuture<Result<uwire::server::Response, uwire::server::BoxError>> {
        match self {
            AnyHandler::Wsgi(h) => h.call(req),
            AnyHandler::Asgi(h) => h.call(req),
        }
    }
}

/// What the control task watches.
struct Control {
    stop_tx: Arc<watch::Sender<Option<DrainReason>>>,
    stop_rx: watch::Receiver<Option<DrainReason>>,
    table: Option<(Table, usize)>,
    slots: Arc<Vec<wsgi::ThreadSlot>>,
    timeout_ms: u64,
    grace_ms: u64,
    master_pid: u32,
    /// Drives the event loop while the app runs long on the I/O thread.
    stand_in: Option<Arc<wsgi::StandIn>>,
}

/// The control thread, running [`control`].
struct ControlThread {
    done: tokio::sync::oneshot::Sender<()>,
}

impl ControlThread {
    /// Ends the control task. Its thread is not waited for: a watchdog
    /// check of its may be waiting for the GIL, which a stuck app thread
    /// can hold for good (the process exits anyway).
    fn stop(self) {
        drop(self.done);
    }
}

/// Starts [`control`] on a thread and runtime of its own, once its signal
/// handlers are registered.
fn spawn_control(c: Control) -> std::io::Result<ControlThread> {
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<std::io::Result<()>>();
    std::thread::Builder::new()
        .name("uwire-control".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            rt.block_on(async move {
                let signals = match crate::signals::StopSignals::new() {
                    Ok(s) => s,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(()));
                tokio::select! {
                    _ = control(c, signals) => {}
                    _ = done_rx => {}
                }
            });
        })?;
    match ready_rx.recv() {
        Ok(Ok(())) => Ok(ControlThread { done: done_tx }),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(std::io::Error::other("the control thread failed to start")),
    }
}

/// Signals, heartbeat, the stuck-thread watchdog and the orphan check.
async fn control(c: Control, mut signals: crate::signals::StopSignals) {
    let Control {
        stop_tx,
        mut stop_rx,
        table,
        slots,
        timeout_ms,
        grace_ms,
        master_pid,
        stand_in,
    } = c;
    let stop = |reason: DrainReason| {
        stop_tx.send_if_modified(|r| r.is_none().then(|| *r = Some(reason)).is_some());
    };
    let mark_draining = |reason: DrainReason| {
        if let Some((t, i)) = &table {
            let s = t.slot(*i);
            s.reason.store(reason as u64, Ordering::Release);
            s.draining_since_ms.store(now_ms(), Ordering::Release);
            s.state.store(DRAINING, Ordering::Release);
            t.bump();
        }
    };

    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut draining = false;
    let mut watchdog: Option<tokio::task::JoinHandle<u64>> = None;
    loop {
        tokio::select! {
            _ = signals.recv() => stop(DrainReason::Signal),
            _ = stop_rx.changed() => {}
            _ = tick.tick() => {
                if let Some(s) = &stand_in {
                    s.nudge();
                }
                if let Some((t, i)) = &table {
                    t.slot(*i).heartbeat_ms.store(now_ms(), Ordering::Release);
                }
                if master_pid != 0 && std::os::unix::process::parent_id() != master_pid {
                    tracing::warn!("the master is gone; stopping");
                    stop(DrainReason::Orphaned);
                }
                if timeout_ms > 0 {
                    // Needs the GIL: off the I/O thread.
                    let longest = match watchdog.take() {
                        Some(h) if h.is_finished() => h.await.unwrap_or(0),
                        Some(h) => { watchdog = Some(h); 0 }
                        None => 0,
                    };
                    if watchdog.is_none() {
                        let slots = slots.clone();
                        watchdog = Some(tokio::task::spawn_blocking(move || {
                            wsgi::interrupt_stuck(&slots, timeout_ms)
                        }));
                    }
                    if longest > timeout_ms + grace_ms && !draining {
                        tracing::error!(
                            busy_ms = longest,
                            "an app thread is stuck past --timeout and could not be freed; recycling this worker"
                        );
                        stop(DrainReason::StuckThread);
                    }
                }
            }
        }
        if !draining {
            if let Some(reason) = *stop_rx.borrow() {
                draining = true;
                tracing::info!(reason = reason.as_str(), "worker draining");
                mark_draining(reason);
            }
        }
    }
}
