//! The connection driver: a task that owns the socket and the sans-IO
//! engine, moves bytes between them, and relays events to stream handles.
//!
//! It reads and writes at once (both branches of one `select!`), so two
//! peers that are both writing can never deadlock on full socket buffers.
//! It takes frames from the engine only while little waits to be written
//! (`STAGE_LIMIT`), so a peer that stops reading gets no further
//! flow-control credit and makes nothing here grow: what it can still make
//! the engine queue (PING answers, RESET replies) is capped by the engine's
//! abuse budgets.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

use super::error::{Error, Kind};
use super::stream::{
    Command, CommandTx, IncomingRequest, Opened, RecvEvent, RecvStream, Responder,
};
use crate::codec::Codec;
use crate::conn::{Config, Connection, Event, Role, UserError};
use crate::frame::{preface, Reason, RequestHead, ResponseHead, StreamId};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;

/// A send completes (the caller may send more) once at most this many bytes
/// of the stream wait in the engine for flow-control credit.
const SEND_LOW_WATER: usize = 128 * 1024;
/// Frames are taken from the engine only while fewer than this many bytes
/// wait to be written. What the engine has not handed out has not happened
/// yet: a WINDOW_UPDATE still in the engine has given the peer no credit,
/// so a peer that stops reading stops getting credit too (PROTOCOL.md 8.3),
/// and nothing here grows while it does not read.
const STAGE_LIMIT: usize = 256 * 1024;
/// Commands handled per wake-up before the driver writes again.
const COMMAND_BATCH: usize = 64;
/// How long a closing connection keeps reading (and discarding) after its
/// last write, waiting for the peer to close first. Closing a socket with
/// unread input makes the kernel reset it, and a reset can destroy what
/// the peer has not read yet: the last responses and the GOAWAY that tells
/// it which of its new streams to retry (nginx's "lingering close").
pub(crate) const LINGER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// State the driver publishes for its handles.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    /// The peer's max_concurrent_streams once its SETTINGS arrived, else 0.
    pub(crate) peer_max_streams: AtomicU32,
    /// Streams open on the connection right now.
    pub(crate) active_streams: AtomicU32,
    /// Set once the driver stopped.
    pub(crate) closed: AtomicBool,
    /// Set once the peer sent GOAWAY or the connection is shutting down.
    pub(crate) going_away: AtomicBool,
}

#[derive(Default)]
struct Slot {
    body: Option<mpsc::UnboundedSender<RecvEvent>>,
    response: Option<oneshot::Sender<Result<ResponseHead, Error>>>,
    /// Server streams: told the reason when the peer resets the stream;
    /// dropped when the stream ends any other way. Wakes
    /// `Responder::closed` / `SendStream::closed`.
    closed: Option<oneshot::Sender<Reason>>,
}

type OpenRequest = (RequestHead, bool, oneshot::Sender<Result<Opened, Error>>);

pub(crate) struct Driver {
    role: Role,
    write_timeout: Option<Duration>,
    engine: Connection,
    codec: Codec,
    streams: HashMap<StreamId, Slot>,
    pending_opens: VecDeque<OpenRequest>,
    acks: Vec<(StreamId, oneshot::Sender<Result<(), Error>>)>,
    pings: VecDeque<oneshot::Sender<Result<Duration, Error>>>,
    ping_seq: u64,
    incoming: Option<mpsc::UnboundedSender<IncomingRequest>>,
    cmd_weak: mpsc::WeakUnboundedSender<Command>,
    goaway_received: bool,
    failure: Option<Error>,
    shared: Arc<Shared>,
}

impl Driver {
    pub(crate) fn new(
        role: Role,
        config: Config,
        cmd_weak: mpsc::WeakUnboundedSender<Command>,
        incoming: Option<mpsc::UnboundedSender<IncomingRequest>>,
        shared: Arc<Shared>,
    ) -> Driver {
        let limits = config.limits;
        Driver {
            role,
            write_timeout: config.write_timeout,
            engine: Connection::new(role, config, now()),
            codec: Codec::new(limits),
            streams: HashMap::new(),
            pending_opens: VecDeque::new(),
            acks: Vec::new(),
            pings: VecDeque::new(),
            ping_seq: 0,
            incoming,
            cmd_weak,
            goaway_received: false,
            failure: None,
            shared,
        }
    }

    fn cmd_tx(&self) -> Option<CommandTx> {
        self.cmd_weak.upgrade()
    }

    /// Runs the connection to completion.
    pub(crate) async fn run<T>(
        mut self,
        io: T,
        mut cmd_rx: mpsc::UnboundedReceiver<Command>,
    ) -> Result<(), Error>
    where
        T: AsyncRead + AsyncWrite + Unpin,
    {
        let (mut rd, mut wr) = tokio::io::split(io);
        let mut rbuf = BytesMut::with_capacity(64 * 1024);
        let mut wbuf = BytesMut::with_capacity(64 * 1024);
        // The client speaks first. A server answers only once the client's
        // preface is in: to a peer that turns out not to speak uwire it
        // sends nothing at all (section 3.1).
        let mut greeted = self.role == Role::Client;
        if greeted {
            wbuf.extend_from_slice(&preface::PREFACE);
        }
        let mut read_open = true;
        let mut cmds_open = true;
        let mut write_deadline: Option<tokio::time::Instant> = None;

        loop {
            self.process_events();
            // Greet once the peer's preface is in, or when the engine has
            // something to say regardless (GOAWAY(VERSION_MISMATCH) for a
            // preface of another major version, section 3.4).
            if !greeted
                && (self.codec.preface_received()
                    || (self.engine.is_closed() && self.engine.has_pending_transmit()))
            {
                greeted = true;
                wbuf.extend_from_slice(&preface::PREFACE);
            }
            if greeted {
                self.fill(&mut wbuf);
            }
            self.resolve_acks();
            if self.engine.is_closed() && wbuf.is_empty() && !self.engine.has_pending_transmit() {
                break;
            }
            if !read_open && !self.engine.is_closed() && wbuf.is_empty() {
                // Peer is gone and we have nothing left to say.
                self.engine.handle_eof();
                continue;
            }
            let deadline = self
                .engine
                .poll_timeout()
                .map(tokio::time::Instant::from_std);
            if rbuf.capacity() - rbuf.len() < 8 * 1024 {
                rbuf.reserve(64 * 1024);
            }
            // The write-stall clock runs while bytes wait and none leave.
            if wbuf.is_empty() {
                write_deadline = None;
            } else if write_deadline.is_none() {
                write_deadline = self.write_timeout.map(|t| tokio::time::Instant::now() + t);
            }
            tokio::select! {
                biased;
                res = wr.write_buf(&mut wbuf), if !wbuf.is_empty() => {
                    match res {
                        Ok(_) => write_deadline = None,
                        Err(e) => {
                            self.fail_io(e);
                            break;
                        }
                    }
                }
                _ = sleep_until(write_deadline), if write_deadline.is_some() => {
                    tracing::debug!(waiting = wbuf.len(), "the peer took no bytes within the write timeout; closing");
                    self.fail_io(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "the peer read nothing within the write timeout",
                    ));
                    break;
                }
                res = rd.read_buf(&mut rbuf), if read_open => {
                    match res {
                        Ok(0) => {
                            read_open = false;
                            if let Err(e) = self.codec.decode_frame_eof(&mut rbuf) {
                                self.engine.handle_decode_error(&e);
                            }
                            self.engine.handle_eof();
                        }
                        Ok(_) => {
                            if !self.decode(&mut rbuf) {
                                read_open = false;
                            }
                        }
                        Err(e) => {
                            self.fail_io(e);
                            break;
                        }
                    }
                }
                cmd = cmd_rx.recv(), if cmds_open => {
                    match cmd {
                        Some(c) => {
                            self.apply(c);
                            for _ in 0..COMMAND_BATCH {
                                match cmd_rx.try_recv() {
                                    Ok(c) => self.apply(c),
                                    Err(_) => break,
                                }
                            }
                        }
                        None => {
                            // Every handle is gone: finish what is in flight, then close.
                            cmds_open = false;
                            self.engine.go_away(Reason::NO_ERROR, Bytes::new(), now());
                        }
                    }
                }
                _ = sleep_until(deadline), if deadline.is_some() => {
                    self.engine.handle_timeout(now());
                }
            }
        }
        let _ = wr.shutdown().await;
        if read_open && self.failure.is_none() {
            let _ = tokio::time::timeout(LINGER_TIMEOUT, async {
                loop {
                    rbuf.clear();
                    match rd.read_buf(&mut rbuf).await {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                }
            })
            .await;
        }
        self.process_events();
        self.shared.closed.store(true, Ordering::Release);
        self.shared.going_away.store(true, Ordering::Release);
        self.fail_all(Error::closed);
        match self.failure.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Decodes every complete frame in `rbuf`. Returns false once reading
    /// must stop (decode or connection error).
    fn decode(&mut self, rbuf: &mut BytesMut) -> bool {
        loop {
            match self.codec.decode_frame(rbuf) {
                Ok(Some(frame)) => {
                    if let Err(e) = self.engine.handle_frame(frame, now()) {
                        tracing::debug!(error = %e, "closing the connection: peer broke the protocol");
                        self.failure = Some(e.into());
                        return false;
                    }
                }
                Ok(None) => return true,
                Err(e) => {
                    tracing::debug!(error = %e, "closing the connection: undecodable frame");
                    self.engine.handle_decode_error(&e);
                    return false;
                }
            }
        }
    }

    fn fill(&mut self, wbuf: &mut BytesMut) {
        while wbuf.len() < STAGE_LIMIT {
            match self.engine.poll_transmit() {
                Some(frame) => {
                    wbuf.reserve(frame.encoded_len());
                    if let Err(e) = frame.encode(wbuf) {
                        // Engine-produced frames are always encodable; report loudly if not.
                        tracing::error!(error = %e, "dropping a frame the engine produced but the codec cannot encode");
                    }
                }
                None => break,
            }
        }
    }

    fn resolve_acks(&mut self) {
        if self.acks.is_empty() {
            return;
        }
        let engine = &self.engine;
        let mut i = 0;
        while i < self.acks.len() {
            if engine.send_buffered(self.acks[i].0) <= SEND_LOW_WATER {
                let (_, tx) = self.acks.swap_remove(i);
                let _ = tx.send(Ok(()));
            } else {
                i += 1;
            }
        }
    }

    fn process_events(&mut self) {
        while let Some(ev) = self.engine.poll_event() {
            self.dispatch(ev);
        }
        self.try_open();
        let s = &self.shared;
        s.active_streams
            .store(self.engine.active_streams() as u32, Ordering::Release);
        if self.goaway_received || self.engine.is_closed() {
            s.going_away.store(true, Ordering::Release);
        }
    }

    fn dispatch(&mut self, ev: Event) {
        match ev {
            Event::Ready => {
                let max = self
                    .engine
                    .peer_settings()
                    .and_then(|s| s.max_concurrent_streams)
                    .unwrap_or(crate::conn::DEFAULT_MAX_CONCURRENT_STREAMS);
                self.shared
                    .peer_max_streams
                    .store(max.max(1), Ordering::Release);
            }
            Event::Request {
                id,
                head,
                end_stream,
            } => self.on_request(id, head, end_stream),
            Event::Response {
                id,
                head,
                end_stream,
            } => {
                if head.is_informational() {
                    return;
                }
                if let Some(slot) = self.streams.get_mut(&id) {
                    if let Some(tx) = slot.response.take() {
                        let _ = tx.send(Ok(head));
                    }
                    if end_stream {
                        if let Some(body) = slot.body.take() {
                            let _ = body.send(RecvEvent::End);
                        }
                    }
                }
            }
            Event::Data {
                id,
                data,
                end_stream,
            } => {
                let n = data.len();
                let delivered = match self.streams.get_mut(&id).and_then(|s| s.body.as_ref()) {
                    Some(body) => body.send(RecvEvent::Data(data)).is_ok(),
                    None => false,
                };
                if !delivered {
                    // Nobody will read it: give the credit back right away.
                    self.engine.release_capacity(id, n);
                } else if end_stream {
                    if let Some(body) = self.streams.get_mut(&id).and_then(|s| s.body.take()) {
                        let _ = body.send(RecvEvent::End);
                    }
                }
            }
            Event::Trailers { id, fields } => {
                if let Some(body) = self.streams.get_mut(&id).and_then(|s| s.body.take()) {
                    let _ = body.send(RecvEvent::Trailers(fields));
                }
            }
            Event::StreamReset { id, reason, remote } => {
                let err = || {
                    if reason == Reason::REFUSED_STREAM {
                        Error::new(Kind::Refused)
                    } else {
                        Error::new(Kind::Reset(reason, remote))
                    }
                };
                if let Some(slot) = self.streams.remove(&id) {
                    if let Some(tx) = slot.response {
                        let _ = tx.send(Err(err()));
                    }
                    if let Some(body) = slot.body {
                        let _ = body.send(RecvEvent::Error(err()));
                    }
                    if let (Some(tx), true) = (slot.closed, remote) {
                        let _ = tx.send(reason);
                    }
                }
                self.fail_acks(id, err);
            }
            Event::StreamClosed { id } => {
                if let Some(slot) = self.streams.remove(&id) {
                    if let Some(body) = slot.body {
                        let _ = body.send(RecvEvent::End);
                    }
                }
            }
            Event::PingAck { rtt, .. } => {
                if let Some(tx) = self.pings.pop_front() {
                    let _ = tx.send(Ok(rtt.unwrap_or_default()));
                }
            }
            Event::GoAway { .. } => {
                self.goaway_received = true;
            }
            Event::Closed { error } => {
                if let Some(e) = error {
                    if self.failure.is_none() {
                        self.failure = Some(e.into());
                    }
                }
            }
        }
    }

    fn on_request(&mut self, id: StreamId, head: RequestHead, end_stream: bool) {
        let (Some(cmd), Some(incoming)) = (self.cmd_tx(), self.incoming.as_ref()) else {
            let _ = self.engine.reset_stream(id, Reason::REFUSED_STREAM);
            return;
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let (closed_tx, closed_rx) = oneshot::channel();
        let mut slot = Slot {
            closed: Some(closed_tx),
            ..Slot::default()
        };
        if end_stream {
            let _ = tx.send(RecvEvent::End);
        } else {
            slot.body = Some(tx);
        }
        let req = IncomingRequest {
            head,
            body: RecvStream::new(id, rx, cmd.clone(), false),
            responder: Responder::new(id, cmd).with_closed(closed_rx),
        };
        if incoming.send(req).is_err() {
            // The application stopped accepting: refuse (the handles' drops reset the stream).
            return;
        }
        self.streams.insert(id, slot);
    }

    fn try_open(&mut self) {
        while !self.pending_opens.is_empty() && self.engine.can_open_stream() {
            let (head, end_stream, reply) =
                self.pending_opens.pop_front().expect("checked non-empty");
            if reply.is_closed() {
                continue;
            }
            match self.engine.open_stream(head, end_stream) {
                Ok(id) => {
                    let (resp_tx, resp_rx) = oneshot::channel();
                    let (body_tx, body_rx) = mpsc::unbounded_channel();
                    self.streams.insert(
                        id,
                        Slot {
                            body: Some(body_tx),
                            response: Some(resp_tx),
                            closed: None,
                        },
                    );
                    let _ = reply.send(Ok(Opened {
                        id,
                        response: resp_rx,
                        body: body_rx,
                    }));
                }
                Err(e) => {
                    let _ = reply.send(Err(e.into()));
                }
            }
        }
        if (self.goaway_received || self.engine.is_closed()) && !self.engine.can_open_stream() {
            for (_, _, reply) in self.pending_opens.drain(..) {
                // Refused by the peer's GOAWAY, or never sent because the
                // connection ended without one (both safe to retry).
                let _ = reply.send(Err(if self.goaway_received {
                    Error::new(Kind::Refused)
                } else {
                    Error::not_sent()
                }));
            }
        }
    }

    fn apply(&mut self, cmd: Command) {
        match cmd {
            Command::Open {
                head,
                end_stream,
                reply,
            } => {
                if self.engine.is_closed() {
                    let _ = reply.send(Err(Error::not_sent()));
                } else {
                    self.pending_opens.push_back((head, end_stream, reply));
                    self.try_open();
                }
            }
            Command::Respond {
                id,
                head,
                end_stream,
            } => {
                if let Err(e) = self.engine.send_response(id, head, end_stream) {
                    self.reset_unsendable(id, e);
                }
            }
            Command::Data {
                id,
                data,
                end_stream,
                done,
            } => match self.engine.send_data(id, data, end_stream) {
                Ok(()) => {
                    if self.engine.send_buffered(id) <= SEND_LOW_WATER {
                        let _ = done.send(Ok(()));
                    } else {
                        self.acks.push((id, done));
                    }
                }
                Err(e) => {
                    let _ = done.send(Err(e.into()));
                }
            },
            Command::Trailers { id, fields } => {
                if let Err(e) = self.engine.send_trailers(id, fields) {
                    self.reset_unsendable(id, e);
                }
            }
            Command::Reset { id, reason } => {
                let _ = self.engine.reset_stream(id, reason);
                if let Some(slot) = self.streams.remove(&id) {
                    if let Some(tx) = slot.response {
                        let _ = tx.send(Err(Error::new(Kind::Reset(reason, false))));
                    }
                }
                self.fail_acks(id, || Error::new(Kind::Reset(reason, false)));
            }
            Command::Release { id, n } => self.engine.release_capacity(id, n),
            Command::Discard { id } => {
                // Later DATA finds no reader and its credit is returned at once.
                if let Some(slot) = self.streams.get_mut(&id) {
                    slot.body = None;
                }
            }
            Command::Ping { reply } => {
                self.ping_seq += 1;
                match self.engine.send_ping(self.ping_seq.to_be_bytes(), now()) {
                    Ok(()) => self.pings.push_back(reply),
                    Err(e) => {
                        let _ = reply.send(Err(e.into()));
                    }
                }
            }
            Command::GoAway { drain } => {
                self.shared.going_away.store(true, Ordering::Release);
                let t = now();
                self.engine.go_away(Reason::NO_ERROR, Bytes::new(), t);
                if let Some(d) = drain {
                    self.engine.set_drain_deadline(t + d);
                }
            }
        }
    }

    /// A head or trailers the engine refused (over the peer's limits, or an
    /// interim status with END_STREAM): the peer would wait forever for a
    /// frame that will never come, so the stream is reset instead (section
    /// 13: "RESET(LIMIT_EXCEEDED)" for heads over the peer's limits).
    fn reset_unsendable(&mut self, id: StreamId, e: UserError) {
        let reason = match e {
            UserError::HeadTooLarge { .. } | UserError::TooManyHeaders { .. } => {
                Reason::LIMIT_EXCEEDED
            }
            // Already gone: nothing is waiting.
            UserError::UnknownStream(_) | UserError::Closed => return,
            _ => Reason::INTERNAL_ERROR,
        };
        tracing::warn!(stream = %id, %reason, error = %e, "resetting a stream whose head or trailers cannot be sent");
        self.apply(Command::Reset { id, reason });
    }

    fn fail_acks(&mut self, id: StreamId, err: impl Fn() -> Error) {
        let mut i = 0;
        while i < self.acks.len() {
            if self.acks[i].0 == id {
                let (_, tx) = self.acks.swap_remove(i);
                let _ = tx.send(Err(err()));
            } else {
                i += 1;
            }
        }
    }

    fn fail_io(&mut self, e: std::io::Error) {
        self.engine.handle_eof();
        self.process_events();
        if self.failure.is_none() {
            self.failure = Some(e.into());
        }
    }

    fn fail_all(&mut self, err: impl Fn() -> Error) {
        for (_, slot) in self.streams.drain() {
            if let Some(tx) = slot.response {
                let _ = tx.send(Err(err()));
            }
            if let Some(body) = slot.body {
                let _ = body.send(RecvEvent::Error(err()));
            }
        }
        for (_, tx) in self.acks.drain(..) {
            let _ = tx.send(Err(err()));
        }
        for (_, _, reply) in self.pending_opens.drain(..) {
            // Never written: safe to retry whatever ended the connection.
            let _ = reply.send(Err(Error::not_sent()));
        }
        for tx in self.pings.drain(..) {
            let _ = tx.send(Err(err()));
        }
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
