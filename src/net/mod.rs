//! Async glue: runs the sans-IO engine over any tokio byte stream (a Unix
//! socket, a TCP stream, an in-memory duplex).
//!
//! [`client`] and [`server`] return a handle and a [`ConnectionTask`], a
//! future that owns the socket and must be spawned (hyper's
//! `handshake -> (SendRequest, Connection)` shape).
//!
//! Threads: a connection is cheapest when its task and the tasks that use
//! its handle run on one thread (a current-thread runtime, a `LocalSet`,
//! or a multi-thread runtime with one worker). On tokio's multi-thread
//! runtime, every answer the connection task hands over can wake another
//! worker to steal the waiting request task: `uwire bench` with 64 requests
//! in flight on one connection ran about 25% slower on two workers than on
//! one (see `BENCH_CLIENT_THREADS` in `scripts/bench-ipc`). The servers in
//! this crate already run one connection per thread.
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

pub mod busy_poll;
mod deadline;
mod driver;
mod error;
mod recvq;
mod rewind;
mod shared;
pub(crate) use deadline::{within, within_for};
pub(crate) use rewind::Rewind;
pub mod socket;
mod stream;
pub mod threads;
mod tunnel;
pub(crate) mod unix;
mod wqueue;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::oneshot;

pub use error::Error;
pub use socket::Socket;
pub use stream::{IncomingRequest, RecvStream, Responder, ResponseFuture, SendStream};
pub(crate) use tunnel::LimitTimer;
pub use tunnel::{Tunnel, TunnelLimits, DEFAULT_TUNNEL_IDLE_TIMEOUT, DEFAULT_TUNNEL_MAX_DURATION};
pub use unix::UnixConn;

use crate::conn::{Config, Role};
use crate::frame::{Reason, RequestHead, StreamId};
use driver::Driver;
use error::Kind;
use shared::{now, register, Handle, Shared};

/// The future that drives one connection. Spawn it (or poll it next to the
/// streams' work, as the runtime does); it resolves when the connection
/// closes.
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

fn start<T>(io: T, role: Role, config: Config) -> (Arc<Shared>, ConnectionTask)
where
    T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let driver_config = config.clone();
    let shared = Shared::new(role, config);
    let driver = Driver::new(io, shared.clone(), role, &driver_config);
    (
        shared,
        ConnectionTask {
            fut: Box::pin(driver),
        },
    )
}

/// Starts the client (proxy) side of a connection on `io`.
pub fn client<T>(io: T, config: Config) -> (SendRequest, ConnectionTask)
where
    T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (shared, task) = start(io, Role::Client, config);
    (
        SendRequest {
            shared: Handle::new(&shared),
        },
        task,
    )
}

/// Starts the server (application) side of a connection on `io`.
pub fn server<T>(io: T, config: Config) -> (Incoming, ConnectionTask)
where
    T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (shared, task) = start(io, Role::Server, config);
    (
        Incoming {
            shared: Handle::new(&shared),
        },
        task,
    )
}

/// Opens request streams on a client connection. Cheap to clone.
#[derive(Debug, Clone)]
pub struct SendRequest {
    shared: Handle,
}

impl SendRequest {
    /// Opens a stream with `head`. With `end_stream` the request has no
    /// body. Waits while the peer's stream limit is reached. Returns the
    /// body sender and a future of the response.
    pub fn send_request(
        &self,
        head: RequestHead,
        end_stream: bool,
    ) -> impl Future<Output = Result<(SendStream, ResponseFuture), Error>> + Send + '_ {
        // Not an `async fn`: that would keep `head` twice in the future
        // (the argument, and the `Option` it moves into).
        let mut head = Some(head);
        async move {
            let id = std::future::poll_fn(|cx| {
                self.poll_open(cx, end_stream, None, || {
                    head.take().expect("polled after completion")
                })
            })
            .await?;
            Ok(self.opened(id, end_stream))
        }
    }

    /// [`send_request`](Self::send_request) with a head that stays the
    /// caller's (it is copied when the stream opens): the future holds a
    /// reference rather than the head, and a caller that keeps the head
    /// anyway (to retry elsewhere) does not store it twice.
    ///
    /// With a `response_deadline`, a response head that has not come by
    /// then fails the [`ResponseFuture`] with an error whose
    /// [`is_timeout`](Error::is_timeout) is true, and the stream is reset
    /// (`CANCEL`). The connection's driver serves every such deadline with
    /// its one timer, so none is registered per request. The wait for room
    /// under the peer's stream limit is not bounded by it.
    pub(crate) async fn send_request_ref(
        &self,
        head: &RequestHead,
        end_stream: bool,
        response_deadline: Option<Instant>,
    ) -> Result<(SendStream, ResponseFuture), Error> {
        let id = std::future::poll_fn(|cx| {
            self.poll_open(cx, end_stream, response_deadline, || head.clone())
        })
        .await?;
        Ok(self.opened(id, end_stream))
    }

    /// Opens the stream if the peer's limit allows (`head` is called then,
    /// once), with its response deadline if one is given; otherwise waits
    /// for room.
    fn poll_open(
        &self,
        cx: &mut Context<'_>,
        end_stream: bool,
        response_deadline: Option<Instant>,
        head: impl FnOnce() -> RequestHead,
    ) -> Poll<Result<StreamId, Error>> {
        let mut g = self.shared.lock();
        if g.end.is_some() || g.engine.is_closed() {
            // Never written: safe to retry whatever ended the connection.
            return Poll::Ready(Err(Error::not_sent()));
        }
        if g.engine.can_open_stream() {
            let h = head();
            let upgrade = h.upgrade.is_some();
            let id = g.engine.open_stream(h, end_stream)?;
            if let Some(at) = response_deadline {
                g.engine.set_response_deadline(id, at);
            }
            g.new_slot(id, false);
            // Counted now, not at the driver's next look: whether the
            // driver waits for the turn's end to write depends on it.
            g.publish_active_streams(&self.shared);
            if let Some(s) = g.slots.get_mut(&id) {
                s.upgrade = upgrade;
            }
            return Poll::Ready(Ok(id));
        }
        if g.goaway_received {
            // Refused by the peer's GOAWAY: safe to retry elsewhere.
            return Poll::Ready(Err(Error::new(Kind::Refused)));
        }
        let w = cx.waker().clone();
        g.open_wakers.push(w);
        Poll::Pending
    }

    /// The handles of a stream just opened; wakes the driver to write it.
    fn opened(&self, id: StreamId, end_stream: bool) -> (SendStream, ResponseFuture) {
        self.shared.notify();
        (
            SendStream::new(id, self.shared.clone(), end_stream, false),
            ResponseFuture {
                id,
                shared: Some(self.shared.clone()),
            },
        )
    }

    /// Sends a PING and waits for its answer; returns the round-trip time.
    pub async fn ping(&self) -> Result<Duration, Error> {
        let (reply, rx) = oneshot::channel();
        {
            let mut g = self.shared.lock();
            if g.end.is_some() {
                return Err(Error::closed());
            }
            g.send_ping(reply);
        }
        self.shared.notify();
        rx.await.map_err(|_| Error::closed())?
    }

    /// Whether the connection task has stopped.
    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire)
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

/// The requests arriving on a server connection.
#[derive(Debug)]
pub struct Incoming {
    shared: Handle,
}

impl Incoming {
    /// The next request; `None` once the connection is closed.
    pub async fn accept(&mut self) -> Option<IncomingRequest> {
        std::future::poll_fn(|cx| self.poll_accept(cx)).await
    }

    /// The next request if one has already arrived, without waiting (and
    /// without registering for a wakeup: use [`Incoming::accept`] or
    /// [`Incoming::poll_accept`] to wait). A server takes every request a
    /// read brought in before it lets the driver write, so their answers
    /// leave together.
    pub fn try_accept(&mut self) -> Option<IncomingRequest> {
        let mut g = self.shared.lock();
        let (id, head) = g.incoming.pop_front()?;
        // A head that ended its stream has no body: say so before anyone
        // reads it (`RecvStream::is_end`), so a server can tell a request
        // without a body from one whose body is yet to come.
        let ended = g.slots.get(&id).is_some_and(|s| {
            s.recv_end && s.chunks.is_empty() && s.trailers.is_none() && s.gone.is_none()
        });
        drop(g);
        Some(IncomingRequest {
            head,
            body: RecvStream::new(id, self.shared.clone(), false).ended(ended),
            responder: Responder::new(id, self.shared.clone()),
        })
    }

    /// Polls for the next request; `None` once the connection is closed.
    pub fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<Option<IncomingRequest>> {
        if let Some(req) = self.try_accept() {
            return Poll::Ready(Some(req));
        }
        let mut g = self.shared.lock();
        if g.end.is_some() || self.shared.closed.load(Ordering::Acquire) {
            return Poll::Ready(None);
        }
        register(&mut g.incoming_waker, cx);
        Poll::Pending
    }

    /// Starts a graceful shutdown: GOAWAY, in-flight streams finish, new
    /// ones are refused; after `drain` the remaining streams are reset.
    /// With a non-zero `drain` the GOAWAY comes in two steps (a notice,
    /// then the final one once a PING round trip shows that every request
    /// the client sent before the notice is in), so no request already on
    /// its way is refused.
    pub fn shutdown(&self, drain: Option<Duration>) {
        shutdown(&self.shared, drain);
    }

    /// A handle that can start the shutdown from another task.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            shared: self.shared.clone(),
        }
    }
}

impl Drop for Incoming {
    fn drop(&mut self) {
        // The application stopped accepting: queued and later requests are
        // refused (retry-safe).
        {
            let mut g = self.shared.lock();
            g.accepting = false;
            g.drop_unaccepted(Reason::REFUSED_STREAM);
        }
        self.shared.notify();
    }
}

fn shutdown(shared: &Shared, drain: Option<Duration>) {
    {
        let mut g = shared.lock();
        shared.going_away.store(true, Ordering::Release);
        let t = now();
        if drain.is_some_and(|d| d.is_zero()) {
            g.engine.go_away(Reason::NO_ERROR, bytes::Bytes::new(), t);
        } else {
            // Two steps: nothing the client sent before it heard of the
            // drain is refused (a restart under load loses no request).
            g.engine.go_away_gracefully(t);
        }
        if let Some(d) = drain {
            g.engine.set_drain_deadline(t + d);
        }
    }
    shared.notify();
}

/// Starts a graceful shutdown of a server connection from anywhere.
#[derive(Debug, Clone)]
pub struct ShutdownHandle {
    shared: Handle,
}

impl ShutdownHandle {
    /// See [`Incoming::shutdown`].
    pub fn shutdown(&self, drain: Option<Duration>) {
        shutdown(&self.shared, drain);
    }
}
