//! Upgrades through the [`Client`](super::Client) (PROTOCOL.md section
//! 7.5): put an [`Upgrade`] in a request's extensions to offer one; when
//! the app accepts (`101`, or a 2xx to an extended `CONNECT`), [`take`] the
//! [`Upgraded`] byte stream out of the response, as with hyper's
//! `upgrade::on`. A declined offer is an ordinary response.
//!
//! ```no_run
//! # async fn run(client: uwire::client::Client) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//! use uwire::client::upgrade::{self, Upgrade};
//! let mut req = http::Request::get("http://app/chat")
//!     .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
//!     .header("sec-websocket-version", "13")
//!     .body(http_body_util::Empty::<bytes::Bytes>::new())?;
//! req.extensions_mut().insert(Upgrade::new("websocket"));
//! let mut resp = client.request(req).await?;
//! if let Some(mut io) = upgrade::take(&mut resp) {
//!     io.write_all(b"raw bytes, both ways").await?;
//! }
//! # Ok(()) }
//! ```
//!
//! Only uwire/1 upstreams carry upgrades: an offer toward a classic uwsgi
//! upstream fails as a request that cannot be carried (400).

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::pool::InflightGuard;
use super::Body;
use crate::frame::{HeaderBlockBuilder, Reason, StreamId};
use crate::net::{Tunnel, TunnelLimits};

/// An upgrade offer, in a request's extensions.
#[derive(Debug, Clone)]
pub struct Upgrade {
    protocol: Bytes,
    limits: TunnelLimits,
}

impl Upgrade {
    /// Offers to switch to `protocol` (`websocket`, or any token the app
    /// may accept): an HTTP/1.1 `Upgrade` value, or the `:protocol` of an
    /// HTTP/2 extended `CONNECT` (then the request's method is `CONNECT`).
    /// The tunnel gets the default [`TunnelLimits`].
    pub fn new(protocol: impl Into<Bytes>) -> Upgrade {
        Upgrade {
            protocol: protocol.into(),
            limits: TunnelLimits::default(),
        }
    }

    /// Sets the idle and lifetime limits of the tunnel.
    pub fn limits(mut self, limits: TunnelLimits) -> Upgrade {
        self.limits = limits;
        self
    }

    /// The protocol offered.
    pub fn protocol(&self) -> &Bytes {
        &self.protocol
    }

    pub(crate) fn tunnel_limits(&self) -> TunnelLimits {
        self.limits
    }
}

/// The `Connection: upgrade` and `Upgrade` fields an HTTP/1.1 app expects
/// on an offer (PROTOCOL.md section 7.5), added when the request lacks
/// them (an HTTP front strips hop-by-hop fields before forwarding).
pub(crate) fn add_offer_fields(
    headers: &mut HeaderBlockBuilder,
    parts: &http::request::Parts,
    offer: &Upgrade,
) {
    if parts.method == http::Method::CONNECT {
        return;
    }
    if !parts.headers.contains_key(http::header::CONNECTION) {
        let _ = headers.push(b"connection", b"upgrade");
    }
    if !parts.headers.contains_key(http::header::UPGRADE) {
        let _ = headers.push(b"upgrade", &offer.protocol);
    }
}

/// The tunnel of an accepted upgrade: bytes both ways with the app.
/// `shutdown` ends our half; dropping it before both halves ended resets
/// the stream (`CANCEL`).
#[derive(Debug)]
pub struct Upgraded {
    tunnel: Tunnel,
    _guard: InflightGuard,
}

impl Upgraded {
    pub(crate) fn new(tunnel: Tunnel, guard: InflightGuard) -> Upgraded {
        Upgraded {
            tunnel,
            _guard: guard,
        }
    }

    /// The stream id on the upstream connection.
    pub fn id(&self) -> StreamId {
        self.tunnel.id()
    }

    /// Bytes received from the app so far.
    pub fn bytes_read(&self) -> u64 {
        self.tunnel.bytes_read()
    }

    /// Bytes sent to the app so far.
    pub fn bytes_written(&self) -> u64 {
        self.tunnel.bytes_written()
    }

    /// Whether the tunnel ended on its idle or lifetime limit.
    pub fn is_timed_out(&self) -> bool {
        self.tunnel.is_timed_out()
    }

    /// Resets the stream with `reason`.
    pub fn reset(self, reason: Reason) {
        self.tunnel.reset(reason)
    }
}

impl AsyncRead for Upgraded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tunnel).poll_read(cx, buf)
    }
}

impl AsyncWrite for Upgraded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tunnel).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tunnel).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tunnel).poll_shutdown(cx)
    }
}

/// Carries the tunnel in the response's extensions (which need `Clone`).
#[derive(Clone)]
pub(crate) struct Slot(Arc<Mutex<Option<Upgraded>>>);

impl Slot {
    pub(crate) fn new(up: Upgraded) -> Slot {
        Slot(Arc::new(Mutex::new(Some(up))))
    }
}

/// Takes the tunnel out of a response that accepted an [`Upgrade`] offer;
/// `None` when the offer was declined (or the tunnel was already taken).
pub fn take(resp: &mut http::Response<Body>) -> Option<Upgraded> {
    let slot = resp.extensions_mut().remove::<Slot>()?;
    let mut g = slot.0.lock().unwrap_or_else(|e| e.into_inner());
    g.take()
}
