//! An accept gate: a hook the accept loop consults before each `accept`,
//! and tells about every connection it opens, identifies and closes.
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
//! use uwire::server::{AcceptGate, BoxFuture, ConnProtocol, Server, ServerConfig};
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
//!     fn closed(&self, _: Option<ConnProtocol>) { self.0.fetch_sub(1, Ordering::Relaxed); }
//! }
//!
//! let server = Server::new(ServerConfig::default()).with_gate(AtMost8::default());
//! # let _ = server;
//! ```

use std::sync::Arc;

use super::handler::BoxFuture;

/// What an accepted connection turned out to speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnProtocol {
    /// uwire/1: multiplexed and usually long-lived (a proxy's pooled
    /// connection).
    Uwire,
    /// Classic uwsgi: one request, then closed (nginx's `uwsgi_pass`).
    Uwsgi,
}

/// Consulted by [`Server::serve`](super::Server::serve)'s accept loop.
///
/// The loop awaits [`ready`](AcceptGate::ready) before every `accept`
/// (shutdown interrupts the wait); the gate decides by resolving. Every
/// accepted connection is reported once through
/// [`opened`](AcceptGate::opened), once through
/// [`identified`](AcceptGate::identified) when its protocol is known (at
/// once with a fixed [`ProtocolMode`](super::ProtocolMode), after its first
/// bytes in `auto` mode; never for a connection that closes before sending
/// any), and once through [`closed`](AcceptGate::closed) when its task ends
/// (also when it is aborted at the drain deadline).
///
/// A gate that balances lasting load can so tell a proxy's long-lived
/// uwire/1 connections from classic uwsgi ones, which carry one request
/// each, and count a connection not identified yet as possibly lasting.
pub trait AcceptGate: Send + Sync + 'static {
    /// Resolves when the server may accept one more connection.
    fn ready(&self) -> BoxFuture<()>;
    /// A connection was accepted; its protocol is not known yet.
    fn opened(&self) {}
    /// The protocol of a connection reported through `opened` is known.
    fn identified(&self, _protocol: ConnProtocol) {}
    /// A connection reported through `opened` has closed; `protocol` is
    /// what it was identified as, if it was.
    fn closed(&self, _protocol: Option<ConnProtocol>) {}
}

/// One connection's standing with its gate: reports the open when made,
/// the protocol once known, and the close when dropped.
pub(crate) struct GateGuard {
    gate: Arc<dyn AcceptGate>,
    protocol: Option<ConnProtocol>,
}

impl GateGuard {
    /// Reports the open now; the close when the guard drops.
    pub(crate) fn open(gate: &Arc<dyn AcceptGate>) -> GateGuard {
        gate.opened();
        GateGuard {
            gate: gate.clone(),
            protocol: None,
        }
    }

    /// Reports the connection's protocol (once; later calls are ignored).
    pub(crate) fn identify(&mut self, protocol: ConnProtocol) {
        if self.protocol.is_none() {
            self.protocol = Some(protocol);
            self.gate.identified(protocol);
        }
    }
}

impl Drop for GateGuard {
    fn drop(&mut self) {
        self.gate.closed(self.protocol);
    }
}
