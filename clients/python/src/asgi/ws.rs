//! One `websocket` scope exchange: the handshake is accepted (or denied
//! with 403) when the app says so; then messages flow through two bounded
//! channels between the app and a tokio task that owns the socket
//! (`uwire::server::websocket`, tokio-tungstenite underneath).

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString};
use tokio::sync::{mpsc, oneshot};
use uwire::server::websocket::{self, tungstenite, Message};
use uwire::server::{Request, Response, ResponseBody};

use super::http::Disconnect;
use super::{BridgeInner, Done};

/// Messages buffered each way between the app and the socket.
const MESSAGES: usize = 16;

/// What the app receives.
pub(crate) enum Incoming {
    Text(String),
    Binary(Bytes),
    /// The socket ended: the close code (1005 without one, 1006 when the
    /// connection dropped without a closing handshake).
    Closed(u16),
}

impl Incoming {
    pub(crate) fn into_py(self, py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
        Ok(match self {
            Incoming::Text(s) => PyString::new(py, &s).into_any(),
            Incoming::Binary(b) => PyBytes::new(py, &b).into_any(),
            Incoming::Closed(code) => code.into_pyobject(py)?.into_any(),
        })
    }
}

enum State {
    /// Handshake not answered yet.
    Offered(Box<Request>, oneshot::Sender<Response>),
    Open {
        out: mpsc::Sender<Message>,
        incoming: Arc<tokio::sync::Mutex<mpsc::Receiver<Incoming>>>,
    },
    Closed,
}

/// An ASGI `websocket` exchange.
#[pyclass(frozen, module = "uwire._native")]
pub struct WsExchange {
    scope: Mutex<Option<(uwire::frame::RequestHead, uwire::environ::Environ)>>,
    state: Mutex<State>,
    bridge: Arc<BridgeInner>,
    disconnect: Arc<Disconnect>,
}

impl WsExchange {
    pub(crate) fn new(
        req: Request,
        reply: oneshot::Sender<Response>,
        bridge: Arc<BridgeInner>,
        disconnect: Arc<Disconnect>,
    ) -> WsExchange {
        let scope = Some((req.head().clone(), req.environ().clone()));
        WsExchange {
            scope: Mutex::new(scope),
            state: Mutex::new(State::Offered(Box::new(req), reply)),
            bridge,
            disconnect,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn close_code(f: Option<tungstenite::protocol::CloseFrame>) -> u16 {
    f.map_or(1005, |f| u16::from(f.code))
}

#[pymethods]
impl WsExchange {
    /// The `websocket` scope (without `state`). Once.
    fn scope<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let (head, env) = self
            .scope
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .ok_or_else(|| PyRuntimeError::new_err("scope already taken"))?;
        super::scope::build(py, "websocket", &head, &env, self.bridge.root_path.get())
    }

    /// `websocket.accept`: answers the handshake with `101`.
    #[pyo3(signature = (subprotocol=None, headers=Vec::new()))]
    fn accept(
        &self,
        subprotocol: Option<String>,
        headers: Vec<(Vec<u8>, Vec<u8>)>,
    ) -> PyResult<()> {
        let mut st = self.state();
        let State::Offered(..) = &*st else {
            return Err(PyRuntimeError::new_err(
                "websocket.accept after the handshake was answered",
            ));
        };
        let State::Offered(mut req, reply) = std::mem::replace(&mut *st, State::Closed) else {
            unreachable!("checked above");
        };
        let opts = websocket::Accept {
            protocols: subprotocol.into_iter().collect(),
            ..websocket::Accept::default()
        };
        let (mut resp, on) = match websocket::accept(&mut req, opts) {
            Ok(pair) => pair,
            Err(e) => {
                // A handshake the helper refuses (bad key, version): its
                // answer goes out; the app sees the socket closed.
                let _ = reply.send(e.response());
                return Err(PyValueError::new_err(format!("websocket handshake: {e}")));
            }
        };
        for (n, v) in headers {
            let name = ::http::HeaderName::from_bytes(&n)
                .map_err(|_| PyValueError::new_err("invalid header name"))?;
            let value = ::http::HeaderValue::from_bytes(&v)
                .map_err(|_| PyValueError::new_err("invalid header value"))?;
            resp.headers_mut().append(name, value);
        }
        let (out_tx, mut out_rx) = mpsc::channel::<Message>(MESSAGES);
        let (in_tx, in_rx) = mpsc::channel::<Incoming>(MESSAGES);
        let d = self.disconnect.clone();
        self.bridge.handle()?.spawn(async move {
            let Ok(ws) = on.await else {
                let _ = in_tx.send(Incoming::Closed(1006)).await;
                d.set();
                return;
            };
            let (mut sink, mut stream) = ws.split();
            let writer = async move {
                while let Some(m) = out_rx.recv().await {
                    let closing = matches!(m, Message::Close(_));
                    if sink.send(m).await.is_err() {
                        break;
                    }
                    if closing {
                        break;
                    }
                }
                // The app is done sending (or the socket failed).
                let _ = sink.flush().await;
                sink
            };
            let reader = async {
                let code = loop {
                    match stream.next().await {
                        Some(Ok(Message::Text(t))) => {
                            if in_tx
                                .send(Incoming::Text(t.as_str().to_owned()))
                                .await
                                .is_err()
                            {
                                break 1006;
                            }
                        }
                        Some(Ok(Message::Binary(b))) => {
                            if in_tx.send(Incoming::Binary(b)).await.is_err() {
                                break 1006;
                            }
                        }
                        Some(Ok(Message::Close(f))) => break close_code(f),
                        Some(Ok(_)) => {}
                        Some(Err(_)) | None => break 1006,
                    }
                };
                let _ = in_tx.send(Incoming::Closed(code)).await;
                code
            };
            let (mut sink, code) = tokio::join!(writer, reader);
            let _ = code;
            let _ = sink.close().await;
            d.set();
        });
        let _ = reply.send(resp);
        *st = State::Open {
            out: out_tx,
            incoming: Arc::new(tokio::sync::Mutex::new(in_rx)),
        };
        Ok(())
    }

    /// `websocket.close` before accepting: a 403 answer. After: a close
    /// frame with `code` and `reason`.
    #[pyo3(signature = (code=1000, reason=String::new()))]
    fn close(&self, code: u16, reason: String) -> PyResult<()> {
        let mut st = self.state();
        match std::mem::replace(&mut *st, State::Closed) {
            State::Offered(_, reply) => {
                let mut r = Response::new(ResponseBody::from("websocket connection refused\n"));
                *r.status_mut() = ::http::StatusCode::FORBIDDEN;
                let _ = reply.send(r);
                self.disconnect.set();
            }
            State::Open { out, incoming } => {
                let frame = tungstenite::protocol::CloseFrame {
                    code: code.into(),
                    reason: reason.into(),
                };
                let _ = out.try_send(Message::Close(Some(frame)));
                // Keep receiving until the peer's close arrives.
                *st = State::Open { out, incoming };
            }
            State::Closed => {}
        }
        Ok(())
    }

    /// The app failed: before the handshake was answered, the handler
    /// answers 500; after, the socket closes with 1011 (internal error).
    fn fail(&self) {
        let mut st = self.state();
        match std::mem::replace(&mut *st, State::Closed) {
            State::Offered(..) => self.disconnect.set(),
            State::Open { out, incoming } => {
                let frame = tungstenite::protocol::CloseFrame {
                    code: 1011u16.into(),
                    reason: "".into(),
                };
                let _ = out.try_send(Message::Close(Some(frame)));
                *st = State::Open { out, incoming };
            }
            State::Closed => {}
        }
    }

    /// Whether the handshake is still unanswered.
    fn pending(&self) -> bool {
        matches!(&*self.state(), State::Offered(..))
    }

    /// The next message: `str`, `bytes`, or an `int` close code once the
    /// socket ended; `None` when it is not there yet (then `token`
    /// completes with it).
    fn receive<'py>(&self, py: Python<'py>, token: u64) -> PyResult<Option<Bound<'py, PyAny>>> {
        let incoming = match &*self.state() {
            State::Open { incoming, .. } => incoming.clone(),
            _ => return Ok(Some(1006u16.into_pyobject(py)?.into_any())),
        };
        if let Ok(mut rx) = incoming.try_lock() {
            match rx.try_recv() {
                Ok(m) => return Ok(Some(m.into_py(py)?)),
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    return Ok(Some(1006u16.into_pyobject(py)?.into_any()))
                }
                Err(mpsc::error::TryRecvError::Empty) => {}
            }
        }
        let bridge = self.bridge.clone();
        self.bridge.handle()?.spawn(async move {
            let m = incoming.lock().await.recv().await;
            bridge.complete(token, Done::Ws(m.unwrap_or(Incoming::Closed(1006))));
        });
        Ok(None)
    }

    /// `websocket.send`: text (`str`) or binary (`bytes`). `True` when
    /// taken, `None` when the socket is gone (the caller raises an
    /// `OSError`), `False` when it waits for room (then `token` completes
    /// with a bool: `False` for gone).
    fn send(&self, data: &Bound<'_, PyAny>, token: u64) -> PyResult<Option<bool>> {
        let m = if data.is_instance_of::<PyString>() {
            Message::text(data.extract::<String>()?)
        } else if let Ok(b) = data.cast::<PyBytes>() {
            Message::binary(Bytes::copy_from_slice(b.as_bytes()))
        } else {
            return Err(PyValueError::new_err("websocket.send needs text or bytes"));
        };
        let out = match &*self.state() {
            State::Open { out, .. } => out.clone(),
            State::Offered(..) => {
                return Err(PyRuntimeError::new_err(
                    "websocket.send before websocket.accept",
                ))
            }
            State::Closed => return Ok(None),
        };
        match out.try_send(m) {
            Ok(()) => Ok(Some(true)),
            Err(mpsc::error::TrySendError::Closed(_)) => Ok(None),
            Err(mpsc::error::TrySendError::Full(m)) => {
                let bridge = self.bridge.clone();
                self.bridge.handle()?.spawn(async move {
                    let ok = out.send(m).await.is_ok();
                    bridge.complete(token, Done::Sent(ok));
                });
                Ok(Some(false))
            }
        }
    }
}
