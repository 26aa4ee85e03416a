//! Bodies on the front: the request body as the upstream reads it
//! ([`RequestBody`]: size limit, read timeout, and a record of whose fault
//! a failure was), and the response body as the client reads it
//! ([`Tracked`]: keeps the request in flight, counts bytes, writes the
//! access log line at the end).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::StatusCode;
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::sync::Notify;
use tokio::time::Sleep;

use super::access_log::{AccessLog, AccessRecord};
use super::io::InFlight;
use super::response::ProxyBody;
use crate::client::BoxError;

/// Why a request body failed on the client's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Fault {
    /// Larger than the limit (413).
    TooLarge = 1,
    /// No body bytes within the body read timeout (408).
    Timeout = 2,
    /// Malformed (bad chunk framing) or cut short by the client (400).
    Malformed = 3,
}

impl Fault {
    pub(crate) fn status(self) -> (StatusCode, &'static str) {
        match self {
            Fault::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "request body too large"),
            Fault::Timeout => (
                StatusCode::REQUEST_TIMEOUT,
                "request body not received in time",
            ),
            Fault::Malformed => (
                StatusCode::BAD_REQUEST,
                "malformed or incomplete request body",
            ),
        }
    }
}

/// The first client-side failure of a request body; the request handler
/// waits on it beside the upstream's answer, so a client's fault is never
/// reported (or counted) as the upstream's.
#[derive(Debug, Default)]
pub(crate) struct BodyFault {
    state: AtomicU8,
    notify: Notify,
}

impl BodyFault {
    fn set(&self, f: Fault) {
        if self
            .state
            .compare_exchange(0, f as u8, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.notify.notify_one();
        }
    }

    /// The fault, if any.
    pub(crate) fn get(&self) -> Option<Fault> {
        match self.state.load(Ordering::Acquire) {
            1 => Some(Fault::TooLarge),
            2 => Some(Fault::Timeout),
            3 => Some(Fault::Malformed),
            _ => None,
        }
    }

    /// Resolves once a fault is recorded.
    pub(crate) async fn wait(&self) -> Fault {
        loop {
            if let Some(f) = self.get() {
                return f;
            }
            self.notify.notified().await;
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{}", .0.status().1)]
struct FaultError(Fault);

/// A request body with a size limit and a read timeout that records
/// client-side failures in a [`BodyFault`].
pub(crate) struct RequestBody<B> {
    inner: B,
    left: u64,
    fault: Arc<BodyFault>,
    timeout: Duration,
    timer: Option<Pin<Box<Sleep>>>,
    /// Told (or dropped) once the body yields anything: the client has
    /// started sending it (after `100 Continue`, for `Expect`).
    started: Option<tokio::sync::oneshot::Sender<()>>,
}

impl<B> RequestBody<B> {
    pub(crate) fn new(
        inner: B,
        limit: u64,
        timeout: Duration,
        fault: Arc<BodyFault>,
        started: Option<tokio::sync::oneshot::Sender<()>>,
    ) -> Self {
        RequestBody {
            inner,
            left: limit,
            fault,
            timeout,
            timer: None,
            started,
        }
    }

    fn fail(&mut self, f: Fault) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.fault.set(f);
        Poll::Ready(Some(Err(Box::new(FaultError(f)))))
    }
}

impl<B> HttpBody for RequestBody<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if polled.is_pending() {
            // Armed (one clock read) at the first wait after progress only.
            let timeout = this.timeout;
            let timer = this
                .timer
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
            if timer.as_mut().poll(cx).is_ready() {
                return this.fail(Fault::Timeout);
            }
            return Poll::Pending;
        }
        // Progress: the next wait gets a fresh timeout.
        this.timer = None;
        if let Some(tx) = this.started.take() {
            let _ = tx.send(());
        }
        match polled {
            Poll::Ready(Some(Ok(f))) => {
                if let Some(d) = f.data_ref() {
                    let n = d.len() as u64;
                    if n > this.left {
                        return this.fail(Fault::TooLarge);
                    }
                    this.left -= n;
                }
                Poll::Ready(Some(Ok(f)))
            }
            Poll::Ready(Some(Err(e))) => {
                tracing::debug!(error = %e, "request body failed on the client side");
                this.fail(Fault::Malformed)
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// What the access log needs from the request, captured before it is
/// handed on.
pub(crate) struct LogContext {
    pub(crate) log: Arc<AccessLog>,
    pub(crate) record: AccessRecord,
    pub(crate) started: Instant,
}

/// The response body as sent downstream: holds the request's [`InFlight`]
/// guard until the body ends or is dropped, and writes the access log
/// line then.
pub(crate) struct Tracked {
    inner: ProxyBody,
    _in_flight: InFlight,
    log: Option<Box<LogContext>>,
}

impl Tracked {
    pub(crate) fn new(
        inner: ProxyBody,
        in_flight: InFlight,
        log: Option<Box<LogContext>>,
    ) -> Tracked {
        Tracked {
            inner,
            _in_flight: in_flight,
            log,
        }
    }
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let (Poll::Ready(Some(Ok(f))), Some(l)) = (&polled, self.log.as_mut()) {
            if let Some(d) = f.data_ref() {
                l.record.bytes_sent += d.len() as u64;
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        if let Some(mut l) = self.log.take() {
            l.record.duration = l.started.elapsed();
            l.log.log(&l.record);
        }
    }
}

/// The access record's request-side fields.
pub(crate) fn record_for<B>(
    req: &http::Request<B>,
    client: std::net::SocketAddr,
    tls: bool,
) -> AccessRecord {
    let h = req.headers();
    AccessRecord {
        client,
        time: SystemTime::now(),
        method: req.method().clone(),
        target: req.uri().clone(),
        version: match req.version() {
            http::Version::HTTP_09 => "HTTP/0.9",
            http::Version::HTTP_10 => "HTTP/1.0",
            http::Version::HTTP_2 => "HTTP/2.0",
            http::Version::HTTP_3 => "HTTP/3.0",
            _ => "HTTP/1.1",
        },
        status: 0,
        bytes_sent: 0,
        referer: h.get(http::header::REFERER).cloned(),
        user_agent: h.get(http::header::USER_AGENT).cloned(),
        duration: Duration::ZERO,
        tls,
        upgrade: None,
        bytes_received: None,
    }
}
