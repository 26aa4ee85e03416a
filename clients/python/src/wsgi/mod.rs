//! The WSGI application as a [`uwire::server::Handler`]: each request is a
//! job for a fixed pool of Python threads fed by a channel; the GIL is held
//! only while Python code runs.

mod environ;
mod extras;
mod input;
mod response;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use pyo3::exceptions::{PyAssertionError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyTuple};
use tokio::sync::oneshot;
use uwire::server::{BoxError, BoxFuture, Handler, Request, Response};

pub(crate) use environ::{KeyCache, WsgiConstants};
pub(crate) use extras::utc_now;
pub use extras::{AccessLog, ErrorStream, FileWrapper};
pub use input::Input;
pub(crate) use response::Reply;
pub use response::{StartResponse, Write};

use crate::table::now_ms;
use response::{lock, send_chunk, Pending, Shared};

/// One request for the pool.
pub(crate) struct Job {
    req: Request,
    reply: oneshot::Sender<Reply>,
}

/// What the watchdog knows of one app thread.
#[derive(Default)]
pub(crate) struct ThreadSlot {
    /// When the current job started (system-wide monotonic ms); 0 = idle.
    pub(crate) busy_since_ms: AtomicU64,
    /// `threading.get_ident()` of the thread.
    pub(crate) ident: AtomicU64,
    /// An exception was sent to interrupt the current job.
    pub(crate) interrupted: AtomicBool,
}

/// Everything the app threads share.
pub(crate) struct App {
    pub(crate) app: Py<PyAny>,
    pub(crate) consts: WsgiConstants,
    pub(crate) handle: tokio::runtime::Handle,
    pub(crate) access: Option<Arc<AccessLog>>,
    /// Busy-thread gauge in the shared table, if any.
    pub(crate) busy: Option<Arc<dyn Fn(i64) + Send + Sync>>,
    /// How long an idle app thread watches for the next job before it
    /// sleeps (`--busy-poll`; zero: it sleeps at once).
    pub(crate) busy_poll: std::time::Duration,
    /// Held by the one idle thread that watches for jobs; the others sleep
    /// at once (more watchers would only burn CPU: one job wakes one).
    pub(crate) watching: AtomicBool,
}

/// Starts `n` app threads; returns the job sender, the watchdog's view of
/// each thread, and their join handles.
pub(crate) fn start_pool(
    app: Arc<App>,
    n: usize,
) -> (
    crossbeam_channel::Sender<Job>,
    Arc<Vec<ThreadSlot>>,
    Vec<std::thread::JoinHandle<()>>,
) {
    let (tx, rx) = crossbeam_channel::unbounded::<Job>();
    let slots: Arc<Vec<ThreadSlot>> = Arc::new((0..n).map(|_| ThreadSlot::default()).collect());
    let handles = (0..n)
        .map(|i| {
            let (app, rx, slots) = (app.clone(), rx.clone(), slots.clone());
            std::thread::Builder::new()
                .name(format!("uwire-app-{i}"))
                .spawn(move || thread_main(&app, &rx, &slots[i]))
                .expect("spawning an app thread")
        })
        .collect();
    (tx, slots, handles)
}

fn thread_main(app: &App, rx: &crossbeam_channel::Receiver<Job>, slot: &ThreadSlot) {
    Python::attach(|py| {
        // SAFETY: plain call, the thread is attached.
        let ident = unsafe { pyo3::ffi::PyThread_get_thread_ident() };
        slot.ident.store(ident as u64, Ordering::Release);
        let mut cache = KeyCache::new();
        loop {
            let Ok(job) = py.detach(|| next_job(app, rx)) else {
                break;
            };
            slot.busy_since_ms.store(now_ms().max(1), Ordering::Release);
            if let Some(b) = &app.busy {
                b(1);
            }
            run_job(py, app, &mut cache, job);
            if let Some(b) = &app.busy {
                b(-1);
            }
            // With the GIL held, as the watchdog is when it interrupts: a
            // pending interrupt meant for this job never hits the next.
            slot.busy_since_ms.store(0, Ordering::Release);
            if slot.interrupted.swap(false, Ordering::AcqRel) {
                // SAFETY: the thread is attached; NULL clears a pending
                // asynchronous exception of this thread.
                unsafe {
                    pyo3::ffi::PyThreadState_SetAsyncExc(ident as _, std::ptr::null_mut());
                }
                // Also clear it if it was already raised and is set now.
                let _ = PyErr::take(py);
            }
        }
    })
}

/// The next job for an idle app thread (the GIL released). Waking a thread
/// that sleeps on an idle CPU is the dearest step of a request at low
/// concurrency on a VM that halts its idle CPUs (see
/// `uwire::net::busy_poll`), so one idle thread at a time watches the
/// channel for `--busy-poll` before it sleeps, and takes a job that comes
/// meanwhile without that wake-up.
fn next_job(
    app: &App,
    rx: &crossbeam_channel::Receiver<Job>,
) -> Result<Job, crossbeam_channel::RecvError> {
    use crossbeam_channel::TryRecvError;
    if app.busy_poll.is_zero()
        || app
            .watching
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
    {
        return rx.recv();
    }
    let mut watching = true;
    let got = uwire::net::busy_poll::wait(
        app.busy_poll,
        || match rx.try_recv() {
            Ok(job) => Some(Ok(job)),
            Err(TryRecvError::Disconnected) => Some(Err(crossbeam_channel::RecvError)),
            Err(TryRecvError::Empty) => None,
        },
        || {
            // Sleeping: another idle thread may watch now.
            app.watching.store(false, Ordering::Release);
            watching = false;
            rx.recv()
        },
    );
    if watching {
        app.watching.store(false, Ordering::Release);
    }
    got
}

/// The [`Handler`] the server runs: hands each request to the pool.
#[derive(Clone)]
pub(crate) struct WsgiHandler {
    pub(crate) jobs: crossbeam_channel::Sender<Job>,
    /// Called once per request, before it is queued.
    pub(crate) on_request: Arc<dyn Fn() + Send + Sync>,
}

impl Handler for WsgiHandler {
    fn call(&self, req: Request) -> BoxFuture<Result<Response, BoxError>> {
        (self.on_request)();
        let (tx, rx) = oneshot::channel();
        let sent = self.jobs.send(Job { req, reply: tx });
        Box::pin(async move {
            if sent.is_err() {
                return Err("the app threads have stopped".into());
            }
            match rx.await {
                Ok(Reply::Response(r)) => Ok(r),
                Ok(Reply::Body(e)) => Err(Box::new(e) as BoxError),
                Err(_) => Err("the app thread dropped the request".into()),
            }
        })
    }
}

fn run_job(py: Python<'_>, app: &App, cache: &mut KeyCache, job: Job) {
    let started = Instant::now();
    let Job { req, reply } = job;
    let (head, env, body) = req.into_parts();
    let is_head = head.method.as_ref() == b"HEAD";
    let pending: Shared = Arc::new(Mutex::new(Pending::new(reply, is_head)));
    let input = match Bound::new(py, Input::new(body, app.handle.clone())) {
        Ok(i) => i,
        Err(e) => {
            fail(py, &pending, None, e);
            return;
        }
    };
    let result = (|| -> PyResult<()> {
        let environ = environ::build(py, &env, cache, &app.consts, input.clone().into_any())?;
        let sr = Bound::new(
            py,
            StartResponse {
                pending: pending.clone(),
            },
        )?;
        let iterable = app.app.bind(py).call1((environ, sr))?;
        let driven = drive(py, &iterable, &pending);
        // PEP 3333: close() is called whatever happened (normal end, app
        // error, client gone, timeout).
        let plain =
            iterable.is_exact_instance_of::<PyList>() || iterable.is_exact_instance_of::<PyTuple>();
        // A list or tuple has no close(): skip the lookup (and the
        // AttributeError it would build).
        let closed = if plain {
            Ok(())
        } else {
            match iterable.getattr(pyo3::intern!(py, "close")) {
                Ok(close) => close.call0().map(drop),
                Err(_) => Ok(()),
            }
        };
        driven.and(closed)
    })();
    if let Err(e) = result {
        fail(py, &pending, Some(input.get()), e);
    }
    if let Some(log) = &app.access {
        let st = lock(&pending);
        log.log(&env, st.sent_status, st.sent, started.elapsed());
    }
}

/// Pulls the iterable and hands its chunks over.
fn drive(py: Python<'_>, iterable: &Bound<'_, PyAny>, p: &Shared) -> PyResult<()> {
    let whole =
        iterable.is_exact_instance_of::<PyList>() || iterable.is_exact_instance_of::<PyTuple>();
    if whole && !lock(p).head_sent() {
        // A list or tuple: the whole body is known now; it goes out with
        // its head in one write, with its length announced.
        let items: Vec<Bound<'_, PyAny>> = iterable.try_iter()?.collect::<PyResult<_>>()?;
        let mut chunks = Vec::with_capacity(items.len());
        let mut total = 0;
        for item in &items {
            let b = as_bytes(item)?;
            total += b.as_bytes().len();
            chunks.push(b);
        }
        let mut st = lock(p);
        if !st.started() {
            return Err(PyAssertionError::new_err(
                "the app returned without calling start_response",
            ));
        }
        let body = match chunks.as_slice() {
            [] => Bytes::new(),
            [one] => Bytes::copy_from_slice(one.as_bytes()),
            many => {
                let mut b = BytesMut::with_capacity(total);
                for c in many {
                    b.extend_from_slice(c.as_bytes());
                }
                b.freeze()
            }
        };
        st.send_full(body);
        return Ok(());
    }
    if let Ok(fw) = iterable.cast::<FileWrapper>() {
        if fw.get().stream_file(py, p)? {
            return finish(p);
        }
    }
    // PEP 3333: "if the iterable returned by the application has a len()
    // of 1, then the server can automatically determine Content-Length".
    let sized_one = iterable
        .hasattr(pyo3::intern!(py, "__len__"))
        .unwrap_or(false)
        && iterable.len().is_ok_and(|n| n == 1);
    let mut iter = iterable.try_iter()?;
    loop {
        if lock(p).cancelled() {
            // The client went away (RESET) or the deadline passed: pull no
            // more chunks.
            return Ok(());
        }
        let Some(item) = iter.next() else { break };
        let item = item?;
        let b = as_bytes(&item)?;
        if b.as_bytes().is_empty() {
            continue;
        }
        if !lock(p).started() {
            return Err(PyAssertionError::new_err(
                "the app yielded body data before calling start_response",
            ));
        }
        if !send_chunk(py, p, Bytes::copy_from_slice(b.as_bytes()), sized_one) {
            return Ok(());
        }
        let st = lock(p);
        if st.head_sent() && st.no_body() {
            // HEAD, 204, 304: the head is out and no body may follow.
            break;
        }
    }
    finish(p)
}

fn finish(p: &Shared) -> PyResult<()> {
    let mut st = lock(p);
    if st.cancelled() {
        return Ok(());
    }
    st.finish().map_err(PyAssertionError::new_err)
}

fn as_bytes<'a, 'py>(item: &'a Bound<'py, PyAny>) -> PyResult<&'a Bound<'py, PyBytes>> {
    item.cast::<PyBytes>().map_err(|_| {
        PyTypeError::new_err(format!(
            "a WSGI response iterable must yield bytes, not {}",
            item.get_type()
                .name()
                .map(|n| n.to_string())
                .unwrap_or_else(|_| "?".into())
        ))
    })
}

/// The app failed: answer 500 if the head has not gone out (or what the
/// request body's own failure calls for), reset the stream otherwise.
fn fail(py: Python<'_>, p: &Shared, input: Option<&Input>, err: PyErr) {
    let body_err = input.and_then(Input::take_failure);
    let timed_out = err.is_instance_of::<pyo3::exceptions::PyBaseException>(py)
        && errors_is(py, &err, "RequestTimeout");
    let disconnected = errors_is(py, &err, "ClientDisconnected");
    let mut st = lock(p);
    let gone = st.cancelled();
    match st.take_unsent_reply() {
        Some(tx) => {
            if let Some(be) = body_err {
                tracing::debug!(error = %be, "request body failed; the app gave up");
                let _ = tx.send(Reply::Body(be));
            } else {
                if timed_out {
                    tracing::warn!("request ran past --timeout; the app thread was interrupted");
                } else if !(gone || tx.is_closed()) {
                    log_exception(py, &err, "error handling request; answering 500");
                }
                let _ = tx.send(Reply::Response(response::internal_error()));
            }
        }
        None => {
            if timed_out {
                tracing::warn!("request ran past --timeout; the app thread was interrupted");
            } else if !(gone || disconnected || body_err.is_some()) {
                log_exception(
                    py,
                    &err,
                    "error after the response head was sent; resetting the stream",
                );
            }
            st.fail_stream("the app failed after sending the response head");
        }
    }
}

fn errors_is(py: Python<'_>, err: &PyErr, name: &str) -> bool {
    py.import("uwire.errors")
        .and_then(|m| m.getattr(name))
        .map(|cls| err.matches(py, cls).unwrap_or(false))
        .unwrap_or(false)
}

/// Logs `err` with its traceback.
pub(crate) fn log_exception(py: Python<'_>, err: &PyErr, what: &str) {
    let text = py
        .import("traceback")
        .and_then(|tb| {
            tb.call_method1(
                "format_exception",
                (err.get_type(py), err.value(py), err.traceback(py)),
            )
        })
        .and_then(|lines| {
            let lines: Vec<String> = lines.extract()?;
            Ok(lines.concat())
        })
        .unwrap_or_else(|_| err.to_string());
    tracing::error!("{what}\n{}", text.trim_end());
}

/// Interrupts app threads stuck past `timeout_ms`: raises `RequestTimeout`
/// in them (once per job). Returns how long the longest-stuck thread has
/// been busy, in ms (0 when none is).
pub(crate) fn interrupt_stuck(slots: &[ThreadSlot], timeout_ms: u64) -> u64 {
    let now = now_ms();
    let stuck: Vec<&ThreadSlot> = slots
        .iter()
        .filter(|s| {
            let since = s.busy_since_ms.load(Ordering::Acquire);
            since != 0 && now.saturating_sub(since) > timeout_ms
        })
        .collect();
    if stuck.is_empty() {
        return 0;
    }
    Python::attach(|py| {
        let Ok(exc) = py
            .import("uwire.errors")
            .and_then(|m| m.getattr("RequestTimeout"))
        else {
            return;
        };
        for s in &stuck {
            // Re-checked with the GIL held: the thread clears `busy` with
            // the GIL held too, so the job cannot change under us.
            let since = s.busy_since_ms.load(Ordering::Acquire);
            if since == 0 || now_ms().saturating_sub(since) <= timeout_ms {
                continue;
            }
            if !s.interrupted.swap(true, Ordering::AcqRel) {
                let ident = s.ident.load(Ordering::Acquire);
                // SAFETY: attached; `exc` is a live exception class.
                unsafe {
                    pyo3::ffi::PyThreadState_SetAsyncExc(ident as _, exc.as_ptr());
                }
            }
        }
    });
    slots
        .iter()
        .map(|s| s.busy_since_ms.load(Ordering::Acquire))
        .filter(|since| *since != 0)
        .map(|since| now_ms().saturating_sub(since))
        .max()
        .unwrap_or(0)
}

/// Used by `uwire._native.build_environ` (tests run the shared environ
/// vectors through the same conversion as live requests).
pub(crate) fn environ_for_test<'py>(
    py: Python<'py>,
    env: &uwire::environ::Environ,
    consts: &WsgiConstants,
) -> PyResult<Bound<'py, pyo3::types::PyDict>> {
    let mut cache = KeyCache::new();
    environ::build(py, env, &mut cache, consts, py.None().into_bound(py))
}
