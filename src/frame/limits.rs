//! Decode limits: what a receiver accepts. Every field has a documented
//! default and valid range, and every declared length is compared with them
//! before any memory is reserved.

/// Largest payload the 24-bit length field can express.
pub const MAX_PAYLOAD_LEN: u32 = 0x00FF_FFFF;

/// Default largest DATA payload accepted: 64 KiB.
pub const DEFAULT_MAX_FRAME_SIZE: u32 = 64 * 1024;
/// Default largest head (REQUEST/RESPONSE/TRAILERS payload) accepted: 1 MiB.
/// Classic uwsgi caps the whole vars block at 64 KiB; uwire does not.
pub const DEFAULT_MAX_HEAD_SIZE: u32 = 1024 * 1024;
/// Default most entries in one header block: 256.
pub const DEFAULT_MAX_HEADER_COUNT: u32 = 256;
/// Default largest SETTINGS or GOAWAY payload accepted: 16 KiB.
pub const DEFAULT_MAX_CONTROL_SIZE: u32 = 16 * 1024;
/// Smallest allowed size limit (frame, head, control): 1 KiB.
pub const MIN_SIZE_LIMIT: u32 = 1024;

/// Limits a decoder enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest DATA (and extension) payload. Default
    /// [`DEFAULT_MAX_FRAME_SIZE`]; range 1024..=16777215.
    pub max_frame_size: u32,
    /// Largest REQUEST/RESPONSE/TRAILERS payload. Default
    /// [`DEFAULT_MAX_HEAD_SIZE`]; range 1024..=16777215.
    pub max_head_size: u32,
    /// Most entries in one header block (headers, params and trailers are
    /// counted separately). Default [`DEFAULT_MAX_HEADER_COUNT`]; range 1..=u32::MAX.
    pub max_header_count: u32,
    /// Largest SETTINGS or GOAWAY payload. Default
    /// [`DEFAULT_MAX_CONTROL_SIZE`]; range 1024..=16777215.
    pub max_control_size: u32,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_frame_size: DEFAULT_MAX_FRAME_SIZE,
            max_head_size: DEFAULT_MAX_HEAD_SIZE,
            max_header_count: DEFAULT_MAX_HEADER_COUNT,
            max_control_size: DEFAULT_MAX_CONTROL_SIZE,
        }
    }
}

impl Limits {
    /// Sets `max_frame_size`.
    pub fn max_frame_size(&mut self, v: u32) -> &mut Self {
        self.max_frame_size = v;
        self
    }

    /// Sets `max_head_size`.
    pub fn max_head_size(&mut self, v: u32) -> &mut Self {
        self.max_head_size = v;
        self
    }

    /// Sets `max_header_count`.
    pub fn max_header_count(&mut self, v: u32) -> &mut Self {
        self.max_header_count = v;
        self
    }

    /// Sets `max_control_size`.
    pub fn max_control_size(&mut self, v: u32) -> &mut Self {
        self.max_control_size = v;
        self
    }

    /// Checks every field against its range.
    pub fn validate(&self) -> Result<(), &'static str> {
        for v in [
            self.max_frame_size,
            self.max_head_size,
            self.max_control_size,
        ] {
            if !(MIN_SIZE_LIMIT..=MAX_PAYLOAD_LEN).contains(&v) {
                return Err("size limit outside 1024..=16777215");
            }
        }
        if self.max_header_count == 0 {
            return Err("max_header_count must be at least 1");
        }
        Ok(())
    }
}
