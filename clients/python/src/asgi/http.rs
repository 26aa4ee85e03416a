//! One `http` scope exchange: request body chunks in, response head and
//! body out, `http.disconnect` when the client goes away.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::FutureExt;
use http_body::Body as _;
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyTuple};
use tokio::sync::{mpsc, oneshot, Notify};
use uwire::server::{Body, BoxError, Request, Response, ResponseBody};

use super::{BridgeInner, Done};

/// Response body chunks buffered between the app and the connection.
const BODY_CHANNEL: usize = 8;

/// Set once the client is gone (or the response is complete).
#[derive(Default)]
pub(crate) struct Disconnect {
    set: AtomicBool,
    notify: Notify,
}

impl Disconnect {
    pub(crate) fn set(&self) {
        self.set.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }

    pub(crate) fn is_set(&self) -> bool {
        self.set.load(Ordering::Acquire)
    }

    pub(crate) async fn wait(&self) {
        loop {
            let n = self.notify.notified();
            if self.is_set() {
                return;
            }
            n.await;
        }
    }
}

type Chunk = Result<Bytes, BoxError>;

/// Sets the flag when dropped.
struct SetOnDrop(Arc<Disconnect>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.set();
    }
}

enum Out {
    /// No head yet: the reply channel, and the head once started.
    Waiting(oneshot::Sender<Response>, Option<http::response::Parts>),
    /// Head sent; the body goes through this channel.
    Streaming(mpsc::Sender<Chunk>),
    Done,
}

/// An ASGI `http` exchange (see the module docs of `uwire.asgi`).
#[pyclass(frozen, module = "uwire._native")]
pub struct HttpExchange {
    req: Mutex<Option<(uwire::frame::RequestHead, uwire::environ::Environ)>>,
    body: Arc<tokio::sync::Mutex<Body>>,
    body_done: Arc<AtomicBool>,
    out: Mutex<Out>,
    bridge: Arc<BridgeInner>,
    disconnect: Arc<Disconnect>,
    is_head: bool,
}

impl HttpExchange {
    pub(crate) fn new(
        req: Request,
        reply: oneshot::Sender<Response>,
        bridge: Arc<BridgeInner>,
        disconnect: Arc<Disconnect>,
    ) -> HttpExchange {
        let (head, env, body) = req.into_parts();
        let is_head = head.method.as_ref() == b"HEAD";
        let body_done = body.is_end_stream();
        HttpExchange {
            req: Mutex::new(Some((head, env))),
            body: Arc::new(tokio::sync::Mutex::new(body)),
            body_done: Arc::new(AtomicBool::new(body_done)),
            out: Mutex::new(Out::Waiting(reply, None)),
            bridge,
            disconnect,
            is_head,
        }
    }

    fn out(&self) -> std::sync::MutexGuard<'_, Out> {
        self.out.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn chunk_value<'py>(py: Python<'py>, b: &[u8], more: bool) -> PyResult<Bound<'py, PyAny>> {
    Ok(PyTuple::new(
        py,
        [
            PyBytes::new(py, b).into_any(),
            pyo3::types::PyBool::new(py, more).to_owned().into_any(),
        ],
    )?
    .into_any())
}

#[pymethods]
impl HttpExchange {
    /// The `http` scope (without `state`, which the caller adds). Once.
    fn scope<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let (head, env) = self
            .req
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .ok_or_else(|| PyRuntimeError::new_err("scope already taken"))?;
        super::scope::build(py, "http", &head, &env, self.bridge.root_path.get())
    }

    /// The next request body event: `(bytes, more_body)`, `None` for
    /// `http.disconnect`, or `False` when it is not there yet (then the
    /// answer comes through the bridge with `token`).
    fn receive<'py>(&self, py: Python<'py>, token: u64) -> PyResult<Bound<'py, PyAny>> {
        if self.body_done.load(Ordering::Acquire) {
            if self.disconnect.is_set() {
                return Ok(py.None().into_bound(py));
            }
            let (d, bridge) = (self.disconnect.clone(), self.bridge.clone());
            self.bridge.handle()?.spawn(async move {
                d.wait().await;
                bridge.complete(token, Done::Disconnect);
            });
            return Ok(pyo3::types::PyBool::new(py, false).to_owned().into_any());
        }
        if let Ok(mut body) = self.body.try_lock() {
            if let Some(r) = body.data().now_or_never() {
                return Ok(match r {
                    Some(Ok(b)) => {
                        let more = !body.is_end_stream();
                        if !more {
                            self.body_done.store(true, Ordering::Release);
                        }
                        chunk_value(py, &b, more)?
                    }
                    None => {
                        self.body_done.store(true, Ordering::Release);
                        chunk_value(py, b"", false)?
                    }
                    Some(Err(e)) => {
                        tracing::debug!(error = %e, "request body failed");
                        self.body_done.store(true, Ordering::Release);
                        self.disconnect.set();
                        py.None().into_bound(py)
                    }
                });
            }
        }
        let (body, bridge, d) = (
            self.body.clone(),
            self.bridge.clone(),
            self.disconnect.clone(),
        );
        let flag = self.body_done.clone();
        self.bridge.handle()?.spawn(async move {
            let mut body = body.lock().await;
            let r = tokio::select! {
                r = body.data() => r,
                () = d.wait() => Some(Err(uwire::server::BodyError::Incomplete { expected: 0, got: 0 })),
            };
            let done = match r {
                Some(Ok(b)) => {
                    let more = !body.is_end_stream();
                    if !more {
                        flag.store(true, Ordering::Release);
                    }
                    Done::Chunk(b, more)
                }
                None => {
                    flag.store(true, Ordering::Release);
                    Done::Chunk(Bytes::new(), false)
                }
                Some(Err(_)) => {
                    flag.store(true, Ordering::Release);
                    d.set();
                    Done::Disconnect
                }
            };
            bridge.complete(token, done);
        });
        Ok(pyo3::types::PyBool::new(py, false).to_owned().into_any())
    }

    /// `http.response.start`: status and `[(name, value)]` byte pairs.
    fn start(&self, status: u16, headers: Vec<(Vec<u8>, Vec<u8>)>) -> PyResult<()> {
        let mut out = self.out();
        let Out::Waiting(_, parts) = &mut *out else {
            return Err(PyRuntimeError::new_err("http.response.start sent twice"));
        };
        if parts.is_some() {
            return Err(PyRuntimeError::new_err("http.response.start sent twice"));
        }
        let mut r = http::Response::builder().status(
            http::StatusCode::from_u16(status)
                .map_err(|_| PyValueError::new_err(format!("invalid status {status}")))?,
        );
        for (n, v) in headers {
            let name = http::HeaderName::from_bytes(&n).map_err(|_| {
                PyValueError::new_err(format!(
                    "invalid header name {:?}",
                    String::from_utf8_lossy(&n)
                ))
            })?;
            let value = http::HeaderValue::from_bytes(&v).map_err(|_| {
                PyValueError::new_err(format!(
                    "invalid value for header {:?}",
                    String::from_utf8_lossy(&n)
                ))
            })?;
            r = r.header(name, value);
        }
        let (p, ()) = r
            .body(())
            .map_err(|e| PyValueError::new_err(e.to_string()))?
            .into_parts();
        *parts = Some(p);
        Ok(())
    }

    /// `http.response.body`. Returns `True` when the chunk was taken,
    /// `None` when the client is gone (ASGI 2.4: the caller raises an
    /// `OSError`), or `False` when it waits for room (then `token`
    /// completes with a bool: `False` for gone).
    fn send(&self, data: &[u8], more: bool, token: u64) -> PyResult<Option<bool>> {
        let mut out = self.out();
        let chunk = if self.is_head {
            Bytes::new()
        } else {
            Bytes::copy_from_slice(data)
        };
        match std::mem::replace(&mut *out, Out::Done) {
            Out::Waiting(reply, Some(parts)) => {
                if !more {
                    // The whole body now: one response, length known.
                    let mut parts = parts;
                    if !self.is_head && !parts.headers.contains_key(http::header::CONTENT_LENGTH) {
                        parts
                            .headers
                            .insert(http::header::CONTENT_LENGTH, chunk.len().into());
                    }
                    let sent = reply
                        .send(Response::from_parts(parts, ResponseBody::from(chunk)))
                        .is_ok();
                    self.disconnect.set();
                    return Ok(sent.then_some(true));
                }
                let (tx, rx) = mpsc::channel::<Chunk>(BODY_CHANNEL);
                // The body ending or being dropped (the client went away)
                // drops the guard: `http.disconnect` from then on.
                let guard = SetOnDrop(self.disconnect.clone());
                let stream = futures_util::stream::unfold((rx, guard), |(mut rx, g)| async move {
                    rx.recv().await.map(|c| (c, (rx, g)))
                });
                let _ = reply.send(Response::from_parts(
                    parts,
                    ResponseBody::from_stream(stream),
                ));
                *out = Out::Streaming(tx);
                drop(out);
                self.push_chunk(chunk, true, token)
            }
            Out::Waiting(_, None) => Err(PyRuntimeError::new_err(
                "http.response.body before http.response.start",
            )),
            Out::Streaming(tx) => {
                if more {
                    *out = Out::Streaming(tx.clone());
                }
                drop(out);
                if !more {
                    // Dropping the last sender (after this chunk) ends the body.
                    return self.push_on(tx, chunk, token);
                }
                self.push_chunk(chunk, true, token)
            }
            Out::Done => Ok(Some(true)),
        }
    }

    /// The app failed: before the head, the handler answers 500; after
    /// it, the response is cut short (stream reset).
    fn abort(&self, why: String) {
        match std::mem::replace(&mut *self.out(), Out::Done) {
            Out::Waiting(..) => {}
            Out::Streaming(tx) => {
                let _ = tx.try_send(Err(why.into()));
            }
            Out::Done => {}
        }
        self.disconnect.set();
    }

    /// Whether the client went away (or the response completed).
    fn disconnected(&self) -> bool {
        self.disconnect.is_set()
    }

    /// Where the response stands: `"pending"` (no head went out),
    /// `"streaming"` (head out, body not finished) or `"done"`.
    fn progress(&self) -> &'static str {
        match &*self.out() {
            Out::Waiting(..) => "pending",
            Out::Streaming(_) => "streaming",
            Out::Done => "done",
        }
    }
}

impl HttpExchange {
    fn push_chunk(&self, chunk: Bytes, _more: bool, token: u64) -> PyResult<Option<bool>> {
        let tx = match &*self.out() {
            Out::Streaming(tx) => tx.clone(),
            _ => return Ok(Some(true)),
        };
        self.push_on(tx, chunk, token)
    }

    fn push_on(&self, tx: mpsc::Sender<Chunk>, chunk: Bytes, token: u64) -> PyResult<Option<bool>> {
        if tx.is_closed() {
            self.disconnect.set();
            return Ok(None);
        }
        if chunk.is_empty() {
            return Ok(Some(true));
        }
        match tx.try_send(Ok(chunk)) {
            Ok(()) => Ok(Some(true)),
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.disconnect.set();
                Ok(None)
            }
            Err(mpsc::error::TrySendError::Full(c)) => {
                let bridge = self.bridge.clone();
                self.bridge.handle()?.spawn(async move {
                    let ok = tx.send(c).await.is_ok();
                    bridge.complete(token, Done::Sent(ok));
                });
                Ok(Some(false))
            }
        }
    }
}
