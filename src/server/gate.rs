//! An accept gate: a hook the accept loop consults before each `accept`,
//! and tells about every connection it opens and closes.
//!
//! Several processes accepting on one shared listening socket (a pre-fork
//! runtime such as the Python workers in `clients/python`) get connections
//! in whatever order the kernel wakes them. uwire connections from a proxy
//! are few and long-lived, so that order alone can leave one process with
//! most of them. A gate lets each process hold back while it carries more
//! connections than its peers, so connections spread evenly.
//!
//! ```
//! use std::sync::atomic::{AtomicUsize, Ordering};
//! use uwire::server::{AcceptGate, BoxFuture, Server, ServerConfig};
//!
//! /// Accepts at most 8 connections at a time (a toy policy).
//! #[derive(Default)]
//! struct AtMost8(AtomicUsize);
//!
//! impl AcceptGate for AtMost8 {
//!     fn ready(&self) -> BoxFuture<()> {
//!         let open = self.0.load(Ordering::Relaxed);
//!         Box::pin(async move {
//!             if open >= 8 {
//!                 // Crude: wait a little and let the loop accept anyway.
//!                 tokio::time::sleep(std::time::Duration::from_millis(5)).await;
//!             }
//!         })
//!     }
//!     fn opened(&self) { self.0.fetch_add(1, Ordering::Relaxed); }
//!     fn closed(&self) { self.0.fetch_sub(1, Ordering::Relaxed); }
//! }
//!
//! let server = Server::new(ServerConfig::default()).with_gate(AtMost8::default());
//! # let _ = server;
//! ```

use std::sync::Arc;

use super::handler::BoxFuture;

/// Consulted by [`Server::serve`](super::Server::serve)'s accept loop.
///
/// The loop awaits [`ready`](AcceptGate::ready) before every `accept`
/// (shutdown interrupts the wait); the gate decides by resolving. Every accepted
/// connection is reported once through [`opened`](AcceptGate::opened) and
/// once through [`closed`](AcceptGate::closed) when its task ends (also
/// when it is aborted at the drain deadline).
pub trait AcceptGate: Send + Sync + 'static {
    /// Resolves when the server may accept one more connection.
    fn ready(&self) -> BoxFuture<()>;
    /// A connection was accepted.
    fn opened(&self) {}
    /// A connection accepted earlier has closed.
    fn closed(&self) {}
}

/// Reports the close of one connection to its gate when dropped.
pub(crate) struct GateGuard(pub(crate) Arc<dyn AcceptGate>);

impl GateGuard {
    /// Reports the open now; the close when the guard drops.
    pub(crate) fn open(gate: &Arc<dyn AcceptGate>) -> GateGuard {
        gate.opened();
        GateGuard(gate.clone())
    }
}

impl Drop for GateGuard {
    fn drop(&mut self) {
        self.0.closed();
    }
}
