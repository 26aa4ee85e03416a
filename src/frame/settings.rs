//! SETTINGS (kind 0x05): the limits the sender enforces on what it receives.

use bytes::{BufMut, Bytes};
use prost::Message;

use super::{check_flags, check_payload_len, require_connection};
use super::{
    DecodeError, EncodeError, ErrorClass, FrameHeader, Kind, Limits, StreamId, MAX_PAYLOAD_LEN,
};
use crate::pb;

/// Largest flow-control window (2^31 - 1).
pub const MAX_WINDOW: u32 = 0x7FFF_FFFF;
/// Smallest allowed `max_frame_size` and `max_head_size`.
pub const MIN_FRAME_SIZE: u32 = 1024;

/// The sender's settings. Each side sends exactly one SETTINGS frame, as the
/// first frame after its preface. An absent value means the documented
/// default. Values describe what the *sender* accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Settings {
    /// Streams the sender lets the peer have open at once.
    pub max_concurrent_streams: Option<u32>,
    /// Initial per-stream receive window of the sender.
    pub initial_stream_window: Option<u32>,
    /// Initial connection receive window of the sender.
    pub initial_connection_window: Option<u32>,
    /// Largest DATA payload the sender accepts.
    pub max_frame_size: Option<u32>,
    /// Largest REQUEST/RESPONSE/TRAILERS payload the sender accepts.
    pub max_head_size: Option<u32>,
    /// Most entries the sender accepts in one header block.
    pub max_header_count: Option<u32>,
}

impl Settings {
    fn to_pb(self) -> pb::Settings {
        pb::Settings {
            max_concurrent_streams: self.max_concurrent_streams,
            initial_stream_window: self.initial_stream_window,
            initial_connection_window: self.initial_connection_window,
            max_frame_size: self.max_frame_size,
            max_head_size: self.max_head_size,
            max_header_count: self.max_header_count,
        }
    }

    /// Checks every present value against its valid range.
    pub fn validate(&self) -> Result<(), &'static str> {
        for w in [self.initial_stream_window, self.initial_connection_window]
            .into_iter()
            .flatten()
        {
            if w > MAX_WINDOW {
                return Err("window setting exceeds 2^31-1");
            }
        }
        for s in [self.max_frame_size, self.max_head_size]
            .into_iter()
            .flatten()
        {
            if !(MIN_FRAME_SIZE..=MAX_PAYLOAD_LEN).contains(&s) {
                return Err("frame or head size setting outside 1024..=16777215");
            }
        }
        if self.max_header_count == Some(0) {
            return Err("max_header_count of 0");
        }
        Ok(())
    }

    pub(crate) fn load(header: FrameHeader, payload: Bytes) -> Result<Settings, DecodeError> {
        require_connection(&header)?;
        check_flags(&header, 0)?;
        let m = pb::Settings::decode(payload).map_err(|_| {
            header.error(
                ErrorClass::InvalidProtobuf,
                "SETTINGS payload is not a valid Settings message",
            )
        })?;
        let s = Settings {
            max_concurrent_streams: m.max_concurrent_streams,
            initial_stream_window: m.initial_stream_window,
            initial_connection_window: m.initial_connection_window,
            max_frame_size: m.max_frame_size,
            max_head_size: m.max_head_size,
            max_header_count: m.max_header_count,
        };
        s.validate()
            .map_err(|d| header.error(ErrorClass::InvalidSettings, d))?;
        Ok(s)
    }

    /// Encoded payload length.
    pub fn encoded_len(&self) -> usize {
        self.to_pb().encoded_len()
    }

    /// Writes header and payload.
    pub fn encode<B: BufMut>(&self, dst: &mut B) -> Result<(), EncodeError> {
        let m = self.to_pb();
        let len = check_payload_len(Kind::SETTINGS, m.encoded_len())?;
        FrameHeader::new(len, Kind::SETTINGS, 0, StreamId::ZERO).encode(dst);
        m.encode_raw(dst);
        Ok(())
    }
}

impl Limits {
    /// The limits a peer announced in its SETTINGS (what it accepts from
    /// us), with defaults for absent values.
    pub fn from_settings(s: &Settings) -> Limits {
        let d = Limits::default();
        Limits {
            max_frame_size: s.max_frame_size.unwrap_or(d.max_frame_size),
            max_head_size: s.max_head_size.unwrap_or(d.max_head_size),
            max_header_count: s.max_header_count.unwrap_or(d.max_header_count),
            max_control_size: d.max_control_size,
        }
    }
}
