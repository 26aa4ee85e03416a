//! The binary's allocator: mimalloc ([`uwire::alloc`]). Build with
//! `RUSTFLAGS="--cfg uwire_system_alloc"` to profile the heap with tools
//! that hook malloc (valgrind's DHAT, heaptrack).

#[cfg(not(uwire_system_alloc))]
#[global_allocator]
static ALLOC: uwire::alloc::Mi = uwire::alloc::Mi;

/// [`uwire::alloc::spawn_upkeep`] on the current serving runtime (nothing
/// with the system allocator).
pub fn spawn_upkeep() {
    #[cfg(not(uwire_system_alloc))]
    uwire::alloc::spawn_upkeep();
}
