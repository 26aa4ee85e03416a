//! Busy polling: a tokio runtime whose threads, before they go to sleep,
//! watch their event loop for a short while and stop at once when it has
//! something to do.
//!
//! Why: at few requests in flight, each message has to wake the process on
//! the other side. Waking a thread that sleeps on an idle CPU is the
//! dearest part of a round trip on a virtual machine whose guest halts its
//! idle CPUs at once (KVM with guest halt polling off, as on the bench
//! machines): the halted CPU has to be woken through the hypervisor. A
//! thread still polling when the next message arrives takes it without
//! that wake-up. Measured on the bench machine, one request in flight
//! between `uwire bench` and `uwire serve` went from about 16k to 80k round
//! trips a second with 50 µs windows on both sides, for less CPU time per
//! request (about 12 µs a side instead of 24: polling costs less than the
//! wake-ups it saves); one HTTP connection through `uwire proxy` and
//! `uwire serve` went about 3x as fast, 32 connections about 12% (see the
//! closing note of issue 9 and docs/BENCHMARKS.md).
//!
//! The window adapts per thread as the kernel's guest halt polling does
//! (see `Adaptive`): where the work comes in gaps longer than the window,
//! the polling finds nothing, and the window shrinks to nothing, so a
//! thread with sparse work (or none) sleeps at once and costs no CPU time.
//! A thread that works most of its time does not poll either (see `Duty`):
//! its events come faster than it takes them, and sleeping lets them
//! gather, to be taken in one wake-up.
//! A window also ends, and the thread's window drops to nothing, when the
//! CPUs have more runnable threads than they can run, besides the
//! process's own polling threads (see `oversubscribed`): polling would take
//! their time, and a busy machine has no halted CPU to save a wake-up on.
//! While it polls, the thread yields its CPU to any other thread that wants
//! it (the peer it waits for may be on the same CPU). Timers are not
//! watched: one due during a window fires when the window ends (at most
//! the window late). Linux only; elsewhere [`build`] says `Unavailable` and
//! the runtime runs as usual.
//!
//! How: tokio does not expose its event loop, so [`build`] finds the
//! runtime's epoll instance as the one instance of that kind that building
//! the runtime added to the process (`/proc/self/fd`), and the park hook
//! polls it with `poll(2)` (which does not take its events) until it is
//! ready or the window has passed; then the thread parks as usual, and its
//! `epoll_wait` returns at once if something arrived. A task woken from
//! another thread writes the runtime's wake-up descriptor, which is in the
//! same epoll instance, so it ends the window too.
//!
//! [`wait`] does the same for a thread that waits for work some other way
//! (a blocking channel receive: the Python runtime's app threads), and
//! [`LoopWatch`] for a thread that runs an event loop of its own (the
//! Python runtime's asyncio loop), with the same adaptive window.

use std::io;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The longest polling window [`build`] accepts: beyond it a sleeping
/// thread would rather be asleep.
pub const MAX_BUSY_POLL: Duration = Duration::from_millis(10);

/// The window of the `uwire` command's servers and bench client
/// (`--busy-poll`): long enough to span a round trip to a peer process on
/// the bench machine (about 10 µs with both sides polling), short enough
/// that a window that finds nothing costs little before it shrinks.
pub const DEFAULT_BUSY_POLL: Duration = Duration::from_micros(50);

/// What [`build`] set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BusyPoll {
    /// No polling: the window is zero.
    Off,
    /// The runtime's threads poll its event loop for this long before
    /// sleeping.
    On(Duration),
    /// Asked for, but the runtime's epoll instance could not be told apart
    /// (not Linux, `/proc` unreadable, or another epoll instance made at
    /// the same moment by code outside [`build`]); the runtime works as
    /// usual without it.
    Unavailable,
}

/// Builds the runtime of `builder` with `window` of busy polling before
/// each sleep of its threads (none if zero), and says what it set up,
/// logging a warning (`tracing`) where polling was asked for and is
/// [`Unavailable`](BusyPoll::Unavailable). The polling takes the builder's
/// `on_thread_park` and `on_thread_unpark` hooks (tokio keeps one of
/// each): hooks set before are replaced.
///
/// Errors: `window` over [`MAX_BUSY_POLL`] (`InvalidInput`), or the error of
/// `builder.build()`.
pub fn build(
    builder: &mut tokio::runtime::Builder,
    window: Duration,
) -> io::Result<(tokio::runtime::Runtime, BusyPoll)> {
    let (rt, status, _) = build_with(builder, window)?;
    if status == BusyPoll::Unavailable {
        tracing::warn!(
            "busy polling: the runtime's epoll instance was not found (Linux only); \
             running without it"
        );
    }
    Ok((rt, status))
}

/// What the park hook needs, shared with it.
#[derive(Default)]
struct Hook {
    /// The runtime's epoll instance, once found (a duplicate descriptor of
    /// it, so it stays valid for as long as the hook can run).
    epoll: OnceLock<rustix::fd::OwnedFd>,
    /// Windows ended by readiness, and windows that ran out (for tests).
    #[cfg(test)]
    outcomes: [std::sync::atomic::AtomicU64; 2],
    /// Parks that went on to sleep in the event loop (for tests that pace
    /// their work by the thread's sleeps).
    #[cfg(test)]
    sleeps: std::sync::atomic::AtomicU64,
}

fn build_with(
    builder: &mut tokio::runtime::Builder,
    window: Duration,
) -> io::Result<(tokio::runtime::Runtime, BusyPoll, Arc<Hook>)> {
    let hook = Arc::<Hook>::default();
    if window > MAX_BUSY_POLL {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("busy polling window {window:?} is over the {MAX_BUSY_POLL:?} maximum"),
        ));
    }
    if window.is_zero() {
        return Ok((builder.build()?, BusyPoll::Off, hook));
    }
    let h = hook.clone();
    builder.on_thread_park(move || {
        if let Some(fd) = h.epoll.get() {
            let w = Adaptive::window(window);
            let ready = !w.is_zero() && poll_until_ready(fd, w);
            Adaptive::parked(ready);
            #[cfg(test)]
            {
                use std::sync::atomic::Ordering::{Relaxed, SeqCst};
                if !w.is_zero() {
                    h.outcomes[usize::from(!ready)].fetch_add(1, Relaxed);
                }
                if !ready {
                    h.sleeps.fetch_add(1, SeqCst);
                }
            }
        }
    });
    builder.on_thread_unpark(move || Adaptive::unparked(window));
    // Builds are serialized, so two runtimes built at once by `build` on
    // two threads cannot take each other's epoll instance for their own.
    static BUILDING: Mutex<()> = Mutex::new(());
    let _one_at_a_time = BUILDING.lock().unwrap_or_else(|e| e.into_inner());
    let before = epoll_fds();
    let rt = builder.build()?;
    let found = match (before, epoll_fds()) {
        (Some(before), Some(after)) => {
            let new: Vec<i32> = after
                .into_iter()
                .filter(|fd| !before.contains(fd))
                .collect();
            one_instance(&new)
        }
        _ => None,
    };
    let status = match found.and_then(duplicate) {
        Some(fd) => {
            let _ = hook.epoll.set(fd);
            BusyPoll::On(window)
        }
        None => BusyPoll::Unavailable,
    };
    Ok((rt, status, hook))
}

/// The one epoll instance behind the descriptors `fds`, by one of them:
/// tokio opens its epoll instance and then a duplicate of it (for its
/// signal handling), so a build adds two descriptors of one instance.
/// Descriptors of one instance list the same watched descriptors in
/// `/proc/self/fdinfo`; those of different runtimes do not (each watches
/// its own wake-up descriptor). `None` for no descriptor, or more than one
/// instance (another runtime built at the same moment outside `build`).
fn one_instance(fds: &[i32]) -> Option<i32> {
    let watched = |fd: i32| -> Option<Vec<String>> {
        let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).ok()?;
        Some(
            info.lines()
                .filter(|l| l.starts_with("tfd:"))
                .map(str::to_owned)
                .collect(),
        )
    };
    let (&first, rest) = fds.split_first()?;
    let w = watched(first)?;
    if w.is_empty() {
        return None;
    }
    for &fd in rest {
        if watched(fd)? != w {
            return None;
        }
    }
    Some(first)
}

/// The polling window of this thread, adapted as the kernel's guest halt
/// polling adapts its own (`cpuidle-haltpoll`): a window that ran out and
/// was followed by a sleep longer than the full window (polling longer
/// would not have helped) is halved, down to nothing below an eighth of the
/// full window; a sleep no longer than the full window (a longer window
/// would have caught what woke it) doubles it, starting again from an
/// eighth. So a thread whose work comes in gaps longer than the window
/// soon stops polling, and one whose work comes in shorter gaps polls the
/// whole window.
struct Adaptive;

thread_local! {
    /// This thread's current window; `None` until its first park.
    static CURRENT: std::cell::Cell<Option<Duration>> = const { std::cell::Cell::new(None) };
    /// When this thread went to sleep after a window that found nothing.
    static ASLEEP: std::cell::Cell<Option<Instant>> = const { std::cell::Cell::new(None) };
    /// How much of its time this thread spends working; `None` until its
    /// first park.
    static DUTY: std::cell::Cell<Option<Duty>> = const { std::cell::Cell::new(None) };
}

impl Adaptive {
    /// The window for this park, `full` at first (and never more: a thread
    /// may run one runtime after another), none while the thread is
    /// [saturated](Duty). Called as the thread runs out of work.
    fn window(full: Duration) -> Duration {
        let now = Instant::now();
        let saturated = DUTY.with(|d| {
            let mut duty = d.get().unwrap_or_else(|| Duty::new(now));
            let saturated = duty.rest(now);
            d.set(Some(duty));
            saturated
        });
        if saturated {
            return Duration::ZERO;
        }
        CURRENT.with(|c| c.get().unwrap_or(full).min(full))
    }

    /// The thread has work again (after a window or a sleep).
    fn working() {
        DUTY.with(|d| {
            if let Some(mut duty) = d.get() {
                if duty.working.is_none() {
                    duty.working = Some(Instant::now());
                    d.set(Some(duty));
                }
            }
        });
    }

    /// Some thread waits for a CPU (see [`oversubscribed`]): no window
    /// until a short sleep grows it again from an eighth.
    fn contended() {
        CURRENT.with(|c| c.set(Some(Duration::ZERO)));
    }

    /// After the window: if nothing came, the thread goes to sleep now;
    /// else it has work.
    fn parked(ready: bool) {
        ASLEEP.with(|a| a.set((!ready).then(Instant::now)));
        if ready {
            Self::working();
        }
    }

    /// After waking: adapts the window to how long the thread slept.
    fn unparked(full: Duration) {
        Self::working();
        let Some(since) = ASLEEP.with(|a| a.take()) else {
            return;
        };
        let slept = since.elapsed();
        CURRENT.with(|c| {
            let cur = c.get().unwrap_or(full).min(full);
            c.set(Some(Self::adapt(cur, full, slept)));
        });
    }

    /// The next window after a sleep of `slept` that followed a window of
    /// `cur` (which found nothing), for a full window of `full`.
    fn adapt(cur: Duration, full: Duration, slept: Duration) -> Duration {
        let start = full / 8;
        if slept <= full {
            (cur * 2).max(start).min(full)
        } else if cur / 2 < start {
            Duration::ZERO
        } else {
            cur / 2
        }
    }
}

/// The share of its time a thread spends working, rather than polling or
/// asleep, measured over periods of [`DUTY_PERIOD`], and whether it is
/// saturated: working more than [`SATURATED_ABOVE`] of the last period (and,
/// once saturated, until a period under [`SATURATED_UNTIL`]). A saturated
/// thread does not poll: its work comes faster than it takes it, so a
/// window would end at once and save no wake-up, while sleeping in its
/// event loop lets the next events gather, to be taken in one wake-up and
/// answered in fewer writes. Measured on the bench machine (`scripts/bench-e2e`,
/// `uwire proxy` -> `uwire serve`, wrk -t1): at 32 connections the proxy,
/// whose thread polled all the time it did not work, spent 11.3 µs of CPU
/// per request against 9.7 µs with `--busy-poll 0`; with this rule, 9.0
/// against 9.3 µs in one run. One connection (a round trip per request,
/// the thread waiting on the peers most of its time) kept polling and its
/// gain: 35,309 requests a second against 10,853 with `--busy-poll 0`.
#[derive(Debug, Clone, Copy)]
struct Duty {
    /// When the period began.
    since: Instant,
    /// Time spent working in the period, up to the last rest.
    busy: Duration,
    /// When the thread began working, if it is working.
    working: Option<Instant>,
    saturated: bool,
}

/// The period over which [`Duty`] measures a thread's work.
const DUTY_PERIOD: Duration = Duration::from_millis(2);

/// The share of a period (in thousandths) over which a thread is
/// saturated.
const SATURATED_ABOVE: u128 = 800;

/// The share of a period (in thousandths) under which a saturated thread
/// is not any more.
const SATURATED_UNTIL: u128 = 650;

impl Duty {
    fn new(now: Instant) -> Duty {
        Duty {
            since: now,
            busy: Duration::ZERO,
            working: None,
            saturated: false,
        }
    }

    /// The thread runs out of work at `now`; says whether it is saturated
    /// (judged again when a period has passed).
    fn rest(&mut self, now: Instant) -> bool {
        if let Some(from) = self.working.take() {
            self.busy += now.saturating_duration_since(from);
        }
        let period = now.saturating_duration_since(self.since);
        if period >= DUTY_PERIOD {
            let share = self.busy.as_nanos() * 1000 / period.as_nanos();
            self.saturated = share
                > if self.saturated {
                    SATURATED_UNTIL
                } else {
                    SATURATED_ABOVE
                };
            self.since = now;
            self.busy = Duration::ZERO;
        }
        self.saturated
    }
}

/// Busy polling for a thread that waits for work some other way than in a
/// tokio runtime (a blocking channel receive, say): tries `take` until it
/// gives something or this thread's window has passed, yielding the CPU
/// between tries, and only then calls `block` (which waits for as long as
/// it takes). The window adapts as a runtime thread's does (halved after a
/// window that found nothing and a sleep longer than `full`, to nothing
/// below an eighth; doubled after a shorter sleep), so a thread whose work
/// comes seldom soon blocks at once. `full` zero blocks at once; over
/// [`MAX_BUSY_POLL`] it is taken as [`MAX_BUSY_POLL`].
///
/// `take` must not block, and must give what `block` would have (a
/// `try_recv` beside a `recv`). A thread should not use this while it also
/// runs a runtime built by [`build`]: the two share the thread's window.
pub fn wait<T>(
    full: Duration,
    mut take: impl FnMut() -> Option<T>,
    block: impl FnOnce() -> T,
) -> T {
    let full = full.min(MAX_BUSY_POLL);
    if full.is_zero() {
        return block();
    }
    let w = Adaptive::window(full);
    if !w.is_zero() {
        if let Some(t) = spin(w, &mut take) {
            Adaptive::parked(true);
            return t;
        }
    }
    Adaptive::parked(false);
    let t = block();
    Adaptive::unparked(full);
    t
}

/// Busy polling for a thread that runs an event loop of its own, which
/// cannot be told to poll before it sleeps (an asyncio loop, uvloop's
/// included) but can be kept from sleeping: after its work, the loop runs
/// [`tick`](LoopWatch::tick) as a callback and schedules it again for its
/// next turn for as long as it says so. A loop with a callback ready polls
/// its selector without sleeping, so each turn looks at everything the
/// loop watches; when the window has passed, the loop stops scheduling
/// the callback and sleeps in its selector as usual.
///
/// The window adapts as [`wait`]'s does, by the same per-thread state
/// (halved after a window that found nothing and a sleep longer than the
/// full window, to nothing below an eighth; doubled after a shorter
/// sleep): the loop calls [`took`](LoopWatch::took) whenever it takes
/// work, which also starts the window afresh. Use one per thread, on that
/// thread only, and not on a thread that also runs a runtime built by
/// [`build`] or calls [`wait`].
#[derive(Debug)]
pub struct LoopWatch {
    full: Duration,
    /// The end of the window being polled, if one is (the thread counts
    /// as polling meanwhile).
    until: Option<(Instant, Polling)>,
}

impl LoopWatch {
    /// A watch with windows of at most `full` (none if zero); over
    /// [`MAX_BUSY_POLL`] it is taken as [`MAX_BUSY_POLL`].
    pub fn new(full: Duration) -> LoopWatch {
        LoopWatch {
            full: full.min(MAX_BUSY_POLL),
            until: None,
        }
    }

    /// One turn of the watch: whether the loop should run it again on its
    /// next turn rather than sleep. `ready` says that work has arrived
    /// (the loop will find it this turn), which ends the window. Yields the
    /// CPU while the window lasts: the peer the loop waits for may want it.
    pub fn tick(&mut self, ready: bool) -> bool {
        if self.full.is_zero() {
            return false;
        }
        if ready {
            self.caught();
            return false;
        }
        let until = self
            .until
            .get_or_insert_with(|| {
                (
                    Instant::now() + Adaptive::window(self.full),
                    Polling::start(),
                )
            })
            .0;
        if oversubscribed() {
            Adaptive::contended();
        } else if Instant::now() < until {
            std::thread::yield_now();
            return true;
        }
        // Nothing came: the loop sleeps now.
        self.until = None;
        Adaptive::parked(false);
        false
    }

    /// The loop has taken work. A window being polled ends there, having
    /// caught it: the next [`tick`](LoopWatch::tick) starts a new one, so
    /// the window counts from the loop's last work rather than running
    /// down while the loop is busy. After a sleep, the window adapts to
    /// how long the loop slept.
    pub fn took(&mut self) {
        if self.full.is_zero() {
            return;
        }
        Adaptive::unparked(self.full);
        self.caught();
    }

    /// Work came while a window was being polled: it ends, having caught
    /// it (the loop did not sleep).
    fn caught(&mut self) {
        if self.until.take().is_some() {
            Adaptive::parked(true);
        }
    }
}

/// A descriptor of its own for the runtime's epoll instance `fd`.
#[allow(unsafe_code)]
fn duplicate(fd: i32) -> Option<rustix::fd::OwnedFd> {
    // SAFETY: `fd` was listed in /proc/self/fd after the runtime was built
    // and not before, so it is the runtime's epoll instance, which the
    // caller holds (it is open until the runtime is dropped, after this).
    let fd = unsafe { rustix::fd::BorrowedFd::borrow_raw(fd) };
    rustix::io::fcntl_dupfd_cloexec(fd, 0).ok()
}

/// Polls the epoll instance `fd` until it has an event or `window` has
/// passed; says whether it ended on readiness.
fn poll_until_ready(fd: &rustix::fd::OwnedFd, window: Duration) -> bool {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    let now = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    spin(window, || {
        let mut fds = [PollFd::new(fd, PollFlags::IN)];
        // Ready, or an error (which no further polling would mend).
        (!matches!(poll(&mut fds, Some(&now)), Ok(0))).then_some(())
    })
    .is_some()
}

/// Tries `take` until it gives something or `window` has passed, yielding
/// the CPU between tries: a thread waiting for this CPU may be the peer
/// the caller waits for (both on one CPU). Ends the window when some
/// thread waits for a CPU (see [`oversubscribed`]).
fn spin<T>(window: Duration, mut take: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    let _polling = Polling::start();
    loop {
        if let Some(t) = take() {
            return Some(t);
        }
        if start.elapsed() >= window {
            return None;
        }
        if oversubscribed() {
            Adaptive::contended();
            return None;
        }
        std::thread::yield_now();
    }
}

/// The threads of this process polling now.
static POLLING: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// One thread counted in [`POLLING`] while it lives.
#[derive(Debug)]
struct Polling;

impl Polling {
    fn start() -> Polling {
        POLLING.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Polling
    }
}

impl Drop for Polling {
    fn drop(&mut self) {
        POLLING.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// How often a process reads the kernel's count of runnable threads
/// while its threads poll.
const RUNNABLE_CHECK: Duration = Duration::from_millis(1);

/// Whether the CPUs have more runnable threads than they can run, besides
/// this process's polling threads: the kernel's count of runnable threads
/// (`/proc/loadavg`) less those ([`POLLING`]), over the online CPUs; read
/// at most once per [`RUNNABLE_CHECK`] in a process. `false` where it
/// cannot be read.
///
/// Then polling takes time from threads with work, and keeps its CPU from
/// going idle, which is when the kernel pulls a waiting thread over from
/// another CPU; and it saves nothing, as the wake-up it avoids is dear only
/// on a halted CPU, and a busy machine has none. Measured: `python -m uwire
/// --http` in a session of its own (so in a scheduling group of its own),
/// its front polling on two threads and its workers on theirs, lost two
/// thirds of its WebSocket echo rate against a client in another session.
///
/// Runnable threads as many as the CPUs still let a thread poll: another
/// process's polling threads cannot be told from threads with work, and
/// one request in flight between two polling processes and a client (three
/// runnable threads on two CPUs) is where polling gains most.
fn oversubscribed() -> bool {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    #[cfg(test)]
    if let Some(over) = tests::LOAD.with(|l| l.get()) {
        return over;
    }
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    static CHECKED_AT_US: AtomicU64 = AtomicU64::new(0);
    static OVER: AtomicBool = AtomicBool::new(false);
    let now = EPOCH.get_or_init(Instant::now).elapsed().as_micros() as u64 + 1;
    let last = CHECKED_AT_US.load(Ordering::Relaxed);
    if last != 0 && now.saturating_sub(last) < RUNNABLE_CHECK.as_micros() as u64 {
        return OVER.load(Ordering::Relaxed);
    }
    if CHECKED_AT_US
        .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
        .is_err()
    {
        // Another thread reads it now.
        return OVER.load(Ordering::Relaxed);
    }
    let ours = POLLING.load(Ordering::Relaxed);
    let over = runnable().is_some_and(|(running, cpus)| running.saturating_sub(ours) > cpus);
    OVER.store(over, Ordering::Relaxed);
    over
}

/// The kernel's count of runnable threads and the online CPUs.
#[cfg(target_os = "linux")]
fn runnable() -> Option<(u32, u32)> {
    use std::os::unix::fs::FileExt;
    static LOADAVG: OnceLock<Option<(std::fs::File, u32)>> = OnceLock::new();
    let (file, cpus) = LOADAVG
        .get_or_init(|| {
            let file = std::fs::File::open("/proc/loadavg").ok()?;
            let online = std::fs::read_to_string("/sys/devices/system/cpu/online").ok()?;
            Some((file, online_cpus(&online)?))
        })
        .as_ref()?;
    let mut buf = [0u8; 128];
    let n = file.read_at(&mut buf, 0).ok()?;
    Some((running_threads(&buf[..n])?, *cpus))
}

#[cfg(not(target_os = "linux"))]
fn runnable() -> Option<(u32, u32)> {
    None
}

/// The runnable count of a `/proc/loadavg` line: `0.50 0.40 0.30 3/250 12345`
/// gives 3.
fn running_threads(loadavg: &[u8]) -> Option<u32> {
    let field = loadavg.split(|&b| b == b' ').nth(3)?;
    let running = field.split(|&b| b == b'/').next()?;
    std::str::from_utf8(running).ok()?.parse().ok()
}

/// The number of CPUs in a `/sys/devices/system/cpu/online` list such as
/// `0-3,6,8-9`.
fn online_cpus(list: &str) -> Option<u32> {
    let mut n = 0;
    for part in list.trim().split(',') {
        n += match part.split_once('-') {
            Some((a, b)) => b.parse::<u32>().ok()?.checked_sub(a.parse().ok()?)? + 1,
            None => {
                part.parse::<u32>().ok()?;
                1
            }
        };
    }
    (n > 0).then_some(n)
}

/// The process's epoll instances (by descriptor), or `None` where they
/// cannot be listed.
#[cfg(target_os = "linux")]
fn epoll_fds() -> Option<Vec<i32>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd").ok()? {
        let entry = entry.ok()?;
        let Ok(target) = std::fs::read_link(entry.path()) else {
            continue; // closed since the listing
        };
        if target.as_os_str() == "anon_inode:[eventpoll]" {
            if let Some(fd) = entry.file_name().to_str().and_then(|s| s.parse().ok()) {
                out.push(fd);
            }
        }
    }
    Some(out)
}

#[cfg(not(target_os = "linux"))]
fn epoll_fds() -> Option<Vec<i32>> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use tokio::io::AsyncReadExt;

    thread_local! {
        /// What `oversubscribed` says on this thread, if set: tests of
        /// the windows would otherwise depend on the load of the machine
        /// (other tests run beside them).
        pub(super) static LOAD: std::cell::Cell<Option<bool>> = const { std::cell::Cell::new(None) };
    }

    /// Sets what `oversubscribed` says on this thread.
    fn machine_busy(over: bool) {
        LOAD.with(|l| l.set(Some(over)));
    }

    fn current_thread() -> tokio::runtime::Builder {
        let mut b = tokio::runtime::Builder::new_current_thread();
        b.enable_all();
        b
    }

    #[test]
    fn loop_watch_polls_its_window_then_lets_the_loop_sleep() {
        std::thread::spawn(|| {
            machine_busy(false);
            let full = Duration::from_millis(2);
            let mut w = LoopWatch::new(full);
            // Work arriving ends the window at once.
            assert!(w.tick(false));
            assert!(!w.tick(true));
            // Nothing arriving: the loop turns until the window has passed.
            let start = Instant::now();
            let mut turns = 0;
            while w.tick(false) {
                turns += 1;
            }
            assert!(start.elapsed() >= full, "{:?}", start.elapsed());
            assert!(turns > 0);
            // Work taken within a window starts it afresh.
            w.took();
            assert!(w.tick(false));
            std::thread::sleep(full * 3 / 4);
            w.took();
            let taken = Instant::now();
            while w.tick(false) {}
            assert!(taken.elapsed() >= full, "{:?}", taken.elapsed());
            // Long sleeps after empty windows shrink the window to nothing:
            // the loop then sleeps at once.
            for _ in 0..8 {
                std::thread::sleep(full * 3);
                w.took();
                while w.tick(false) {}
            }
            assert!(!w.tick(false));
            // A short sleep grows it again.
            w.took();
            assert!(w.tick(false));
            // A zero window never polls; an over-long one is capped.
            assert!(!LoopWatch::new(Duration::ZERO).tick(false));
            assert_eq!(LoopWatch::new(Duration::from_secs(1)).full, MAX_BUSY_POLL);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn window_limits() {
        let (_rt, s) = build(&mut current_thread(), Duration::ZERO).unwrap();
        assert_eq!(s, BusyPoll::Off);
        let (_rt, s) = build(&mut current_thread(), MAX_BUSY_POLL).unwrap();
        assert_eq!(s, BusyPoll::On(MAX_BUSY_POLL));
        let e = build(
            &mut current_thread(),
            MAX_BUSY_POLL + Duration::from_nanos(1),
        )
        .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn finds_each_runtimes_own_epoll_instance() {
        let (a, sa) = build(&mut current_thread(), Duration::from_micros(50)).unwrap();
        let (b, sb) = build(&mut current_thread(), Duration::from_micros(50)).unwrap();
        assert_eq!(sa, BusyPoll::On(Duration::from_micros(50)));
        assert_eq!(sb, sa);
        drop((a, b));
    }

    /// Windows ended by readiness and windows that ran out.
    fn outcomes(h: &Hook) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (h.outcomes[0].load(Relaxed), h.outcomes[1].load(Relaxed))
    }

    /// A socket that becomes readable ends the window: bytes arrive every
    /// 2 ms and the window is 10 ms, so windows end on readiness. How many
    /// depends on the machine (a reader held up reads several bytes after
    /// one wait, a writer held up lets a window run out), so the test asks
    /// for a few: were readiness not seen, none would.
    #[test]
    fn readiness_ends_the_window() {
        machine_busy(false);
        let (rt, s, hook) = build_with(&mut current_thread(), MAX_BUSY_POLL).unwrap();
        assert_eq!(s, BusyPoll::On(MAX_BUSY_POLL));
        let (mut ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        let writer = std::thread::spawn(move || {
            for i in 0..50u8 {
                std::thread::sleep(Duration::from_millis(2));
                ours.write_all(&[i]).unwrap();
            }
        });
        let got = rt.block_on(async move {
            theirs.set_nonblocking(true).unwrap();
            let mut s = tokio::net::UnixStream::from_std(theirs).unwrap();
            let mut got = Vec::new();
            while got.len() < 50 {
                let mut b = [0u8; 64];
                let n = s.read(&mut b).await.unwrap();
                assert!(n > 0, "closed early");
                got.extend_from_slice(&b[..n]);
            }
            got
        });
        writer.join().unwrap();
        assert_eq!(got, (0..50).collect::<Vec<u8>>());
        let (ready, ran_out) = outcomes(&hook);
        assert!(
            ready >= 5,
            "{ready} windows ended on readiness, {ran_out} ran out"
        );
    }

    /// Runs `rt` until `n` numbers, sent one every `gap` from another
    /// thread, have arrived; what arrived, in order.
    fn fed(rt: &tokio::runtime::Runtime, n: u32, gap: Duration) -> Vec<u32> {
        fed_paced(rt, None, n, gap)
    }

    /// [`fed`], where with `pace` (the hook of `rt`) each gap starts only
    /// once the runtime's thread has gone to sleep: a thread held up by a
    /// loaded machine then cannot find its next number already there
    /// (which would make a long gap look short).
    fn fed_paced(
        rt: &tokio::runtime::Runtime,
        pace: Option<Arc<Hook>>,
        n: u32,
        gap: Duration,
    ) -> Vec<u32> {
        use std::sync::atomic::Ordering::SeqCst;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let sender = std::thread::spawn(move || {
            let mut seen = 0;
            for i in 0..n {
                if let Some(hook) = &pace {
                    // The thread's next sleep (bounded: a hook that never
                    // counted would fail the test, not hang it).
                    let deadline = Instant::now() + Duration::from_secs(10);
                    while hook.sleeps.load(SeqCst) == seen {
                        assert!(Instant::now() < deadline, "the thread never slept");
                        std::thread::sleep(Duration::from_micros(20));
                    }
                    seen = hook.sleeps.load(SeqCst);
                }
                std::thread::sleep(gap);
                tx.send(i).unwrap();
            }
        });
        let got = rt.block_on(async move {
            let mut got = Vec::new();
            while let Some(i) = rx.recv().await {
                got.push(i);
            }
            got
        });
        sender.join().unwrap();
        got
    }

    /// A task woken from another thread ends the window too (the runtime's
    /// wake-up descriptor is in the polled epoll instance); counted as in
    /// `readiness_ends_the_window`.
    #[test]
    fn remote_wake_ends_the_window() {
        machine_busy(false);
        let (rt, _, hook) = build_with(&mut current_thread(), MAX_BUSY_POLL).unwrap();
        let got = fed(&rt, 50, Duration::from_millis(2));
        assert_eq!(got, (0..50).collect::<Vec<u32>>());
        let (ready, ran_out) = outcomes(&hook);
        assert!(
            ready >= 5,
            "{ready} windows ended on readiness, {ran_out} ran out"
        );
    }

    #[test]
    fn adapt_halves_grows_and_stops() {
        let full = Duration::from_micros(80);
        let long = Duration::from_millis(1);
        let short = Duration::from_micros(30);
        // Long sleeps after empty windows: halved, then nothing below 10 us.
        assert_eq!(Adaptive::adapt(full, full, long), Duration::from_micros(40));
        assert_eq!(
            Adaptive::adapt(Duration::from_micros(40), full, long),
            Duration::from_micros(20)
        );
        assert_eq!(
            Adaptive::adapt(Duration::from_micros(20), full, long),
            Duration::from_micros(10)
        );
        assert_eq!(
            Adaptive::adapt(Duration::from_micros(10), full, long),
            Duration::ZERO
        );
        // A sleep a full window would have cut short: doubled from 10 us.
        assert_eq!(
            Adaptive::adapt(Duration::ZERO, full, short),
            Duration::from_micros(10)
        );
        assert_eq!(
            Adaptive::adapt(Duration::from_micros(10), full, short),
            Duration::from_micros(20)
        );
        assert_eq!(Adaptive::adapt(Duration::from_micros(60), full, full), full);
        assert_eq!(Adaptive::adapt(full, full, short), full);
    }

    #[test]
    fn duty_marks_a_thread_saturated_over_its_thresholds() {
        let t0 = Instant::now();
        let us = |n: u64| t0 + Duration::from_micros(n);
        let mut d = Duty::new(t0);
        // Judged only once a period has passed.
        d.working = Some(t0);
        assert!(!d.rest(us(1_900)));
        // 1,900 + 90 busy of 2,000: saturated.
        d.working = Some(us(1_910));
        assert!(d.rest(us(2_000)));
        // 1,400 busy of 2,000 (70%): still, being over the lower mark.
        d.working = Some(us(2_000));
        assert!(d.rest(us(3_400)));
        d.working = Some(us(4_000));
        assert!(d.rest(us(4_000)));
        // 600 of 2,000 (30%): not any more, once the period has passed.
        d.working = Some(us(4_000));
        assert!(d.rest(us(4_600)));
        d.working = Some(us(6_000));
        assert!(!d.rest(us(6_000)));
        // 1,500 of 2,000 (75%), not saturated before: under the upper mark.
        d.working = Some(us(6_000));
        assert!(!d.rest(us(7_500)));
        d.working = Some(us(8_000));
        assert!(!d.rest(us(8_000)));
        // A long sleep counts in the period: a thread saturated before a
        // pause is not after it.
        d.working = Some(us(8_000));
        assert!(d.rest(us(10_000)));
        d.working = Some(us(1_000_000));
        assert!(!d.rest(us(1_000_100)));
    }

    /// A thread whose work leaves it no time between waits stops polling
    /// (its waits block at once, never trying `take`), and polls again
    /// once its work leaves it most of its time.
    #[test]
    fn a_saturated_thread_does_not_poll() {
        /// `n` rounds of `work` of work, then a wait whose tries take the
        /// next job at once (`ready`) or never, and whose block sleeps
        /// `gap`; says which waits tried. The window, 5 ms, is far longer
        /// than the gaps, so that a sleep overrun by a loaded machine
        /// does not shrink it.
        fn rounds(n: usize, work: Duration, ready: bool, gap: Duration) -> Vec<bool> {
            (0..n)
                .map(|_| {
                    let start = Instant::now();
                    while start.elapsed() < work {
                        std::hint::spin_loop();
                    }
                    let mut tried = false;
                    let take = || {
                        tried = true;
                        ready.then_some(())
                    };
                    wait(Duration::from_millis(5), take, || std::thread::sleep(gap));
                    tried
                })
                .collect()
        }
        std::thread::spawn(|| {
            machine_busy(false);
            // Work all the time: each wait's first try takes the next job.
            let polled = rounds(60, Duration::from_micros(200), true, Duration::ZERO);
            assert!(polled[..5].iter().all(|&p| p), "{polled:?}");
            assert!(polled[30..].iter().all(|&p| !p), "{polled:?}");
            // Work a tenth of the time: polling comes back.
            let polled = rounds(
                30,
                Duration::from_micros(50),
                false,
                Duration::from_micros(500),
            );
            assert!(polled[15..].iter().all(|&p| p), "{polled:?}");
        })
        .join()
        .unwrap();
    }

    /// Work that comes in gaps far longer than the window: the windows
    /// run out, the thread's window shrinks to nothing and it stops
    /// polling, so most of the 40 waits poll not at all. Each gap starts
    /// when the thread has gone to sleep (see [`fed_paced`]): 400 µs, 200,
    /// 100, 50, then no window.
    #[test]
    fn long_gaps_stop_the_polling() {
        machine_busy(false);
        let (rt, _, hook) = build_with(&mut current_thread(), Duration::from_micros(400)).unwrap();
        let got = fed_paced(&rt, Some(hook.clone()), 40, Duration::from_millis(3));
        assert_eq!(got.len(), 40);
        let (ready, ran_out) = outcomes(&hook);
        assert!(ran_out >= 1, "the first window is full");
        assert!(
            ready + ran_out <= 6,
            "{ready} windows ended on readiness, {ran_out} ran out"
        );
    }

    /// With nothing to wake it, a window runs its length and the thread
    /// then sleeps: a timer far beyond the window still fires. (A hook that
    /// took every poll for readiness would fail here.)
    #[test]
    fn idle_window_runs_out() {
        machine_busy(false);
        let (rt, _, hook) = build_with(&mut current_thread(), Duration::from_micros(200)).unwrap();
        rt.block_on(async { tokio::time::sleep(Duration::from_millis(30)).await });
        let (_, ran_out) = outcomes(&hook);
        assert!(ran_out >= 1);
    }

    #[test]
    fn multi_thread_runtime() {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(2).enable_all();
        let (rt, s) = build(&mut b, Duration::from_micros(100)).unwrap();
        assert_eq!(s, BusyPoll::On(Duration::from_micros(100)));
        let n = rt.block_on(async {
            let hs: Vec<_> = (0..8u64)
                .map(|i| tokio::spawn(async move { i * 2 }))
                .collect();
            let mut n = 0;
            for h in hs {
                n += h.await.unwrap();
            }
            n
        });
        assert_eq!(n, 56);
    }

    /// `wait` on a fresh thread (whose window starts full), counting the
    /// calls of `take` and of `block`.
    fn waits(full: Duration, gaps: &[Duration]) -> (Vec<usize>, usize) {
        waits_paced(full, gaps, false)
    }

    /// [`waits`], where with `paced` each gap starts only when the waiting
    /// thread blocks: its tries then never find the job, and each block
    /// lasts at least its gap, however a loaded machine schedules the two
    /// threads.
    fn waits_paced(full: Duration, gaps: &[Duration], paced: bool) -> (Vec<usize>, usize) {
        let gaps = gaps.to_vec();
        std::thread::spawn(move || {
            machine_busy(false);
            let (tx, rx) = std::sync::mpsc::channel::<usize>();
            let (blocking, blocked) = std::sync::mpsc::channel::<()>();
            let sender = std::thread::spawn({
                let gaps = gaps.clone();
                move || {
                    for (i, g) in gaps.into_iter().enumerate() {
                        if paced {
                            blocked.recv().unwrap();
                        }
                        std::thread::sleep(g);
                        tx.send(i).unwrap();
                    }
                }
            });
            let (mut takes, mut blocks) = (Vec::new(), 0);
            for i in 0..gaps.len() {
                let mut tries = 0;
                let got = wait(
                    full,
                    || {
                        tries += 1;
                        rx.try_recv().ok()
                    },
                    || {
                        blocks += 1;
                        if paced {
                            blocking.send(()).unwrap();
                        }
                        rx.recv().unwrap()
                    },
                );
                assert_eq!(got, i, "in order, none lost");
                takes.push(tries);
            }
            sender.join().unwrap();
            (takes, blocks)
        })
        .join()
        .unwrap()
    }

    #[test]
    fn wait_takes_what_comes_within_the_window() {
        // A 10 ms window, work every 1 ms: every wait ends by `take`.
        let (takes, blocks) = waits(Duration::from_millis(10), &[Duration::from_millis(1); 20]);
        // (A sleep overslept by the whole window on a loaded box blocks.)
        assert!(blocks <= 3, "blocked {blocks} times of 20: {takes:?}");
        assert!(takes.iter().all(|&t| t >= 1));
    }

    #[test]
    fn wait_without_a_window_blocks_at_once() {
        let (takes, blocks) = waits(Duration::ZERO, &[Duration::from_millis(1); 5]);
        assert_eq!(takes, [0; 5]);
        assert_eq!(blocks, 5);
    }

    #[test]
    fn wait_stops_spinning_when_work_is_sparse() {
        // A 1 ms window, work 4 ms after each block: each window finds
        // nothing and the sleep after it is longer than the full window,
        // so the window halves until it is nothing (1, 1/2, 1/4, 1/8, then
        // 0): from then on `wait` blocks without trying.
        let (takes, blocks) = waits_paced(
            Duration::from_millis(1),
            &[Duration::from_millis(4); 12],
            true,
        );
        assert_eq!(blocks, 12, "{takes:?}");
        assert!(takes[0] > 0, "the first window is full: {takes:?}");
        assert!(takes[4..].iter().all(|&t| t == 0), "{takes:?}");
    }

    #[test]
    fn wait_caps_the_window() {
        // Over the maximum: taken as the maximum, not refused.
        let (_, blocks) = waits(MAX_BUSY_POLL * 10, &[Duration::from_millis(30)]);
        assert_eq!(blocks, 1);
    }

    #[test]
    fn a_busy_machine_ends_the_windows() {
        std::thread::spawn(|| {
            machine_busy(true);
            // `wait`: one try, then it blocks, however long the window.
            let (tx, rx) = std::sync::mpsc::channel::<u32>();
            let sender = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(20));
                tx.send(7).unwrap();
            });
            let (mut tries, mut blocked) = (0, false);
            let got = wait(
                MAX_BUSY_POLL,
                || {
                    tries += 1;
                    rx.try_recv().ok()
                },
                || {
                    blocked = true;
                    rx.recv().unwrap()
                },
            );
            sender.join().unwrap();
            assert_eq!((got, tries, blocked), (7, 1, true));
            // The thread's window is now nothing: the next wait does not
            // try at all, even with the machine idle again.
            machine_busy(false);
            let (tx, rx) = std::sync::mpsc::channel::<u32>();
            tx.send(8).unwrap();
            let mut tries = 0;
            let got = wait(
                MAX_BUSY_POLL,
                || {
                    tries += 1;
                    rx.try_recv().ok()
                },
                || rx.recv().unwrap(),
            );
            assert_eq!((got, tries), (8, 0));
            // A short sleep (this one) grows it again from an eighth.
            let (_, blocks) = {
                let mut blocks = 0;
                let (tx, rx) = std::sync::mpsc::channel::<u32>();
                tx.send(9).unwrap();
                let got = wait(
                    MAX_BUSY_POLL,
                    || rx.try_recv().ok(),
                    || {
                        blocks += 1;
                        rx.recv().unwrap()
                    },
                );
                (got, blocks)
            };
            assert_eq!(blocks, 0, "polled again after a short sleep");
            // `LoopWatch`: the loop sleeps at its first idle turn.
            machine_busy(true);
            let mut w = LoopWatch::new(MAX_BUSY_POLL);
            w.took();
            assert!(!w.tick(false));
        })
        .join()
        .unwrap();
    }

    /// The same through a runtime's park hook: with the machine busy, no
    /// window ends on readiness, as none is polled (compare
    /// `remote_wake_ends_the_window`).
    #[test]
    fn a_busy_machine_stops_a_runtimes_polling() {
        machine_busy(true);
        let (rt, _, hook) = build_with(&mut current_thread(), MAX_BUSY_POLL).unwrap();
        assert_eq!(fed(&rt, 20, Duration::from_millis(2)).len(), 20);
        let (ready, _) = outcomes(&hook);
        assert_eq!(ready, 0);
    }

    #[test]
    fn reads_the_kernels_counts() {
        assert_eq!(running_threads(b"0.50 0.40 0.30 3/250 12345\n"), Some(3));
        assert_eq!(running_threads(b"0.00 0.01 0.05 12/1000 1\n"), Some(12));
        assert_eq!(running_threads(b"0.50 0.40 0.30\n"), None);
        assert_eq!(running_threads(b"a b c x/2 1"), None);
        assert_eq!(online_cpus("0-1\n"), Some(2));
        assert_eq!(online_cpus("0"), Some(1));
        assert_eq!(online_cpus("0-3,6,8-9"), Some(7));
        assert_eq!(online_cpus("3-1"), None);
        assert_eq!(online_cpus(""), None);
        // The live files: this thread is running, and so are the threads
        // spinning beside it.
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let spinners: Vec<_> = (0..cpus + 2)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        std::hint::spin_loop();
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(20));
        let got = runnable();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for s in spinners {
            s.join().unwrap();
        }
        let (running, online) = got.expect("/proc/loadavg and the online CPUs");
        assert!(online >= cpus, "{online} online, {cpus} available");
        assert!(
            running > cpus + 1,
            "{running} runnable with {} spinning",
            cpus + 2
        );
    }
}
