//! The IPC client: `uwire::client::Client` (pooled, multiplexed uwire/1
//! connections) for Python. Requests run on a small background tokio
//! runtime; synchronous calls block with the GIL released, asynchronous
//! ones resolve an asyncio future from the runtime.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http_body::Frame;
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Empty, Full};
use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyByteArray, PyBytes, PyList, PyString};
use tokio::sync::mpsc;
use uwire::client::{ClientConfig, Upstream};

use crate::errors;

type ReqBody = UnsyncBoxBody<Bytes, BodyFailure>;

/// A streamed request body that failed (the iterable raised).
#[derive(Debug, thiserror::Error)]
#[error("request body failed: {0}")]
pub(crate) struct BodyFailure(String);

/// Chunks of a streamed request body in flight.
const BODY_CHUNKS: usize = 8;

/// The background runtime, made again in a forked child (a runtime's
/// threads do not survive `fork`).
fn runtime() -> Arc<tokio::runtime::Runtime> {
    runtime_in(std::process::id())
}

/// [`runtime`] for the calling process, `pid`. Called only with the GIL
/// held (from Python calls), so that no thread holds its lock when the
/// process forks (Python forks with the GIL held).
fn runtime_in(pid: u32) -> Arc<tokio::runtime::Runtime> {
    static RT: Mutex<Option<(u32, Arc<tokio::runtime::Runtime>)>> = Mutex::new(None);
    let mut rt = RT.lock().unwrap_or_else(|e| e.into_inner());
    match rt.as_ref() {
        Some((p, r)) if *p == pid => r.clone(),
        _ => {
            let threads = std::env::var("UWIRE_CLIENT_THREADS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(1usize)
                .max(1);
            let r = Arc::new(
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(threads)
                    .thread_name("uwire-client")
                    .enable_all()
                    .build()
                    .expect("building the client runtime"),
            );
            if let Some((_, old)) = rt.take() {
                // Inherited from the parent: its threads are gone here.
                std::mem::forget(old);
            }
            *rt = Some((pid, r.clone()));
            r
        }
    }
}

/// A request body fed chunk by chunk (by a thread iterating a Python
/// iterable, or by an asyncio task through a [`BodySender`]).
struct ChannelBody {
    rx: mpsc::Receiver<Result<Bytes, BodyFailure>>,
}

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = BodyFailure;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyFailure>>> {
        self.rx.poll_recv(cx).map(|o| o.map(|r| r.map(Frame::data)))
    }
}

/// The writing end of a streamed request body, for async iterables: the
/// Python side awaits `send()` for each chunk, then calls `close()`.
#[pyclass(frozen, module = "uwire._native")]
pub struct BodySender {
    tx: Mutex<Option<mpsc::Sender<Result<Bytes, BodyFailure>>>>,
    rx: Mutex<Option<mpsc::Receiver<Result<Bytes, BodyFailure>>>>,
}

#[pymethods]
impl BodySender {
    #[new]
    fn new() -> BodySender {
        let (tx, rx) = mpsc::channel(BODY_CHUNKS);
        BodySender {
            tx: Mutex::new(Some(tx)),
            rx: Mutex::new(Some(rx)),
        }
    }

    /// Queues `chunk`; resolves `fut` (on `loop`) once there was room, with
    /// `False` if the request is no longer reading its body.
    fn send(
        &self,
        chunk: &Bound<'_, PyAny>,
        event_loop: Py<PyAny>,
        fut: Py<PyAny>,
    ) -> PyResult<()> {
        let data = bytes_of(chunk)?;
        let tx = self.tx.lock().ok().and_then(|t| t.clone());
        runtime().spawn(async move {
            let ok = match tx {
                Some(tx) => tx.send(Ok(data)).await.is_ok(),
                None => false,
            };
            resolve(event_loop, fut, Ok(Value::Bool(ok)));
        });
        Ok(())
    }

    /// Ends the body (or, with `error`, aborts the request).
    #[pyo3(signature = (error=None))]
    fn close(&self, error: Option<String>) {
        let tx = self.tx.lock().ok().and_then(|mut t| t.take());
        if let (Some(tx), Some(e)) = (tx, error) {
            let _ = tx.try_send(Err(BodyFailure(e)));
        }
    }
}

fn bytes_of(obj: &Bound<'_, PyAny>) -> PyResult<Bytes> {
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok(Bytes::copy_from_slice(b.as_bytes()));
    }
    if let Ok(b) = obj.cast::<PyByteArray>() {
        return Ok(Bytes::from(b.to_vec()));
    }
    if obj.is_instance_of::<PyString>() {
        return Err(PyTypeError::new_err("body chunks must be bytes, not str"));
    }
    let b: Vec<u8> = obj
        .call_method0("__bytes__")
        .or_else(|_| obj.py().get_type::<PyBytes>().call1((obj,)))?
        .extract()?;
    Ok(Bytes::from(b))
}

/// Turns the `body=` argument into a request body.
fn request_body(py: Python<'_>, body: Option<&Bound<'_, PyAny>>) -> PyResult<ReqBody> {
    let Some(body) = body.filter(|b| !b.is_none()) else {
        return Ok(Empty::new().map_err(|e| match e {}).boxed_unsync());
    };
    if body.is_instance_of::<PyBytes>() || body.is_instance_of::<PyByteArray>() {
        let data = bytes_of(body)?;
        return Ok(Full::new(data).map_err(|e| match e {}).boxed_unsync());
    }
    if body.is_instance_of::<PyString>() {
        return Err(PyTypeError::new_err(
            "body must be bytes or an iterable of bytes, not str",
        ));
    }
    if let Ok(sender) = body.cast::<BodySender>() {
        let rx = sender
            .get()
            .rx
            .lock()
            .ok()
            .and_then(|mut r| r.take())
            .ok_or_else(|| PyRuntimeError::new_err("this BodySender was already used"))?;
        return Ok(ChannelBody { rx }.boxed_unsync());
    }
    if let Ok(view) = body.cast::<pyo3::types::PyMemoryView>() {
        let data = bytes_of(view.as_any())?;
        return Ok(Full::new(data).map_err(|e| match e {}).boxed_unsync());
    }
    // Any other iterable: a thread pulls it (with the GIL) and hands the
    // chunks over (without), so the request streams while it is produced.
    let iter = body.try_iter()?.unbind();
    let (tx, rx) = mpsc::channel::<Result<Bytes, BodyFailure>>(BODY_CHUNKS);
    let _ = py;
    std::thread::Builder::new()
        .name("uwire-client-body".into())
        .spawn(move || {
            Python::attach(|py| {
                let iter = iter.into_bound(py);
                for item in iter {
                    let item = match item.and_then(|i| bytes_of(&i)) {
                        Ok(b) => Ok(b),
                        Err(e) => Err(BodyFailure(e.to_string())),
                    };
                    let failed = item.is_err();
                    if py.detach(|| tx.blocking_send(item)).is_err() || failed {
                        break;
                    }
                }
            })
        })
        .map_err(|e| PyRuntimeError::new_err(e.to_string()))?;
    Ok(ChannelBody { rx }.boxed_unsync())
}

fn build_request(
    method: &str,
    path: &str,
    headers: Option<Vec<(String, String)>>,
    body: ReqBody,
) -> PyResult<http::Request<ReqBody>> {
    let invalid =
        |m: String| -> PyErr { Python::attach(|py| errors::new(py, "InvalidRequest", m)) };
    let method = http::Method::from_bytes(method.as_bytes())
        .map_err(|e| invalid(format!("invalid method {method:?}: {e}")))?;
    let uri: http::Uri = path
        .parse()
        .map_err(|e| invalid(format!("invalid path {path:?}: {e}")))?;
    let mut req = http::Request::builder().method(method).uri(uri);
    if let Some(h) = req.headers_mut() {
        for (n, v) in headers.unwrap_or_default() {
            let name = http::HeaderName::from_bytes(n.as_bytes())
                .map_err(|e| invalid(format!("invalid header name {n:?}: {e}")))?;
            let value = http::HeaderValue::from_str(&v)
                .map_err(|e| invalid(format!("invalid value for header {n:?}: {e}")))?;
            h.append(name, value);
        }
    }
    req.body(body).map_err(|e| invalid(e.to_string()))
}

/// A value produced on the runtime, turned into a Python object with the
/// GIL.
enum Value {
    Bool(bool),
    Response(Box<Response>),
    Chunk(Option<Bytes>),
}

impl Value {
    fn into_py(self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        Ok(match self {
            Value::Bool(b) => pyo3::types::PyBool::new(py, b)
                .to_owned()
                .into_any()
                .unbind(),
            Value::Response(r) => Py::new(py, *r)?.into_any(),
            Value::Chunk(Some(b)) => PyBytes::new(py, &b).into_any().unbind(),
            Value::Chunk(None) => py.None(),
        })
    }
}

/// Resolves an asyncio future from any thread.
fn resolve(event_loop: Py<PyAny>, fut: Py<PyAny>, outcome: Result<Value, ClientFailure>) {
    Python::attach(|py| {
        static RESOLVE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
        let Ok(resolver) = RESOLVE.get_or_try_init(py, || {
            py.import("uwire._aio")
                .and_then(|m| m.getattr("resolve"))
                .map(Bound::unbind)
        }) else {
            return;
        };
        let (ok, value) = match outcome
            .map_err(|f| f.into_pyerr(py))
            .and_then(|v| v.into_py(py))
        {
            Ok(v) => (true, v),
            Err(e) => (false, e.into_value(py).into_any()),
        };
        let _ = event_loop.call_method1(
            py,
            "call_soon_threadsafe",
            (resolver.clone_ref(py), fut, ok, value),
        );
    })
}

/// A failure on the runtime side, turned into a Python exception later.
enum ClientFailure {
    Client(uwire::client::Error),
    Timeout,
}

impl ClientFailure {
    fn into_pyerr(self, py: Python<'_>) -> PyErr {
        match self {
            ClientFailure::Client(e) => errors::client_error(py, &e),
            ClientFailure::Timeout => errors::new(py, "Timeout", "request timed out"),
        }
    }
}

/// A uwire/1 client for one or more servers (`unix:/path`, `tcp:HOST:PORT`,
/// also `uwsgi+unix:`/`uwsgi+tcp:` for classic uwsgi servers).
#[pyclass(frozen, weakref, module = "uwire._native")]
pub struct Client {
    /// The pooled client, and the process that made it. A forked child
    /// makes a fresh one at its first request rather than use the one it
    /// inherited: those connections are driven by tasks of the parent's
    /// runtime, whose threads are gone in the child (a request on them
    /// would wait for its timeout), and their sockets are the parent's too
    /// (frames written from both processes would interleave). The
    /// inherited pool is neither used nor dropped (dropping it could write
    /// to the sockets or wake the parent's runtime through descriptors the
    /// two processes share): the child closes its copies of the sockets'
    /// descriptors and forgets it, so that the parent's connections end
    /// when the parent closes them. This happens right after an
    /// `os.fork()` (the Python wrapper's fork hook calls
    /// [`Client::after_fork`]), or at the first use in the child for a
    /// fork Python did not see. Locked only with the GIL held (see
    /// [`runtime_in`]).
    inner: Mutex<(u32, uwire::client::Client)>,
    timeout: Option<Duration>,
}

fn opt_secs(s: Option<f64>) -> Option<Duration> {
    s.filter(|s| *s > 0.0).map(Duration::from_secs_f64)
}

impl Client {
    /// The pooled client for the calling process, `pid` (see
    /// [`Client::inner`]).
    fn pooled(&self, pid: u32) -> uwire::client::Client {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if inner.0 != pid {
            let fresh = inner.1.without_connections();
            let inherited = std::mem::replace(&mut inner.1, fresh);
            #[allow(unsafe_code)]
            // SAFETY: this is a forked child (the pool was made by another
            // process), and the pool's connections were driven by the
            // parent's multi-thread runtime, whose threads do not exist
            // here; the runtime itself is never run here (`runtime_in`
            // makes a new one). Clones of the inherited pool live only in
            // requests of the parent, which are never polled here.
            unsafe {
                inherited.close_inherited();
            }
            inner.0 = pid;
        }
        inner.1.clone()
    }

    /// The pooled client and the runtime to run a request on, both of the
    /// calling process.
    fn for_request(&self) -> (uwire::client::Client, Arc<tokio::runtime::Runtime>) {
        let pid = std::process::id();
        (self.pooled(pid), runtime_in(pid))
    }

    async fn send(
        client: uwire::client::Client,
        req: http::Request<ReqBody>,
        timeout: Option<Duration>,
    ) -> Result<http::Response<uwire::client::Body>, ClientFailure> {
        let fut = client.request(req);
        match timeout {
            Some(t) => match tokio::time::timeout(t, fut).await {
                Ok(r) => r.map_err(ClientFailure::Client),
                Err(_) => Err(ClientFailure::Timeout),
            },
            None => fut.await.map_err(ClientFailure::Client),
        }
    }
}

#[pymethods]
impl Client {
    /// `address`: one address or a list (requests are balanced over them).
    /// `timeout`: seconds to the response head, and between body chunks
    /// (`None` or 0: none). `connect_timeout`: seconds to connect.
    /// `max_connections`: pooled connections per server.
    #[new]
    #[pyo3(signature = (address, timeout=Some(60.0), connect_timeout=5.0, max_connections=4))]
    fn new(
        address: &Bound<'_, PyAny>,
        timeout: Option<f64>,
        connect_timeout: f64,
        max_connections: usize,
    ) -> PyResult<Client> {
        let addrs: Vec<String> = if let Ok(s) = address.extract::<String>() {
            vec![s]
        } else {
            address.extract()?
        };
        let ups = addrs
            .iter()
            .map(|a| a.parse::<Upstream>().map_err(PyValueError::new_err))
            .collect::<PyResult<Vec<_>>>()?;
        if connect_timeout <= 0.0 {
            return Err(PyValueError::new_err("connect_timeout must be positive"));
        }
        let timeout = opt_secs(timeout);
        let cfg = ClientConfig {
            request_timeout: timeout,
            connect_timeout: Duration::from_secs_f64(connect_timeout),
            max_connections_per_upstream: max_connections.max(1),
            ..ClientConfig::default()
        };
        let inner = uwire::client::Client::new(ups, cfg).map_err(PyValueError::new_err)?;
        Ok(Client {
            inner: Mutex::new((std::process::id(), inner)),
            timeout,
        })
    }

    /// Sends a request and waits for the response head (GIL released).
    #[pyo3(signature = (method, path, headers=None, body=None, timeout=None))]
    fn request(
        &self,
        py: Python<'_>,
        method: &str,
        path: &str,
        headers: Option<Vec<(String, String)>>,
        body: Option<&Bound<'_, PyAny>>,
        timeout: Option<f64>,
    ) -> PyResult<Response> {
        let body = request_body(py, body)?;
        let req = build_request(method, path, headers, body)?;
        let timeout = timeout.map_or(self.timeout, |t| opt_secs(Some(t)));
        let (client, rt) = self.for_request();
        let resp = py.detach(|| rt.block_on(Client::send(client, req, timeout)));
        match resp {
            Ok(r) => Ok(Response::new(r, timeout)),
            Err(f) => Err(f.into_pyerr(py)),
        }
    }

    /// Like `request`, resolving the asyncio future `fut` (of `loop`) with
    /// a `Response`. Returns a handle whose `cancel()` abandons the request.
    #[pyo3(signature = (event_loop, fut, method, path, headers=None, body=None, timeout=None))]
    #[allow(clippy::too_many_arguments)]
    fn request_async(
        &self,
        py: Python<'_>,
        event_loop: Py<PyAny>,
        fut: Py<PyAny>,
        method: &str,
        path: &str,
        headers: Option<Vec<(String, String)>>,
        body: Option<&Bound<'_, PyAny>>,
        timeout: Option<f64>,
    ) -> PyResult<Abort> {
        let body = request_body(py, body)?;
        let req = build_request(method, path, headers, body)?;
        let timeout = timeout.map_or(self.timeout, |t| opt_secs(Some(t)));
        let (client, rt) = self.for_request();
        let task = rt.spawn(async move {
            let r = Client::send(client, req, timeout).await;
            let outcome = r.map(|resp| Value::Response(Box::new(Response::new(resp, timeout))));
            resolve(event_loop, fut, outcome);
        });
        Ok(Abort {
            task: task.abort_handle(),
        })
    }

    /// In a forked child: lets go of the connections inherited from the
    /// parent (closes this process's copies of their sockets) and starts a
    /// pool of its own (see [`Client::inner`]). Does nothing in the
    /// process that made the pool.
    fn after_fork(&self) {
        self.pooled(std::process::id());
    }

    /// Live pooled connections per server.
    fn connection_counts(&self) -> Vec<usize> {
        self.pooled(std::process::id()).connection_counts()
    }
}

/// Cancels an asynchronous operation.
#[pyclass(frozen, module = "uwire._native")]
pub struct Abort {
    task: tokio::task::AbortHandle,
}

#[pymethods]
impl Abort {
    fn cancel(&self) {
        self.task.abort();
    }
}

struct BodyState {
    body: Option<uwire::client::Body>,
    buf: BytesMut,
    done: bool,
}

/// A response: `status`, `headers` and a streaming body. Reading the body
/// returns flow-control credit to the server as it goes; closing (or
/// dropping) the response before the end resets the stream.
#[pyclass(frozen, module = "uwire._native")]
pub struct Response {
    #[pyo3(get)]
    status: u16,
    headers: Vec<(String, String)>,
    state: Arc<Mutex<BodyState>>,
    timeout: Option<Duration>,
}

async fn next_chunk(
    body: &mut uwire::client::Body,
    timeout: Option<Duration>,
) -> Result<Option<Bytes>, ClientFailure> {
    loop {
        let frame = match timeout {
            Some(t) => tokio::time::timeout(t, body.frame())
                .await
                .map_err(|_| ClientFailure::Timeout)?,
            None => body.frame().await,
        };
        match frame {
            None => return Ok(None),
            Some(Err(e)) => return Err(ClientFailure::Client(e)),
            Some(Ok(f)) => {
                if let Ok(d) = f.into_data() {
                    if !d.is_empty() {
                        return Ok(Some(d));
                    }
                }
            }
        }
    }
}

impl Response {
    fn new(r: http::Response<uwire::client::Body>, timeout: Option<Duration>) -> Response {
        let (parts, body) = r.into_parts();
        let headers = parts
            .headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_string(),
                    v.as_bytes().iter().map(|b| char::from(*b)).collect(),
                )
            })
            .collect();
        Response {
            status: parts.status.as_u16(),
            headers,
            state: Arc::new(Mutex::new(BodyState {
                body: Some(body),
                buf: BytesMut::new(),
                done: false,
            })),
            timeout,
        }
    }

    fn lock(&self) -> PyResult<std::sync::MutexGuard<'_, BodyState>> {
        self.state
            .try_lock()
            .map_err(|_| PyRuntimeError::new_err("the response body is being read elsewhere"))
    }

    /// Reads one more chunk into the buffer; `false` at the end.
    fn fill(&self, py: Python<'_>, st: &mut BodyState) -> PyResult<bool> {
        if st.done {
            return Ok(false);
        }
        let Some(body) = st.body.as_mut() else {
            st.done = true;
            return Ok(false);
        };
        let rt = runtime();
        let timeout = self.timeout;
        match py.detach(|| rt.block_on(next_chunk(body, timeout))) {
            Ok(Some(d)) => {
                st.buf.extend_from_slice(&d);
                Ok(true)
            }
            Ok(None) => {
                st.done = true;
                st.body = None;
                Ok(false)
            }
            Err(f) => {
                st.done = true;
                st.body = None;
                Err(f.into_pyerr(py))
            }
        }
    }
}

#[pymethods]
impl Response {
    /// Response headers as `(name, value)` pairs (names lower-case).
    #[getter]
    fn headers<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        PyList::new(
            py,
            self.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())),
        )
    }

    /// Reads up to `size` bytes of the body (all of the rest by default).
    #[pyo3(signature = (size=None))]
    fn read<'py>(&self, py: Python<'py>, size: Option<isize>) -> PyResult<Bound<'py, PyBytes>> {
        let mut st = self.lock()?;
        let size = size.filter(|s| *s >= 0).map(|s| s as usize);
        match size {
            Some(n) => {
                while st.buf.len() < n && self.fill(py, &mut st)? {}
                let n = n.min(st.buf.len());
                let out = PyBytes::new(py, &st.buf[..n]);
                st.buf.advance(n);
                Ok(out)
            }
            None => {
                while self.fill(py, &mut st)? {}
                let out = PyBytes::new(py, &st.buf);
                st.buf.clear();
                Ok(out)
            }
        }
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    /// The next body chunk as it arrived.
    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let mut st = self.lock()?;
        if st.buf.is_empty() && !self.fill(py, &mut st)? {
            return Ok(None);
        }
        let out = PyBytes::new(py, &st.buf);
        st.buf.clear();
        Ok(Some(out))
    }

    /// Resolves `fut` with the next body chunk, or `None` at the end.
    fn next_chunk_async(&self, event_loop: Py<PyAny>, fut: Py<PyAny>) -> PyResult<Abort> {
        let state = self.state.clone();
        let timeout = self.timeout;
        let (buffered, body) = {
            let mut st = self.lock()?;
            let buffered = (!st.buf.is_empty()).then(|| st.buf.split().freeze());
            let body = if buffered.is_none() && !st.done {
                st.body.take()
            } else {
                None
            };
            (buffered, body)
        };
        let task = runtime().spawn(async move {
            let outcome: Result<Option<Bytes>, ClientFailure> = match (buffered, body) {
                (Some(b), _) => Ok(Some(b)),
                (None, None) => Ok(None),
                (None, Some(mut body)) => {
                    let r = next_chunk(&mut body, timeout).await;
                    let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
                    match &r {
                        Ok(Some(_)) => st.body = Some(body),
                        _ => st.done = true,
                    }
                    r
                }
            };
            resolve(event_loop, fut, outcome.map(Value::Chunk));
        });
        Ok(Abort {
            task: task.abort_handle(),
        })
    }

    /// Abandons the rest of the body (resets the stream if unfinished).
    fn close(&self) {
        if let Ok(mut st) = self.state.lock() {
            st.body = None;
            st.done = true;
            st.buf.clear();
        }
    }
}
