//! The error type of the async glue: opaque, with `is_*` predicates.

use std::fmt;
use std::io;

use crate::conn::{ConnError, ConnErrorClass, UserError};
use crate::frame::Reason;

/// An error from a uwire connection or one of its streams.
pub struct Error {
    kind: Kind,
}

#[derive(Debug)]
pub(crate) enum Kind {
    /// The connection is gone (closed by either side, or the driver stopped).
    Closed,
    /// The peer reset the stream (or we did because of a stream error).
    Reset(Reason, bool),
    /// The stream was refused before any processing (GOAWAY or REFUSED_STREAM): safe to retry.
    Refused,
    /// The connection closed (or was closing) before the request was
    /// written: nothing reached the peer, so it is safe to retry.
    NotSent,
    /// The peer closed the transport without a GOAWAY (a clean end of
    /// input at a frame boundary): routine for an idle pooled connection,
    /// never a protocol error.
    PeerClosed,
    /// The response did not come by the deadline given when the request
    /// was sent; the stream was reset (`CANCEL`).
    TimedOut,
    /// The transport failed.
    Io(io::Error),
    /// The peer broke the protocol; the connection was closed.
    Protocol(ConnError),
    /// Local misuse of the API.
    User(UserError),
}

impl Error {
    pub(crate) fn new(kind: Kind) -> Error {
        Error { kind }
    }

    pub(crate) fn closed() -> Error {
        Error::new(Kind::Closed)
    }

    /// A request that never left this side because the connection was gone.
    pub(crate) fn not_sent() -> Error {
        Error::new(Kind::NotSent)
    }

    /// Whether the connection was closed (by either side) before the
    /// operation could finish.
    pub fn is_closed(&self) -> bool {
        matches!(self.kind, Kind::Closed | Kind::NotSent | Kind::PeerClosed)
    }

    /// Whether the stream was reset; see [`Error::reason`].
    pub fn is_reset(&self) -> bool {
        matches!(self.kind, Kind::Reset(..))
    }

    /// Whether the stream was refused before the peer processed it, so the
    /// request can be retried safely on another connection. Also true when
    /// [`SendRequest::send_request`](super::SendRequest::send_request) found
    /// the connection already closed and sent nothing (then
    /// [`Error::is_closed`] is true as well).
    pub fn is_refused(&self) -> bool {
        matches!(
            self.kind,
            Kind::Refused | Kind::NotSent | Kind::Reset(Reason::REFUSED_STREAM, _)
        )
    }

    /// Whether the peer closed the transport without a GOAWAY. Requests
    /// still in flight on it were lost; an idle connection closing this way
    /// is routine (a pool dropping a connection, a health probe).
    pub fn is_peer_closed(&self) -> bool {
        matches!(self.kind, Kind::PeerClosed)
    }

    /// Whether the response head did not arrive by the request's deadline
    /// (the stream was reset).
    pub fn is_timeout(&self) -> bool {
        matches!(self.kind, Kind::TimedOut)
    }

    /// Whether the transport failed.
    pub fn is_io(&self) -> bool {
        matches!(self.kind, Kind::Io(_))
    }

    /// Whether the peer broke the protocol.
    pub fn is_protocol(&self) -> bool {
        matches!(self.kind, Kind::Protocol(_))
    }

    /// Whether this is a local misuse of the API.
    pub fn is_user(&self) -> bool {
        matches!(self.kind, Kind::User(_))
    }

    /// The reason code for a reset stream or protocol error.
    pub fn reason(&self) -> Option<Reason> {
        match &self.kind {
            Kind::Reset(r, _) => Some(*r),
            Kind::Refused => Some(Reason::REFUSED_STREAM),
            Kind::Protocol(e) => Some(e.reason()),
            _ => None,
        }
    }

    /// Whether a reset came from the peer (as opposed to this side).
    pub fn is_remote_reset(&self) -> bool {
        matches!(self.kind, Kind::Reset(_, true))
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("uwire::net::Error")
            .field(&self.kind)
            .finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Closed => f.write_str("connection closed"),
            Kind::Reset(r, true) => write!(f, "stream reset by peer: {r}"),
            Kind::Reset(r, false) => write!(f, "stream reset locally: {r}"),
            Kind::Refused => f.write_str("stream refused by peer (safe to retry)"),
            Kind::NotSent => {
                f.write_str("connection closed before the request was sent (safe to retry)")
            }
            Kind::PeerClosed => f.write_str("connection closed by the peer"),
            Kind::TimedOut => f.write_str("no response by the request's deadline"),
            Kind::Io(e) => write!(f, "i/o error: {e}"),
            Kind::Protocol(e) => write!(f, "protocol error: {e}"),
            Kind::User(e) => write!(f, "misuse: {e}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            Kind::Io(e) => Some(e),
            Kind::Protocol(e) => Some(e),
            Kind::User(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Error {
        Error::new(Kind::Io(e))
    }
}

impl From<UserError> for Error {
    fn from(e: UserError) -> Error {
        Error::new(Kind::User(e))
    }
}

impl From<ConnError> for Error {
    fn from(e: ConnError) -> Error {
        if e.class() == ConnErrorClass::UnexpectedEof {
            // The engine's name for "the transport ended": not a fault of
            // the protocol, so not reported as one.
            return Error::new(Kind::PeerClosed);
        }
        Error::new(Kind::Protocol(e))
    }
}
