//! A stream's received body bytes that its reader has not taken yet.
//!
//! A DATA payload arrives as a slice of the read buffer it came in, and as
//! long as it waits it keeps that whole buffer alive. A reader that keeps
//! up takes each payload before the next arrives, so nothing waits long.
//! A reader that falls behind (or a peer that sends many tiny frames while
//! the app is busy) is another matter: each tiny payload, queued on its
//! own, would keep its own read buffer alive, up to 8 KiB for one byte of
//! window, plus a queue entry. So a small payload that arrives behind
//! unread bytes is copied into a shared buffer instead
//! ([`RecvQueue::push`]): what waits then costs about what the window
//! allows, whatever the frame sizes. The first payload of a backlog is
//! queued as it is (the common case: one small body, read soon, no copy).
//! Larger payloads cut from the driver's large read buffers are the
//! driver's business: it copies those that nobody waits for out of a
//! buffer more than 8 times their size (`driver::State::decode`), so
//! none reaches this queue holding a buffer many times its size.

use bytes::{Bytes, BytesMut};

use crate::conn::ChunkQueue;

/// Payloads shorter than this that arrive behind unread bytes are copied
/// into the gathering buffer.
const GATHER_BELOW: usize = 4 * 1024;
/// Size of the gathering buffer's allocation.
const GATHER_BUFFER: usize = 8 * 1024;

/// See the module docs.
#[derive(Debug, Default)]
pub(crate) struct RecvQueue {
    /// Payloads, oldest first.
    chunks: ChunkQueue,
    /// Small payloads gathered after `chunks` (copies), in arrival order.
    /// Boxed: most streams never gather, and every stream's slot holds
    /// one of these.
    gathered: Option<Box<BytesMut>>,
}

impl RecvQueue {
    /// Queues a payload (empty ones are ignored).
    pub(crate) fn push(&mut self, data: Bytes) {
        if data.is_empty() {
            return;
        }
        let behind =
            !self.chunks.is_empty() || self.gathered.as_ref().is_some_and(|g| !g.is_empty());
        if behind && data.len() < GATHER_BELOW {
            let room = self.gathered.as_ref().map_or(0, |g| g.capacity() - g.len());
            if room < data.len() {
                // Full (or none yet): what it holds joins the queue, and a
                // fresh allocation gathers on (the sealed part keeps the
                // old one alive until it is read).
                self.seal();
                let fresh = BytesMut::with_capacity(GATHER_BUFFER);
                match &mut self.gathered {
                    Some(g) => **g = fresh,
                    None => self.gathered = Some(Box::new(fresh)),
                }
            }
            self.gathered
                .as_mut()
                .expect("made above")
                .extend_from_slice(&data);
            return;
        }
        self.seal();
        self.chunks.push_back(data);
    }

    /// Takes the oldest unread bytes.
    pub(crate) fn pop(&mut self) -> Option<Bytes> {
        match self.chunks.pop_front() {
            Some(c) => Some(c),
            None => self
                .gathered
                .as_mut()
                .filter(|g| !g.is_empty())
                .map(|g| g.split().freeze()),
        }
    }

    /// Whether no bytes wait.
    pub(crate) fn is_empty(&self) -> bool {
        self.chunks.is_empty() && self.gathered.as_ref().is_none_or(|g| g.is_empty())
    }

    /// Drops everything unread; returns how many bytes that was.
    pub(crate) fn clear(&mut self) -> usize {
        let gathered = self.gathered.take().map_or(0, |g| g.len());
        self.chunks.clear() + gathered
    }

    /// Moves the gathered bytes into the queue of chunks, so that what
    /// comes next is queued after them.
    fn seal(&mut self) {
        if let Some(g) = self.gathered.as_mut().filter(|g| !g.is_empty()) {
            self.chunks.push_back(g.split().freeze());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(q: &mut RecvQueue) -> Vec<u8> {
        let mut all = Vec::new();
        while let Some(c) = q.pop() {
            assert!(!c.is_empty());
            all.extend_from_slice(&c);
        }
        all
    }

    /// Any mix of sizes comes out in order, byte for byte, and the count
    /// of bytes dropped unread is exact.
    #[test]
    fn order_and_counts() {
        let sizes = [1usize, 5000, 3, 3, 4095, 4096, 2, 9000, 1, 1, 1, 8191, 7];
        let mut q = RecvQueue::default();
        let mut want = Vec::new();
        let mut popped = Vec::new();
        for (i, &n) in sizes.iter().enumerate() {
            let chunk: Vec<u8> = (0..n).map(|j| (i * 31 + j) as u8).collect();
            want.extend_from_slice(&chunk);
            q.push(Bytes::from(chunk));
            q.push(Bytes::new());
            if i % 4 == 3 {
                // The reader takes one chunk now and then.
                popped.extend_from_slice(&q.pop().unwrap());
            }
        }
        popped.extend_from_slice(&drain(&mut q));
        assert_eq!(popped, want);

        let mut q = RecvQueue::default();
        for &n in &sizes {
            q.push(Bytes::from(vec![0u8; n]));
        }
        assert_eq!(q.clear(), sizes.iter().sum::<usize>());
        assert!(q.pop().is_none());
    }

    /// The first payload of a backlog is queued as it came (no copy); tiny
    /// payloads behind it are copied out of their read buffers, so they
    /// keep none of them alive.
    #[test]
    fn small_payloads_behind_unread_ones_leave_their_buffers() {
        let mut q = RecvQueue::default();
        let first = Bytes::from(vec![1u8; 10]);
        let first_at = first.as_ptr();
        q.push(first);
        let mut bufs = Vec::new();
        for i in 0..1000u32 {
            // Each tiny payload cut from its own 8 KiB read buffer.
            let buf = Bytes::from(vec![i as u8; 8192]);
            q.push(buf.slice(100..101));
            bufs.push(buf);
        }
        // Only our handles are left on the read buffers: nothing queued
        // points into them.
        for b in bufs {
            assert!(
                b.try_into_mut().is_ok(),
                "a queued payload kept a read buffer"
            );
        }
        assert_eq!(q.pop().unwrap().as_ptr(), first_at);
        let rest = drain(&mut q);
        assert_eq!(rest.len(), 1000);
        assert!(rest.iter().enumerate().all(|(i, &b)| b == i as u8));
    }

    /// A large payload behind unread bytes is queued as it is.
    #[test]
    fn large_payloads_are_not_copied() {
        let mut q = RecvQueue::default();
        q.push(Bytes::from_static(b"x"));
        let big = Bytes::from(vec![2u8; GATHER_BELOW]);
        let at = big.as_ptr();
        q.push(big);
        assert_eq!(q.pop().unwrap(), "x");
        assert_eq!(q.pop().unwrap().as_ptr(), at);
    }
}
