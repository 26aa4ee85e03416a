//! The sans-IO connection engine.
//!
//! A [`Connection`] holds the state of one uwire/1 connection: the stream
//! table, stream states, flow-control windows, SETTINGS, PING and GOAWAY. It
//! performs no I/O and reads no clock. The I/O glue
//!
//! 1. writes the preface, then feeds every decoded frame to
//!    [`Connection::handle_frame`] (decode failures to
//!    [`Connection::handle_decode_error`], end of input to
//!    [`Connection::handle_eof`]);
//! 2. calls the local actions ([`Connection::open_stream`],
//!    [`Connection::send_response`], [`Connection::send_data`], ...);
//! 3. drains [`Connection::poll_transmit`] into the socket and
//!    [`Connection::poll_event`] into the application;
//! 4. arms a timer at [`Connection::poll_timeout`] and calls
//!    [`Connection::handle_timeout`] when it fires;
//! 5. closes the socket once [`Connection::is_closed`] is true and the
//!    transmit queue is flushed.
//!
//! ```
//! use std::time::Instant;
//! use uwire::conn::{Config, Connection, Event, Role};
//! use uwire::frame::{Frame, RequestHead};
//!
//! let now = Instant::now();
//! let mut client = Connection::new(Role::Client, Config::default(), now);
//! let mut server = Connection::new(Role::Server, Config::default(), now);
//! // Exchange SETTINGS.
//! server.handle_frame(client.poll_transmit().unwrap(), now).unwrap();
//! client.handle_frame(server.poll_transmit().unwrap(), now).unwrap();
//! assert_eq!(client.poll_event(), Some(Event::Ready));
//! let head = RequestHead { method: "GET".into(), path: "/".into(), ..Default::default() };
//! let id = client.open_stream(head, true).unwrap();
//! let frame: Frame = client.poll_transmit().unwrap();
//! server.handle_frame(frame, now).unwrap();
//! assert_eq!(server.poll_event(), Some(Event::Ready));
//! assert!(matches!(server.poll_event(), Some(Event::Request { id: i, .. }) if i == id));
//! ```

mod actions;
mod chunks;
mod config;
mod engine;
mod error;
mod flow;
mod guard;
mod recv;
mod sched;
mod send;
mod stream;
#[cfg(test)]
mod tests;

use std::time::Duration;

use bytes::Bytes;

#[cfg(feature = "net")]
pub(crate) use chunks::ChunkQueue;
pub use config::{
    Config, DEFAULT_ABUSE_WINDOW, DEFAULT_DRAIN_NOTICE_TIMEOUT, DEFAULT_INITIAL_CONNECTION_WINDOW,
    DEFAULT_INITIAL_STREAM_WINDOW, DEFAULT_MAX_CONCURRENT_STREAMS, DEFAULT_MAX_PEER_PINGS,
    DEFAULT_MAX_PEER_RESETS, DEFAULT_MAX_PENDING_PONGS, DEFAULT_MAX_PENDING_RESETS,
    DEFAULT_MAX_RESET_STREAMS, DEFAULT_MAX_USELESS_FRAMES, DEFAULT_PING_TIMEOUT,
    DEFAULT_SETTINGS_TIMEOUT, DEFAULT_WRITE_BATCH, DEFAULT_WRITE_TIMEOUT,
};
pub use engine::Connection;
pub use error::{ConnError, ConnErrorClass, UserError};
pub use flow::MAX_WINDOW;

use crate::frame::{HeaderBlock, Reason, RequestHead, ResponseHead, StreamId};

/// Which end of the connection this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The proxy side: opens streams (odd ids) with REQUESTs.
    Client,
    /// The application side: answers REQUESTs with RESPONSEs.
    Server,
}

/// Something the application must know about, from
/// [`Connection::poll_event`]. Non-exhaustive: later versions may report
/// more, so a `match` on it outside this crate ends with a `_` arm.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// The peer's SETTINGS arrived; a client may now open streams.
    Ready,
    /// Server side: a new stream with its request head.
    Request {
        /// The stream.
        id: StreamId,
        /// The request head.
        head: Box<RequestHead>,
        /// The request has no body.
        end_stream: bool,
    },
    /// Client side: a response head. Interim (1xx) heads may come first,
    /// any number of them, before the final one.
    Response {
        /// The stream.
        id: StreamId,
        /// The response head.
        head: ResponseHead,
        /// The response has no body.
        end_stream: bool,
    },
    /// Body bytes. Every delivered byte counts against the receive windows
    /// until the application returns it with
    /// [`Connection::release_capacity`].
    Data {
        /// The stream.
        id: StreamId,
        /// Body bytes (may be empty when only `end_stream` is set).
        data: Bytes,
        /// The peer's half of the stream ended.
        end_stream: bool,
    },
    /// Trailer fields; the peer's half of the stream ended.
    Trailers {
        /// The stream.
        id: StreamId,
        /// Trailer fields.
        fields: HeaderBlock,
    },
    /// The stream ended abnormally. `remote: true` when the peer reset it
    /// (RESET frame, refusal by its GOAWAY, or transport EOF); `remote:
    /// false` when this engine reset it (stream error, drain deadline,
    /// connection error). Not emitted for [`Connection::reset_stream`]
    /// calls, nor for peer streams the application never saw (REQUESTs
    /// refused by a server).
    StreamReset {
        /// The stream.
        id: StreamId,
        /// Why.
        reason: Reason,
        /// Whether the peer ended it.
        remote: bool,
    },
    /// Client side: the stream's final RESPONSE had not arrived by the
    /// deadline set with [`Connection::set_response_deadline`]. The engine
    /// reset the stream (a RESET with `CANCEL` is queued) and forgot it.
    ResponseTimeout {
        /// The stream.
        id: StreamId,
    },
    /// Both halves of the stream finished normally; per-stream state can be
    /// freed.
    StreamClosed {
        /// The stream.
        id: StreamId,
    },
    /// The answer to a PING we sent (keepalive or
    /// [`Connection::send_ping`]).
    PingAck {
        /// The PING payload.
        payload: [u8; 8],
        /// Round-trip time on the caller's clock. Always `Some` in this
        /// version (every PING we send is timestamped).
        rtt: Option<Duration>,
    },
    /// The peer's GOAWAY. On a client, streams above `last_stream_id` get
    /// `StreamReset { reason: REFUSED_STREAM, remote: true }` events right
    /// after this one: they were not processed and are safe to retry.
    GoAway {
        /// Highest stream id the peer processed or will process.
        last_stream_id: StreamId,
        /// Reason code.
        reason: Reason,
        /// Diagnostic data.
        debug: Bytes,
    },
    /// The connection is closed (emitted once). `error` is `None` after a
    /// graceful shutdown (GOAWAY(NO_ERROR) drain, including a drain
    /// deadline), `Some` otherwise.
    Closed {
        /// Why the connection ended abnormally.
        error: Option<ConnError>,
    },
}
