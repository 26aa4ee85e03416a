//! Server counters and a latency histogram, readable through the API and
//! rendered as Prometheus text.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Upper bounds (seconds) of the latency histogram buckets; `+Inf` follows.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0, 30.0,
];

/// Kinds of errors the server counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The request head could not be turned into an environ (400).
    BadRequest,
    /// The request body exceeded `max_body_size` (413 or RESET).
    BodyTooLarge,
    /// The handler returned an error (500).
    HandlerError,
    /// The handler panicked (500 or RESET).
    HandlerPanic,
    /// The request deadline expired (504 or RESET).
    Deadline,
    /// The proxy reset the stream.
    PeerReset,
    /// A response made no progress within the send timeout.
    SendTimeout,
    /// A connection was closed for a protocol error.
    Protocol,
    /// A connection failed with an I/O error.
    Io,
    /// A peer was refused by the uid/gid allowlist.
    PeerDenied,
}

impl ErrorKind {
    /// Every kind, in rendering order.
    pub const ALL: [ErrorKind; 10] = [
        ErrorKind::BadRequest,
        ErrorKind::BodyTooLarge,
        ErrorKind::HandlerError,
        ErrorKind::HandlerPanic,
        ErrorKind::Deadline,
        ErrorKind::PeerReset,
        ErrorKind::SendTimeout,
        ErrorKind::Protocol,
        ErrorKind::Io,
        ErrorKind::PeerDenied,
    ];

    /// The label value used in Prometheus output.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::BadRequest => "bad_request",
            ErrorKind::BodyTooLarge => "body_too_large",
            ErrorKind::HandlerError => "handler_error",
            ErrorKind::HandlerPanic => "handler_panic",
            ErrorKind::Deadline => "deadline",
            ErrorKind::PeerReset => "peer_reset",
            ErrorKind::SendTimeout => "send_timeout",
            ErrorKind::Protocol => "protocol",
            ErrorKind::Io => "io",
            ErrorKind::PeerDenied => "peer_denied",
        }
    }

    fn index(self) -> usize {
        ErrorKind::ALL.iter().position(|k| *k == self).unwrap_or(0)
    }
}

/// Live counters, shared by every connection of a server.
#[derive(Debug, Default)]
pub struct Metrics {
    connections_total: AtomicU64,
    connections_active: AtomicU64,
    streams_total: AtomicU64,
    streams_active: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    tunnels_total: AtomicU64,
    tunnels_active: AtomicU64,
    errors: [AtomicU64; ErrorKind::ALL.len()],
    latency_buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    latency_sum_us: AtomicU64,
    latency_count: AtomicU64,
}

/// A point-in-time copy of [`Metrics`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Connections accepted since start.
    pub connections_total: u64,
    /// Connections open now.
    pub connections_active: u64,
    /// Streams (requests) started since start.
    pub streams_total: u64,
    /// Streams in progress now.
    pub streams_active: u64,
    /// Request body bytes received.
    pub bytes_in: u64,
    /// Response body bytes sent.
    pub bytes_out: u64,
    /// Upgrades accepted since start (tunnels opened).
    pub tunnels_total: u64,
    /// Tunnels open now.
    pub tunnels_active: u64,
    /// Errors by kind, in [`ErrorKind::ALL`] order.
    pub errors: Vec<(ErrorKind, u64)>,
    /// Requests completed (histogram count).
    pub latency_count: u64,
}

impl Snapshot {
    /// The count for one error kind.
    pub fn error(&self, kind: ErrorKind) -> u64 {
        self.errors
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, n)| *n)
            .unwrap_or(0)
    }
}

impl Metrics {
    pub(crate) fn connection_opened(&self) {
        self.connections_total.fetch_add(1, Relaxed);
        self.connections_active.fetch_add(1, Relaxed);
    }

    pub(crate) fn connection_closed(&self) {
        self.connections_active.fetch_sub(1, Relaxed);
    }

    pub(crate) fn stream_started(&self) {
        self.streams_total.fetch_add(1, Relaxed);
        self.streams_active.fetch_add(1, Relaxed);
    }

    pub(crate) fn stream_finished(&self, latency: Duration) {
        self.streams_active.fetch_sub(1, Relaxed);
        let secs = latency.as_secs_f64();
        let i = LATENCY_BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.latency_buckets[i].fetch_add(1, Relaxed);
        self.latency_sum_us
            .fetch_add(latency.as_micros() as u64, Relaxed);
        self.latency_count.fetch_add(1, Relaxed);
    }

    pub(crate) fn tunnel_opened(&self) {
        self.tunnels_total.fetch_add(1, Relaxed);
        self.tunnels_active.fetch_add(1, Relaxed);
    }

    pub(crate) fn tunnel_closed(&self) {
        self.tunnels_active.fetch_sub(1, Relaxed);
    }

    pub(crate) fn add_bytes_in(&self, n: u64) {
        self.bytes_in.fetch_add(n, Relaxed);
    }

    pub(crate) fn add_bytes_out(&self, n: u64) {
        self.bytes_out.fetch_add(n, Relaxed);
    }

    pub(crate) fn error(&self, kind: ErrorKind) {
        self.errors[kind.index()].fetch_add(1, Relaxed);
    }

    /// Copies the counters.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            connections_total: self.connections_total.load(Relaxed),
            connections_active: self.connections_active.load(Relaxed),
            streams_total: self.streams_total.load(Relaxed),
            streams_active: self.streams_active.load(Relaxed),
            bytes_in: self.bytes_in.load(Relaxed),
            bytes_out: self.bytes_out.load(Relaxed),
            tunnels_total: self.tunnels_total.load(Relaxed),
            tunnels_active: self.tunnels_active.load(Relaxed),
            errors: ErrorKind::ALL
                .iter()
                .map(|k| (*k, self.errors[k.index()].load(Relaxed)))
                .collect(),
            latency_count: self.latency_count.load(Relaxed),
        }
    }

    /// Renders every counter in the Prometheus text exposition format.
    pub fn render_prometheus(&self) -> String {
        let s = self.snapshot();
        let mut out = String::with_capacity(2048);
        let mut counter = |name: &str, help: &str, kind: &str, v: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
            );
        };
        counter(
            "uwire_connections_total",
            "Connections accepted.",
            "counter",
            s.connections_total,
        );
        counter(
            "uwire_connections_active",
            "Connections open.",
            "gauge",
            s.connections_active,
        );
        counter(
            "uwire_streams_total",
            "Requests started.",
            "counter",
            s.streams_total,
        );
        counter(
            "uwire_streams_active",
            "Requests in progress.",
            "gauge",
            s.streams_active,
        );
        counter(
            "uwire_request_body_bytes_total",
            "Request body bytes received.",
            "counter",
            s.bytes_in,
        );
        counter(
            "uwire_response_body_bytes_total",
            "Response body bytes sent.",
            "counter",
            s.bytes_out,
        );
        counter(
            "uwire_tunnels_total",
            "Upgrades accepted (tunnels opened).",
            "counter",
            s.tunnels_total,
        );
        counter(
            "uwire_tunnels_active",
            "Tunnels open.",
            "gauge",
            s.tunnels_active,
        );
        let _ = writeln!(
            out,
            "# HELP uwire_errors_total Errors by kind.\n# TYPE uwire_errors_total counter"
        );
        for (k, v) in &s.errors {
            let _ = writeln!(out, "uwire_errors_total{{kind=\"{}\"}} {v}", k.as_str());
        }
        let _ = writeln!(
            out,
            "# HELP uwire_request_duration_seconds Time from request head to end of response.\n# TYPE uwire_request_duration_seconds histogram"
        );
        let mut cumulative = 0;
        for (i, b) in LATENCY_BUCKETS.iter().enumerate() {
            cumulative += self.latency_buckets[i].load(Relaxed);
            let _ = writeln!(
                out,
                "uwire_request_duration_seconds_bucket{{le=\"{b}\"}} {cumulative}"
            );
        }
        cumulative += self.latency_buckets[LATENCY_BUCKETS.len()].load(Relaxed);
        let _ = writeln!(
            out,
            "uwire_request_duration_seconds_bucket{{le=\"+Inf\"}} {cumulative}"
        );
        let _ = writeln!(
            out,
            "uwire_request_duration_seconds_sum {}\nuwire_request_duration_seconds_count {}",
            self.latency_sum_us.load(Relaxed) as f64 / 1e6,
            cumulative
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let m = Metrics::default();
        m.stream_started();
        m.stream_finished(Duration::from_micros(50));
        m.stream_started();
        m.stream_finished(Duration::from_secs(100));
        m.error(ErrorKind::Deadline);
        let text = m.render_prometheus();
        assert!(text.contains("uwire_request_duration_seconds_bucket{le=\"0.0001\"} 1"));
        assert!(text.contains("uwire_request_duration_seconds_bucket{le=\"30\"} 1"));
        assert!(text.contains("uwire_request_duration_seconds_bucket{le=\"+Inf\"} 2"));
        assert!(text.contains("uwire_errors_total{kind=\"deadline\"} 1"));
        assert_eq!(m.snapshot().streams_active, 0);
        assert_eq!(m.snapshot().error(ErrorKind::Deadline), 1);
    }
}
