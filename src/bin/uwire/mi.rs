//! mimalloc as the global allocator, asked for an alignment only when a
//! type needs more than a word's. The `uwire` binary's allocator, and the
//! IPC benchmark peers' (examples/bench_peers.rs includes this file), so
//! the two differ in their protocol stacks, not in malloc.

/// Every mimalloc block is aligned to a word at least (its size classes
/// are multiples of one).
const WORD: usize = std::mem::size_of::<usize>();

/// mimalloc, asked for an alignment only when a type needs more than a
/// word's.
///
/// The `mimalloc` crate's allocator passes every request through `mi_malloc_aligned`,
/// whose fast path covers only blocks up to 1 KiB; a larger one (a
/// stream's pipeline state, a read buffer) takes its over-allocating path,
/// about 200 instructions more than `mi_malloc`. Almost every Rust
/// allocation needs a word's alignment or less, which any mimalloc block
/// has.
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
