//! Reason codes carried by RESET and GOAWAY.

use std::fmt;

/// A reason code (u32 on the wire). A newtype so unknown codes survive a
/// round trip; receivers treat an unknown code like `INTERNAL_ERROR`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Reason(pub u32);

impl Reason {
    /// Graceful: nothing went wrong (GOAWAY on shutdown).
    pub const NO_ERROR: Reason = Reason(0x0);
    /// The peer broke a protocol rule.
    pub const PROTOCOL_ERROR: Reason = Reason(0x1);
    /// The sender hit an internal fault (handler crash, bug).
    pub const INTERNAL_ERROR: Reason = Reason(0x2);
    /// The peer broke flow control (overran a window, overflowed one).
    pub const FLOW_CONTROL_ERROR: Reason = Reason(0x3);
    /// The peer's SETTINGS did not arrive in time.
    pub const SETTINGS_TIMEOUT: Reason = Reason(0x4);
    /// A frame arrived on a stream that was already closed.
    pub const STREAM_CLOSED: Reason = Reason(0x5);
    /// A frame exceeded a size limit.
    pub const FRAME_SIZE_ERROR: Reason = Reason(0x6);
    /// The stream was refused before any processing; safe to retry.
    pub const REFUSED_STREAM: Reason = Reason(0x7);
    /// The stream is no longer needed (client went away).
    pub const CANCEL: Reason = Reason(0x8);
    /// The peer is generating excessive load.
    pub const ENHANCE_YOUR_CALM: Reason = Reason(0x9);
    /// The peer speaks a protocol version this side does not.
    pub const VERSION_MISMATCH: Reason = Reason(0xA);
    /// A configured limit (head size, header count, body size) was exceeded.
    pub const LIMIT_EXCEEDED: Reason = Reason(0xB);
    /// A deadline expired (request deadline, idle timeout).
    pub const TIMEOUT: Reason = Reason(0xC);

    /// The symbolic name, or `None` for a code uwire/1 does not define.
    pub fn name(self) -> Option<&'static str> {
        Some(match self {
            Reason::NO_ERROR => "NO_ERROR",
            Reason::PROTOCOL_ERROR => "PROTOCOL_ERROR",
            Reason::INTERNAL_ERROR => "INTERNAL_ERROR",
            Reason::FLOW_CONTROL_ERROR => "FLOW_CONTROL_ERROR",
            Reason::SETTINGS_TIMEOUT => "SETTINGS_TIMEOUT",
            Reason::STREAM_CLOSED => "STREAM_CLOSED",
            Reason::FRAME_SIZE_ERROR => "FRAME_SIZE_ERROR",
            Reason::REFUSED_STREAM => "REFUSED_STREAM",
            Reason::CANCEL => "CANCEL",
            Reason::ENHANCE_YOUR_CALM => "ENHANCE_YOUR_CALM",
            Reason::VERSION_MISMATCH => "VERSION_MISMATCH",
            Reason::LIMIT_EXCEEDED => "LIMIT_EXCEEDED",
            Reason::TIMEOUT => "TIMEOUT",
            _ => return None,
        })
    }
}

impl fmt::Debug for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "Reason(0x{:x})", self.0),
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}
