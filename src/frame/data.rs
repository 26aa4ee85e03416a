//! DATA (kind 0x00): body bytes of a stream.

use bytes::{BufMut, Bytes};

use super::{check_flags, encode_stream_header, require_stream};
use super::{DecodeError, EncodeError, FrameHeader, Kind, StreamId, FLAG_END_STREAM};

/// Body bytes of a stream. Flags: END_STREAM (0x01). Counts against both
/// flow-control windows.
#[derive(Clone, PartialEq, Eq)]
pub struct Data {
    stream_id: StreamId,
    payload: Bytes,
    end_stream: bool,
}

impl Data {
    /// A DATA frame. `stream_id` must not be 0.
    pub fn new(stream_id: StreamId, payload: Bytes, end_stream: bool) -> Data {
        Data {
            stream_id,
            payload,
            end_stream,
        }
    }

    pub(crate) fn load(header: FrameHeader, payload: Bytes) -> Result<Data, DecodeError> {
        require_stream(&header)?;
        check_flags(&header, FLAG_END_STREAM)?;
        Ok(Data {
            stream_id: header.stream_id(),
            payload,
            end_stream: header.has_flag(FLAG_END_STREAM),
        })
    }

    /// Writes only the 9-byte header, for vectored writes of the payload.
    pub fn encode_header<B: BufMut>(&self, dst: &mut B) -> Result<(), EncodeError> {
        encode_stream_header(
            dst,
            Kind::DATA,
            self.stream_id,
            self.end_stream,
            self.payload.len(),
        )?;
        Ok(())
    }

    /// Writes header and payload.
    pub fn encode<B: BufMut>(&self, dst: &mut B) -> Result<(), EncodeError> {
        self.encode_header(dst)?;
        dst.put_slice(&self.payload);
        Ok(())
    }

    /// Stream id.
    pub fn stream_id(&self) -> StreamId {
        self.stream_id
    }

    /// Body bytes.
    pub fn payload(&self) -> &Bytes {
        &self.payload
    }

    /// Takes the body bytes.
    pub fn into_payload(self) -> Bytes {
        self.payload
    }

    /// Gives a payload shorter than `below` bytes an allocation of its own
    /// (a copy), so that while it waits to be read it does not keep alive
    /// the whole read buffer it was cut from.
    #[cfg(any(test, feature = "net"))]
    pub(crate) fn detach_small(&mut self, below: usize) {
        if self.payload.len() < below {
            self.payload = Bytes::copy_from_slice(&self.payload);
        }
    }

    /// Whether this frame ends the sender's half of the stream.
    pub fn is_end_stream(&self) -> bool {
        self.end_stream
    }

    /// Sets END_STREAM.
    pub fn set_end_stream(&mut self, end: bool) {
        self.end_stream = end;
    }
}

impl std::fmt::Debug for Data {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Data")
            .field("stream_id", &self.stream_id)
            .field("len", &self.payload.len())
            .field("end_stream", &self.end_stream)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detach_small_copies_only_small_payloads() {
        let buf = Bytes::from(vec![7u8; 64 * 1024]);
        let id = StreamId::new(1);
        let mut small = Data::new(id, buf.slice(100..110), false);
        small.detach_small(4096);
        // Its own allocation: not a view into `buf` any more.
        let inside = |p: &Bytes| buf.as_ptr_range().contains(&p.as_ptr());
        assert!(!inside(small.payload()));
        assert_eq!(&small.payload()[..], &[7u8; 10]);
        let mut large = Data::new(id, buf.slice(..8192), true);
        large.detach_small(4096);
        assert!(inside(large.payload()));
        assert_eq!(large.payload().len(), 8192);
        let mut empty = Data::new(id, buf.slice(0..0), true);
        empty.detach_small(4096);
        assert!(empty.payload().is_empty());
    }
}
