//! The response side of one WSGI call: `start_response`, `write()`, and the
//! hand-over of the head and body chunks to the I/O side.
//!
//! The head is held back until the first non-empty chunk (or the end of
//! the iterable, or a `write()`), as PEP 3333 asks, then handed over with
//! that chunk: a whole body known at that point (a list, a one-element
//! iterable, a first chunk as long as the declared Content-Length) goes
//! out with its head in one write; anything else streams through a bounded
//! channel, so a slow client slows the app instead of growing memory.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use http_body::{Frame, SizeHint};
use pyo3::exceptions::{PyAssertionError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString, PyTuple};
use tokio::sync::{mpsc, oneshot};
use uwire::server::{BodyError, BoxError, Response, ResponseBody};

use crate::errors;

/// Chunks in flight between the app thread and the connection.
const CHANNEL_CHUNKS: usize = 8;

/// What the app thread hands the I/O side.
pub(crate) enum Reply {
    /// A response to send.
    Response(Response),
    /// The request body failed (413, or the peer went away): the runtime
    /// answers as it does for Rust handlers.
    Body(BodyError),
}

/// RFC 9110 7.6.1 hop-by-hop fields: PEP 3333 forbids applications to send
/// them (wsgiref treats them as an error; so does uwire).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailers",
    "transfer-encoding",
    "upgrade",
];

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct AppError(pub(crate) String);

/// Shared between `start_response`, `write()` and the thread driving the
/// iterable.
pub(crate) struct Pending {
    status: Option<StatusCode>,
    headers: HeaderMap,
    declared: Option<u64>,
    head_sent: bool,
    reply: Option<oneshot::Sender<Reply>>,
    chunks: Option<mpsc::Sender<Result<Bytes, BoxError>>>,
    /// Body bytes handed over.
    pub(crate) sent: u64,
    /// The status handed over (for the access log).
    pub(crate) sent_status: u16,
    is_head: bool,
    /// Everything the response may carry has been handed over (a whole
    /// body, or Content-Length reached): further chunks are dropped.
    complete: bool,
    warned_excess: bool,
    /// Set when the streaming body ends in an error ([`fail_stream`]),
    /// read by its [`ChunkBody`] once the channel closes.
    ///
    /// [`fail_stream`]: Pending::fail_stream
    failed: Option<Arc<AtomicBool>>,
    /// Run by the I/O thread, which must never wait for its connections
    /// (`crate::wsgi::Inline`): a chunk that finds the channel full is
    /// kept back here instead, for the pool's thread to hand over.
    inline: bool,
    /// Chunks kept back (in order, after everything in the channel).
    kept: VecDeque<Bytes>,
    /// `write()` was called on the I/O thread.
    wrote: bool,
}

/// What became of a chunk handed to [`send_chunk`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sent {
    /// Handed over.
    Taken,
    /// Kept back: the channel is full and this is the I/O thread.
    Kept,
    /// Nobody will read it any more (the client went away).
    Gone,
}

impl Pending {
    pub(crate) fn new(reply: oneshot::Sender<Reply>, is_head: bool, inline: bool) -> Pending {
        Pending {
            status: None,
            headers: HeaderMap::new(),
            declared: None,
            head_sent: false,
            reply: Some(reply),
            chunks: None,
            sent: 0,
            sent_status: 0,
            is_head,
            complete: false,
            warned_excess: false,
            failed: None,
            inline,
            kept: VecDeque::new(),
            wrote: false,
        }
    }

    /// `write()` was called on the I/O thread.
    pub(crate) fn wrote(&self) -> bool {
        self.wrote
    }

    /// Chunks wait, kept back on the I/O thread.
    pub(crate) fn has_kept(&self) -> bool {
        !self.kept.is_empty()
    }

    pub(crate) fn head_sent(&self) -> bool {
        self.head_sent
    }

    pub(crate) fn started(&self) -> bool {
        self.status.is_some()
    }

    /// Whether the response may carry no body (HEAD, 1xx, 204, 304).
    pub(crate) fn no_body(&self) -> bool {
        self.is_head
            || self.status.is_some_and(|s| {
                s.is_informational() || s == StatusCode::NO_CONTENT || s == StatusCode::NOT_MODIFIED
            })
    }

    /// Everything the response may carry has been handed over.
    pub(crate) fn is_complete(&self) -> bool {
        self.complete
    }

    /// Whether nobody waits for this response any more: the request was
    /// reset, its connection closed, or it ran past its deadline.
    pub(crate) fn cancelled(&self) -> bool {
        match (&self.reply, &self.chunks) {
            (_, Some(tx)) => tx.is_closed(),
            (Some(r), None) => r.is_closed(),
            (None, None) => self.head_sent && !self.complete,
        }
    }

    /// The response, taking the head's fields: it is built once, when the
    /// head goes out (nothing reads them after).
    fn build(&mut self, body: ResponseBody) -> Response {
        let mut r = Response::new(body);
        *r.status_mut() = self.status.unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        *r.headers_mut() = std::mem::take(&mut self.headers);
        r
    }

    fn send_reply(&mut self, reply: Reply) -> bool {
        self.head_sent = true;
        self.sent_status = self.status.map_or(500, |s| s.as_u16());
        match self.reply.take() {
            Some(tx) => tx.send(reply).is_ok(),
            None => false,
        }
    }

    /// Hands over the head and the whole body at once.
    pub(crate) fn send_full(&mut self, mut body: Bytes) -> bool {
        if self.no_body() {
            if self.is_head && self.declared.is_none() && !body.is_empty() {
                // What a GET would have announced.
                self.headers
                    .insert(http::header::CONTENT_LENGTH, body.len().into());
            }
            self.complete = true;
            let r = self.build(ResponseBody::new(NoBody));
            return self.send_reply(Reply::Response(r));
        }
        if let Some(d) = self.declared {
            if (body.len() as u64) > d {
                body.truncate(d as usize);
                self.warn_excess();
            } else if (body.len() as u64) < d {
                // Shorter than declared: the stream must end in a reset,
                // never look complete.
                let n = body.len() as u64;
                self.open_stream(Some(body));
                self.sent = n;
                return self.fail_stream("the app sent fewer bytes than its Content-Length");
            }
        }
        self.sent = body.len() as u64;
        self.complete = true;
        let r = self.build(ResponseBody::from(body));
        self.send_reply(Reply::Response(r))
    }

    fn warn_excess(&mut self) {
        if !self.warned_excess {
            self.warned_excess = true;
            tracing::warn!("the app sent more bytes than its Content-Length; the rest is dropped");
        }
    }

    /// Sends the head with a streaming body whose first chunk is `first`.
    fn open_stream(&mut self, first: Option<Bytes>) {
        if self.no_body() {
            self.complete = true;
            let r = self.build(ResponseBody::new(NoBody));
            self.send_reply(Reply::Response(r));
            return;
        }
        let (tx, rx) = mpsc::channel(CHANNEL_CHUNKS);
        let failed = Arc::new(AtomicBool::new(false));
        self.chunks = Some(tx);
        self.failed = Some(failed.clone());
        let r = self.build(ResponseBody::new(ChunkBody {
            first,
            rx,
            failed,
            errored: false,
        }));
        self.send_reply(Reply::Response(r));
    }

    /// Ends a streaming body with an error: the stream is reset (uwire/1)
    /// or the connection closed early (classic uwsgi).
    pub(crate) fn fail_stream(&mut self, why: &str) -> bool {
        self.complete = true;
        self.kept.clear();
        match self.chunks.take() {
            Some(tx) => {
                // The flag tells the body even when the channel is full and
                // the error cannot follow the chunks in it.
                if let Some(f) = &self.failed {
                    f.store(true, Ordering::Release);
                }
                let _ = tx.try_send(Err(Box::new(AppError(why.to_string()))));
                true
            }
            None => false,
        }
    }

    /// Cuts `chunk` to what Content-Length still allows.
    fn clip(&mut self, mut chunk: Bytes) -> Option<Bytes> {
        if self.complete {
            if !chunk.is_empty() && !self.no_body() {
                self.warn_excess();
            }
            return None;
        }
        if let Some(d) = self.declared {
            let left = d.saturating_sub(self.sent);
            if chunk.len() as u64 >= left {
                if chunk.len() as u64 > left {
                    self.warn_excess();
                    chunk.truncate(left as usize);
                }
                self.complete = true;
            }
        }
        Some(chunk)
    }

    /// Ends the response after the iterable is exhausted.
    pub(crate) fn finish(&mut self) -> Result<(), &'static str> {
        if !self.head_sent {
            if self.status.is_none() {
                return Err("the app returned without calling start_response");
            }
            self.send_full(Bytes::new());
            return Ok(());
        }
        if let Some(d) = self.declared {
            if self.sent < d && !self.no_body() {
                self.fail_stream("the app sent fewer bytes than its Content-Length");
                return Ok(());
            }
        }
        // Dropping the sender ends the body.
        self.chunks = None;
        self.complete = true;
        Ok(())
    }

    /// Takes the reply channel if the head has not gone out (to answer 500
    /// or hand over a body error instead).
    pub(crate) fn take_unsent_reply(&mut self) -> Option<oneshot::Sender<Reply>> {
        if self.head_sent {
            return None;
        }
        self.head_sent = true;
        self.sent_status = 500;
        self.reply.take()
    }
}

/// The `Pending` of one call, shared by `start_response` and `write()`.
pub(crate) type Shared = Arc<Mutex<Pending>>;

pub(crate) fn lock(p: &Shared) -> std::sync::MutexGuard<'_, Pending> {
    p.lock().unwrap_or_else(|e| e.into_inner())
}

/// Hands `chunk` over, sending the head first if it has not gone out.
/// Blocks (GIL released) while the channel is full, except on the I/O
/// thread, which keeps the chunk back instead ([`Sent::Kept`]).
pub(crate) fn send_chunk(py: Python<'_>, p: &Shared, chunk: Bytes, sized_whole: bool) -> Sent {
    let taken = |ok: bool| if ok { Sent::Taken } else { Sent::Gone };
    let (tx, item) = {
        let mut st = lock(p);
        if !st.head_sent {
            let whole = sized_whole
                || st
                    .declared
                    .is_some_and(|d| d == chunk.len() as u64 && !st.no_body());
            if st.no_body() && !whole {
                st.open_stream(None);
                return Sent::Taken;
            }
            if whole {
                return taken(st.send_full(chunk));
            }
            let Some(chunk) = st.clip(chunk) else {
                st.open_stream(None);
                return Sent::Taken;
            };
            st.sent += chunk.len() as u64;
            st.open_stream(Some(chunk));
            return Sent::Taken;
        }
        let Some(chunk) = st.clip(chunk) else {
            return taken(!st.cancelled());
        };
        let Some(tx) = st.chunks.clone() else {
            return Sent::Gone;
        };
        st.sent += chunk.len() as u64;
        // On the I/O thread, which must not wait: behind chunks already
        // kept back, or kept back itself if the channel is full.
        if st.inline && !st.kept.is_empty() {
            st.kept.push_back(chunk);
            return Sent::Kept;
        }
        match tx.try_send(Ok(chunk)) {
            Ok(()) => return Sent::Taken,
            Err(mpsc::error::TrySendError::Closed(_)) => return Sent::Gone,
            Err(mpsc::error::TrySendError::Full(Ok(chunk))) if st.inline => {
                st.kept.push_back(chunk);
                return Sent::Kept;
            }
            Err(mpsc::error::TrySendError::Full(item)) => (tx, item),
        }
    };
    taken(py.detach(|| tx.blocking_send(item).is_ok()))
}

/// The pool's thread takes over a response the I/O thread began: the
/// chunks kept back go first, waiting (GIL released) as the client reads.
/// `false` when nobody will read them any more.
pub(crate) fn take_over(py: Python<'_>, p: &Shared) -> bool {
    let (tx, kept) = {
        let mut st = lock(p);
        st.inline = false;
        (st.chunks.clone(), std::mem::take(&mut st.kept))
    };
    if kept.is_empty() {
        return true;
    }
    let Some(tx) = tx else {
        return false;
    };
    py.detach(|| kept.into_iter().all(|c| tx.blocking_send(Ok(c)).is_ok()))
}

/// The bytes of a native string (PEP 3333: code points up to U+00FF, one
/// byte each). ASCII, the usual case, is borrowed as it is.
fn latin1<'a>(s: &'a Bound<'_, PyAny>, what: &str) -> PyResult<Cow<'a, [u8]>> {
    let s = s
        .cast::<PyString>()
        .map_err(|_| PyTypeError::new_err(format!("{what} must be a str")))?;
    let text = s.to_cow()?;
    if text.is_ascii() {
        return Ok(match text {
            Cow::Borrowed(t) => Cow::Borrowed(t.as_bytes()),
            Cow::Owned(t) => Cow::Owned(t.into_bytes()),
        });
    }
    text.chars()
        .map(|c| u8::try_from(u32::from(c)).ok())
        .collect::<Option<Vec<u8>>>()
        .map(Cow::Owned)
        .ok_or_else(|| {
            PyValueError::new_err(format!("{what} {text:?} is not ISO-8859-1 (latin-1)"))
        })
}

/// Parses and checks `start_response`'s status and headers.
fn parse_head(
    status: &Bound<'_, PyAny>,
    headers: &Bound<'_, PyAny>,
) -> PyResult<(StatusCode, HeaderMap, Option<u64>)> {
    let raw = latin1(status, "status")?;
    // PEP 3333: "a status code and a reason phrase, in that order and
    // separated by a single space, with no surrounding whitespace".
    let valid = raw.len() >= 4
        && raw[..3].iter().all(u8::is_ascii_digit)
        && raw[3] == b' '
        && raw[4..].iter().all(|b| *b >= 0x20 && *b != 0x7f);
    let code = if valid {
        StatusCode::from_bytes(&raw[..3]).ok()
    } else {
        None
    };
    let code = code.ok_or_else(|| {
        PyValueError::new_err(format!(
            "invalid status {:?}: expected e.g. '200 OK'",
            String::from_utf8_lossy(&raw)
        ))
    })?;
    let list = headers.cast::<pyo3::types::PyList>().map_err(|_| {
        PyTypeError::new_err("response headers must be a list of (name, value) tuples")
    })?;
    let mut map = HeaderMap::with_capacity(list.len());
    let mut declared = None;
    for item in list.iter() {
        let pair = item.cast::<PyTuple>().map_err(|_| {
            PyTypeError::new_err("each response header must be a (name, value) tuple")
        })?;
        if pair.len() != 2 {
            return Err(PyTypeError::new_err(
                "each response header must be a (name, value) tuple",
            ));
        }
        let (name, value) = (pair.get_item(0)?, pair.get_item(1)?);
        let name = latin1(&name, "header name")?;
        let value = latin1(&value, "header value")?;
        if !uwire::frame::is_valid_name(&name) {
            return Err(PyValueError::new_err(format!(
                "invalid response header name {:?}",
                String::from_utf8_lossy(&name)
            )));
        }
        if !uwire::frame::is_valid_value(&value) {
            return Err(PyValueError::new_err(format!(
                "invalid value for response header {:?}",
                String::from_utf8_lossy(&name)
            )));
        }
        let name = HeaderName::from_bytes(&name)
            .map_err(|e| PyValueError::new_err(format!("invalid response header name: {e}")))?;
        if HOP_BY_HOP.contains(&name.as_str()) {
            return Err(PyValueError::new_err(format!(
                "hop-by-hop header {name:?} is not allowed from a WSGI application (PEP 3333)"
            )));
        }
        let value = HeaderValue::from_bytes(&value)
            .map_err(|e| PyValueError::new_err(format!("invalid response header value: {e}")))?;
        if name == http::header::CONTENT_LENGTH {
            let n = value
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or_else(|| PyValueError::new_err("invalid Content-Length response header"))?;
            if declared.is_some_and(|d| d != n) {
                return Err(PyValueError::new_err(
                    "conflicting Content-Length response headers",
                ));
            }
            if declared.is_some() {
                continue;
            }
            declared = Some(n);
        }
        map.append(name, value);
    }
    Ok((code, map, declared))
}

/// The `start_response` callable.
#[pyclass(frozen, module = "uwire._native")]
pub struct StartResponse {
    pub(crate) pending: Shared,
}

#[pymethods]
impl StartResponse {
    #[pyo3(signature = (status, headers, exc_info=None))]
    fn __call__(
        &self,
        py: Python<'_>,
        status: &Bound<'_, PyAny>,
        headers: &Bound<'_, PyAny>,
        exc_info: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Write> {
        let exc_info = exc_info.filter(|e| !e.is_none());
        {
            let st = lock(&self.pending);
            match exc_info {
                Some(info) if st.head_sent => {
                    // PEP 3333: re-raise when the headers are already out.
                    let info = info.cast::<PyTuple>()?;
                    let value = info.get_item(1)?;
                    let tb = info.get_item(2)?;
                    if !tb.is_none() {
                        value.call_method1("with_traceback", (tb,))?;
                    }
                    return Err(PyErr::from_value(value));
                }
                Some(_) => {}
                None if st.status.is_some() => {
                    return Err(PyAssertionError::new_err(
                        "start_response called a second time without exc_info",
                    ))
                }
                None => {}
            }
        }
        let (code, map, declared) = parse_head(status, headers)?;
        let mut st = lock(&self.pending);
        if st.head_sent {
            return Err(PyAssertionError::new_err(
                "the response head was already sent",
            ));
        }
        st.status = Some(code);
        st.headers = map;
        st.declared = declared;
        let _ = py;
        Ok(Write {
            pending: self.pending.clone(),
        })
    }
}

/// The `write()` callable `start_response` returns (PEP 3333's imperative
/// API): the data is handed over before `write()` returns.
#[pyclass(frozen, module = "uwire._native")]
pub struct Write {
    pending: Shared,
}

#[pymethods]
impl Write {
    fn __call__(&self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let data = data
            .cast::<PyBytes>()
            .map_err(|_| PyTypeError::new_err("write() takes bytes"))?;
        {
            let mut st = lock(&self.pending);
            if !st.started() {
                return Err(PyAssertionError::new_err(
                    "write() called before start_response",
                ));
            }
            st.wrote |= st.inline;
        }
        let chunk = Bytes::copy_from_slice(data.as_bytes());
        if chunk.is_empty() {
            return Ok(());
        }
        // Kept back on the I/O thread (its channel full) counts as
        // handed over: write() cannot wait there.
        if send_chunk(py, &self.pending, chunk, false) == Sent::Gone {
            return Err(errors::new(
                py,
                "ClientDisconnected",
                "the client went away",
            ));
        }
        Ok(())
    }
}

/// A body that streams the chunks the app thread hands over.
struct ChunkBody {
    first: Option<Bytes>,
    rx: mpsc::Receiver<Result<Bytes, BoxError>>,
    /// The app failed after the head went out ([`Pending::fail_stream`]).
    failed: Arc<AtomicBool>,
    /// An error was returned already.
    errored: bool,
}

impl http_body::Body for ChunkBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(b) = self.first.take() {
            return Poll::Ready(Some(Ok(Frame::data(b))));
        }
        let next = match std::task::ready!(self.rx.poll_recv(cx)) {
            Some(r) => Some(r),
            // Closed: a failure must not look like the body's end, even if
            // its error found the channel full.
            None if self.failed.load(Ordering::Acquire) && !self.errored => Some(Err(Box::new(
                AppError("the app failed after sending the response head".into()),
            )
                as BoxError)),
            None => None,
        };
        if matches!(next, Some(Err(_))) {
            self.errored = true;
        }
        Poll::Ready(next.map(|r| r.map(Frame::data)))
    }
}

/// No body, and no length announced either (HEAD keeps the app's
/// Content-Length; 204 and 304 must not get one).
struct NoBody;

impl http_body::Body for NoBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Poll::Ready(None)
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

/// The plain 500 answered when the app fails before its head went out.
pub(crate) fn internal_error() -> Response {
    uwire::server::text_response(500, "internal server error")
}

/// The 504 answered when `--timeout` interrupted the app before its head
/// went out, as the runtime answers when the request deadline passes
/// first (on the I/O thread, whose deadline timer waits for the app, the
/// watchdog's interrupt comes first).
pub(crate) fn deadline_exceeded() -> Response {
    uwire::server::text_response(504, "request deadline exceeded")
}
