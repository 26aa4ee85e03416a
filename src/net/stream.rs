//! Per-stream handles: the send half, the receive half, and the server's
//! responder. They talk to the connection driver over a channel; the driver
//! owns the socket and the engine.

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use super::error::{Error, Kind};
use crate::frame::{HeaderBlock, Reason, RequestHead, ResponseHead, StreamId};

/// What a handle asks the driver to do.
#[allow(clippy::large_enum_variant)] // moved once through a channel; boxing costs more
pub(crate) enum Command {
    Open {
        head: RequestHead,
        end_stream: bool,
        reply: oneshot::Sender<Result<Opened, Error>>,
    },
    Respond {
        id: StreamId,
        head: ResponseHead,
        end_stream: bool,
    },
    Data {
        id: StreamId,
        data: Bytes,
        end_stream: bool,
        done: oneshot::Sender<Result<(), Error>>,
    },
    Trailers {
        id: StreamId,
        fields: HeaderBlock,
    },
    Reset {
        id: StreamId,
        reason: Reason,
    },
    Release {
        id: StreamId,
        n: usize,
    },
    /// The reader is gone but the stream lives on (server side): discard
    /// further body bytes, returning their credit.
    Discard {
        id: StreamId,
    },
    Ping {
        reply: oneshot::Sender<Result<std::time::Duration, Error>>,
    },
    GoAway {
        drain: Option<std::time::Duration>,
    },
}

pub(crate) type CommandTx = mpsc::UnboundedSender<Command>;

/// What the driver hands a receive half.
#[derive(Debug)]
pub(crate) enum RecvEvent {
    Data(Bytes),
    Trailers(HeaderBlock),
    End,
    Error(Error),
}

/// The driver's answer to an `Open` command.
pub(crate) struct Opened {
    pub(crate) id: StreamId,
    pub(crate) response: oneshot::Receiver<Result<ResponseHead, Error>>,
    pub(crate) body: mpsc::UnboundedReceiver<RecvEvent>,
}

/// The sending half of a stream: request body (client) or response body
/// (server). Dropping it before the stream ended resets the stream with
/// `CANCEL`.
#[derive(Debug)]
pub struct SendStream {
    id: StreamId,
    cmd: CommandTx,
    finished: bool,
    closed: ClosedSignal,
}

impl SendStream {
    pub(crate) fn new(id: StreamId, cmd: CommandTx, finished: bool) -> SendStream {
        SendStream {
            id,
            cmd,
            finished,
            closed: ClosedSignal::default(),
        }
    }

    /// The stream id.
    pub fn id(&self) -> StreamId {
        self.id
    }

    /// Server side (a response body): resolves once the stream is no longer
    /// open on the connection, with `Some(reason)` when the peer reset it
    /// (its client went away, its own timeout fired), `None` when it ended
    /// otherwise (finished, reset locally, connection closed). Lets a
    /// response producer that waits for its next chunk (server-sent events,
    /// long polls) stop as soon as nobody will read it. On the client side
    /// it never resolves. Cancel-safe.
    pub async fn closed(&mut self) -> Option<Reason> {
        self.closed.wait().await
    }

    /// Sends body bytes. Resolves once the bytes are handed to the socket or
    /// only a bounded amount is waiting for flow-control credit, so a caller
    /// that awaits each call never buffers a whole body.
    pub async fn send_data(&mut self, data: Bytes, end_stream: bool) -> Result<(), Error> {
        if self.finished {
            return Err(Error::new(Kind::Closed));
        }
        let (done, rx) = oneshot::channel();
        self.cmd
            .send(Command::Data {
                id: self.id,
                data,
                end_stream,
                done,
            })
            .map_err(|_| Error::closed())?;
        if end_stream {
            self.finished = true;
        }
        rx.await.map_err(|_| Error::closed())?
    }

    /// Sends trailers and ends the stream.
    pub fn send_trailers(&mut self, fields: HeaderBlock) -> Result<(), Error> {
        if self.finished {
            return Err(Error::new(Kind::Closed));
        }
        self.finished = true;
        self.cmd
            .send(Command::Trailers {
                id: self.id,
                fields,
            })
            .map_err(|_| Error::closed())
    }

    /// Ends the stream with no more data.
    pub async fn finish(&mut self) -> Result<(), Error> {
        self.send_data(Bytes::new(), true).await
    }

    /// Resets the stream with `reason`.
    pub fn reset(mut self, reason: Reason) {
        self.finished = true;
        let _ = self.cmd.send(Command::Reset {
            id: self.id,
            reason,
        });
    }
}

impl Drop for SendStream {
    fn drop(&mut self) {
        if !self.finished {
            let _ = self.cmd.send(Command::Reset {
                id: self.id,
                reason: Reason::CANCEL,
            });
        }
    }
}

/// The receiving half of a stream. Flow-control credit goes back to the
/// peer only as bytes are read, so an unread stream stalls the peer instead
/// of buffering without bound.
///
/// Dropping a response body (client side) before its end resets the stream
/// with `CANCEL`. Dropping a request body (server side) before its end only
/// discards the rest of it, so the response can still be sent.
#[derive(Debug)]
pub struct RecvStream {
    id: StreamId,
    rx: mpsc::UnboundedReceiver<RecvEvent>,
    cmd: CommandTx,
    done: bool,
    trailers: Option<HeaderBlock>,
    reset_on_drop: bool,
}

impl RecvStream {
    pub(crate) fn new(
        id: StreamId,
        rx: mpsc::UnboundedReceiver<RecvEvent>,
        cmd: CommandTx,
        reset_on_drop: bool,
    ) -> RecvStream {
        RecvStream {
            id,
            rx,
            cmd,
            done: false,
            trailers: None,
            reset_on_drop,
        }
    }

    /// The stream id.
    pub fn id(&self) -> StreamId {
        self.id
    }

    /// The next chunk of body bytes; `None` at the end of the body.
    pub async fn data(&mut self) -> Option<Result<Bytes, Error>> {
        if self.done {
            return None;
        }
        match self.rx.recv().await {
            Some(RecvEvent::Data(b)) => {
                let _ = self.cmd.send(Command::Release {
                    id: self.id,
                    n: b.len(),
                });
                Some(Ok(b))
            }
            Some(RecvEvent::Trailers(t)) => {
                self.trailers = Some(t);
                self.done = true;
                None
            }
            Some(RecvEvent::End) => {
                self.done = true;
                None
            }
            Some(RecvEvent::Error(e)) => {
                self.done = true;
                Some(Err(e))
            }
            None => {
                self.done = true;
                Some(Err(Error::closed()))
            }
        }
    }

    /// Reads the whole remaining body into one buffer, failing if it grows
    /// past `limit` bytes.
    pub async fn collect(&mut self, limit: usize) -> Result<Bytes, Error> {
        let mut out = bytes::BytesMut::new();
        while let Some(chunk) = self.data().await {
            let chunk = chunk?;
            if out.len() + chunk.len() > limit {
                return Err(Error::new(Kind::Reset(Reason::LIMIT_EXCEEDED, false)));
            }
            out.extend_from_slice(&chunk);
        }
        Ok(out.freeze())
    }

    /// Trailers, once the body has been read to the end.
    pub fn trailers(&self) -> Option<&HeaderBlock> {
        self.trailers.as_ref()
    }

    /// Whether the body has been read to the end (or failed).
    pub fn is_end(&self) -> bool {
        self.done
    }

    /// Resets the stream with `reason`, telling the peer to stop sending.
    pub fn reset(mut self, reason: Reason) {
        self.done = true;
        let _ = self.cmd.send(Command::Reset {
            id: self.id,
            reason,
        });
    }
}

impl Drop for RecvStream {
    fn drop(&mut self) {
        // Bytes delivered to this handle but never read still count against
        // the connection's receive window: give their credit back, or every
        // body dropped half-read shrinks the window until the connection
        // stalls. Closing first makes later deliveries fail, and the driver
        // credits those itself.
        self.rx.close();
        let mut unread = 0;
        while let Ok(ev) = self.rx.try_recv() {
            if let RecvEvent::Data(b) = ev {
                unread += b.len();
            }
        }
        if unread > 0 {
            let _ = self.cmd.send(Command::Release {
                id: self.id,
                n: unread,
            });
        }
        if !self.done {
            let _ = self.cmd.send(if self.reset_on_drop {
                Command::Reset {
                    id: self.id,
                    reason: Reason::CANCEL,
                }
            } else {
                Command::Discard { id: self.id }
            });
        }
    }
}

/// Resolves when the driver reports a server stream gone (see
/// [`Responder::closed`]).
#[derive(Debug, Default)]
pub(crate) struct ClosedSignal {
    rx: Option<oneshot::Receiver<Reason>>,
    fired: Option<Option<Reason>>,
}

impl ClosedSignal {
    async fn wait(&mut self) -> Option<Reason> {
        if let Some(r) = self.fired {
            return r;
        }
        let Some(rx) = self.rx.as_mut() else {
            return std::future::pending().await;
        };
        let r = rx.await.ok();
        self.rx = None;
        self.fired = Some(r);
        r
    }
}

/// Lets a server answer one request.
#[derive(Debug)]
pub struct Responder {
    id: StreamId,
    cmd: CommandTx,
    sent: bool,
    closed: ClosedSignal,
}

impl Responder {
    pub(crate) fn new(id: StreamId, cmd: CommandTx) -> Responder {
        Responder {
            id,
            cmd,
            sent: false,
            closed: ClosedSignal::default(),
        }
    }

    pub(crate) fn with_closed(mut self, rx: oneshot::Receiver<Reason>) -> Responder {
        self.closed.rx = Some(rx);
        self
    }

    /// The stream id.
    pub fn id(&self) -> StreamId {
        self.id
    }

    /// Resolves once the request can no longer be answered, with
    /// `Some(reason)` when the proxy reset the stream (its client went
    /// away, its own timeout fired) and `None` when it ended otherwise
    /// (reset locally, connection closed). Race it against the work that
    /// computes the response to stop that work promptly. Cancel-safe.
    pub async fn closed(&mut self) -> Option<Reason> {
        self.closed.wait().await
    }

    /// Sends an interim (1xx) head; the final head must still follow.
    pub fn send_interim(&mut self, head: ResponseHead) -> Result<(), Error> {
        self.cmd
            .send(Command::Respond {
                id: self.id,
                head,
                end_stream: false,
            })
            .map_err(|_| Error::closed())
    }

    /// Sends the final head. With `end_stream` the response has no body and
    /// the returned [`SendStream`] is already finished.
    pub fn send_response(
        mut self,
        head: ResponseHead,
        end_stream: bool,
    ) -> Result<SendStream, Error> {
        self.sent = true;
        self.cmd
            .send(Command::Respond {
                id: self.id,
                head,
                end_stream,
            })
            .map_err(|_| Error::closed())?;
        let mut send = SendStream::new(self.id, self.cmd.clone(), end_stream);
        send.closed = std::mem::take(&mut self.closed);
        Ok(send)
    }

    /// Resets the stream instead of answering.
    pub fn reset(mut self, reason: Reason) {
        self.sent = true;
        let _ = self.cmd.send(Command::Reset {
            id: self.id,
            reason,
        });
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        if !self.sent {
            let _ = self.cmd.send(Command::Reset {
                id: self.id,
                reason: Reason::INTERNAL_ERROR,
            });
        }
    }
}

/// A request received by a server connection.
#[derive(Debug)]
pub struct IncomingRequest {
    /// The request head.
    pub head: RequestHead,
    /// The request body.
    pub body: RecvStream,
    /// Answers the request.
    pub responder: Responder,
}
