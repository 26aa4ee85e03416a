//! Listening sockets bound by the master with the crate's
//! [`Listener::bind`] (stale-socket detection, mode set between bind and
//! listen, systemd activation), then inherited by every worker.

use std::os::fd::{AsFd, AsRawFd};
use std::sync::Mutex;

use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;
use uwire::server::{BindAddr, BindOptions, Listener};

/// A bound, listening socket held by the master. Dropping (or `close()`)
/// removes a Unix socket file the master created, but only in the process
/// that bound it: forked workers never remove it.
#[pyclass(frozen, module = "uwire._native")]
pub struct BoundSocket {
    listener: Mutex<Option<Listener>>,
    owner: u32,
    fd: i32,
    address: String,
    // Kept for the listener's registration; has no threads.
    _rt: tokio::runtime::Runtime,
}

#[pymethods]
impl BoundSocket {
    /// Binds `address` (`unix:/path`, `tcp:HOST:PORT`, `systemd[:N]`).
    #[new]
    #[pyo3(signature = (address, socket_mode=0o660, backlog=1024))]
    fn new(address: &str, socket_mode: u32, backlog: i32) -> PyResult<BoundSocket> {
        let addr: BindAddr = address.parse().map_err(PyValueError::new_err)?;
        if socket_mode > 0o777 {
            return Err(PyValueError::new_err(format!(
                "socket mode {socket_mode:o} is not a permission mode"
            )));
        }
        let opts = BindOptions {
            socket_mode,
            backlog,
            ..BindOptions::default()
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .map_err(|e| PyOSError::new_err(e.to_string()))?;
        let listener = rt
            .block_on(Listener::bind(&addr, &opts))
            .map_err(|e| PyOSError::new_err(format!("cannot bind {address}: {e}")))?;
        let fd = match &listener {
            Listener::Unix { listener, .. } => listener.as_fd().as_raw_fd(),
            Listener::Tcp(l) => l.as_fd().as_raw_fd(),
        };
        let address = listener.local_addr();
        Ok(BoundSocket {
            listener: Mutex::new(Some(listener)),
            owner: std::process::id(),
            fd,
            address,
            _rt: rt,
        })
    }

    /// The listening descriptor (inherited by forked workers).
    fn fileno(&self) -> i32 {
        self.fd
    }

    /// The bound address, e.g. `unix:/run/app.sock` or `tcp:127.0.0.1:9000`.
    #[getter]
    fn address(&self) -> String {
        self.address.clone()
    }

    /// Stops listening (and removes the socket file, in the binding process).
    fn close(&self) {
        let taken = self.listener.lock().ok().and_then(|mut l| l.take());
        if let Some(l) = taken {
            forget_unless_owner(l, self.owner);
        }
    }
}

fn forget_unless_owner(l: Listener, owner: u32) {
    if std::process::id() == owner {
        drop(l);
    } else {
        // A forked child: the socket file belongs to the master.
        std::mem::forget(l);
    }
}

impl Drop for BoundSocket {
    fn drop(&mut self) {
        if let Some(l) = self.listener.get_mut().ok().and_then(Option::take) {
            forget_unless_owner(l, self.owner);
        }
    }
}
