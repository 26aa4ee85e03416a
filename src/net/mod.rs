//! Async glue: runs the sans-IO engine over any tokio byte stream (a Unix
//! socket, a TCP stream, an in-memory duplex).
//!
//! [`client`] and [`server`] return a handle and a [`ConnectionTask`], a
//! future that owns the socket and must be spawned (hyper's
//! `handshake -> (SendRequest, Connection)` shape).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use uwire::frame::{RequestHead, ResponseHead};
//! let (a, b) = tokio::io::duplex(64 * 1024);
//! let (sender, conn) = uwire::net::client(a, Default::default());
//! tokio::spawn(conn);
//! let (mut incoming, conn) = uwire::net::server(b, Default::default());
//! tokio::spawn(conn);
//! tokio::spawn(async move {
//!     while let Some(req) = incoming.accept().await {
//!         let mut body = req.responder.send_response(ResponseHead::new(200), false).unwrap();
//!         body.send_data("hi".into(), true).await.unwrap();
//!     }
//! });
//! let head = RequestHead { method: "GET".into(), path: "/".into(), ..Default::default() };
//! let (_send, response) = sender.send_request(head, true).await.unwrap();
//! let (head, mut body) = response.await.unwrap();
//! assert_eq!(head.status, 200);
//! assert_eq!(body.collect(1024).await.unwrap(), "hi");
//! # }
//! ```

mod driver;
mod error;
pub mod socket;
mod stream;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot};

pub use error::Error;
pub use socket::Socket;
pub use stream::{IncomingRequest, RecvStream, Responder, SendStream};

use crate::conn::{Config, Role};
use crate::frame::{RequestHead, ResponseHead};
use driver::{Driver, Shared};
use stream::{Command, CommandTx};

/// The future that drives one connection. Spawn it; it resolves when the
/// connection closes.
#[must_use = "the connection does nothing unless the task is spawned or awaited"]
pub struct ConnectionTask {
    fut: Pin<Box<dyn Future<Output = Result<(), Error>> + Send>>,
}

impl Future for ConnectionTask {
    type Output = Result<(), Error>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.fut.as_mut().poll(cx)
    }
}

impl std::fmt::Debug for ConnectionTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConnectionTask")
    }
}

fn spawn_driver<T>(
    io: T,
    role: Role,
    config: Config,
    incoming: Option<mpsc::UnboundedSender<IncomingRequest>>,
) -> (CommandTx, Arc<Shared>, ConnectionTask)
where
    T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared::default());
    let driver = Driver::new(role, config, cmd_tx.downgrade(), incoming, shared.clone());
    let fut = Box::pin(driver.run(io, cmd_rx));
    (cmd_tx, shared, ConnectionTask { fut })
}

/// Starts the client (proxy) side of a connection on `io`.
pub fn client<T>(io: T, config: Config) -> (SendRequest, ConnectionTask)
where
    T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (cmd, shared, task) = spawn_driver(io, Role::Client, config, None);
    (SendRequest { cmd, shared }, task)
}

/// Starts the server (application) side of a connection on `io`.
pub fn server<T>(io: T, config: Config) -> (Incoming, ConnectionTask)
where
    T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (tx, rx) = mpsc::unbounded_channel();
    let (cmd, _shared, task) = spawn_driver(io, Role::Server, config, Some(tx));
    (Incoming { rx, cmd }, task)
}

/// Opens request streams on a client connection. Cheap to clone.
#[derive(Debug, Clone)]
pub struct SendRequest {
    cmd: CommandTx,
    shared: Arc<Shared>,
}

impl SendRequest {
    /// Opens a stream with `head`. With `end_stream` the request has no
    /// body. Waits while the peer's stream limit is reached. Returns the
    /// body sender and a future of the response.
    pub async fn send_request(
        &self,
        head: RequestHead,
        end_stream: bool,
    ) -> Result<(SendStream, ResponseFuture), Error> {
        let (reply, rx) = oneshot::channel();
        self.cmd
            .send(Command::Open {
                head,
                end_stream,
                reply,
            })
            .map_err(|_| Error::not_sent())?;
        let opened = rx.await.map_err(|_| Error::not_sent())??;
        let send = SendStream::new(opened.id, self.cmd.clone(), end_stream);
        let body = RecvStream::new(opened.id, opened.body, self.cmd.clone(), true);
        Ok((
            send,
            ResponseFuture {
                rx: opened.response,
                body: Some(body),
            },
        ))
    }

    /// Sends a PING and waits for its answer; returns the round-trip time.
    pub async fn ping(&self) -> Result<Duration, Error> {
        let (reply, rx) = oneshot::channel();
        self.cmd
            .send(Command::Ping { reply })
            .map_err(|_| Error::closed())?;
        rx.await.map_err(|_| Error::closed())?
    }

    /// Whether the connection task has stopped.
    pub fn is_closed(&self) -> bool {
        self.cmd.is_closed() || self.shared.closed.load(Ordering::Acquire)
    }

    /// Whether the connection accepts no new streams (peer GOAWAY, shutdown
    /// or closed).
    pub fn is_going_away(&self) -> bool {
        self.is_closed() || self.shared.going_away.load(Ordering::Acquire)
    }

    /// The peer's stream limit, once its SETTINGS arrived.
    pub fn peer_max_concurrent_streams(&self) -> Option<u32> {
        match self.shared.peer_max_streams.load(Ordering::Acquire) {
            0 => None,
            n => Some(n),
        }
    }

    /// Streams open on this connection now.
    pub fn active_streams(&self) -> u32 {
        self.shared.active_streams.load(Ordering::Acquire)
    }
}

/// Resolves to the final response head and the response body. Dropping it
/// before the response arrives resets the stream with `CANCEL`.
#[derive(Debug)]
pub struct ResponseFuture {
    rx: oneshot::Receiver<Result<ResponseHead, Error>>,
    body: Option<RecvStream>,
}

impl Future for ResponseFuture {
    type Output = Result<(ResponseHead, RecvStream), Error>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match Pin::new(&mut self.rx).poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(_)) => Poll::Ready(Err(Error::closed())),
            Poll::Ready(Ok(Err(e))) => Poll::Ready(Err(e)),
            Poll::Ready(Ok(Ok(head))) => {
                let body = self
                    .body
                    .take()
                    .expect("ResponseFuture polled after completion");
                Poll::Ready(Ok((head, body)))
            }
        }
    }
}

/// The requests arriving on a server connection.
#[derive(Debug)]
pub struct Incoming {
    rx: mpsc::UnboundedReceiver<IncomingRequest>,
    cmd: CommandTx,
}

impl Incoming {
    /// The next request; `None` once the connection is closed.
    pub async fn accept(&mut self) -> Option<IncomingRequest> {
        self.rx.recv().await
    }

    /// Starts a graceful shutdown: GOAWAY, in-flight streams finish, new
    /// ones are refused; after `drain` the remaining streams are reset.
    pub fn shutdown(&self, drain: Option<Duration>) {
        let _ = self.cmd.send(Command::GoAway { drain });
    }

    /// A handle that can start the shutdown from another task.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            cmd: self.cmd.clone(),
        }
    }
}

/// Starts a graceful shutdown of a server connection from anywhere.
#[derive(Debug, Clone)]
pub struct ShutdownHandle {
    cmd: CommandTx,
}

impl ShutdownHandle {
    /// See [`Incoming::shutdown`].
    pub fn shutdown(&self, drain: Option<Duration>) {
        let _ = self.cmd.send(Command::GoAway { drain });
    }
}
