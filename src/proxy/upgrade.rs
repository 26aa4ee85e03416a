//! Upgrades through the front (PROTOCOL.md section 7.5): an HTTP/1.1
//! request offering `Upgrade` (a WebSocket handshake, or any token the app
//! may accept) goes to the app as an upgrade offer; when the app answers
//! `101`, the front answers `101` downstream and copies bytes both ways
//! between the client's connection and the uwire/1 stream until both
//! directions ended (a half-close passes through) or either side fails
//! (the client going away resets the stream with `CANCEL`). The access log
//! line of an upgraded request is written when its tunnel ends, with the
//! bytes carried each way.
//!
//! HTTP/2 extended CONNECT (RFC 8441) is not offered to clients (the
//! SETTINGS_ENABLE_CONNECT_PROTOCOL setting stays off): browsers then use
//! HTTP/1.1 for WebSockets.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request};
use tokio::sync::oneshot;

use super::body::LogContext;
use super::io::{InFlight, Stream, TimedIo};
use crate::client::upgrade::Upgraded;

/// The upgrade an HTTP/1.1 request offers (RFC 9110 7.8): the `Upgrade`
/// value when `Connection` lists `upgrade` and the request has no body
/// (over uwire/1 the client's half of the stream carries the tunnel).
pub(crate) fn offer<B>(req: &Request<B>) -> Option<Bytes> {
    if req.version() != http::Version::HTTP_11 || req.method() == http::Method::CONNECT {
        return None;
    }
    let h = req.headers();
    let listed = h.get_all(http::header::CONNECTION).iter().any(|v| {
        v.as_bytes()
            .split(|b| *b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"upgrade"))
    });
    if !listed || has_body(h) {
        return None;
    }
    let value = h.get(http::header::UPGRADE)?.as_bytes().trim_ascii();
    (!value.is_empty()).then(|| Bytes::copy_from_slice(value))
}

fn has_body(h: &HeaderMap) -> bool {
    h.contains_key(http::header::TRANSFER_ENCODING)
        || h.get(http::header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes().trim_ascii() != b"0")
}

/// The upstream end of an accepted upgrade, riding in the `101` response's
/// extensions from the app service to the request handler (extensions
/// must be `Clone`).
#[derive(Clone)]
pub(crate) struct Pending(Arc<Mutex<Option<Upgraded>>>);

impl Pending {
    pub(crate) fn new(up: Upgraded) -> Pending {
        Pending(Arc::new(Mutex::new(Some(up))))
    }

    pub(crate) fn take(&self) -> Option<Upgraded> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// The `Upgrade` and `Connection` fields of the `101` sent downstream
/// (hop-by-hop: stripped from the app's head, set again here).
pub(crate) fn set_switch_fields(h: &mut HeaderMap, protocol: &[u8]) {
    if let Ok(v) = HeaderValue::from_bytes(protocol) {
        h.insert(http::header::UPGRADE, v);
    }
    h.insert(
        http::header::CONNECTION,
        HeaderValue::from_static("upgrade"),
    );
}

/// Once the connection loop hands the client's connection over (after
/// hyper wrote the `101`), copies bytes both ways until the tunnel ends;
/// then writes the access log line. `in_flight` keeps the connection from
/// being seen as idle meanwhile.
pub(crate) fn spawn(
    down: oneshot::Receiver<TimedIo<Stream>>,
    mut up: Upgraded,
    in_flight: InFlight,
    log: Option<Box<LogContext>>,
) {
    tokio::spawn(async move {
        let _in_flight = in_flight;
        let result = match down.await {
            Ok(mut io) => tokio::io::copy_bidirectional(&mut io, &mut up)
                .await
                .map(|_| ()),
            Err(_) => Err(std::io::Error::other(
                "the connection ended before the upgrade",
            )),
        };
        if let Err(e) = &result {
            tracing::debug!(stream = ?up.id(), error = %e, "tunnel ended with an error");
        }
        if let Some(mut l) = log {
            l.record.bytes_sent = up.bytes_read();
            l.record.bytes_received = Some(up.bytes_written());
            l.record.duration = l.started.elapsed();
            l.log.log(&l.record);
        }
        // Dropping `up` with either direction still open resets the
        // stream (CANCEL): the app sees the client go away.
    });
}
