//! A first-in, first-out queue of body chunks that holds its first chunk
//! inline.
//!
//! Most streams have one chunk waiting at a time: a body answered or sent
//! in one piece, read or written before the next arrives. A `VecDeque`
//! allocates for its first element; this queue allocates only once a
//! second chunk waits behind the first.

use std::collections::VecDeque;

use bytes::Bytes;

/// See the module docs. Invariant: `rest` is empty whenever `front` is.
#[derive(Debug, Default)]
pub(crate) struct ChunkQueue {
    /// The oldest chunk.
    front: Option<Bytes>,
    /// The chunks behind it, oldest first.
    rest: VecDeque<Bytes>,
}

impl ChunkQueue {
    /// Appends `chunk`.
    pub(crate) fn push_back(&mut self, chunk: Bytes) {
        match self.front {
            None => self.front = Some(chunk),
            Some(_) => self.rest.push_back(chunk),
        }
    }

    /// The oldest chunk.
    pub(crate) fn front_mut(&mut self) -> Option<&mut Bytes> {
        self.front.as_mut()
    }

    /// Takes the oldest chunk.
    pub(crate) fn pop_front(&mut self) -> Option<Bytes> {
        let front = self.front.take();
        self.front = self.rest.pop_front();
        front
    }

    /// How many chunks are queued.
    pub(crate) fn len(&self) -> usize {
        usize::from(self.front.is_some()) + self.rest.len()
    }

    /// Whether no chunk is queued.
    #[cfg(any(test, feature = "net"))]
    pub(crate) fn is_empty(&self) -> bool {
        self.front.is_none()
    }

    /// Drops every chunk; returns how many bytes they held.
    #[cfg(any(test, feature = "net"))]
    pub(crate) fn clear(&mut self) -> usize {
        let front = self.front.take().map_or(0, |c| c.len());
        front + self.rest.drain(..).map(|c| c.len()).sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_come_out_in_order_and_clear_counts_their_bytes() {
        let mut q = ChunkQueue::default();
        assert!(q.is_empty());
        assert_eq!(q.pop_front(), None);
        for (i, s) in ["a", "bb", "ccc"].into_iter().enumerate() {
            q.push_back(Bytes::from_static(s.as_bytes()));
            assert_eq!(q.len(), i + 1);
        }
        assert_eq!(q.front_mut().map(|c| c.len()), Some(1));
        assert_eq!(q.pop_front().as_deref(), Some(&b"a"[..]));
        // Pushed behind a queue that emptied and refilled: order holds.
        assert_eq!(q.pop_front().as_deref(), Some(&b"bb"[..]));
        q.push_back(Bytes::from_static(b"dddd"));
        assert_eq!(q.len(), 2);
        assert_eq!(q.pop_front().as_deref(), Some(&b"ccc"[..]));
        assert_eq!(q.pop_front().as_deref(), Some(&b"dddd"[..]));
        assert!(q.is_empty());
        assert_eq!(q.len(), 0);
        q.push_back(Bytes::from_static(b"ee"));
        q.push_back(Bytes::from_static(b"fff"));
        assert_eq!(q.clear(), 5);
        assert!(q.is_empty());
        assert_eq!(q.pop_front(), None);
    }

    #[test]
    fn one_chunk_at_a_time_never_allocates_the_deque() {
        let mut q = ChunkQueue::default();
        for _ in 0..100 {
            q.push_back(Bytes::from_static(b"x"));
            assert_eq!(q.pop_front().as_deref(), Some(&b"x"[..]));
        }
        assert_eq!(q.rest.capacity(), 0);
    }
}
