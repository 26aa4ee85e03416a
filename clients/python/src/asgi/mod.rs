//! ASGI 3.0 applications (HTTP and WebSocket scopes) as a
//! [`uwire::server::Handler`]: the server runs on the worker's tokio
//! thread, the application on one asyncio event loop (another thread,
//! started by `uwire.asgi`). They meet in a [`Bridge`]: the tokio side
//! queues events (a new request, a body chunk that arrived, a send that
//! drained, a disconnect) and wakes the loop through an eventfd, which the
//! loop watches with `add_reader`; the loop drains the queue in one call.
//! The tokio side never takes the GIL.
//!
//! Each receive or send first tries to complete at once (the data is
//! there, the channel has room); only when it cannot does it park a tokio
//! task that completes the Python future through the bridge, keyed by a
//! token the Python side chose.

mod http;
mod scope;
mod ws;

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use pyo3::exceptions::PyOSError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple};
use tokio::sync::oneshot;
use uwire::net::busy_poll::LoopWatch;
use uwire::server::{websocket, BoxError, BoxFuture, Handler, Request, Response};

pub use http::HttpExchange;
pub use ws::WsExchange;

/// What finished for a parked operation.
pub(crate) enum Done {
    /// A request body chunk and whether more may follow.
    Chunk(Bytes, bool),
    /// The client is gone (or the body failed): `http.disconnect`.
    Disconnect,
    /// A send was accepted (`true`) or the peer is gone (`false`).
    Sent(bool),
    /// A WebSocket message or the end of the socket.
    Ws(ws::Incoming),
}

enum Event {
    Http(HttpExchange),
    Ws(WsExchange),
    Done(u64, Done),
}

pub(crate) struct BridgeInner {
    efd: OwnedFd,
    queue: Mutex<Vec<Event>>,
    signaled: AtomicBool,
    handle: OnceLock<tokio::runtime::Handle>,
    /// `--root-path`, for `scope["root_path"]`.
    root_path: OnceLock<Bytes>,
}

impl BridgeInner {
    fn push(&self, e: Event) {
        self.queue.lock().unwrap_or_else(|e| e.into_inner()).push(e);
        if !self.signaled.swap(true, Ordering::SeqCst) {
            let one: u64 = 1;
            // SAFETY: writes 8 bytes from a live u64 to our eventfd.
            unsafe {
                libc::write(
                    self.efd.as_raw_fd(),
                    (&one as *const u64).cast(),
                    std::mem::size_of::<u64>(),
                );
            }
        }
    }

    /// Completes the parked operation `token`.
    pub(crate) fn complete(&self, token: u64, d: Done) {
        self.push(Event::Done(token, d));
    }

    pub(crate) fn handle(&self) -> PyResult<&tokio::runtime::Handle> {
        self.handle
            .get()
            .ok_or_else(|| PyOSError::new_err("the ASGI bridge is not serving"))
    }
}

/// The meeting point of the server (tokio) and the event loop (asyncio).
#[pyclass(frozen, module = "uwire._native")]
pub struct Bridge {
    pub(crate) inner: Arc<BridgeInner>,
    /// The loop thread's busy polling (`--busy-poll`), see `watch`.
    watch: Mutex<LoopWatch>,
}

#[pymethods]
impl Bridge {
    #[new]
    #[pyo3(signature = (busy_poll = 0.0))]
    fn new(busy_poll: f64) -> PyResult<Bridge> {
        let window = crate::worker::busy_poll_window(busy_poll)?;
        // SAFETY: plain system call; the result is checked.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(PyOSError::new_err(
                std::io::Error::last_os_error().to_string(),
            ));
        }
        Ok(Bridge {
            inner: Arc::new(BridgeInner {
                // SAFETY: a fresh descriptor nobody else owns.
                efd: unsafe { OwnedFd::from_raw_fd(fd) },
                queue: Mutex::new(Vec::new()),
                signaled: AtomicBool::new(false),
                handle: OnceLock::new(),
                root_path: OnceLock::new(),
            }),
            watch: Mutex::new(LoopWatch::new(window)),
        })
    }

    /// One turn of the loop's busy polling, run as a callback after the
    /// loop's work: whether to run it again on the next turn (the loop then
    /// polls its selector without sleeping) rather than let the loop sleep.
    /// It ends when an event is queued (the loop's reader takes it this
    /// turn) or the `busy_poll` window has passed (see
    /// `uwire::net::busy_poll::LoopWatch`). Loop thread only.
    fn watch(&self, py: Python<'_>) -> bool {
        let ready = self.inner.signaled.load(Ordering::SeqCst);
        py.detach(|| {
            let mut w = self.watch.lock().unwrap_or_else(|e| e.into_inner());
            w.tick(ready)
        })
    }

    /// The eventfd the event loop watches (`loop.add_reader`).
    fn fileno(&self) -> i32 {
        self.inner.efd.as_raw_fd()
    }

    /// Everything that happened since the last call: `("http", exchange)`,
    /// `("websocket", exchange)`, or `(token, value)` for a parked
    /// operation (see the `receive`/`send` methods of the exchanges).
    fn drain<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        // Work taken: the polling window starts afresh (and adapts, after
        // a sleep in the selector).
        self.watch.lock().unwrap_or_else(|e| e.into_inner()).took();
        // Order matters: the eventfd is reset before the flag, so a push
        // that lands after the flag is cleared writes it again (a wakeup
        // is never lost; at worst one is spurious).
        let mut buf = [0u8; 8];
        // SAFETY: reads at most 8 bytes into a live buffer; EAGAIN is fine.
        unsafe {
            libc::read(self.inner.efd.as_raw_fd(), buf.as_mut_ptr().cast(), 8);
        }
        self.inner.signaled.store(false, Ordering::SeqCst);
        let events =
            std::mem::take(&mut *self.inner.queue.lock().unwrap_or_else(|e| e.into_inner()));
        let out = PyList::empty(py);
        for e in events {
            let item: Bound<'py, PyTuple> = match e {
                Event::Http(x) => PyTuple::new(
                    py,
                    [
                        PyString::intern(py, "http").into_any(),
                        Bound::new(py, x)?.into_any(),
                    ],
                )?,
                Event::Ws(x) => PyTuple::new(
                    py,
                    [
                        PyString::intern(py, "websocket").into_any(),
                        Bound::new(py, x)?.into_any(),
                    ],
                )?,
                Event::Done(token, d) => PyTuple::new(
                    py,
                    [token.into_pyobject(py)?.into_any(), done_value(py, d)?],
                )?,
            };
            out.append(item)?;
        }
        Ok(out)
    }
}

/// The Python value of a finished operation: `(bytes, more)` for a body
/// chunk, `None` for a disconnect, a bool for a send, and for WebSockets
/// `str`/`bytes` (a message) or an `int` close code.
fn done_value(py: Python<'_>, d: Done) -> PyResult<Bound<'_, PyAny>> {
    Ok(match d {
        Done::Chunk(b, more) => PyTuple::new(
            py,
            [
                PyBytes::new(py, &b).into_any(),
                pyo3::types::PyBool::new(py, more).to_owned().into_any(),
            ],
        )?
        .into_any(),
        Done::Disconnect => py.None().into_bound(py),
        Done::Sent(ok) => pyo3::types::PyBool::new(py, ok).to_owned().into_any(),
        Done::Ws(m) => m.into_py(py)?,
    })
}

/// The [`Handler`] the server runs for an ASGI app: each request becomes an
/// exchange queued to the event loop.
#[derive(Clone)]
pub(crate) struct AsgiHandler {
    pub(crate) bridge: Arc<BridgeInner>,
    /// Called once per request, before it is queued.
    pub(crate) on_request: Arc<dyn Fn() + Send + Sync>,
}

impl AsgiHandler {
    pub(crate) fn new(
        bridge: &Bridge,
        handle: tokio::runtime::Handle,
        root_path: Bytes,
        on_request: Arc<dyn Fn() + Send + Sync>,
    ) -> AsgiHandler {
        let _ = bridge.inner.handle.set(handle);
        let _ = bridge.inner.root_path.set(root_path);
        AsgiHandler {
            bridge: bridge.inner.clone(),
            on_request,
        }
    }
}

/// Sets the exchange's disconnect flag when the handler's future is
/// dropped before the app answered (the peer went away, the deadline
/// passed).
struct OnDrop(Option<Arc<http::Disconnect>>);

impl Drop for OnDrop {
    fn drop(&mut self) {
        if let Some(d) = self.0.take() {
            d.set();
        }
    }
}

impl Handler for AsgiHandler {
    fn call(&self, req: Request) -> BoxFuture<Result<Response, BoxError>> {
        (self.on_request)();
        let (tx, rx) = oneshot::channel::<Response>();
        let disconnect = Arc::new(http::Disconnect::default());
        if websocket::is_websocket(&req) && req.head().method.as_ref() == b"GET" {
            self.bridge.push(Event::Ws(WsExchange::new(
                req,
                tx,
                self.bridge.clone(),
                disconnect.clone(),
            )));
        } else {
            self.bridge.push(Event::Http(HttpExchange::new(
                req,
                tx,
                self.bridge.clone(),
                disconnect.clone(),
            )));
        }
        Box::pin(async move {
            let mut guard = OnDrop(Some(disconnect));
            let r = rx.await;
            guard.0 = None;
            r.map_err(|_| "the ASGI app ended without sending a response".into())
        })
    }
}
