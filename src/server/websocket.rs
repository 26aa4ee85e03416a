//! WebSockets (RFC 6455) in handlers, on top of [`Request::upgrade`]: the
//! opening handshake is checked here, and the frames are
//! `tokio-tungstenite`'s (a maintained implementation; no frame parser is
//! written here).
//!
//! ```no_run
//! use futures_util::{SinkExt, StreamExt};
//! use uwire::server::{handler_fn, websocket, Request, Response};
//! let echo = handler_fn(|mut req: Request| async move {
//!     let (resp, on_ws) = match websocket::accept(&mut req, websocket::Accept::default()) {
//!         Ok(pair) => pair,
//!         Err(e) => return Ok::<Response, std::convert::Infallible>(e.response()),
//!     };
//!     tokio::spawn(async move {
//!         let Ok(mut ws) = on_ws.await else { return };
//!         while let Some(Ok(msg)) = ws.next().await {
//!             if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
//!                 return;
//!             }
//!         }
//!     });
//!     Ok(resp)
//! });
//! # let _ = echo;
//! ```
//!
//! The byte stream under the socket is an [`Upgraded`]: a uwire/1 stream
//! (through `uwire proxy`) or the classic uwsgi connection (through nginx
//! `uwsgi_pass`, see `docs/deploy.md`), bounded by the server's tunnel
//! limits.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;

use super::handler::{Request, Response, ResponseBody};
use super::upgrade::{OnUpgrade, UpgradeError, Upgraded};

pub use tokio_tungstenite::tungstenite::{self, Message};

/// A server-side WebSocket over an accepted upgrade.
pub type WebSocket = WebSocketStream<Upgraded>;

/// How to accept a WebSocket handshake.
#[derive(Debug, Clone, Default)]
pub struct Accept {
    /// Subprotocols this handler speaks, in order of preference: the first
    /// one the client also offers (`Sec-WebSocket-Protocol`) is selected.
    /// Empty: none is selected.
    pub protocols: Vec<String>,
    /// Message and frame size limits and buffering (tungstenite's
    /// defaults: 64 MiB messages, 16 MiB frames).
    pub config: WebSocketConfig,
}

/// Why a request cannot be accepted as a WebSocket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The request offers no `websocket` upgrade (426 Upgrade Required).
    #[error("the request does not offer a websocket upgrade")]
    NotWebSocket,
    /// Not a `GET` (405).
    #[error("a websocket handshake must use GET")]
    Method,
    /// `Sec-WebSocket-Version` is not 13 (426, with the version we speak).
    #[error("unsupported Sec-WebSocket-Version (13 is supported)")]
    Version,
    /// `Sec-WebSocket-Key` is missing or not 16 bytes in base64 (400).
    #[error("missing or malformed Sec-WebSocket-Key")]
    Key,
    /// The upgrade was already taken from the request (500).
    #[error("the request's upgrade was already taken")]
    Taken,
}

impl HandshakeError {
    /// The response RFC 6455 4.2.2 asks for.
    pub fn response(&self) -> Response {
        let status = match self {
            HandshakeError::NotWebSocket | HandshakeError::Version => StatusCode::UPGRADE_REQUIRED,
            HandshakeError::Method => StatusCode::METHOD_NOT_ALLOWED,
            HandshakeError::Key => StatusCode::BAD_REQUEST,
            HandshakeError::Taken => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let mut r = Response::new(ResponseBody::from(format!("{self}\n")));
        *r.status_mut() = status;
        let h = r.headers_mut();
        h.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        if status == StatusCode::UPGRADE_REQUIRED {
            h.insert(http::header::UPGRADE, HeaderValue::from_static("websocket"));
            h.insert(
                http::header::SEC_WEBSOCKET_VERSION,
                HeaderValue::from_static("13"),
            );
        }
        if status == StatusCode::METHOD_NOT_ALLOWED {
            h.insert(http::header::ALLOW, HeaderValue::from_static("GET"));
        }
        r
    }
}

/// Whether the request offers a WebSocket upgrade.
pub fn is_websocket(req: &Request) -> bool {
    req.upgrade_protocol()
        .is_some_and(|p| p.eq_ignore_ascii_case(b"websocket"))
}

/// Checks the opening handshake (RFC 6455 4.2.1) and takes the request's
/// upgrade: returns the `101` response to return from the handler and a
/// future resolving to the [`WebSocket`] once that response went out.
pub fn accept(req: &mut Request, opts: Accept) -> Result<(Response, OnWebSocket), HandshakeError> {
    if !is_websocket(req) {
        return Err(HandshakeError::NotWebSocket);
    }
    let head = req.head();
    if head.method.as_ref() != b"GET" {
        return Err(HandshakeError::Method);
    }
    let version = head
        .headers
        .get(b"sec-websocket-version")
        .map(<[u8]>::trim_ascii);
    if version != Some(b"13".as_slice()) {
        return Err(HandshakeError::Version);
    }
    let key = head
        .headers
        .get(b"sec-websocket-key")
        .map(<[u8]>::trim_ascii)
        .filter(|k| is_key(k))
        .ok_or(HandshakeError::Key)?;
    let accept_key = derive_accept_key(key);
    let selected = select_protocol(req, &opts.protocols);
    let on = req.upgrade().ok_or(HandshakeError::Taken)?;
    let mut r = Response::new(ResponseBody::empty());
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(http::header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(
        http::header::CONNECTION,
        HeaderValue::from_static("upgrade"),
    );
    if let Ok(v) = HeaderValue::from_str(&accept_key) {
        h.insert(http::header::SEC_WEBSOCKET_ACCEPT, v);
    }
    if let Some(v) = selected.and_then(|p| HeaderValue::from_str(&p).ok()) {
        h.insert(http::header::SEC_WEBSOCKET_PROTOCOL, v);
    }
    Ok((
        r,
        OnWebSocket {
            on,
            config: opts.config,
            ws: None,
        },
    ))
}

/// A key is the base64 form of 16 bytes: 22 alphabet characters and `==`.
fn is_key(k: &[u8]) -> bool {
    k.len() == 24
        && k.ends_with(b"==")
        && k[..22]
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/')
}

fn select_protocol(req: &Request, ours: &[String]) -> Option<String> {
    let offered: Vec<&[u8]> = req
        .head()
        .headers
        .get_all(b"sec-websocket-protocol")
        .flat_map(|v| v.split(|b| *b == b','))
        .map(<[u8]>::trim_ascii)
        .collect();
    ours.iter()
        .find(|p| offered.contains(&p.as_bytes()))
        .cloned()
}

/// Resolves to the [`WebSocket`] once the `101` went out (see [`accept`]).
#[must_use = "the websocket is served only through this future"]
pub struct OnWebSocket {
    on: OnUpgrade,
    config: WebSocketConfig,
    ws: Option<Pin<Box<dyn Future<Output = WebSocket> + Send>>>,
}

impl std::fmt::Debug for OnWebSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnWebSocket").finish_non_exhaustive()
    }
}

impl Future for OnWebSocket {
    type Output = Result<WebSocket, UpgradeError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        if this.ws.is_none() {
            let io = match Pin::new(&mut this.on).poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(io)) => io,
            };
            let config = this.config;
            this.ws = Some(Box::pin(WebSocketStream::from_raw_socket(
                io,
                Role::Server,
                Some(config),
            )));
        }
        match this.ws.as_mut() {
            Some(f) => f.as_mut().poll(cx).map(Ok),
            None => Poll::Pending,
        }
    }
}
