//! The transmit scheduler: two round-robin queues of streams with something
//! to send, and the live counts that say whether a frame can be produced.
//! It owns its counters; the engine only pushes, pops and forgets.

use std::collections::VecDeque;

use super::stream::{Sched, StreamTable};
use crate::frame::StreamId;

/// The two round-robin queues of streams with something to send.
///
/// Entries of streams removed from the table go stale and are skipped when
/// popped; the queues are compacted when stale entries dominate, so their
/// length stays within a constant factor of the live count.
#[derive(Debug, Default)]
pub(crate) struct Scheduler {
    /// Streams with buffered DATA and stream credit (need connection credit).
    ready: VecDeque<StreamId>,
    /// Streams whose next frame needs no credit (trailers, empty END_STREAM).
    free: VecDeque<StreamId>,
    ready_live: usize,
    free_live: usize,
}

impl Scheduler {
    /// Queues `id` at the back of `which` (the caller marks the stream).
    pub(crate) fn push(&mut self, which: Sched, id: StreamId) {
        match which {
            Sched::Ready => {
                self.ready.push_back(id);
                self.ready_live += 1;
            }
            Sched::Free => {
                self.free.push_back(id);
                self.free_live += 1;
            }
        }
    }

    /// A queued stream was removed from the table: its entry goes stale.
    pub(crate) fn forget(&mut self, which: Sched, streams: &StreamTable) {
        let (queue, live) = match which {
            Sched::Ready => (&mut self.ready, &mut self.ready_live),
            Sched::Free => (&mut self.free, &mut self.free_live),
        };
        *live = live.saturating_sub(1);
        if queue.len() > 2 * *live + 32 {
            queue.retain(|id| streams.get(*id).is_some_and(|s| s.sched == Some(which)));
        }
    }

    /// The next live stream of queue `which`, taken out of it (its `sched`
    /// mark cleared); stale entries are skipped. `None` once the queue is
    /// empty.
    pub(crate) fn pop(&mut self, which: Sched, streams: &mut StreamTable) -> Option<StreamId> {
        let (queue, live) = match which {
            Sched::Ready => (&mut self.ready, &mut self.ready_live),
            Sched::Free => (&mut self.free, &mut self.free_live),
        };
        while let Some(id) = queue.pop_front() {
            match streams.get_mut(id) {
                Some(s) if s.sched == Some(which) => {
                    s.sched = None;
                    *live = live.saturating_sub(1);
                    return Some(id);
                }
                // Removed, or re-queued elsewhere since: a stale entry.
                _ => {}
            }
        }
        None
    }

    /// Whether a frame can be produced (`conn_credit`: connection send
    /// window is open).
    pub(crate) fn has_work(&self, conn_credit: bool) -> bool {
        self.free_live > 0 || (conn_credit && self.ready_live > 0)
    }

    #[cfg(test)]
    pub(crate) fn queued_len(&self) -> usize {
        self.ready.len() + self.free.len()
    }
}
