//! Thread-per-core serving for `serve`, `proxy` and `quickstart`
//! ([`uwire::net::threads`]): the `--threads` and `--busy-poll` defaults,
//! and every serving thread's allocator upkeep.

use std::time::Duration;

use uwire::net::busy_poll;
pub use uwire::net::threads::{runtime, share_tcp, take_tcp, Handoff, Stop};

/// What each extra serving thread starts with: the allocator's upkeep (as
/// the first thread has, from `main`).
pub const ON_START: fn() = crate::alloc::spawn_upkeep;

/// The `--threads` default: one. Measured on 2 cores with the front and the
/// runtime on the same machine, one thread each beat two (each process
/// then has a core, and no thread wakes another); raise it when the
/// process has the machine to itself (docs/BENCHMARKS.md).
pub const DEFAULT_THREADS: usize = 1;

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
