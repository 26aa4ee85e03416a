//! The binary's allocator.
//!
//! mimalloc: per-thread free lists make the allocations of a request (a
//! boxed head, a stream's pipeline, header blocks) markedly cheaper than
//! glibc's, whose larger size classes take its slow path. Build with
//! `RUSTFLAGS="--cfg uwire_system_alloc"` to profile the heap with tools
//! that hook malloc (valgrind's DHAT, heaptrack).

#[cfg(not(uwire_system_alloc))]
#[global_allocator]
static ALLOC: crate::mi::Mi = crate::mi::Mi;

/// How often a serving thread hands freed memory back (see [`spawn_upkeep`]).
#[cfg(not(uwire_system_alloc))]
const UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Spawns, on the current (serving) runtime, a task that once a second
/// asks mimalloc to return this thread's free pages to the system.
///
/// mimalloc purges free pages lazily, from later allocations on the same
/// thread. A server that turns quiet after a burst (thousands of
/// connections opened, answered, then idle with their buffers released)
/// would keep those pages resident for as long as it stays quiet. The
/// collection walks the thread's pages: microseconds, once a second.
pub fn spawn_upkeep() {
    #[cfg(not(uwire_system_alloc))]
    tokio::spawn(async {
        let mut tick = tokio::time::interval(UPKEEP_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            // SAFETY: `mi_collect` has no preconditions; it works on the
            // calling thread's own heap, which this task runs on.
            unsafe { libmimalloc_sys::mi_collect(false) };
        }
    });
}
