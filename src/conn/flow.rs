//! Flow-control windows: send credit granted by the peer, and receive
//! credit we grant, returned only as the application consumes data.

/// Largest flow-control window (2^31 - 1).
pub const MAX_WINDOW: u32 = 0x7FFF_FFFF;

/// A window would exceed 2^31-1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WindowOverflow;

/// More DATA arrived than the window allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WindowExceeded;

/// Credit the peer granted us: how many DATA payload bytes we may still send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SendWindow {
    available: u32,
}

impl SendWindow {
    /// A window of `initial` bytes (clamped to [`MAX_WINDOW`]).
    pub(crate) fn new(initial: u32) -> SendWindow {
        SendWindow {
            available: initial.min(MAX_WINDOW),
        }
    }

    /// Bytes we may send now.
    pub(crate) fn available(&self) -> u32 {
        self.available
    }

    /// Adds credit from a WINDOW_UPDATE.
    ///
    /// "WINDOW_UPDATE that makes a window exceed 2^31-1 -> FLOW_CONTROL_ERROR"
    pub(crate) fn grant(&mut self, increment: u32) -> Result<(), WindowOverflow> {
        let new = u64::from(self.available) + u64::from(increment);
        if new > u64::from(MAX_WINDOW) {
            return Err(WindowOverflow);
        }
        self.available = new as u32;
        Ok(())
    }

    /// Spends credit on `n` bytes of DATA. `n` never exceeds
    /// [`SendWindow::available`] (the scheduler checks first).
    pub(crate) fn consume(&mut self, n: u32) {
        debug_assert!(n <= self.available);
        self.available = self.available.saturating_sub(n);
    }
}

/// Credit we grant the peer. Invariant:
/// `window + held + unannounced == initial`.
///
/// * `window`: bytes the peer may still send;
/// * `held`: bytes received and delivered to the application, not yet
///   released by it;
/// * `unannounced`: bytes released but not yet returned by WINDOW_UPDATE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RecvWindow {
    initial: u32,
    window: u32,
    held: u32,
    unannounced: u32,
}

impl RecvWindow {
    /// A window of `initial` bytes (clamped to 1..=[`MAX_WINDOW`]).
    pub(crate) fn new(initial: u32) -> RecvWindow {
        let initial = initial.clamp(1, MAX_WINDOW);
        RecvWindow {
            initial,
            window: initial,
            held: 0,
            unannounced: 0,
        }
    }

    /// Bytes the peer may still send.
    #[cfg(test)]
    pub(crate) fn window(&self) -> u32 {
        self.window
    }

    /// Bytes delivered and not yet released.
    #[cfg(test)]
    pub(crate) fn held(&self) -> u32 {
        self.held
    }

    /// Accounts `n` received DATA bytes as delivered to the application.
    ///
    /// "Receiving more DATA than the window allows -> FLOW_CONTROL_ERROR"
    pub(crate) fn receive(&mut self, n: usize) -> Result<(), WindowExceeded> {
        match u32::try_from(n) {
            Ok(n) if n <= self.window => {
                self.window -= n;
                self.held += n;
                Ok(())
            }
            _ => Err(WindowExceeded),
        }
    }

    /// The application consumed up to `n` delivered bytes. Returns how many
    /// were actually released (never more than [`RecvWindow::held`]).
    pub(crate) fn release(&mut self, n: usize) -> u32 {
        let n = u32::try_from(n).unwrap_or(u32::MAX).min(self.held);
        self.held -= n;
        self.unannounced += n;
        n
    }

    /// Whether a WINDOW_UPDATE is due.
    ///
    /// "Receivers return credit only as the application consumes data
    /// (release_capacity), batching updates (send when >= half the initial
    /// window is unreturned, or when a stream's window hits 0)."
    pub(crate) fn update_due(&self) -> bool {
        let threshold = (self.initial / 2).max(1);
        self.unannounced > 0 && (self.unannounced >= threshold || self.window == 0)
    }

    /// The WINDOW_UPDATE increment to send now, if any. The credit counts
    /// from this call on, so call it only when the frame is handed to the
    /// transport: credit queued behind a peer that does not read is not yet
    /// given (section 8.3).
    pub(crate) fn take_update(&mut self) -> Option<u32> {
        if !self.update_due() {
            return None;
        }
        let inc = self.unannounced;
        self.window += inc;
        self.unannounced = 0;
        Some(inc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_window_grant_and_overflow() {
        let mut w = SendWindow::new(100);
        w.consume(60);
        assert_eq!(w.available(), 40);
        w.grant(10).unwrap();
        assert_eq!(w.available(), 50);
        assert_eq!(w.grant(MAX_WINDOW - 50), Ok(()));
        assert_eq!(w.available(), MAX_WINDOW);
        assert_eq!(w.grant(1), Err(WindowOverflow));
        assert_eq!(
            w.available(),
            MAX_WINDOW,
            "failed grant leaves window unchanged"
        );
        let mut w = SendWindow::new(0);
        assert_eq!(w.grant(MAX_WINDOW), Ok(()));
        let mut w = SendWindow::new(1);
        assert_eq!(w.grant(u32::MAX), Err(WindowOverflow));
    }

    #[test]
    fn recv_window_exceeded() {
        let mut w = RecvWindow::new(1024);
        w.receive(1000).unwrap();
        assert_eq!(w.receive(25), Err(WindowExceeded));
        w.receive(24).unwrap();
        assert_eq!(w.window(), 0);
        assert_eq!(w.receive(1), Err(WindowExceeded));
        assert_eq!(w.receive(0), Ok(()));
        assert_eq!(w.receive(usize::MAX), Err(WindowExceeded));
    }

    #[test]
    fn recv_window_batches_updates_at_half() {
        let mut w = RecvWindow::new(1000);
        w.receive(800).unwrap();
        assert_eq!(w.release(499), 499);
        assert_eq!(w.take_update(), None, "below half and window open");
        assert_eq!(w.release(1), 1);
        assert_eq!(w.take_update(), Some(500));
        assert_eq!(w.take_update(), None);
        assert_eq!(w.window(), 700);
        assert_eq!(w.held(), 300);
    }

    #[test]
    fn recv_window_updates_when_exhausted() {
        let mut w = RecvWindow::new(1000);
        w.receive(1000).unwrap();
        assert_eq!(w.take_update(), None, "nothing released yet");
        w.release(10);
        assert_eq!(w.take_update(), Some(10), "window at 0: return credit now");
        assert_eq!(w.window(), 10);
    }

    #[test]
    fn recv_window_release_is_clamped_to_held() {
        let mut w = RecvWindow::new(1000);
        w.receive(100).unwrap();
        assert_eq!(w.release(5000), 100);
        assert_eq!(w.release(1), 0);
        // Never grants more than the initial window in total.
        w.receive(0).unwrap();
        assert_eq!(w.take_update(), None);
        w.receive(900).unwrap();
        w.release(900);
        assert_eq!(w.take_update(), Some(1000));
        assert_eq!(w.window(), 1000);
    }

    #[test]
    fn recv_window_invariant_holds() {
        let mut w = RecvWindow::new(4096);
        let mut x: u32 = 7;
        for _ in 0..10_000 {
            x = x.wrapping_mul(1103515245).wrapping_add(12345);
            let n = (x >> 8) as usize % 3000;
            if x & 1 == 0 {
                let _ = w.receive(n);
            } else {
                w.release(n);
            }
            let _ = w.take_update();
            assert_eq!(w.window + w.held + w.unannounced, 4096);
        }
    }

    #[test]
    fn tiny_window_still_updates() {
        let mut w = RecvWindow::new(1);
        w.receive(1).unwrap();
        w.release(1);
        assert_eq!(w.take_update(), Some(1));
    }
}
