//! The WSGI application as a [`uwire::server::Handler`]: each request is a
//! job for a fixed pool of Python threads fed by a channel; the GIL is held
//! only while Python code runs.

mod environ;
mod extras;
mod input;
mod response;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use pyo3::exceptions::{PyAssertionError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyIterator, PyList, PyTuple};
use tokio::sync::oneshot;
use uwire::server::{BoxError, BoxFuture, Handler, Request, Response};

pub(crate) use environ::{KeyCache, WsgiConstants};
pub(crate) use extras::utc_now;
pub use extras::{AccessLog, ErrorStream, FileWrapper};
pub use input::Input;
pub(crate) use response::Reply;
pub use response::{StartResponse, Write};

use crate::table::now_ms;
use response::{lock, send_chunk, Pending, Sent, Shared};

/// One piece of work for the pool.
pub(crate) enum Job {
    /// A request to run.
    Call {
        req: Request,
        reply: oneshot::Sender<Reply>,
    },
    /// The rest of a request the I/O thread began ([`Inline`]) and could
    /// not finish without waiting for the client.
    Resume(Resume),
}

/// A call whose app has returned its iterable, and where its response
/// stands: what [`Inline`] hands to the pool when the client reads slower
/// than the app answers (the I/O thread must never wait for its own
/// connections).
pub(crate) struct Resume {
    iterable: Py<PyAny>,
    at: At,
    pending: Shared,
    input: Py<Input>,
    env: uwire::environ::Environ,
    started: Instant,
}

/// Where the response to a call stands.
enum At {
    /// Nothing of the iterable taken yet.
    Start,
    /// Iterating (`sized_one`: the iterable said it has one item).
    Iter {
        iter: Py<PyIterator>,
        sized_one: bool,
    },
    /// The iterable is exhausted; chunks still wait to be handed over.
    End,
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
    /// Jobs queued for the pool or running there: the I/O thread runs a
    /// request itself only when there are none ([`Inline`]).
    pub(crate) queued: AtomicUsize,
    /// The app called `write()` on the I/O thread, whose output waits for
    /// the call to return there: from then on every request goes to the
    /// pool, where `write()` streams as it is called.
    pub(crate) writes: AtomicBool,
}

/// Starts `n` app threads; returns the job sender, the watchdog's view of
/// each thread (and of the I/O thread after them, with `io_slot`), and
/// their join handles.
pub(crate) fn start_pool(
    app: Arc<App>,
    n: usize,
    io_slot: bool,
) -> (
    crossbeam_channel::Sender<Job>,
    Arc<Vec<ThreadSlot>>,
    Vec<std::thread::JoinHandle<()>>,
) {
    let (tx, rx) = crossbeam_channel::unbounded::<Job>();
    let slots: Arc<Vec<ThreadSlot>> = Arc::new(
        (0..n + usize::from(io_slot))
            .map(|_| ThreadSlot::default())
            .collect(),
    );
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
            run_watched(py, app, &mut cache, slot, job, None);
            app.queued.fetch_sub(1, Ordering::AcqRel);
        }
    })
}

/// Runs `job` on this thread as the watchdog's `slot` (busy from now until
/// it ends), then clears an interrupt the watchdog may have sent it.
/// `inline`: the pool's queue when this is the I/O thread ([`Inline`]).
fn run_watched(
    py: Python<'_>,
    app: &App,
    cache: &mut KeyCache,
    slot: &ThreadSlot,
    job: Job,
    inline: Option<&crossbeam_channel::Sender<Job>>,
) {
    slot.busy_since_ms.store(now_ms().max(1), Ordering::Release);
    if let Some(b) = &app.busy {
        b(1);
    }
    match job {
        Job::Call { req, reply } => call(py, app, cache, req, reply, inline),
        Job::Resume(r) => resume(py, app, r),
    }
    if let Some(b) = &app.busy {
        b(-1);
    }
    // With the GIL held, as the watchdog is when it interrupts: a pending
    // interrupt meant for this job never hits the next.
    slot.busy_since_ms.store(0, Ordering::Release);
    if slot.interrupted.swap(false, Ordering::AcqRel) {
        let ident = slot.ident.load(Ordering::Acquire);
        // SAFETY: the thread is attached; NULL clears a pending
        // asynchronous exception of this thread.
        unsafe {
            pyo3::ffi::PyThreadState_SetAsyncExc(ident as _, std::ptr::null_mut());
        }
        // Also clear it if it was already raised and is set now.
        let _ = PyErr::take(py);
    }
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

/// The [`Handler`] the server runs: hands each request to the pool, or
/// runs it on the I/O thread itself ([`Inline`]).
#[derive(Clone)]
pub(crate) struct WsgiHandler {
    pub(crate) app: Arc<App>,
    pub(crate) jobs: crossbeam_channel::Sender<Job>,
    /// Called once per request, before it is queued.
    pub(crate) on_request: Arc<dyn Fn() + Send + Sync>,
    /// Set when the app has one thread (`--threads 1`).
    pub(crate) inline: Option<Arc<Inline>>,
}

/// Runs requests on the I/O thread when the app has a single thread, as
/// uWSGI's one-threaded workers do: a request without a body, arriving
/// while the pool's thread has nothing queued or running, is answered
/// without crossing to another thread and back (two wake-ups per request,
/// the dearest part of a short one). The app still runs one request at a
/// time: a request with a body (whose reads wait for the connection), or
/// one arriving while the pool is busy, goes to the pool's thread, and a
/// streaming response is handed to it once its head is out (the I/O
/// thread never waits for its own connections, nor delays a chunk).
/// `write()` is the exception: its output waits for the call to return,
/// and from then on the app runs on the pool's thread.
///
/// The app runs between turns of the event loop ([`Inline::drive`]), not
/// inside one of its tasks: code it calls may run a runtime of its own
/// (the `uwire.Client`, say) and block on it.
pub(crate) struct Inline {
    app: Arc<App>,
    /// The pool's queue, for what the I/O thread does not run itself.
    jobs: crossbeam_channel::Sender<Job>,
    /// The watchdog's view of the I/O thread (`--timeout` interrupts it
    /// as any app thread; the control thread keeps watching meanwhile).
    slots: Arc<Vec<ThreadSlot>>,
    /// Which of `slots` is the I/O thread's.
    slot: usize,
    /// Requests the handler set aside for the I/O thread, in order.
    queue: Mutex<std::collections::VecDeque<Aside>>,
    /// Set when `queue` gets one: the event loop yields to run it.
    ready: tokio::sync::Notify,
    /// Drives the event loop while the app runs long here.
    stand_in: Arc<StandIn>,
}

/// A request the handler set aside for the I/O thread.
enum Aside {
    /// To run there, if the pool is still idle when its turn comes.
    Run(Job),
    /// To pass on to the pool when its turn comes: it arrived while the
    /// I/O thread ran the app (on the [`StandIn`]'s watch), and the app
    /// runs one request at a time.
    Pass(Job),
}

/// How long the I/O thread may run the app, its event loop left alone,
/// before the [`StandIn`] drives the loop.
pub(crate) const STAND_IN_AFTER_MS: u64 = 200;

/// While the I/O thread runs the app ([`Inline`]), no connection of the
/// worker is read or written: nor are PINGs answered, and a client that
/// PINGs an upstream connection after a silence (`uwire proxy` does)
/// closes it, with the requests in flight on it, when no answer comes.
/// So when the app has run there for [`STAND_IN_AFTER_MS`], a thread of
/// this worker's takes the event loop over (a current-thread runtime runs
/// on whichever thread calls `block_on`) until the I/O thread comes back.
/// Requests arriving meanwhile are set aside for the I/O thread as usual
/// ([`Aside`]). The stand-in sleeps otherwise: the control thread's
/// 100 ms tick wakes it ([`StandIn::nudge`]), so a short request pays
/// nothing for it.
#[derive(Default)]
pub(crate) struct StandIn {
    /// When the I/O thread left its event loop to run the app (`now_ms`);
    /// 0 while it is in the loop.
    away_since_ms: AtomicU64,
    /// The stand-in drives the loop, or is about to.
    driving: AtomicBool,
    /// Told when the I/O thread comes back.
    back: tokio::sync::Notify,
    /// The worker is stopping: the stand-in thread ends.
    stop: AtomicBool,
    /// The stand-in thread, to wake it.
    thread: std::sync::OnceLock<std::thread::Thread>,
}

impl StandIn {
    /// Wakes the stand-in if the I/O thread has run the app for
    /// [`STAND_IN_AFTER_MS`] and nobody drives its event loop.
    pub(crate) fn nudge(&self) {
        if self.away_long() && !self.driving.load(Ordering::SeqCst) {
            if let Some(t) = self.thread.get() {
                t.unpark();
            }
        }
    }

    fn away(&self) -> bool {
        self.away_since_ms.load(Ordering::SeqCst) != 0
    }

    fn away_long(&self) -> bool {
        let since = self.away_since_ms.load(Ordering::SeqCst);
        since != 0 && now_ms().saturating_sub(since) >= STAND_IN_AFTER_MS
    }

    /// The I/O thread leaves its event loop to run the app.
    fn leave(&self) {
        self.away_since_ms.store(now_ms().max(1), Ordering::SeqCst);
    }

    /// The I/O thread is back: a stand-in driving the loop gives it up.
    /// (This stores `away_since_ms` then loads `driving`; [`StandIn::run`]
    /// stores `driving` then loads `away_since_ms`, all sequentially
    /// consistent, so one of the two sides sees the other.)
    fn come_back(&self) {
        self.away_since_ms.store(0, Ordering::SeqCst);
        if self.driving.load(Ordering::SeqCst) {
            self.back.notify_one();
        }
    }

    /// The stand-in thread: sleeps until nudged, then drives `rt` while
    /// the I/O thread is away.
    fn run(&self, rt: &tokio::runtime::Runtime) {
        loop {
            std::thread::park();
            if self.stop.load(Ordering::Acquire) {
                return;
            }
            if !self.away_long() {
                continue;
            }
            self.driving.store(true, Ordering::SeqCst);
            if self.away() {
                tracing::debug!("the app runs long on the I/O thread: driving its event loop");
                // A stale permit of `back` (from an earlier turn) only
                // makes the loop check again.
                rt.block_on(async {
                    while self.away() {
                        self.back.notified().await;
                    }
                });
            }
            self.driving.store(false, Ordering::SeqCst);
        }
    }
}

impl Inline {
    /// The I/O thread's runner; it is the calling thread, whose Python
    /// thread ident goes into `slots[slot]`.
    pub(crate) fn here(
        app: Arc<App>,
        jobs: crossbeam_channel::Sender<Job>,
        slots: Arc<Vec<ThreadSlot>>,
        slot: usize,
    ) -> Inline {
        // SAFETY: no precondition (the ident of the calling thread).
        let ident = unsafe { pyo3::ffi::PyThread_get_thread_ident() };
        slots[slot].ident.store(ident as u64, Ordering::Release);
        Inline {
            app,
            jobs,
            slots,
            slot,
            queue: Mutex::new(std::collections::VecDeque::new()),
            ready: tokio::sync::Notify::new(),
            stand_in: Arc::default(),
        }
    }

    /// What the control thread nudges ([`StandIn::nudge`]).
    pub(crate) fn stand_in(&self) -> Arc<StandIn> {
        self.stand_in.clone()
    }

    /// Queues `aside` for this thread and has the event loop yield to it.
    fn set_aside(&self, aside: Aside) {
        self.queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_back(aside);
        self.ready.notify_one();
    }

    /// Runs `main` on `rt` (this thread), and between its turns the
    /// requests set aside for this thread: each as soon as the event loop
    /// yields, unless the pool got work meanwhile (then it queues there,
    /// so the app never runs two requests at once).
    pub(crate) fn drive<F: std::future::Future>(
        &self,
        rt: &tokio::runtime::Runtime,
        main: F,
    ) -> F::Output {
        let (app, jobs) = (&*self.app, &self.jobs);
        let stand_in = &*self.stand_in;
        let mut main = std::pin::pin!(main);
        let mut cache = KeyCache::new();
        std::thread::scope(|scope| {
            let spawned = std::thread::Builder::new()
                .name("uwire-stand-in".into())
                .spawn_scoped(scope, || stand_in.run(rt));
            match spawned {
                Ok(t) => {
                    let _ = stand_in.thread.set(t.thread().clone());
                }
                Err(e) => tracing::warn!(
                    error = %e,
                    "no stand-in thread: a long request on the I/O thread stalls its connections"
                ),
            }
            let out = loop {
                let done = rt.block_on(async {
                    tokio::select! {
                        biased;
                        out = &mut main => Some(out),
                        () = self.ready.notified() => None,
                    }
                });
                if let Some(out) = done {
                    break out;
                }
                stand_in.leave();
                Python::attach(|py| loop {
                    let Some(aside) = self
                        .queue
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .pop_front()
                    else {
                        break;
                    };
                    // Only this thread queues work for the pool while it
                    // runs the app: when the pool has none, it stays idle
                    // until this job is done.
                    match aside {
                        Aside::Run(job) if app.queued.load(Ordering::Acquire) == 0 => {
                            let slot = &self.slots[self.slot];
                            run_watched(py, app, &mut cache, slot, job, Some(jobs));
                        }
                        Aside::Run(job) | Aside::Pass(job) => {
                            queue_for_pool(app, jobs, job);
                        }
                    }
                });
                stand_in.come_back();
            };
            stand_in.stop.store(true, Ordering::Release);
            if let Some(t) = stand_in.thread.get() {
                t.unpark();
            }
            out
        })
    }
}

/// Queues `job` for the pool (counted in `App::queued`). If the pool has
/// stopped (the worker is exiting), the job is dropped: its request ends
/// as the app thread's dropped one.
fn queue_for_pool(app: &App, jobs: &crossbeam_channel::Sender<Job>, job: Job) -> bool {
    app.queued.fetch_add(1, Ordering::AcqRel);
    match jobs.send(job) {
        Ok(()) => true,
        Err(_) => {
            app.queued.fetch_sub(1, Ordering::AcqRel);
            false
        }
    }
}

impl Handler for WsgiHandler {
    fn call(&self, mut req: Request) -> BoxFuture<Result<Response, BoxError>> {
        (self.on_request)();
        let (tx, rx) = oneshot::channel();
        let here = self.inline.as_ref().filter(|_| {
            http_body::Body::is_end_stream(req.body_mut())
                && req.upgrade_protocol().is_none()
                && self.app.queued.load(Ordering::Acquire) == 0
                && !self.app.writes.load(Ordering::Relaxed)
        });
        let job = Job::Call { req, reply: tx };
        let sent = match (here, &self.inline) {
            (Some(inline), _) => {
                inline.set_aside(Aside::Run(job));
                true
            }
            // Called on the stand-in: the I/O thread runs the app, and the
            // pool may not start beside it.
            (None, Some(inline)) if inline.stand_in.away() => {
                inline.set_aside(Aside::Pass(job));
                true
            }
            (None, _) => queue_for_pool(&self.app, &self.jobs, job),
        };
        Box::pin(async move {
            if !sent {
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

/// Runs one request: builds the environ, calls the app, then hands its
/// response over ([`complete`]). `inline`: the pool's queue when this is
/// the I/O thread, which must hand the rest over rather than wait.
fn call(
    py: Python<'_>,
    app: &App,
    cache: &mut KeyCache,
    req: Request,
    reply: oneshot::Sender<Reply>,
    inline: Option<&crossbeam_channel::Sender<Job>>,
) {
    let started = Instant::now();
    let (head, env, body) = req.into_parts();
    let is_head = head.method.as_ref() == b"HEAD";
    let pending: Shared = Arc::new(Mutex::new(Pending::new(reply, is_head, inline.is_some())));
    let input = match Bound::new(py, Input::new(body, app.handle.clone())) {
        Ok(i) => i,
        Err(e) => {
            fail(py, &pending, None, e);
            return;
        }
    };
    let called = (|| -> PyResult<Bound<'_, PyAny>> {
        let environ = environ::build(py, &env, cache, &app.consts, input.clone().into_any())?;
        let sr = Bound::new(
            py,
            StartResponse {
                pending: pending.clone(),
            },
        )?;
        app.app.bind(py).call1((environ, sr))
    })();
    if inline.is_some() && lock(&pending).wrote() && !app.writes.swap(true, Ordering::Relaxed) {
        tracing::info!(
            "the app calls write(): its requests run on the app thread from now on, \
             where write() streams as it is called"
        );
    }
    let iterable = match called {
        Ok(i) => i,
        Err(e) => {
            fail(py, &pending, Some(input.get()), e);
            log(app, &pending, &env, started);
            return;
        }
    };
    let rest = Resume {
        iterable: iterable.unbind(),
        at: At::Start,
        pending,
        input: input.unbind(),
        env,
        started,
    };
    complete(py, app, rest, inline);
}

/// The rest of a call the I/O thread handed over: what it could not hand
/// over without waiting goes first, then the iterable from where it was.
fn resume(py: Python<'_>, app: &App, rest: Resume) {
    if !response::take_over(py, &rest.pending) {
        // The client went away meanwhile: nothing more is pulled.
        return conclude(py, app, rest, Ok(()));
    }
    complete(py, app, rest, None);
}

/// Pulls the iterable, then closes it and logs the request; on the I/O
/// thread (`inline`), hands the call to the pool instead where the next
/// chunk would have to wait for the client.
fn complete(
    py: Python<'_>,
    app: &App,
    mut rest: Resume,
    inline: Option<&crossbeam_channel::Sender<Job>>,
) {
    let at = std::mem::replace(&mut rest.at, At::End);
    let driven = drive(
        py,
        rest.iterable.bind(py),
        at,
        &rest.pending,
        inline.is_some(),
    );
    match (driven, inline) {
        (Ok(Some(at)), Some(jobs)) => {
            rest.at = at;
            let pending = rest.pending.clone();
            if !queue_for_pool(app, jobs, Job::Resume(rest)) {
                // The pool has stopped (the worker is exiting): the
                // response ends cut short.
                lock(&pending).fail_stream("the worker stopped");
            }
        }
        (driven, _) => conclude(py, app, rest, driven.map(drop)),
    }
}

/// Ends a call: PEP 3333's close() (whatever happened: normal end, app
/// error, client gone, timeout), the failure answered, the access log.
fn conclude(py: Python<'_>, app: &App, rest: Resume, driven: PyResult<()>) {
    let iterable = rest.iterable.bind(py);
    // A list or tuple has no close(): skip the lookup (and the
    // AttributeError it would build).
    let closed = if is_list_or_tuple(iterable) {
        Ok(())
    } else {
        match iterable.getattr(pyo3::intern!(py, "close")) {
            Ok(close) => close.call0().map(drop),
            Err(_) => Ok(()),
        }
    };
    if let Err(e) = driven.and(closed) {
        fail(py, &rest.pending, Some(rest.input.get()), e);
    }
    log(app, &rest.pending, &rest.env, rest.started);
}

fn log(app: &App, pending: &Shared, env: &uwire::environ::Environ, started: Instant) {
    if let Some(log) = &app.access {
        let st = lock(pending);
        log.log(env, st.sent_status, st.sent, started.elapsed());
    }
}

/// Pulls the iterable from `at` and hands its chunks over. `Some` (only
/// `inline`): where it stopped because the next chunk would have waited.
fn drive(
    py: Python<'_>,
    iterable: &Bound<'_, PyAny>,
    at: At,
    p: &Shared,
    inline: bool,
) -> PyResult<Option<At>> {
    let (mut iter, sized_one) = match at {
        At::End => return end(p, inline),
        At::Iter { iter, sized_one } => (iter.into_bound(py), sized_one),
        At::Start => {
            if is_list_or_tuple(iterable) && !lock(p).head_sent() {
                send_whole(iterable, p)?;
                return Ok(None);
            }
            if let Ok(fw) = iterable.cast::<FileWrapper>() {
                if inline {
                    // Its reads and sends wait: the pool streams it.
                    return Ok(Some(At::Start));
                }
                if fw.get().stream_file(py, p)? {
                    return finish(p).map(|()| None);
                }
            }
            // PEP 3333: "if the iterable returned by the application has a
            // len() of 1, then the server can automatically determine
            // Content-Length".
            let sized_one = iterable
                .hasattr(pyo3::intern!(py, "__len__"))
                .unwrap_or(false)
                && iterable.len().is_ok_and(|n| n == 1);
            (iterable.try_iter()?, sized_one)
        }
    };
    loop {
        if lock(p).cancelled() {
            // The client went away (RESET) or the deadline passed: pull no
            // more chunks.
            return Ok(None);
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
        match send_chunk(py, p, Bytes::copy_from_slice(b.as_bytes()), sized_one) {
            Sent::Gone => return Ok(None),
            Sent::Kept => {
                return Ok(Some(At::Iter {
                    iter: iter.unbind(),
                    sized_one,
                }))
            }
            Sent::Taken => {}
        }
        let st = lock(p);
        if st.head_sent() && st.no_body() {
            // HEAD, 204, 304: the head is out and no body may follow.
            break;
        }
        if inline && st.head_sent() && !st.is_complete() {
            // A streaming body: the head and this chunk go out now, while
            // the pool's thread pulls the next (which may take its time).
            return Ok(Some(At::Iter {
                iter: iter.unbind(),
                sized_one,
            }));
        }
    }
    end(p, inline)
}

/// The iterable is exhausted: ends the response, unless chunks kept back
/// on the I/O thread still wait to be handed over.
fn end(p: &Shared, inline: bool) -> PyResult<Option<At>> {
    if inline && lock(p).has_kept() {
        return Ok(Some(At::End));
    }
    finish(p).map(|()| None)
}

/// A list or tuple exactly (not a subclass, which may define close()).
fn is_list_or_tuple(iterable: &Bound<'_, PyAny>) -> bool {
    iterable.is_exact_instance_of::<PyList>() || iterable.is_exact_instance_of::<PyTuple>()
}

/// A list or tuple: the whole body is known now; it goes out with its head
/// in one write, with its length announced.
fn send_whole(iterable: &Bound<'_, PyAny>, p: &Shared) -> PyResult<()> {
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
    Ok(())
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
                let answer = if timed_out {
                    response::deadline_exceeded()
                } else {
                    response::internal_error()
                };
                let _ = tx.send(Reply::Response(answer));
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
