//! `--http`: the crate's HTTP front (`uwire::proxy::Front`, the code of
//! `uwire proxy`, served thread-per-core as `uwire proxy --threads N`
//! serves it: `uwire::net::threads`) in front of the workers' socket, in
//! its own process.

use std::time::Duration;

use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;
use uwire::client::{Client, ClientConfig, Upstream};
use uwire::net::threads as serving;
use uwire::proxy::{self, ProxyConfig};

/// Serves HTTP on `listen` (`HOST:PORT`), forwarding over uwire/1 to
/// `upstream` (`unix:/path` or `tcp:HOST:PORT`) through a pool of up to
/// `connections` connections per thread, until SIGTERM/SIGINT; then
/// drains for up to `graceful_timeout` seconds. Blocks with the GIL
/// released. `ready` (if given) is called with the bound address once
/// listening. Serves on `threads` threads, thread-per-core; with one, it
/// polls for `busy_poll` seconds before it sleeps (`--busy-poll`), with
/// more it does not, as `uwire proxy --threads N` does not by default:
/// threads sharing one listening socket would not share its connections
/// (the one still polling takes each new one), and measured on 2 cores, a
/// WebSocket echo through 2 polling threads went at 10.6k msgs/s, through
/// 2 threads that did not poll 15.3k, through 1 polling thread
/// 16.8-19.5k.
#[pyfunction]
#[pyo3(signature = (listen, upstream, connections, timeout, graceful_timeout, max_body_size, threads=1, ready=None, busy_poll=0.0))]
#[allow(clippy::too_many_arguments)]
pub fn run_front(
    py: Python<'_>,
    listen: &str,
    upstream: &str,
    connections: usize,
    timeout: f64,
    graceful_timeout: f64,
    max_body_size: u64,
    threads: usize,
    ready: Option<Py<PyAny>>,
    busy_poll: f64,
) -> PyResult<()> {
    let addr: std::net::SocketAddr = listen
        .parse()
        .map_err(|e| PyValueError::new_err(format!("--http {listen:?}: {e}")))?;
    let up: Upstream = upstream
        .parse()
        .map_err(|e: String| PyValueError::new_err(e))?;
    let ccfg = ClientConfig {
        max_connections_per_upstream: connections.max(1),
        // The front's own deadline sits a little above the workers', so a
        // stuck request gets the workers' 504, not a bare gateway timeout.
        request_timeout: (timeout > 0.0).then(|| Duration::from_secs_f64(timeout + 5.0)),
        ..ClientConfig::default()
    };
    let pcfg = ProxyConfig {
        max_body_size,
        drain_timeout: Duration::from_secs_f64(graceful_timeout.max(0.0)),
        ..ProxyConfig::default()
    };
    let client = Client::new(vec![up], ccfg).map_err(PyValueError::new_err)?;
    let front = std::sync::Arc::new(
        proxy::Front::new(client, pcfg).map_err(|e| PyValueError::new_err(e.to_string()))?,
    );
    let threads = threads.max(1);
    let window = match threads {
        1 => crate::worker::busy_poll_window(busy_poll)?,
        _ => Duration::ZERO,
    };
    // Thread-per-core, as `uwire proxy` serves: this thread and
    // `threads - 1` more, each with its own runtime, its own share of
    // the listening socket and its own upstream connections.
    let rt =
        crate::worker::polling_runtime(&mut tokio::runtime::Builder::new_current_thread(), window)?;
    let listener = rt
        .block_on(async {
            let mut signals = crate::signals::StopSignals::new()?;
            let shutdown = async move { signals.recv().await };
            tokio::net::TcpListener::bind(addr)
                .await
                .map(|l| (l, shutdown))
        })
        .map_err(|e| PyOSError::new_err(format!("cannot listen on {listen}: {e}")))?;
    let (listener, shutdown) = listener;
    let bound = listener
        .local_addr()
        .map_err(|e| PyOSError::new_err(e.to_string()))?;
    if let Some(cb) = ready {
        cb.call1(py, (bound.to_string(),))?;
    }
    py.detach(|| {
        rt.block_on(async move {
            uwire::alloc::spawn_upkeep();
            let serve_one = move |l, stop: serving::Stop| {
                let front = front.clone();
                async move { Ok(front.serve(l, stop.wait()).await?) }
            };
            let upkeep = uwire::alloc::spawn_upkeep;
            serving::serve_tcp(threads, window, upkeep, listener, serve_one, shutdown).await
        })
    })
    .map_err(|e: serving::BoxError| PyOSError::new_err(e.to_string()))
}
