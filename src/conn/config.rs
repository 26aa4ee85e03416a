//! Connection configuration: what we announce in SETTINGS and the local
//! timers.

use std::time::Duration;

use crate::codec::Limits;
use crate::frame::Settings;

use super::flow::MAX_WINDOW;

/// Default number of streams we let the peer have open at once: 128.
pub const DEFAULT_MAX_CONCURRENT_STREAMS: u32 = 128;
/// Default per-stream receive window: 256 KiB.
pub const DEFAULT_INITIAL_STREAM_WINDOW: u32 = 256 * 1024;
/// Default connection receive window: 1 MiB.
pub const DEFAULT_INITIAL_CONNECTION_WINDOW: u32 = 1024 * 1024;
/// Default time the peer has to send its SETTINGS: 10 s.
pub const DEFAULT_SETTINGS_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time a PING may stay unanswered: 20 s.
pub const DEFAULT_PING_TIMEOUT: Duration = Duration::from_secs(20);
/// Default number of recently closed or reset stream ids remembered: 1024.
pub const DEFAULT_MAX_RESET_STREAMS: usize = 1024;

/// Configuration of one [`Connection`](super::Connection).
///
/// The window and stream values are what *we* accept and are announced to
/// the peer in our SETTINGS ([`Config::settings`]). Check a hand-built
/// configuration with [`Config::validate`]; [`Connection::new`]
/// (super::Connection::new) clamps out-of-range values instead of failing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Decode limits we announce (`max_frame_size`, `max_head_size`,
    /// `max_header_count`). The I/O glue must decode with the same limits.
    pub limits: Limits,
    /// Streams we allow the peer to have open at once. Default
    /// [`DEFAULT_MAX_CONCURRENT_STREAMS`]. A REQUEST beyond it is refused
    /// with RESET(REFUSED_STREAM).
    pub max_concurrent_streams: u32,
    /// Our per-stream receive window. Default
    /// [`DEFAULT_INITIAL_STREAM_WINDOW`]; range 1..=2^31-1.
    pub initial_stream_window: u32,
    /// Our connection receive window. Default
    /// [`DEFAULT_INITIAL_CONNECTION_WINDOW`]; range 1..=2^31-1.
    pub initial_connection_window: u32,
    /// How long the peer has to send its SETTINGS. Default
    /// [`DEFAULT_SETTINGS_TIMEOUT`]; must be non-zero.
    pub settings_timeout: Duration,
    /// When `Some`, send a PING after this much inbound silence. Default
    /// `None`; must be non-zero when set.
    pub keepalive_interval: Option<Duration>,
    /// How long any PING we sent (keepalive or [`send_ping`]
    /// (super::Connection::send_ping)) may stay unanswered before the
    /// connection fails with `ping_timeout`. Default
    /// [`DEFAULT_PING_TIMEOUT`]; must be non-zero.
    pub ping_timeout: Duration,
    /// How many recently closed or reset stream ids we remember, so late
    /// frames for them are told apart from protocol errors. Default
    /// [`DEFAULT_MAX_RESET_STREAMS`]. Older ids are forgotten; frames for
    /// forgotten streams are ignored.
    pub max_reset_streams: usize,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            limits: Limits::default(),
            max_concurrent_streams: DEFAULT_MAX_CONCURRENT_STREAMS,
            initial_stream_window: DEFAULT_INITIAL_STREAM_WINDOW,
            initial_connection_window: DEFAULT_INITIAL_CONNECTION_WINDOW,
            settings_timeout: DEFAULT_SETTINGS_TIMEOUT,
            keepalive_interval: None,
            ping_timeout: DEFAULT_PING_TIMEOUT,
            max_reset_streams: DEFAULT_MAX_RESET_STREAMS,
        }
    }
}

impl Config {
    /// The SETTINGS we announce. Every value is sent explicitly.
    pub fn settings(&self) -> Settings {
        Settings {
            max_concurrent_streams: Some(self.max_concurrent_streams),
            initial_stream_window: Some(self.initial_stream_window),
            initial_connection_window: Some(self.initial_connection_window),
            max_frame_size: Some(self.limits.max_frame_size),
            max_head_size: Some(self.limits.max_head_size),
            max_header_count: Some(self.limits.max_header_count),
        }
    }

    /// Checks every field against its range.
    pub fn validate(&self) -> Result<(), &'static str> {
        self.limits.validate()?;
        for w in [self.initial_stream_window, self.initial_connection_window] {
            if !(1..=MAX_WINDOW).contains(&w) {
                return Err("initial window outside 1..=2^31-1");
            }
        }
        if self.settings_timeout.is_zero() {
            return Err("settings_timeout must be non-zero");
        }
        if self.ping_timeout.is_zero() {
            return Err("ping_timeout must be non-zero");
        }
        if self.keepalive_interval.is_some_and(|d| d.is_zero()) {
            return Err("keepalive_interval must be non-zero when set");
        }
        Ok(())
    }

    /// A copy with every out-of-range value clamped into its range.
    pub(crate) fn sanitized(&self) -> Config {
        let mut c = self.clone();
        let clamp_size =
            |v: u32| v.clamp(crate::codec::MIN_SIZE_LIMIT, crate::frame::MAX_PAYLOAD_LEN);
        c.limits.max_frame_size = clamp_size(c.limits.max_frame_size);
        c.limits.max_head_size = clamp_size(c.limits.max_head_size);
        c.limits.max_control_size = clamp_size(c.limits.max_control_size);
        c.limits.max_header_count = c.limits.max_header_count.max(1);
        c.initial_stream_window = c.initial_stream_window.clamp(1, MAX_WINDOW);
        c.initial_connection_window = c.initial_connection_window.clamp(1, MAX_WINDOW);
        let tick = Duration::from_millis(1);
        c.settings_timeout = c.settings_timeout.max(tick);
        c.ping_timeout = c.ping_timeout.max(tick);
        c.keepalive_interval = c.keepalive_interval.map(|d| d.max(tick));
        c
    }

    /// Sets [`Config::limits`].
    pub fn limits(&mut self, v: Limits) -> &mut Self {
        self.limits = v;
        self
    }

    /// Sets [`Config::max_concurrent_streams`].
    pub fn max_concurrent_streams(&mut self, v: u32) -> &mut Self {
        self.max_concurrent_streams = v;
        self
    }

    /// Sets [`Config::initial_stream_window`].
    pub fn initial_stream_window(&mut self, v: u32) -> &mut Self {
        self.initial_stream_window = v;
        self
    }

    /// Sets [`Config::initial_connection_window`].
    pub fn initial_connection_window(&mut self, v: u32) -> &mut Self {
        self.initial_connection_window = v;
        self
    }

    /// Sets [`Config::settings_timeout`].
    pub fn settings_timeout(&mut self, v: Duration) -> &mut Self {
        self.settings_timeout = v;
        self
    }

    /// Sets [`Config::keepalive_interval`].
    pub fn keepalive_interval(&mut self, v: Option<Duration>) -> &mut Self {
        self.keepalive_interval = v;
        self
    }

    /// Sets [`Config::ping_timeout`].
    pub fn ping_timeout(&mut self, v: Duration) -> &mut Self {
        self.ping_timeout = v;
        self
    }

    /// Sets [`Config::max_reset_streams`].
    pub fn max_reset_streams(&mut self, v: usize) -> &mut Self {
        self.max_reset_streams = v;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_are_announced() {
        let c = Config::default();
        assert_eq!(c.validate(), Ok(()));
        let s = c.settings();
        assert_eq!(s.validate(), Ok(()));
        assert_eq!(s.max_concurrent_streams, Some(128));
        assert_eq!(s.initial_stream_window, Some(256 * 1024));
        assert_eq!(s.initial_connection_window, Some(1024 * 1024));
        assert_eq!(s.max_frame_size, Some(64 * 1024));
    }

    #[test]
    fn validate_rejects_out_of_range() {
        let mut c = Config::default();
        c.initial_stream_window(0);
        assert!(c.validate().is_err());
        assert_eq!(c.sanitized().initial_stream_window, 1);
        let mut c = Config::default();
        c.initial_connection_window(MAX_WINDOW + 1);
        assert!(c.validate().is_err());
        assert_eq!(c.sanitized().initial_connection_window, MAX_WINDOW);
        let mut c = Config::default();
        c.keepalive_interval(Some(Duration::ZERO));
        assert!(c.validate().is_err());
        let mut c = Config::default();
        c.ping_timeout(Duration::ZERO);
        assert!(c.validate().is_err());
        assert!(c.sanitized().validate().is_ok());
    }
}
