//! Connection configuration: what we announce in SETTINGS and the local
//! timers.

use std::time::Duration;

use crate::frame::Limits;
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
/// Default length of the window the abuse budgets below are counted in:
/// 10 s.
pub const DEFAULT_ABUSE_WINDOW: Duration = Duration::from_secs(10);
/// Default rapid-reset budget per [`DEFAULT_ABUSE_WINDOW`]: 1000 (an
/// average of 100 per second). Attacks of the CVE-2023-44487 class run at
/// tens of thousands of resets per second; a proxy cancelling requests only
/// counts when it cancels before the response head was sent.
pub const DEFAULT_MAX_PEER_RESETS: u32 = 1000;
/// Default PING budget per [`DEFAULT_ABUSE_WINDOW`]: 100 PINGs without ACK
/// (keepalive and RTT probes need a handful).
pub const DEFAULT_MAX_PEER_PINGS: u32 = 100;
/// Default budget of frames that do no useful work per
/// [`DEFAULT_ABUSE_WINDOW`]: 1000.
pub const DEFAULT_MAX_USELESS_FRAMES: u32 = 1000;
/// Default bound on PING ACKs queued and not yet transmitted: 16.
pub const DEFAULT_MAX_PENDING_PONGS: usize = 16;
/// Default bound on reply RESETs (refusals, stream errors) queued and not
/// yet transmitted: 256.
pub const DEFAULT_MAX_PENDING_RESETS: usize = 256;
/// Default [`Config::drain_notice_timeout`] (Go's net/http2 uses the same
/// second for the same step).
pub const DEFAULT_DRAIN_NOTICE_TIMEOUT: Duration = Duration::from_secs(1);
/// Default time the transport may refuse every byte we have to write before
/// the connection is closed: 60 s (nginx's `send_timeout`).
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(60);

/// Default [`Config::write_batch`]: 8. Measured with `uwire bench`
/// (64 tiny requests in flight on one connection): 8 and 16 did best,
/// about 1.7x the requests per second of 1 (one write per request); 4 and
/// 64 did less well, and no limit (the whole turn) less still.
pub const DEFAULT_WRITE_BATCH: usize = 8;

/// Configuration of one [`Connection`](super::Connection).
///
/// The window and stream values are what *we* accept and are announced to
/// the peer in our SETTINGS ([`Config::settings`]). Check a hand-built
/// configuration with [`Config::validate`];
/// [`Connection::new`](super::Connection::new) clamps out-of-range values
/// instead of failing.
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
    /// How long any PING we sent (keepalive or
    /// [`send_ping`](super::Connection::send_ping)) may stay unanswered before the
    /// connection fails with `ping_timeout`. Default
    /// [`DEFAULT_PING_TIMEOUT`]; must be non-zero.
    pub ping_timeout: Duration,
    /// How many recently closed or reset stream ids we remember, so late
    /// frames for them are told apart from protocol errors. Default
    /// [`DEFAULT_MAX_RESET_STREAMS`]. Older ids are forgotten; frames for
    /// forgotten streams are ignored.
    pub max_reset_streams: usize,
    /// The window the abuse budgets (`max_peer_resets`, `max_peer_pings`,
    /// `max_useless_frames`) are counted in. Default
    /// [`DEFAULT_ABUSE_WINDOW`]; must be non-zero. A window opens at the
    /// first event counted and lasts this long (fixed windows, on the
    /// clock passed to [`handle_frame`](super::Connection::handle_frame)).
    pub abuse_window: Duration,
    /// Rapid-reset budget: resets per `abuse_window` before the connection
    /// fails with `rapid_reset`, GOAWAY(ENHANCE_YOUR_CALM). Counted: on a
    /// server, a peer RESET of an open stream whose final response head we
    /// have not sent; on both sides, every RESET we send in reply to a peer
    /// frame (REFUSED_STREAM refusals, STREAM_CLOSED and
    /// FLOW_CONTROL_ERROR stream errors). Default
    /// [`DEFAULT_MAX_PEER_RESETS`]; range 0..=2^32-1 (`u32::MAX` never
    /// trips).
    pub max_peer_resets: u32,
    /// PINGs without ACK per `abuse_window` before the connection fails
    /// with `ping_flood`, GOAWAY(ENHANCE_YOUR_CALM). Default
    /// [`DEFAULT_MAX_PEER_PINGS`]; range 0..=2^32-1.
    pub max_peer_pings: u32,
    /// Frames that do no useful work, per `abuse_window`, before the
    /// connection fails with `frame_flood`, GOAWAY(ENHANCE_YOUR_CALM):
    /// empty DATA without END_STREAM, extension (unknown) frames, and
    /// connection WINDOW_UPDATEs with an increment below
    /// min(1024, half the peer's announced `initial_connection_window`).
    /// Default [`DEFAULT_MAX_USELESS_FRAMES`]; range 0..=2^32-1.
    pub max_useless_frames: u32,
    /// PING ACKs queued for transmit and not yet taken by
    /// [`poll_transmit`](super::Connection::poll_transmit); one more fails
    /// the connection with `ping_flood`. Default
    /// [`DEFAULT_MAX_PENDING_PONGS`]; range 1..=usize::MAX.
    pub max_pending_pongs: usize,
    /// RESETs queued in reply to peer frames and not yet taken by
    /// [`poll_transmit`](super::Connection::poll_transmit); one more fails
    /// the connection with `transmit_backlog`. Default
    /// [`DEFAULT_MAX_PENDING_RESETS`]; range 1..=usize::MAX.
    pub max_pending_resets: usize,
    /// How long the transport may accept none of the bytes waiting to be
    /// written (a peer that stopped reading) before the connection is
    /// closed and everything it held is freed. Enforced by the I/O glue,
    /// which sees the writes; the engine never reads it. Default
    /// [`DEFAULT_WRITE_TIMEOUT`]; `None` waits forever; must be non-zero
    /// when set.
    pub write_timeout: Option<Duration>,
    /// A graceful drain's first step (GOAWAY with the highest id, then a
    /// PING, PROTOCOL.md 11.2) waits at most this long for the PING's
    /// answer before the final GOAWAY goes out. Zero drains in one step
    /// (the final GOAWAY at once: a REQUEST already on its way is then
    /// refused, and retried by the client only if it was retry-safe).
    /// Default [`DEFAULT_DRAIN_NOTICE_TIMEOUT`].
    pub drain_notice_timeout: Duration,
    /// How many wake-ups from the connection's handles (a new request, a
    /// response, data, a reset) the I/O glue lets gather before it writes.
    /// Fewer than that are written once every task the runtime has ready
    /// has run (tokio's `yield_now`), so frames that several tasks queue in
    /// one scheduler turn leave in one write instead of one each. 0 or 1
    /// writes at once. The delay is bounded by the scheduler's turn, never
    /// by a timer; and the glue does not wait at all when every open
    /// stream has already woken it (on a server nothing else can come this
    /// turn; on a client the connection was idle, so a lone request is not
    /// held back). Enforced by the I/O glue; the engine never reads it.
    /// Default [`DEFAULT_WRITE_BATCH`].
    pub write_batch: usize,
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
            abuse_window: DEFAULT_ABUSE_WINDOW,
            max_peer_resets: DEFAULT_MAX_PEER_RESETS,
            max_peer_pings: DEFAULT_MAX_PEER_PINGS,
            max_useless_frames: DEFAULT_MAX_USELESS_FRAMES,
            max_pending_pongs: DEFAULT_MAX_PENDING_PONGS,
            max_pending_resets: DEFAULT_MAX_PENDING_RESETS,
            write_timeout: Some(DEFAULT_WRITE_TIMEOUT),
            drain_notice_timeout: DEFAULT_DRAIN_NOTICE_TIMEOUT,
            write_batch: DEFAULT_WRITE_BATCH,
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
        if self.write_timeout.is_some_and(|d| d.is_zero()) {
            return Err("write_timeout must be non-zero when set");
        }
        if self.keepalive_interval.is_some_and(|d| d.is_zero()) {
            return Err("keepalive_interval must be non-zero when set");
        }
        if self.abuse_window.is_zero() {
            return Err("abuse_window must be non-zero");
        }
        if self.max_pending_pongs == 0 || self.max_pending_resets == 0 {
            return Err("max_pending_pongs and max_pending_resets must be at least 1");
        }
        Ok(())
    }

    /// A copy with every out-of-range value clamped into its range.
    pub(crate) fn sanitized(&self) -> Config {
        let mut c = self.clone();
        let clamp_size =
            |v: u32| v.clamp(crate::frame::MIN_SIZE_LIMIT, crate::frame::MAX_PAYLOAD_LEN);
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
        c.abuse_window = c.abuse_window.max(tick);
        c.max_pending_pongs = c.max_pending_pongs.max(1);
        c.max_pending_resets = c.max_pending_resets.max(1);
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

    /// Sets [`Config::abuse_window`].
    pub fn abuse_window(&mut self, v: Duration) -> &mut Self {
        self.abuse_window = v;
        self
    }

    /// Sets [`Config::max_peer_resets`].
    pub fn max_peer_resets(&mut self, v: u32) -> &mut Self {
        self.max_peer_resets = v;
        self
    }

    /// Sets [`Config::max_peer_pings`].
    pub fn max_peer_pings(&mut self, v: u32) -> &mut Self {
        self.max_peer_pings = v;
        self
    }

    /// Sets [`Config::max_useless_frames`].
    pub fn max_useless_frames(&mut self, v: u32) -> &mut Self {
        self.max_useless_frames = v;
        self
    }

    /// Sets [`Config::max_pending_pongs`].
    pub fn max_pending_pongs(&mut self, v: usize) -> &mut Self {
        self.max_pending_pongs = v;
        self
    }

    /// Sets [`Config::max_pending_resets`].
    pub fn max_pending_resets(&mut self, v: usize) -> &mut Self {
        self.max_pending_resets = v;
        self
    }

    /// Sets [`Config::write_batch`].
    pub fn write_batch(&mut self, v: usize) -> &mut Self {
        self.write_batch = v;
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
        let mut c = Config::default();
        c.abuse_window(Duration::ZERO).max_pending_pongs(0);
        assert!(c.validate().is_err());
        let s = c.sanitized();
        assert!(s.validate().is_ok());
        assert_eq!(s.max_pending_pongs, 1);
        let mut c = Config::default();
        c.max_pending_resets(0);
        assert!(c.validate().is_err());
    }
}
