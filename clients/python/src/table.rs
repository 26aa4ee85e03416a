//! The master's table of workers, in memory shared by every process of the
//! tree (an anonymous `MAP_SHARED` mapping made before the first fork).
//!
//! One 64-byte slot per worker holds its pid, state, open connections,
//! requests served, busy Python threads and a heartbeat. Workers use it to
//! balance connections (the [`Gate`]); the master reads it to tell when a
//! new worker is ready, to spot a hung worker and to report the split.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;
use tokio::sync::Notify;
use uwire::server::{AcceptGate, BoxFuture, ConnProtocol};

/// Slot states.
pub(crate) const FREE: u64 = 0;
/// Forked, importing the app.
pub(crate) const STARTING: u64 = 1;
/// Accepting connections.
pub(crate) const SERVING: u64 = 2;
/// Stopped accepting, finishing in-flight requests.
pub(crate) const DRAINING: u64 = 3;

#[repr(C, align(64))]
pub(crate) struct Slot {
    pub(crate) pid: AtomicU64,
    pub(crate) state: AtomicU64,
    pub(crate) connections: AtomicU64,
    pub(crate) requests: AtomicU64,
    pub(crate) heartbeat_ms: AtomicU64,
    pub(crate) draining_since_ms: AtomicU64,
    pub(crate) busy: AtomicU64,
    /// Why the worker drains (see `DrainReason`).
    pub(crate) reason: AtomicU64,
}

/// The table's first 64 bytes: a futex workers sleep on while their gate
/// holds them back, bumped whenever a connection count changes.
#[repr(C, align(64))]
struct Header {
    epoch: AtomicU32,
    waiters: AtomicU32,
}

/// Milliseconds on the system-wide monotonic clock (comparable between
/// processes, unlike `Instant`).
pub(crate) fn now_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
}

/// The mapping. Never unmapped: workers forked from the master keep using
/// it at the same address for their whole life.
struct Mapping {
    ptr: *const Slot,
    len: usize,
}

// SAFETY: the mapping is only ever accessed through atomics.
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

/// A handle on the shared table (cheap to clone).
#[derive(Clone)]
pub(crate) struct Table {
    map: Arc<Mapping>,
}

impl Table {
    fn new(len: usize) -> std::io::Result<Table> {
        let bytes = std::mem::size_of::<Header>() + len * std::mem::size_of::<Slot>();
        // SAFETY: an anonymous shared mapping, zero-filled by the kernel,
        // which is the FREE state of every slot.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Table {
            map: Arc::new(Mapping {
                ptr: ptr as *const Slot,
                len,
            }),
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len
    }

    pub(crate) fn slot(&self, i: usize) -> &Slot {
        assert!(i < self.map.len, "slot {i} out of range");
        // SAFETY: `i` is in range of the live mapping (the slots follow the
        // header), which is never unmapped; `Slot` is made of atomics only.
        unsafe { &*(self.map.ptr.cast::<Header>().add(1).cast::<Slot>().add(i)) }
    }

    fn header(&self) -> &Header {
        // SAFETY: the mapping starts with a `Header`, made of atomics only.
        unsafe { &*self.map.ptr.cast::<Header>() }
    }

    /// Bumps the epoch and wakes the workers sleeping in their gate.
    pub(crate) fn bump(&self) {
        let h = self.header();
        h.epoch.fetch_add(1, Ordering::AcqRel);
        if h.waiters.load(Ordering::Acquire) > 0 {
            // SAFETY: FUTEX_WAKE on an aligned u32 in shared memory (not a
            // private futex: the waiters are other processes).
            unsafe {
                libc::syscall(
                    libc::SYS_futex,
                    h.epoch.as_ptr(),
                    libc::FUTEX_WAKE,
                    i32::MAX,
                );
            }
        }
    }

    /// Sleeps until the epoch moves past `seen` (or `timeout`).
    fn wait(&self, seen: u32, timeout: Duration) {
        let h = self.header();
        h.waiters.fetch_add(1, Ordering::AcqRel);
        let ts = libc::timespec {
            tv_sec: timeout.as_secs() as libc::time_t,
            tv_nsec: timeout.subsec_nanos() as libc::c_long,
        };
        // SAFETY: FUTEX_WAIT on an aligned u32 in shared memory; returns at
        // once if the value is no longer `seen`.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                h.epoch.as_ptr(),
                libc::FUTEX_WAIT,
                seen,
                &ts,
            );
        }
        h.waiters.fetch_sub(1, Ordering::AcqRel);
    }

    /// Whether slot `me` may accept one more connection, `pending` of its
    /// open connections not identified yet (see [`Verdict`]).
    pub(crate) fn may_accept(&self, me: usize, pending: u64) -> Verdict {
        let mine = self.slot(me);
        if mine.state.load(Ordering::Acquire) != SERVING {
            return Verdict::Accept;
        }
        let least = (0..self.len())
            .filter(|i| *i != me)
            .map(|i| self.slot(i))
            .filter(|s| s.state.load(Ordering::Acquire) == SERVING)
            .map(|s| s.connections.load(Ordering::Acquire))
            .min()
            .unwrap_or(u64::MAX);
        let my = mine.connections.load(Ordering::Acquire);
        if my <= least {
            Verdict::Accept
        } else if my.saturating_sub(pending) <= least {
            Verdict::AwaitOwn
        } else {
            Verdict::Held
        }
    }
}

/// What [`Table::may_accept`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// No more connections than the least loaded serving worker.
    Accept,
    /// More, but only counting connections of this worker whose protocol
    /// is not known yet: wait for them (a local wake-up) rather than for
    /// the other workers.
    AwaitOwn,
    /// More lasting connections than the least loaded serving worker: wait
    /// for a count to change anywhere.
    Held,
}

/// The shared worker table, made by the master before it forks.
#[pyclass(frozen, module = "uwire._native")]
pub struct SharedTable {
    pub(crate) table: Table,
}

#[pymethods]
impl SharedTable {
    #[new]
    fn py_new(slots: usize) -> PyResult<SharedTable> {
        if slots == 0 || slots > 4096 {
            return Err(PyValueError::new_err("slots must be in 1..=4096"));
        }
        let table = Table::new(slots).map_err(|e| PyOSError::new_err(e.to_string()))?;
        debug_assert_eq!(std::mem::size_of::<Header>(), 64);
        Ok(SharedTable { table })
    }

    /// Number of slots.
    fn __len__(&self) -> usize {
        self.table.len()
    }

    /// Marks slot `i` as taken by a worker about to be forked.
    fn claim(&self, i: usize) {
        let s = self.table.slot(i);
        s.connections.store(0, Ordering::Release);
        s.requests.store(0, Ordering::Release);
        s.busy.store(0, Ordering::Release);
        s.reason.store(0, Ordering::Release);
        s.draining_since_ms.store(0, Ordering::Release);
        s.heartbeat_ms.store(now_ms(), Ordering::Release);
        s.pid.store(0, Ordering::Release);
        s.state.store(STARTING, Ordering::Release);
    }

    /// Records the pid of slot `i`'s worker.
    fn set_pid(&self, i: usize, pid: u64) {
        self.table.slot(i).pid.store(pid, Ordering::Release);
    }

    /// Frees slot `i` (its worker has exited).
    fn release(&self, i: usize) {
        let s = self.table.slot(i);
        s.state.store(FREE, Ordering::Release);
        s.connections.store(0, Ordering::Release);
        s.busy.store(0, Ordering::Release);
        self.table.bump();
    }

    /// The first free slot, if any.
    fn free_slot(&self) -> Option<usize> {
        (0..self.table.len()).find(|i| self.table.slot(*i).state.load(Ordering::Acquire) == FREE)
    }

    /// `(state, pid, connections, requests, busy threads, heartbeat age in
    /// seconds, seconds draining or 0, drain reason)` of slot `i`. States:
    /// 0 free, 1 starting, 2 serving, 3 draining.
    #[allow(clippy::type_complexity)]
    fn info(&self, i: usize) -> (u64, u64, u64, u64, u64, f64, f64, u64) {
        let s = self.table.slot(i);
        let now = now_ms();
        let hb = s.heartbeat_ms.load(Ordering::Acquire);
        let since = s.draining_since_ms.load(Ordering::Acquire);
        (
            s.state.load(Ordering::Acquire),
            s.pid.load(Ordering::Acquire),
            s.connections.load(Ordering::Acquire),
            s.requests.load(Ordering::Acquire),
            s.busy.load(Ordering::Acquire),
            now.saturating_sub(hb) as f64 / 1000.0,
            if since == 0 {
                0.0
            } else {
                now.saturating_sub(since) as f64 / 1000.0
            },
            s.reason.load(Ordering::Acquire),
        )
    }

    /// Requests served by slot `i` so far.
    fn requests(&self, i: usize) -> u64 {
        self.table.slot(i).requests.load(Ordering::Acquire)
    }
}

/// Balances lasting connections across the workers sharing one listening
/// socket: a worker accepts only while it carries no more open connections
/// than the least loaded serving worker.
///
/// What counts is the connections that may last: uwire/1 ones (a proxy's
/// pool: few, long-lived) and those whose protocol is not known yet.
/// A classic uwsgi connection (nginx's `uwsgi_pass`: one request, then
/// closed) stops counting as soon as it is identified, so nginx traffic
/// goes in kernel accept order, as with uWSGI and gunicorn, and does not
/// wake the workers held back twice per request.
///
/// Held back by lasting connections, a worker sleeps on the table's futex
/// (on a blocking thread), woken when a count rises anywhere or one of its
/// own lasting connections closes. Held back only by its own connections
/// not identified yet, it waits for them on a local wake-up instead: the
/// next accept waits for the previous connection's first bytes, so one
/// worker cannot take a whole pool of new connections before it knows what
/// they are.
pub(crate) struct Gate {
    table: Table,
    me: usize,
    own: Arc<Own>,
}

/// This worker's connections not identified yet.
#[derive(Default)]
struct Own {
    pending: AtomicU64,
    settled: Notify,
}

impl Gate {
    /// The gate of slot `me`.
    pub(crate) fn new(table: Table, me: usize) -> Gate {
        Gate {
            table,
            me,
            own: Arc::default(),
        }
    }

    fn count(&self, by: i64) {
        let c = &self.table.slot(self.me).connections;
        if by > 0 {
            c.fetch_add(by as u64, Ordering::AcqRel);
        } else {
            c.fetch_sub(by.unsigned_abs(), Ordering::AcqRel);
        }
    }

    /// One connection of this worker is no longer pending.
    fn settle(&self) {
        self.own.pending.fetch_sub(1, Ordering::AcqRel);
        self.own.settled.notify_one();
    }
}

/// Longest sleep between re-checks (a worker that died holding the least
/// load is released by the master, which bumps the epoch too; a count that
/// falls does not bump it, see `Gate::identified`).
const GATE_RECHECK: Duration = Duration::from_millis(50);

impl AcceptGate for Gate {
    fn ready(&self) -> BoxFuture<()> {
        let pending = self.own.pending.load(Ordering::Acquire);
        if self.table.may_accept(self.me, pending) == Verdict::Accept {
            return Box::pin(std::future::ready(()));
        }
        let table = self.table.clone();
        let me = self.me;
        let own = self.own.clone();
        Box::pin(async move {
            loop {
                // Registered before the check, so a settle in between is
                // not missed.
                let settled = own.settled.notified();
                match table.may_accept(me, own.pending.load(Ordering::Acquire)) {
                    Verdict::Accept => return,
                    Verdict::AwaitOwn => {
                        let _ = tokio::time::timeout(GATE_RECHECK, settled).await;
                    }
                    Verdict::Held => {
                        let (table, own) = (table.clone(), own.clone());
                        let _ = tokio::task::spawn_blocking(move || {
                            let seen = table.header().epoch.load(Ordering::Acquire);
                            let pending = own.pending.load(Ordering::Acquire);
                            if table.may_accept(me, pending) == Verdict::Held {
                                table.wait(seen, GATE_RECHECK);
                            }
                        })
                        .await;
                    }
                }
            }
        })
    }

    /// Counts the new connection as lasting until identified, and wakes the
    /// workers held back: this one now carries more.
    fn opened(&self) {
        self.own.pending.fetch_add(1, Ordering::AcqRel);
        self.count(1);
        self.table.bump();
    }

    /// A uwire/1 connection keeps its count. A classic uwsgi one drops it,
    /// without a bump: a count that falls makes no other worker less loaded
    /// than before, so none held back could accept now.
    fn identified(&self, protocol: ConnProtocol) {
        if protocol != ConnProtocol::Uwire {
            self.count(-1);
        }
        self.settle();
    }

    /// A lasting connection's close bumps the epoch: this worker's own
    /// loop, held back on the futex, may accept again.
    fn closed(&self, protocol: Option<ConnProtocol>) {
        match protocol {
            Some(ConnProtocol::Uwire) => {
                self.count(-1);
                self.table.bump();
            }
            Some(_) => {}
            None => {
                self.count(-1);
                self.settle();
                self.table.bump();
            }
        }
    }
}
