//! mimalloc as a global allocator ([`Mi`]), and the upkeep that hands a
//! quiet serving thread's free pages back to the system
//! ([`spawn_upkeep`]).
//!
//! The `uwire` binary, the IPC benchmark peers (examples/bench_peers.rs,
//! so they and uwire differ in their protocol stacks, not in malloc) and
//! the Python package's native module all use it:
//!
//! ```ignore
//! #[global_allocator]
//! static ALLOC: uwire::alloc::Mi = uwire::alloc::Mi;
//! ```
//!
//! Per-thread free lists make the allocations of a request (a boxed head,
//! a stream's pipeline, header blocks) markedly cheaper than glibc's,
//! whose larger size classes take its slow path: with `scripts/bench-cost`,
//! about 6,000 instructions a request in a Python worker (12-14% of all
//! it does, the app's Python included). Only the `mimalloc` feature
//! builds this module.

// An allocator is C calls and raw blocks: each `unsafe` says why it holds.
#![allow(unsafe_code)]

/// Every mimalloc block is aligned to a word at least (its size classes
/// are multiples of one).
const WORD: usize = std::mem::size_of::<usize>();

/// mimalloc, asked for an alignment only when a type needs more than a
/// word's.
///
/// The `mimalloc` crate's allocator passes every request through
/// `mi_malloc_aligned`, whose fast path covers only blocks up to 1 KiB; a
/// larger one (a stream's pipeline state, a read buffer) takes its
/// over-allocating path, about 200 instructions more than `mi_malloc`.
/// Almost every Rust allocation needs a word's alignment or less, which
/// any mimalloc block has.
#[derive(Debug, Clone, Copy, Default)]
pub struct Mi;

// SAFETY: every request is served by mimalloc, with the alignment asked
// for: `mi_malloc` / `mi_zalloc` / `mi_realloc` return word-aligned blocks,
// so they serve alignments up to a word, and the `_aligned` calls the rest.
// Blocks from either family are freed by `mi_free`.
unsafe impl std::alloc::GlobalAlloc for Mi {
    #[inline]
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        use libmimalloc_sys::{mi_malloc, mi_malloc_aligned};
        // SAFETY: plain C calls; mimalloc returns null on failure.
        unsafe {
            if layout.align() <= WORD {
                mi_malloc(layout.size()).cast()
            } else {
                mi_malloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        use libmimalloc_sys::{mi_zalloc, mi_zalloc_aligned};
        // SAFETY: as in `alloc`.
        unsafe {
            if layout.align() <= WORD {
                mi_zalloc(layout.size()).cast()
            } else {
                mi_zalloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: std::alloc::Layout) {
        // SAFETY: `ptr` came from this allocator, so from mimalloc.
        unsafe { libmimalloc_sys::mi_free(ptr.cast()) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        use libmimalloc_sys::{mi_realloc, mi_realloc_aligned};
        // SAFETY: `ptr` came from this allocator with `layout`'s alignment,
        // which the new block keeps.
        unsafe {
            if layout.align() <= WORD {
                mi_realloc(ptr.cast(), new_size).cast()
            } else {
                mi_realloc_aligned(ptr.cast(), new_size, layout.align()).cast()
            }
        }
    }
}

/// How often a serving thread hands freed memory back (see [`spawn_upkeep`]).
#[cfg(feature = "net")]
const UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Spawns, on the current (serving) runtime, a task that once a second
/// asks mimalloc to return this thread's free pages to the system.
///
/// mimalloc purges free pages lazily, from later allocations on the same
/// thread. A server that turns quiet after a burst (thousands of
/// connections opened, answered, then idle with their buffers released)
/// would keep those pages resident for as long as it stays quiet. The
/// collection walks the thread's pages: microseconds, once a second.
///
/// # Panics
///
/// Outside a tokio runtime (as `tokio::spawn` does).
#[cfg(feature = "net")]
pub fn spawn_upkeep() {
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

#[cfg(test)]
mod tests {
    use std::alloc::{GlobalAlloc, Layout};

    use super::Mi;

    /// Every block honours its layout's alignment on both paths (the plain
    /// calls up to a word, the `_aligned` ones beyond), through `alloc`,
    /// `alloc_zeroed` and `realloc`, over mimalloc's small, medium, large
    /// and huge sizes, with many blocks live at once so they come from
    /// different places in their pages. A mimalloc built with other
    /// options (padding, `secure`) that broke the word-alignment premise
    /// fails here, as does sending alignments above a word to the plain
    /// calls.
    #[test]
    fn blocks_honour_the_alignment_asked_for() {
        let sizes = [
            1usize,
            3,
            7,
            8,
            9,
            15,
            16,
            24,
            40,
            48,
            100,
            1000,
            1024,
            1025,
            1352,
            4000,
            9000,
            70_000,
            300_000,
            5 << 20,
        ];
        for align in [1usize, 2, 4, 8, 16, 32, 64, 128, 4096] {
            for size in sizes {
                let layout = Layout::from_size_align(size, align).unwrap();
                let grown = Layout::from_size_align(size * 3 + 5, align).unwrap();
                let count = if size > 65_536 { 2 } else { 64 };
                let mut live = Vec::with_capacity(count * 2);
                for _ in 0..count {
                    // SAFETY: `layout` has a non-zero size; the blocks are
                    // written within their size and freed below with the
                    // layout they have.
                    unsafe {
                        let p = Mi.alloc(layout);
                        assert!(!p.is_null());
                        assert_eq!(p as usize % align, 0, "alloc {size} / {align}");
                        p.write_bytes(0xAB, size);
                        let z = Mi.alloc_zeroed(layout);
                        assert_eq!(z as usize % align, 0, "alloc_zeroed {size} / {align}");
                        assert!(std::slice::from_raw_parts(z, size).iter().all(|&b| b == 0));
                        let q = Mi.realloc(p, layout, grown.size());
                        assert_eq!(q as usize % align, 0, "realloc {size} / {align}");
                        assert!(std::slice::from_raw_parts(q, size)
                            .iter()
                            .all(|&b| b == 0xAB));
                        live.push((q, grown));
                        live.push((z, layout));
                    }
                }
                for (p, l) in live {
                    // SAFETY: allocated above with layout `l`, freed once.
                    unsafe { Mi.dealloc(p, l) };
                }
            }
        }
    }
}
