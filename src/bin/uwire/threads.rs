//! Thread-per-core serving for `serve`, `proxy` and `quickstart`: the
//! calling thread and `n - 1` more, each running its own current-thread
//! tokio runtime on a shared listening socket, as nginx runs worker
//! processes. A connection stays on the thread that accepted it, and so do
//! its requests, its handlers and (for the front) the upstream connections
//! they use: nothing on a request's path wakes another thread.

use std::future::Future;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::watch;
use uwire::net::busy_poll;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The `--threads` default: one. Measured on 2 cores with the front and the
/// runtime on the same machine, one thread each beat two (each process
/// then has a core, and no thread wakes another); raise it when the
/// process has the machine to itself (docs/BENCHMARKS.md).
pub const DEFAULT_THREADS: usize = 1;

/// Builds a runtime from `builder` (I/O and time enabled) with `busy_poll`
/// of busy polling before its threads sleep (`busy_poll::build`, which
/// warns where it is not available).
pub fn runtime(
    mut builder: tokio::runtime::Builder,
    busy_poll: Duration,
) -> std::io::Result<tokio::runtime::Runtime> {
    busy_poll::build(builder.enable_all(), busy_poll).map(|(rt, _)| rt)
}

/// The `--busy-poll` window of a server with `threads` serving threads:
/// the flag's, else [`busy_poll::DEFAULT_BUSY_POLL`] with one thread and
/// none with more. Threads sharing one listening socket would not share
/// its connections: the one still polling takes each new one before a
/// sleeping one wakes (measured: `--threads 2` under a burst of 32 new
/// connections left one thread without any).
pub fn busy_poll(flag: Option<Duration>, threads: usize) -> Duration {
    flag.unwrap_or(if threads <= 1 {
        busy_poll::DEFAULT_BUSY_POLL
    } else {
        Duration::ZERO
    })
}

/// Parses `--threads`: 1..=1024.
pub fn parse_threads(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (1..=1024).contains(&n) => Ok(n),
        _ => Err(format!("--threads {s:?}: a number of threads, 1 to 1024")),
    }
}

/// A signal that the work should wind down, readable on any thread.
#[derive(Clone)]
pub struct Stop(watch::Receiver<bool>);

impl From<watch::Receiver<bool>> for Stop {
    fn from(rx: watch::Receiver<bool>) -> Stop {
        Stop(rx)
    }
}

impl Stop {
    /// Resolves once shutdown starts.
    pub async fn wait(mut self) {
        let _ = self.0.wait_for(|s| *s).await;
    }
}

/// The extra serving threads.
pub struct Workers {
    handles: Vec<JoinHandle<Result<(), BoxError>>>,
    stop: watch::Sender<bool>,
}

impl Workers {
    /// A handle that can tell them from elsewhere.
    pub fn stopper(&self) -> watch::Sender<bool> {
        self.stop.clone()
    }

    /// Waits for the extra threads; the first error wins. The wait happens
    /// on the blocking pool: this thread's runtime keeps running its tasks
    /// meanwhile (its upstream connections may still be what another
    /// thread's drain waits on).
    pub async fn join(self) -> Result<(), BoxError> {
        if self.handles.is_empty() {
            return Ok(());
        }
        match tokio::task::spawn_blocking(move || self.join_blocking()).await {
            Ok(r) => r,
            Err(_) => Err("waiting for the serving threads failed".into()),
        }
    }

    fn join_blocking(self) -> Result<(), BoxError> {
        let mut result = Ok(());
        for h in self.handles {
            let r = match h.join() {
                Ok(r) => r,
                Err(_) => Err("a serving thread panicked".into()),
            };
            if result.is_ok() {
                result = r;
            }
        }
        result
    }
}

/// Starts `n - 1` extra threads, each running `work(i, stop)` (i = 1..n) on
/// a current-thread runtime with `busy_poll` (see [`runtime`]); the
/// caller's thread is the first.
pub fn spawn<W, Fut>(n: usize, busy_poll: Duration, work: W) -> std::io::Result<Workers>
where
    W: Fn(usize, Stop) -> Result<Fut, BoxError> + Send + Clone + 'static,
    Fut: Future<Output = Result<(), BoxError>> + 'static,
{
    let (tx, rx) = watch::channel(false);
    let mut handles = Vec::new();
    for i in 1..n.max(1) {
        let work = work.clone();
        let stop = Stop(rx.clone());
        handles.push(
            std::thread::Builder::new()
                .name(format!("uwire-{i}"))
                .spawn(move || -> Result<(), BoxError> {
                    let rt = runtime(tokio::runtime::Builder::new_current_thread(), busy_poll)?;
                    // The future is made inside the runtime: it registers
                    // its listener with this thread's reactor.
                    rt.block_on(async move {
                        crate::alloc::spawn_upkeep();
                        work(i, stop)?.await
                    })
                })?,
        );
    }
    Ok(Workers { handles, stop: tx })
}
