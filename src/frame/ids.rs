//! Wire identifiers as newtypes: frame kinds and stream ids.

use std::fmt;

/// A frame kind (the header's fourth byte). A newtype so unknown kinds
/// survive a round trip.
///
/// Kinds 0x00..=0x7F are *critical*: a receiver that does not know one must
/// fail the connection (`unknown_kind`). Kinds 0x80..=0xFF are *extension*
/// kinds: a receiver that does not know one ignores the frame.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Kind(pub u8);

impl Kind {
    /// Body bytes.
    pub const DATA: Kind = Kind(0x00);
    /// Request head; opens a stream.
    pub const REQUEST: Kind = Kind(0x01);
    /// Response head.
    pub const RESPONSE: Kind = Kind(0x02);
    /// Trailer fields.
    pub const TRAILERS: Kind = Kind(0x03);
    /// Stream reset.
    pub const RESET: Kind = Kind(0x04);
    /// Connection settings.
    pub const SETTINGS: Kind = Kind(0x05);
    /// Liveness probe.
    pub const PING: Kind = Kind(0x06);
    /// Connection shutdown.
    pub const GOAWAY: Kind = Kind(0x07);
    /// Flow-control credit.
    pub const WINDOW_UPDATE: Kind = Kind(0x08);

    /// Whether the kind is in the extension range (0x80..=0xFF) that
    /// receivers ignore when unknown.
    pub fn is_extension(self) -> bool {
        self.0 >= 0x80
    }

    /// Whether the kind is one uwire/1 defines.
    pub fn is_known(self) -> bool {
        self.0 <= Kind::WINDOW_UPDATE.0
    }

    /// Name used in errors and logs.
    pub fn name(self) -> &'static str {
        match self {
            Kind::DATA => "DATA",
            Kind::REQUEST => "REQUEST",
            Kind::RESPONSE => "RESPONSE",
            Kind::TRAILERS => "TRAILERS",
            Kind::RESET => "RESET",
            Kind::SETTINGS => "SETTINGS",
            Kind::PING => "PING",
            Kind::GOAWAY => "GOAWAY",
            Kind::WINDOW_UPDATE => "WINDOW_UPDATE",
            k if k.is_extension() => "EXTENSION",
            _ => "UNKNOWN",
        }
    }
}

impl fmt::Debug for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}(0x{:02x})", self.name(), self.0)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_known() {
            f.write_str(self.name())
        } else {
            write!(f, "kind 0x{:02x}", self.0)
        }
    }
}

/// A 31-bit stream identifier. 0 names the connection itself.
/// Client-opened streams use odd ids, strictly increasing.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct StreamId(u32);

impl StreamId {
    /// The connection (stream 0).
    pub const ZERO: StreamId = StreamId(0);
    /// Largest valid stream id (2^31 - 1).
    pub const MAX: StreamId = StreamId(0x7FFF_FFFF);

    /// Creates a stream id. Panics if `id` has the reserved high bit set;
    /// use [`StreamId::try_new`] for untrusted values.
    pub const fn new(id: u32) -> StreamId {
        assert!(id <= 0x7FFF_FFFF, "stream id exceeds 31 bits");
        StreamId(id)
    }

    /// Creates a stream id, `None` if `id` does not fit 31 bits.
    pub const fn try_new(id: u32) -> Option<StreamId> {
        if id <= 0x7FFF_FFFF {
            Some(StreamId(id))
        } else {
            None
        }
    }

    /// The numeric value.
    pub const fn get(self) -> u32 {
        self.0
    }

    /// Whether this is stream 0 (the connection).
    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }

    /// Whether a client opened this stream (odd id).
    pub const fn is_client_initiated(self) -> bool {
        self.0 & 1 == 1
    }
}

impl fmt::Debug for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StreamId({})", self.0)
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl From<StreamId> for u32 {
    fn from(id: StreamId) -> u32 {
        id.0
    }
}
