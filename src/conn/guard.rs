//! Protection against abusive peers: per-window budgets for frames that
//! cost us work but do nothing useful (rapid reset, PING floods, empty or
//! ignored frames), and the transmit queue of control frames, which tracks
//! how many of its frames are replies the peer made us produce (PING ACKs,
//! RESETs) so that their backlog stays bounded when the I/O glue is not
//! draining [`Connection::poll_transmit`](super::Connection::poll_transmit).
//!
//! Every check is deterministic: time comes only from the `now` the caller
//! passes to `handle_frame`.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::frame::Frame;

/// A fixed-window event counter. The window opens at the first event
/// counted and lasts `window`; the first event at or after its end opens a
/// new window with a count of 1. At most `max` events per window pass: the
/// event that makes the count `max + 1` is over budget.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Budget {
    start: Option<Instant>,
    count: u32,
}

impl Budget {
    /// Counts one event at `now`. `false` when it is over budget.
    pub(crate) fn spend(&mut self, now: Instant, max: u32, window: Duration) -> bool {
        let expired = match self.start {
            None => true,
            // A window too long to represent never ends.
            Some(start) => start.checked_add(window).is_some_and(|end| now >= end),
        };
        if expired {
            self.start = Some(now);
            self.count = 0;
        }
        self.count = self.count.saturating_add(1);
        self.count <= max
    }

    #[cfg(test)]
    pub(crate) fn count(&self) -> u32 {
        self.count
    }
}

/// Why a frame is in the control queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// Local action, timer or our own GOAWAY: bounded by the application.
    Local,
    /// A PING ACK answering the peer's PING.
    Pong,
    /// A RESET answering a peer frame (refusal or stream error).
    Reset,
}

/// Control frames (and heads) waiting for
/// [`poll_transmit`](super::Connection::poll_transmit), with a count of the
/// peer-induced replies among them.
#[derive(Debug, Default)]
pub(crate) struct ControlQueue {
    frames: VecDeque<(Frame, Origin)>,
    pongs: usize,
    resets: usize,
}

impl ControlQueue {
    /// Queues a frame of local origin.
    pub(crate) fn push_back(&mut self, frame: Frame) {
        self.frames.push_back((frame, Origin::Local));
    }

    /// Queues a reply the peer made us produce.
    pub(crate) fn push_reply(&mut self, frame: Frame, origin: Origin) {
        match origin {
            Origin::Local => {}
            Origin::Pong => self.pongs += 1,
            Origin::Reset => self.resets += 1,
        }
        self.frames.push_back((frame, origin));
    }

    pub(crate) fn pop_front(&mut self) -> Option<Frame> {
        let (frame, origin) = self.frames.pop_front()?;
        match origin {
            Origin::Local => {}
            Origin::Pong => self.pongs -= 1,
            Origin::Reset => self.resets -= 1,
        }
        Some(frame)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    pub(crate) fn clear(&mut self) {
        self.frames.clear();
        self.pongs = 0;
        self.resets = 0;
    }

    /// PING ACKs queued and not yet transmitted.
    pub(crate) fn pending_pongs(&self) -> usize {
        self.pongs
    }

    /// Reply RESETs queued and not yet transmitted.
    pub(crate) fn pending_resets(&self) -> usize {
        self.resets
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{Ping, Reason, Reset, StreamId};

    #[test]
    fn budget_edges_and_window_reset() {
        let t0 = Instant::now();
        let w = Duration::from_secs(10);
        let mut b = Budget::default();
        for _ in 0..3 {
            assert!(b.spend(t0, 3, w));
        }
        assert!(!b.spend(t0 + Duration::from_millis(9_999), 3, w));
        // The window ends 10 s after its first event.
        assert!(b.spend(t0 + w, 3, w));
        assert_eq!(b.count(), 1);
        let mut z = Budget::default();
        assert!(!z.spend(t0, 0, w), "max 0 allows nothing");
        let mut forever = Budget::default();
        assert!(forever.spend(t0, 1, Duration::MAX));
        assert!(!forever.spend(t0 + w, 1, Duration::MAX));
    }

    #[test]
    fn queue_counts_replies() {
        let mut q = ControlQueue::default();
        q.push_back(Ping::new([0; 8]).into());
        q.push_reply(Ping::pong([1; 8]).into(), Origin::Pong);
        q.push_reply(
            Reset::new(StreamId::new(1), Reason::CANCEL).into(),
            Origin::Reset,
        );
        assert_eq!((q.pending_pongs(), q.pending_resets()), (1, 1));
        q.pop_front();
        q.pop_front();
        assert_eq!((q.pending_pongs(), q.pending_resets()), (0, 1));
        q.clear();
        assert!(q.is_empty());
        assert_eq!(q.pending_resets(), 0);
    }
}
