//! Per-stream state and the stream table.
//!
//! "States like HTTP/2 minus reserved: idle -> open -> half-closed(local|remote)
//! -> closed. END_STREAM closes the sender's half. RESET closes both halves
//! at once." Each half is tracked separately: a stream is in the table while
//! at least one half is open, and moves to a bounded "recently closed" set
//! when it closes or is reset.

use std::collections::VecDeque;

use rustc_hash::FxHashMap;

use bytes::{Buf, Bytes, BytesMut};

use super::flow::{RecvWindow, SendWindow};
use crate::frame::{HeaderBlock, StreamId};

/// The receiving half of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RecvState {
    /// Client side: waiting for the final RESPONSE (interim 1xx allowed).
    AwaitHead,
    /// Body (DATA) and optional TRAILERS may arrive.
    Body,
    /// The peer's END_STREAM arrived (half-closed remote).
    Closed,
}

/// The sending half of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SendState {
    /// Server side: the final response head has not been sent.
    AwaitHead,
    /// DATA and trailers may be queued.
    Open,
    /// END_STREAM (or trailers) is queued behind buffered data; the
    /// application can send nothing more.
    Ending,
    /// END_STREAM has been handed to the transmitter (half-closed local).
    Done,
}

/// Which transmit queue a stream waits in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sched {
    /// Has buffered DATA and stream send credit; needs connection credit.
    Ready,
    /// Has only a frame that needs no credit: trailers or an empty
    /// END_STREAM DATA.
    Free,
}

/// One open stream. Kept small: queued body chunks share the caller's
/// buffers.
#[derive(Debug)]
pub(crate) struct Stream {
    pub(crate) recv: RecvState,
    pub(crate) send: SendState,
    pub(crate) recv_window: RecvWindow,
    pub(crate) send_window: SendWindow,
    /// Body chunks not yet emitted (never empty chunks).
    pub(crate) queue: super::chunks::ChunkQueue,
    /// Total bytes in `queue`.
    pub(crate) buffered: usize,
    /// Trailers to send once `queue` is drained.
    pub(crate) trailers: Option<Box<HeaderBlock>>,
    /// The transmit queue this stream is in, if any.
    pub(crate) sched: Option<Sched>,
    /// Whether the stream is in the engine's queue of due WINDOW_UPDATEs.
    pub(crate) update_queued: bool,
    /// The REQUEST offered an upgrade: a `101` RESPONSE is final on it
    /// (PROTOCOL.md section 7.5).
    pub(crate) upgrade: bool,
}

/// Chunks at least this long are sent without copying even when smaller
/// chunks follow; shorter ones are coalesced into one DATA frame.
const COALESCE_BELOW: usize = 8 * 1024;

impl Stream {
    pub(crate) fn new(
        recv: RecvState,
        send: SendState,
        recv_window: u32,
        send_window: u32,
    ) -> Stream {
        Stream {
            recv,
            send,
            recv_window: RecvWindow::new(recv_window),
            send_window: SendWindow::new(send_window),
            queue: Default::default(),
            buffered: 0,
            trailers: None,
            sched: None,
            update_queued: false,
            upgrade: false,
        }
    }

    /// Both halves finished normally.
    pub(crate) fn is_done(&self) -> bool {
        self.recv == RecvState::Closed && self.send == SendState::Done
    }

    /// Appends body bytes (empty chunks are dropped).
    pub(crate) fn push_data(&mut self, data: Bytes) {
        if !data.is_empty() {
            self.buffered += data.len();
            self.queue.push_back(data);
        }
    }

    /// The queue this stream belongs in now, if any.
    pub(crate) fn wants(&self) -> Option<Sched> {
        if self.buffered > 0 {
            (self.send_window.available() > 0).then_some(Sched::Ready)
        } else if self.send == SendState::Ending {
            Some(Sched::Free)
        } else {
            None
        }
    }

    /// Takes up to `limit` (> 0) buffered bytes for one DATA frame. A large
    /// front chunk is split without copying; small chunks are coalesced.
    pub(crate) fn take_chunk(&mut self, limit: usize) -> Bytes {
        let single = self.queue.len() == 1;
        let out = match self.queue.front_mut() {
            None => return Bytes::new(),
            Some(front) if single || front.len() >= limit.min(COALESCE_BELOW) => {
                let n = limit.min(front.len());
                let out = front.split_to(n);
                if front.is_empty() {
                    self.queue.pop_front();
                }
                out
            }
            Some(_) => {
                let mut buf = BytesMut::with_capacity(limit.min(self.buffered));
                while buf.len() < limit {
                    let Some(front) = self.queue.front_mut() else {
                        break;
                    };
                    let n = (limit - buf.len()).min(front.len());
                    buf.extend_from_slice(&front[..n]);
                    front.advance(n);
                    if front.is_empty() {
                        self.queue.pop_front();
                    }
                }
                buf.freeze()
            }
        };
        self.buffered -= out.len();
        out
    }
}

/// How a stream that is no longer in the table ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Recent {
    /// Both halves finished normally (the peer's END_STREAM was seen).
    Closed,
    /// Reset by either side, or refused.
    Reset,
}

/// The stream table: open streams plus a bounded memory of recently closed
/// or reset ids.
///
/// Keyed with FxHash, not SipHash: a stream id costs one multiply to hash.
/// The peer picks the ids, but both maps are bounded (`max_concurrent_streams`
/// open, `max_reset_streams` remembered) and ids only grow, so colliding
/// keys cannot make a lookup cost more than a scan of that bound.
#[derive(Debug)]
pub(crate) struct StreamTable {
    open: FxHashMap<StreamId, Stream>,
    recent: FxHashMap<StreamId, Recent>,
    recent_order: VecDeque<StreamId>,
    max_recent: usize,
}

impl StreamTable {
    pub(crate) fn new(max_recent: usize) -> StreamTable {
        StreamTable {
            open: FxHashMap::default(),
            recent: FxHashMap::default(),
            recent_order: VecDeque::new(),
            max_recent,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.open.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.open.is_empty()
    }

    pub(crate) fn get(&self, id: StreamId) -> Option<&Stream> {
        self.open.get(&id)
    }

    pub(crate) fn get_mut(&mut self, id: StreamId) -> Option<&mut Stream> {
        self.open.get_mut(&id)
    }

    pub(crate) fn insert(&mut self, id: StreamId, stream: Stream) {
        self.open.insert(id, stream);
    }

    /// Removes an open stream and remembers how it ended.
    pub(crate) fn remove(&mut self, id: StreamId, how: Recent) -> Option<Stream> {
        let s = self.open.remove(&id);
        self.remember(id, how);
        s
    }

    /// Remembers `id` as recently closed or reset, forgetting the oldest id
    /// beyond `max_recent`. Updating an id already remembered keeps its age.
    pub(crate) fn remember(&mut self, id: StreamId, how: Recent) {
        if self.max_recent == 0 {
            return;
        }
        // One probe finds the id or the slot for it.
        match self.recent.entry(id) {
            std::collections::hash_map::Entry::Occupied(mut e) => {
                *e.get_mut() = how;
                return;
            }
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(how);
            }
        }
        self.recent_order.push_back(id);
        while self.recent_order.len() > self.max_recent {
            if let Some(old) = self.recent_order.pop_front() {
                self.recent.remove(&old);
            }
        }
    }

    /// How a recently closed stream ended; `None` if open, idle or forgotten.
    pub(crate) fn recent(&self, id: StreamId) -> Option<Recent> {
        self.recent.get(&id).copied()
    }

    /// Open stream ids in ascending order (for deterministic bulk actions).
    pub(crate) fn sorted_ids(&self) -> Vec<StreamId> {
        let mut ids: Vec<StreamId> = self.open.keys().copied().collect();
        ids.sort_unstable();
        ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sid(n: u32) -> StreamId {
        StreamId::new(n)
    }

    #[test]
    fn halves_close_independently() {
        let mut s = Stream::new(RecvState::Body, SendState::AwaitHead, 100, 100);
        assert!(!s.is_done());
        s.recv = RecvState::Closed;
        assert!(!s.is_done(), "half-closed (remote)");
        s.send = SendState::Ending;
        assert!(!s.is_done(), "END_STREAM queued but not yet emitted");
        s.send = SendState::Done;
        assert!(s.is_done());
    }

    #[test]
    fn wants_follows_buffer_window_and_end() {
        let mut s = Stream::new(RecvState::Body, SendState::Open, 100, 10);
        assert_eq!(s.wants(), None);
        s.push_data(Bytes::new());
        assert_eq!(s.wants(), None, "empty chunks are dropped");
        s.push_data(Bytes::from_static(b"hello"));
        assert_eq!(s.wants(), Some(Sched::Ready));
        s.send_window.consume(10);
        assert_eq!(s.wants(), None, "blocked on the stream window");
        assert_eq!(s.queue.clear(), 5);
        s.buffered = 0;
        s.send = SendState::Ending;
        assert_eq!(s.wants(), Some(Sched::Free));
    }

    #[test]
    fn take_chunk_splits_and_coalesces() {
        let mut s = Stream::new(RecvState::Body, SendState::Open, 100, 100);
        s.push_data(Bytes::from(vec![1u8; 20_000]));
        let a = s.take_chunk(16_384);
        assert_eq!(a.len(), 16_384);
        assert_eq!(s.buffered, 20_000 - 16_384);
        s.push_data(Bytes::from_static(b"abc"));
        s.push_data(Bytes::from_static(b"def"));
        // Front chunk (3616 bytes) is below the coalescing threshold: the
        // following small chunks ride along in the same frame.
        let b = s.take_chunk(16_384);
        assert_eq!(b.len(), 20_000 - 16_384 + 6);
        assert_eq!(&b[b.len() - 6..], b"abcdef");
        assert_eq!(s.buffered, 0);
        assert!(s.queue.is_empty());
        s.push_data(Bytes::from_static(b"abc"));
        s.push_data(Bytes::from_static(b"def"));
        assert_eq!(&s.take_chunk(4)[..], b"abcd");
        assert_eq!(&s.take_chunk(4)[..], b"ef");
        assert_eq!(s.take_chunk(4).len(), 0);
    }

    #[test]
    fn table_remembers_a_bounded_number_of_ids() {
        let mut t = StreamTable::new(2);
        for n in [1, 3, 5] {
            t.insert(sid(n), Stream::new(RecvState::Body, SendState::Open, 1, 1));
        }
        assert_eq!(t.sorted_ids(), vec![sid(1), sid(3), sid(5)]);
        assert!(t.remove(sid(1), Recent::Closed).is_some());
        assert!(t.remove(sid(3), Recent::Reset).is_some());
        assert_eq!(t.recent(sid(1)), Some(Recent::Closed));
        t.remove(sid(5), Recent::Closed);
        assert_eq!(t.recent(sid(1)), None, "oldest forgotten");
        assert_eq!(t.recent(sid(3)), Some(Recent::Reset));
        t.remember(sid(3), Recent::Closed);
        assert_eq!(t.recent(sid(3)), Some(Recent::Closed));
        assert!(t.is_empty());
        let mut t = StreamTable::new(0);
        t.remember(sid(1), Recent::Reset);
        assert_eq!(t.recent(sid(1)), None);
    }
}
