//! SIGTERM/SIGINT for worker and front processes.
//!
//! Not `tokio::signal`: tokio routes every signal of a process through one
//! process-wide socket pair, created with the first runtime. The master
//! makes a runtime (to bind its sockets) before it forks, so its children
//! would share that pair, and a signal meant for one process could wake
//! another one instead and be lost. Each process here registers its own
//! pipe, made after the fork, with `signal-hook`.

use std::io;
use std::os::unix::net::UnixStream;

use tokio::io::AsyncReadExt;

/// Stop signals (SIGTERM, SIGINT) of this process.
pub(crate) struct StopSignals {
    rx: tokio::net::UnixStream,
    ids: Vec<signal_hook::SigId>,
}

impl StopSignals {
    /// Registers the handlers now. Must be called inside a tokio runtime.
    pub(crate) fn new() -> io::Result<StopSignals> {
        let (rx, tx) = UnixStream::pair()?;
        rx.set_nonblocking(true)?;
        tx.set_nonblocking(true)?;
        let mut ids = Vec::new();
        for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
            ids.push(signal_hook::low_level::pipe::register(
                sig,
                tx.try_clone()?,
            )?);
        }
        Ok(StopSignals {
            rx: tokio::net::UnixStream::from_std(rx)?,
            ids,
        })
    }

    /// Resolves at the next stop signal.
    pub(crate) async fn recv(&mut self) {
        let mut b = [0u8; 16];
        loop {
            match self.rx.read(&mut b).await {
                Ok(n) if n > 0 => return,
                // The write ends live as long as the registrations.
                _ => std::future::pending::<()>().await,
            }
        }
    }
}

impl Drop for StopSignals {
    fn drop(&mut self) {
        for id in self.ids.drain(..) {
            signal_hook::low_level::unregister(id);
        }
    }
}
