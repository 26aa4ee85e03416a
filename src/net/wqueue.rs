//! The driver's outgoing bytes: encoded frames waiting for the socket.
//!
//! Headers and small frames are encoded into one staging buffer; the
//! payload of a large DATA frame is not copied but queued as its own
//! segment, and the socket gets every segment in one vectored write. A
//! body of 1 MiB crossing a connection is then copied by the kernel only:
//! encoding it into a flat buffer copied every byte once, and growing that
//! buffer while earlier bytes still waited to leave copied them again.

use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::{Buf, Bytes, BytesMut};

use crate::frame::{EncodeError, Frame, HEADER_LEN};

/// DATA payloads of at least this many bytes are queued, not copied. Below
/// it a copy costs less than a segment (a refcount, an iovec entry).
const CHAIN_MIN: usize = 1024;
/// At most this many slices go to one vectored write.
pub(crate) const MAX_SLICES: usize = 64;

/// Bytes waiting to be written, in order: `segs`, then `staging`.
#[derive(Default)]
pub(crate) struct WriteQueue {
    /// Finished segments: staged bytes cut off before a queued payload,
    /// and the queued payloads themselves.
    segs: VecDeque<Bytes>,
    /// Frames encoded since the last queued payload.
    staging: BytesMut,
    /// Bytes in `segs` and `staging`.
    len: usize,
}

impl WriteQueue {
    /// An empty queue; it allocates nothing until a frame comes.
    pub(crate) fn new() -> WriteQueue {
        WriteQueue::default()
    }

    /// Bytes waiting.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing waits.
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends raw bytes (copied).
    pub(crate) fn extend_from_slice(&mut self, bytes: &[u8]) {
        self.staging.extend_from_slice(bytes);
        self.len += bytes.len();
    }

    /// Puts `bytes` ahead of everything waiting.
    pub(crate) fn push_front(&mut self, bytes: Bytes) {
        self.len += bytes.len();
        if !bytes.is_empty() {
            self.segs.push_front(bytes);
        }
    }

    /// Encodes `frame` at the back. A frame that cannot be encoded leaves
    /// the queue as it was.
    pub(crate) fn push_frame(&mut self, frame: &Frame) -> Result<(), EncodeError> {
        match frame {
            Frame::Data(d) if d.payload().len() >= CHAIN_MIN => {
                // The header's checks come before its bytes: an error
                // leaves nothing behind.
                d.encode_header(&mut self.staging)?;
                let staged = self.staging.split().freeze();
                self.segs.push_back(staged);
                self.segs.push_back(d.payload().clone());
                self.len += HEADER_LEN + d.payload().len();
            }
            _ => {
                let before = self.staging.len();
                self.staging.reserve(frame.encoded_len());
                if let Err(e) = frame.encode(&mut self.staging) {
                    self.staging.truncate(before);
                    return Err(e);
                }
                self.len += self.staging.len() - before;
            }
        }
        Ok(())
    }

    /// Fills `dst` with the waiting bytes in order; returns how many
    /// slices it filled.
    pub(crate) fn chunks_vectored<'a>(&'a self, dst: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        for seg in &self.segs {
            if n == dst.len() {
                return n;
            }
            dst[n] = IoSlice::new(seg);
            n += 1;
        }
        if n < dst.len() && !self.staging.is_empty() {
            dst[n] = IoSlice::new(&self.staging);
            n += 1;
        }
        n
    }

    /// The first waiting bytes (all of them when no payload is queued).
    pub(crate) fn chunk(&self) -> &[u8] {
        match self.segs.front() {
            Some(seg) => seg,
            None => &self.staging,
        }
    }

    /// Whether the waiting bytes are in more than one piece.
    pub(crate) fn is_segmented(&self) -> bool {
        !self.segs.is_empty()
    }

    /// Drops the first `n` waiting bytes (written).
    pub(crate) fn advance(&mut self, mut n: usize) {
        assert!(n <= self.len, "advance past the queued bytes");
        self.len -= n;
        while n > 0 {
            match self.segs.front_mut() {
                Some(seg) if seg.len() <= n => {
                    n -= seg.len();
                    self.segs.pop_front();
                }
                Some(seg) => {
                    seg.advance(n);
                    return;
                }
                None => {
                    self.staging.advance(n);
                    return;
                }
            }
        }
    }

    /// Once everything is written: lets go of a staging buffer larger
    /// than `keep` (a burst's), so an idle connection holds little.
    pub(crate) fn shrink_idle(&mut self, keep: usize) {
        if self.len == 0 {
            if self.staging.capacity() > keep {
                self.staging = BytesMut::new();
            }
            if self.segs.capacity() > MAX_SLICES {
                self.segs = VecDeque::new();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{Data, Ping, StreamId};

    fn sid(n: u32) -> StreamId {
        StreamId::new(n)
    }

    /// Everything waiting, flattened through the vectored view.
    fn flat(q: &WriteQueue) -> Vec<u8> {
        let mut slices = [IoSlice::new(&[]); MAX_SLICES];
        let n = q.chunks_vectored(&mut slices);
        slices[..n].iter().flat_map(|s| s.iter().copied()).collect()
    }

    fn encoded(frames: &[Frame]) -> Vec<u8> {
        let mut out = BytesMut::new();
        for f in frames {
            f.encode(&mut out).unwrap();
        }
        out.to_vec()
    }

    fn frames() -> Vec<Frame> {
        vec![
            Frame::Ping(Ping::new(*b"12345678")),
            Frame::Data(Data::new(sid(1), Bytes::from(vec![7u8; 5000]), false)),
            Frame::Data(Data::new(sid(3), Bytes::from_static(b"tiny"), false)),
            Frame::Data(Data::new(sid(1), Bytes::from(vec![9u8; CHAIN_MIN]), true)),
            Frame::Data(Data::new(
                sid(5),
                Bytes::from(vec![1u8; CHAIN_MIN - 1]),
                true,
            )),
            Frame::Ping(Ping::pong(*b"abcdefgh")),
        ]
    }

    #[test]
    fn queued_bytes_are_the_encoded_frames_in_order() {
        let fs = frames();
        let mut q = WriteQueue::new();
        for f in &fs {
            q.push_frame(f).unwrap();
        }
        let want = encoded(&fs);
        assert_eq!(q.len(), want.len());
        assert_eq!(flat(&q), want);
        // Two payloads queued as segments, each after its staged prefix.
        assert!(q.is_segmented());
        assert_eq!(q.segs.len(), 4);
    }

    #[test]
    fn small_frames_stay_in_one_buffer() {
        let mut q = WriteQueue::new();
        let fs = [
            Frame::Data(Data::new(
                sid(1),
                Bytes::from(vec![1u8; CHAIN_MIN - 1]),
                false,
            )),
            Frame::Ping(Ping::new(*b"12345678")),
        ];
        for f in &fs {
            q.push_frame(f).unwrap();
        }
        assert!(!q.is_segmented());
        assert_eq!(q.chunk(), &encoded(&fs)[..]);
    }

    #[test]
    fn advance_at_every_offset_leaves_the_rest() {
        let fs = frames();
        let want = encoded(&fs);
        for step in [1, 7, 9, 1000, 4096, 5009, 70_000] {
            let mut q = WriteQueue::new();
            for f in &fs {
                q.push_frame(f).unwrap();
            }
            let mut at = 0;
            while !q.is_empty() {
                let n = step.min(q.len());
                // The first chunk is a prefix of what waits.
                assert_eq!(q.chunk(), &want[at..at + q.chunk().len()]);
                q.advance(n);
                at += n;
                assert_eq!(q.len(), want.len() - at);
                assert_eq!(flat(&q), &want[at..], "step {step} at {at}");
            }
        }
    }

    #[test]
    fn pushes_after_partial_writes_keep_the_order() {
        let fs = frames();
        let mut q = WriteQueue::new();
        let mut want = Vec::new();
        let mut written = 0;
        for (i, f) in fs.iter().cycle().take(30).enumerate() {
            q.push_frame(f).unwrap();
            want.extend_from_slice(&encoded(std::slice::from_ref(f)));
            let n = (i * 997) % (q.len() + 1);
            q.advance(n);
            written += n;
            assert_eq!(flat(&q), &want[written..]);
        }
    }

    #[test]
    fn push_front_goes_first() {
        let mut q = WriteQueue::new();
        let fs = frames();
        for f in &fs {
            q.push_frame(f).unwrap();
        }
        q.push_front(Bytes::from_static(b"PREFACE"));
        let mut want = b"PREFACE".to_vec();
        want.extend_from_slice(&encoded(&fs));
        assert_eq!(q.len(), want.len());
        assert_eq!(flat(&q), want);
        q.extend_from_slice(b"tail");
        want.extend_from_slice(b"tail");
        assert_eq!(flat(&q), want);
    }

    #[test]
    fn vectored_view_is_capped_and_resumes() {
        let mut q = WriteQueue::new();
        let payload = Bytes::from(vec![3u8; CHAIN_MIN]);
        let fs: Vec<Frame> = (0..100)
            .map(|_| Frame::Data(Data::new(sid(1), payload.clone(), false)))
            .collect();
        for f in &fs {
            q.push_frame(f).unwrap();
        }
        let want = encoded(&fs);
        let mut got = Vec::new();
        while !q.is_empty() {
            let mut slices = [IoSlice::new(&[]); MAX_SLICES];
            let n = q.chunks_vectored(&mut slices);
            assert!(n > 0 && n <= MAX_SLICES);
            let bytes: Vec<u8> = slices[..n].iter().flat_map(|s| s.iter().copied()).collect();
            got.extend_from_slice(&bytes);
            q.advance(bytes.len());
        }
        assert_eq!(got, want);
    }

    #[test]
    fn an_unencodable_frame_leaves_the_queue_as_it_was() {
        let mut q = WriteQueue::new();
        q.push_frame(&Frame::Ping(Ping::new(*b"12345678"))).unwrap();
        let before = flat(&q);
        // Larger than any frame length can say.
        let huge = Bytes::from(vec![0u8; (1 << 24) + 1]);
        assert!(q
            .push_frame(&Frame::Data(Data::new(sid(1), huge, false)))
            .is_err());
        assert_eq!(flat(&q), before);
        assert_eq!(q.len(), before.len());
    }

    #[test]
    fn an_idle_queue_lets_a_burst_buffer_go() {
        let mut q = WriteQueue::new();
        q.extend_from_slice(&vec![0u8; 100_000]);
        q.shrink_idle(4096);
        assert!(q.staging.capacity() >= 100_000, "not idle yet");
        q.advance(100_000);
        q.shrink_idle(4096);
        assert_eq!(q.staging.capacity(), 0);
    }
}
