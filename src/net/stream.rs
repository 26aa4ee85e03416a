//! Per-stream handles: the send half, the receive half, and the server's
//! responder. Each acts on the connection's shared state (see `shared`)
//! and wakes the driver when it queued something to write.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;

use super::error::{Error, Kind};
use super::shared::{register, Gone, Handle, Shared, SEND_LOW_WATER};
use crate::frame::{HeaderBlock, Reason, RequestHead, ResponseHead, StreamId};

/// The sending half of a stream: request body (client) or response body
/// (server). Dropping it before the stream ended resets the stream with
/// `CANCEL`.
#[derive(Debug)]
pub struct SendStream {
    id: StreamId,
    shared: Handle,
    finished: bool,
    server: bool,
}

impl SendStream {
    pub(crate) fn new(id: StreamId, shared: Handle, finished: bool, server: bool) -> SendStream {
        SendStream {
            id,
            shared,
            finished,
            server,
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
        if !self.server {
            return std::future::pending().await;
        }
        closed(&self.shared, self.id).await
    }

    /// Sends body bytes. Resolves once the bytes are handed to the socket or
    /// only a bounded amount is waiting for flow-control credit, so a caller
    /// that awaits each call never buffers a whole body.
    pub async fn send_data(&mut self, data: Bytes, end_stream: bool) -> Result<(), Error> {
        if self.finished {
            return Err(Error::new(Kind::Closed));
        }
        {
            let mut g = self.shared.lock();
            if g.slots
                .get(&self.id)
                .and_then(|s| s.gone)
                .is_some_and(Gone::is_abnormal)
            {
                let e = g.stream_error(g.slots.get(&self.id));
                return Err(e);
            }
            if g.end.is_some() {
                return Err(g.conn_error());
            }
            g.engine.send_data(self.id, data, end_stream)?;
        }
        if end_stream {
            self.finished = true;
        }
        self.shared.notify();
        let (id, shared) = (self.id, &self.shared);
        std::future::poll_fn(|cx| {
            let mut g = shared.lock();
            let buffered = g.engine.send_buffered(id);
            let gone = g.slots.get(&id).and_then(|s| s.gone);
            match gone {
                // Finished: everything was written.
                Some(Gone::Finished) => return Poll::Ready(Ok(())),
                Some(_) => return Poll::Ready(Err(g.stream_error(g.slots.get(&id)))),
                None => {}
            }
            if buffered <= SEND_LOW_WATER {
                return Poll::Ready(Ok(()));
            }
            if g.end.is_some() {
                return Poll::Ready(Err(g.conn_error()));
            }
            match g.slots.get_mut(&id) {
                Some(s) => register(&mut s.send_waker, cx),
                None => return Poll::Ready(Err(Error::closed())),
            }
            if !g.send_waiters.contains(&id) {
                g.send_waiters.push(id);
            }
            Poll::Pending
        })
        .await
    }

    /// Poll form of [`SendStream::send_data`] for byte-stream adapters
    /// ([`super::Tunnel`]): takes (copies) up to [`SEND_LOW_WATER`] bytes of
    /// `data` once at most that many wait for flow-control credit, else
    /// registers `cx` to be woken when they drained. Returns how many bytes
    /// were taken (0 only for an empty `data`).
    pub(crate) fn poll_send_slice(
        &mut self,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<Result<usize, Error>> {
        if self.finished {
            return Poll::Ready(Err(Error::new(Kind::Closed)));
        }
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let id = self.id;
        let mut g = self.shared.lock();
        if g.slots
            .get(&id)
            .and_then(|s| s.gone)
            .is_some_and(Gone::is_abnormal)
        {
            return Poll::Ready(Err(g.stream_error(g.slots.get(&id))));
        }
        if g.end.is_some() {
            return Poll::Ready(Err(g.conn_error()));
        }
        if g.engine.send_buffered(id) > SEND_LOW_WATER {
            match g.slots.get_mut(&id) {
                Some(s) => register(&mut s.send_waker, cx),
                None => return Poll::Ready(Err(Error::closed())),
            }
            if !g.send_waiters.contains(&id) {
                g.send_waiters.push(id);
            }
            return Poll::Pending;
        }
        let n = data.len().min(SEND_LOW_WATER);
        g.engine
            .send_data(id, Bytes::copy_from_slice(&data[..n]), false)?;
        drop(g);
        self.shared.notify();
        Poll::Ready(Ok(n))
    }

    /// Ends the sending half now (END_STREAM after what is queued), without
    /// waiting for anything to drain. A no-op once finished.
    pub(crate) fn finish_now(&mut self) -> Result<(), Error> {
        if self.finished {
            return Ok(());
        }
        self.finished = true;
        {
            let mut g = self.shared.lock();
            if g.slots
                .get(&self.id)
                .and_then(|s| s.gone)
                .is_some_and(Gone::is_abnormal)
            {
                return Err(g.stream_error(g.slots.get(&self.id)));
            }
            if g.end.is_some() {
                return Err(g.conn_error());
            }
            g.engine.send_data(self.id, Bytes::new(), true)?;
        }
        self.shared.notify();
        Ok(())
    }

    /// Whether the sending half has ended (or was reset through this handle).
    pub(crate) fn is_finished(&self) -> bool {
        self.finished
    }

    /// Sends trailers and ends the stream.
    pub fn send_trailers(&mut self, fields: HeaderBlock) -> Result<(), Error> {
        if self.finished {
            return Err(Error::new(Kind::Closed));
        }
        self.finished = true;
        {
            let mut g = self.shared.lock();
            if g.end.is_some() {
                return Err(g.conn_error());
            }
            if let Err(e) = g.engine.send_trailers(self.id, fields) {
                g.reset_unsendable(self.id, &e);
            }
        }
        self.shared.notify();
        Ok(())
    }

    /// Ends the stream with no more data.
    pub async fn finish(&mut self) -> Result<(), Error> {
        self.send_data(Bytes::new(), true).await
    }

    /// Resets the stream with `reason`.
    pub fn reset(mut self, reason: Reason) {
        self.finished = true;
        self.shared.lock().reset(self.id, reason);
        self.shared.notify();
    }
}

impl Drop for SendStream {
    fn drop(&mut self) {
        let mut g = self.shared.lock();
        if !self.finished {
            g.reset(self.id, Reason::CANCEL);
        }
        g.release_handle(self.id);
        drop(g);
        if !self.finished {
            self.shared.notify();
        }
    }
}

/// Resolves once stream `id` is no longer open (see [`Responder::closed`]).
async fn closed(shared: &Shared, id: StreamId) -> Option<Reason> {
    std::future::poll_fn(|cx| {
        let mut g = shared.lock();
        let Some(s) = g.slots.get_mut(&id) else {
            return Poll::Ready(None);
        };
        match s.gone {
            Some(Gone::Reset(r, true)) => Poll::Ready(Some(r)),
            Some(_) => Poll::Ready(None),
            None => {
                register(&mut s.closed_waker, cx);
                Poll::Pending
            }
        }
    })
    .await
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
    shared: Option<Handle>,
    done: bool,
    trailers: Option<HeaderBlock>,
    reset_on_drop: bool,
}

impl RecvStream {
    pub(crate) fn new(id: StreamId, shared: Handle, reset_on_drop: bool) -> RecvStream {
        RecvStream {
            id,
            shared: Some(shared),
            done: false,
            trailers: None,
            reset_on_drop,
        }
    }

    /// Marks the body as read to its end already (a request whose head
    /// ended the stream: it has none).
    pub(crate) fn ended(mut self, ended: bool) -> RecvStream {
        self.done = ended;
        self
    }

    /// The stream id.
    pub fn id(&self) -> StreamId {
        self.id
    }

    /// Polls for the next chunk of body bytes; `None` at the end of the
    /// body.
    pub fn poll_data(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, Error>>> {
        if self.done {
            return Poll::Ready(None);
        }
        let Some(shared) = &self.shared else {
            return Poll::Ready(None);
        };
        let mut g = shared.lock();
        let id = self.id;
        let Some(s) = g.slots.get_mut(&id) else {
            self.done = true;
            return Poll::Ready(Some(Err(Error::closed())));
        };
        if let Some(chunk) = s.chunks.pop() {
            // Credit goes back as the bytes are read.
            g.engine.release_capacity(id, chunk.len());
            let wake = g.engine.has_pending_transmit();
            drop(g);
            if wake {
                shared.notify();
            }
            return Poll::Ready(Some(Ok(chunk)));
        }
        if s.recv_end {
            self.done = true;
            self.trailers = s.trailers.take();
            return Poll::Ready(None);
        }
        if s.gone.is_some() {
            self.done = true;
            return Poll::Ready(Some(Err(g.stream_error(g.slots.get(&id)))));
        }
        register(&mut s.recv_waker, cx);
        Poll::Pending
    }

    /// The next chunk of body bytes; `None` at the end of the body.
    pub async fn data(&mut self) -> Option<Result<Bytes, Error>> {
        std::future::poll_fn(|cx| self.poll_data(cx)).await
    }

    /// Reads the whole remaining body into one buffer, failing if it grows
    /// past `limit` bytes.
    pub async fn collect(&mut self, limit: usize) -> Result<Bytes, Error> {
        // A body of one chunk (the common small answer) is returned as is.
        let mut first: Option<Bytes> = None;
        let mut out = bytes::BytesMut::new();
        let mut total = 0;
        while let Some(chunk) = self.data().await {
            let chunk = chunk?;
            total += chunk.len();
            if total > limit {
                return Err(Error::new(Kind::Reset(Reason::LIMIT_EXCEEDED, false)));
            }
            if first.is_none() && out.is_empty() {
                first = Some(chunk);
            } else {
                if let Some(f) = first.take() {
                    out.extend_from_slice(&f);
                }
                out.extend_from_slice(&chunk);
            }
        }
        Ok(first.unwrap_or_else(|| out.freeze()))
    }

    /// Trailers, once the body has been read to the end.
    pub fn trailers(&self) -> Option<&HeaderBlock> {
        self.trailers.as_ref()
    }

    /// Whether the body has been read to the end (or failed). A request
    /// whose head ended its stream is at its end from the start.
    pub fn is_end(&self) -> bool {
        self.done
    }

    /// [`RecvStream::reset`] without giving the handle up (for wrappers
    /// that reset from `Drop`).
    pub(crate) fn reset_in_place(&mut self, reason: Reason) {
        self.done = true;
        if let Some(shared) = &self.shared {
            shared.lock().reset(self.id, reason);
            shared.notify();
        }
    }

    /// Resets the stream with `reason`, telling the peer to stop sending.
    pub fn reset(mut self, reason: Reason) {
        self.done = true;
        if let Some(shared) = &self.shared {
            shared.lock().reset(self.id, reason);
            shared.notify();
        }
    }
}

impl Drop for RecvStream {
    fn drop(&mut self) {
        let Some(shared) = self.shared.take() else {
            return;
        };
        let mut g = shared.lock();
        let id = self.id;
        // Bytes delivered to this handle but never read still count against
        // the connection's receive window: give their credit back, or every
        // body dropped half-read shrinks the window until the connection
        // stalls. Later arrivals are credited by the driver (`discard`).
        let unread: usize = match g.slots.get_mut(&id) {
            Some(s) => {
                s.discard = true;
                s.chunks.clear()
            }
            None => 0,
        };
        if unread > 0 {
            g.engine.release_capacity(id, unread);
        }
        if !self.done && self.reset_on_drop {
            g.reset(id, Reason::CANCEL);
        }
        g.release_handle(id);
        let wake = g.engine.has_pending_transmit();
        drop(g);
        if wake {
            shared.notify();
        }
    }
}

/// A request received by a server connection.
#[derive(Debug)]
pub struct IncomingRequest {
    /// The request head (boxed: it travels cheaply to the handler).
    pub head: Box<RequestHead>,
    /// The request body.
    pub body: RecvStream,
    /// Answers the request.
    pub responder: Responder,
}

/// Lets a server answer one request.
#[derive(Debug)]
pub struct Responder {
    id: StreamId,
    shared: Option<Handle>,
}

impl Responder {
    pub(crate) fn new(id: StreamId, shared: Handle) -> Responder {
        Responder {
            id,
            shared: Some(shared),
        }
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
        match &self.shared {
            Some(shared) => closed(shared, self.id).await,
            None => None,
        }
    }

    /// Sends an interim (1xx) head; the final head must still follow.
    pub fn send_interim(&mut self, head: ResponseHead) -> Result<(), Error> {
        let Some(shared) = &self.shared else {
            return Err(Error::closed());
        };
        {
            let mut g = shared.lock();
            if g.end.is_some() {
                return Err(g.conn_error());
            }
            if let Err(e) = g.engine.send_response(self.id, head, false) {
                g.reset_unsendable(self.id, &e);
            }
        }
        shared.notify();
        Ok(())
    }

    /// Sends the final head. With `end_stream` the response has no body and
    /// the returned [`SendStream`] is already finished.
    pub fn send_response(
        mut self,
        head: ResponseHead,
        end_stream: bool,
    ) -> Result<SendStream, Error> {
        let shared = self.shared.take().ok_or_else(Error::closed)?;
        {
            let mut g = shared.lock();
            if g.end.is_some() {
                let e = g.conn_error();
                g.release_handle(self.id);
                return Err(e);
            }
            if let Err(e) = g.engine.send_response(self.id, head, end_stream) {
                g.reset_unsendable(self.id, &e);
            }
        }
        shared.notify();
        Ok(SendStream::new(self.id, shared, end_stream, true))
    }

    /// Resets the stream instead of answering.
    pub fn reset(mut self, reason: Reason) {
        if let Some(shared) = self.shared.take() {
            let mut g = shared.lock();
            g.reset(self.id, reason);
            g.release_handle(self.id);
            drop(g);
            shared.notify();
        }
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.take() {
            let mut g = shared.lock();
            g.reset(self.id, Reason::INTERNAL_ERROR);
            g.release_handle(self.id);
            drop(g);
            shared.notify();
        }
    }
}

/// Resolves to the final response head and the response body. Dropping it
/// before the response arrives resets the stream with `CANCEL`.
#[derive(Debug)]
pub struct ResponseFuture {
    pub(crate) id: StreamId,
    pub(crate) shared: Option<Handle>,
}

impl Future for ResponseFuture {
    type Output = Result<(ResponseHead, RecvStream), Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let id = self.id;
        let shared = self
            .shared
            .as_ref()
            .expect("ResponseFuture polled after completion");
        let mut g = shared.lock();
        let Some(s) = g.slots.get_mut(&id) else {
            return Poll::Ready(Err(Error::closed()));
        };
        if let Some(head) = s.response.take() {
            drop(g);
            let shared = self.shared.take().expect("checked above");
            return Poll::Ready(Ok((head, RecvStream::new(id, shared, true))));
        }
        if s.gone.is_some() {
            let e = g.stream_error(g.slots.get(&id));
            return Poll::Ready(Err(e));
        }
        register(&mut s.response_waker, cx);
        Poll::Pending
    }
}

impl Drop for ResponseFuture {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.take() {
            let mut g = shared.lock();
            let pending = g.slots.get(&self.id).is_some_and(|s| s.gone.is_none());
            if pending {
                g.reset(self.id, Reason::CANCEL);
            }
            g.release_handle(self.id);
            drop(g);
            if pending {
                shared.notify();
            }
        }
    }
}
