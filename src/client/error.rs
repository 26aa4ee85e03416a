//! The client's error: opaque, with `is_*` predicates a proxy maps to
//! 502/503/504.

use std::fmt;

use crate::frame::Reason;

/// A boxed error.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Connect,
    ConnectTimeout,
    Timeout,
    Protocol,
    Reset(Reason),
    Refused,
    /// The connection closed before the request was written (nothing
    /// reached the app): safe to retry, a 502 if retries run out.
    NotSent,
    Closed,
    NoUpstream,
    InvalidRequest,
    /// The request body is over a limit (413).
    TooLarge,
    /// The request head cannot be carried upstream: over a size limit (431).
    HeadTooLarge,
    Upstream,
}

/// An error from [`super::Client`].
pub struct Error {
    kind: Kind,
    source: Option<BoxError>,
}

impl Error {
    pub(crate) fn new(kind: Kind) -> Error {
        Error { kind, source: None }
    }

    pub(crate) fn with(kind: Kind, source: impl Into<BoxError>) -> Error {
        Error {
            kind,
            source: Some(source.into()),
        }
    }

    pub(crate) fn kind(&self) -> Kind {
        self.kind
    }

    pub(crate) fn from_net(e: crate::net::Error) -> Error {
        let kind = if e.is_refused() && e.is_closed() {
            Kind::NotSent
        } else if e.is_refused() {
            Kind::Refused
        } else if e.is_timeout() {
            Kind::Timeout
        } else if e.is_reset() {
            Kind::Reset(e.reason().unwrap_or(Reason::INTERNAL_ERROR))
        } else if e.is_protocol() {
            Kind::Protocol
        } else {
            Kind::Closed
        };
        Error::with(kind, e)
    }

    /// Connecting to the upstream failed (refused, missing socket, timeout).
    pub fn is_connect(&self) -> bool {
        matches!(self.kind, Kind::Connect | Kind::ConnectTimeout)
    }

    /// The per-request deadline (or the connect timeout) expired.
    pub fn is_timeout(&self) -> bool {
        matches!(self.kind, Kind::Timeout | Kind::ConnectTimeout)
    }

    /// The upstream broke the protocol.
    pub fn is_protocol(&self) -> bool {
        matches!(self.kind, Kind::Protocol | Kind::Upstream)
    }

    /// The upstream reset the stream.
    pub fn is_reset(&self) -> bool {
        matches!(self.kind, Kind::Reset(_))
    }

    /// The upstream refused the stream before processing it (GOAWAY or
    /// REFUSED_STREAM).
    pub fn is_refused(&self) -> bool {
        matches!(self.kind, Kind::Refused)
    }

    /// The connection closed mid-request (e.g. the app was killed), or
    /// before the request could be sent on it.
    pub fn is_closed(&self) -> bool {
        matches!(self.kind, Kind::Closed | Kind::NotSent)
    }

    /// Whether nothing of the request reached the app, so it may be sent
    /// again (connect failures other than timeouts, refused streams,
    /// connections that closed before the request was written).
    pub(crate) fn is_retryable(&self) -> bool {
        matches!(self.kind, Kind::Connect | Kind::Refused | Kind::NotSent)
    }

    /// No upstream is configured.
    pub fn is_no_upstream(&self) -> bool {
        matches!(self.kind, Kind::NoUpstream)
    }

    /// The request could not be carried (e.g. an invalid header).
    pub fn is_invalid_request(&self) -> bool {
        matches!(self.kind, Kind::InvalidRequest)
    }

    /// The reset reason, for a reset stream.
    pub fn reason(&self) -> Option<Reason> {
        match self.kind {
            Kind::Reset(r) => Some(r),
            Kind::Refused => Some(Reason::REFUSED_STREAM),
            _ => None,
        }
    }

    /// The status a proxy should answer with: 504 for timeouts, 503 when no
    /// upstream can take the request, 400 for requests that cannot be
    /// carried, 502 for every other upstream failure.
    pub fn status_code(&self) -> http::StatusCode {
        use http::StatusCode as S;
        match self.kind {
            Kind::Timeout | Kind::ConnectTimeout => S::GATEWAY_TIMEOUT,
            Kind::NoUpstream | Kind::Refused => S::SERVICE_UNAVAILABLE,
            Kind::InvalidRequest => S::BAD_REQUEST,
            Kind::TooLarge => S::PAYLOAD_TOO_LARGE,
            Kind::HeadTooLarge => S::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Kind::Reset(Reason::LIMIT_EXCEEDED) => S::PAYLOAD_TOO_LARGE,
            _ => S::BAD_GATEWAY,
        }
    }

    /// Whether the error says the upstream itself is unhealthy (counts
    /// towards passive ejection).
    pub(crate) fn is_upstream_failure(&self) -> bool {
        matches!(
            self.kind,
            Kind::Connect
                | Kind::ConnectTimeout
                | Kind::Protocol
                | Kind::Closed
                | Kind::NotSent
                | Kind::Upstream
        )
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("uwire::client::Error");
        d.field("kind", &self.kind);
        if let Some(s) = &self.source {
            d.field("source", s);
        }
        d.finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            Kind::Connect => "cannot connect to upstream",
            Kind::ConnectTimeout => "connecting to upstream timed out",
            Kind::Timeout => "request deadline expired",
            Kind::Protocol => "upstream protocol error",
            Kind::Reset(_) => "upstream reset the stream",
            Kind::Refused => "upstream refused the stream",
            Kind::Closed => "upstream connection closed",
            Kind::NotSent => "upstream connection closed before the request was sent",
            Kind::NoUpstream => "no upstream configured",
            Kind::InvalidRequest => "request cannot be carried upstream",
            Kind::TooLarge => "request body too large",
            Kind::HeadTooLarge => "request head too large for the upstream protocol",
            Kind::Upstream => "invalid upstream response",
        };
        f.write_str(what)?;
        if let Kind::Reset(r) = self.kind {
            write!(f, " ({r})")?;
        }
        if let Some(s) = &self.source {
            write!(f, ": {s}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|e| e as _)
    }
}
