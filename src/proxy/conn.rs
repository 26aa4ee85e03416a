//! Drives one downstream connection once its preamble (PROXY header, TLS
//! handshake) is done: HTTP/1 or HTTP/2 (from ALPN, else from the first
//! bytes), upgrades, the server's drain, and the release of an idle
//! HTTP/1 connection's state.
//!
//! An HTTP/1 connection is served in *cycles*: hyper serves requests until
//! the connection has been idle for the release delay (or ends); then it
//! gives the socket back ([`hyper::server::conn::http1::Connection::without_shutdown`]),
//! which frees its parser state and its read and write buffers (some
//! 24 KiB), and the connection waits for its next request holding no
//! buffer at all, the way nginx frees a keep-alive connection's buffers.
//! The first bytes of the next request, read into the stack, start the
//! next cycle. A fresh connection starts in that waiting state too.
//!
//! Draining (server shutdown): an idle HTTP/1 connection ends at once, a
//! busy one after its response (which says `Connection: close`); an
//! HTTP/2 connection gets hyper's graceful GOAWAY.

use std::convert::Infallible;
use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Wake, Waker};

use futures_util::task::AtomicWaker;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::service::Service;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;

use super::io::{ConnActivity, Stream, TimedIo};
use super::{ProxyBody, ProxyConfig};

/// hyper's HTTP/1 header count limit when none is set.
const HYPER_DEFAULT_MAX_HEADERS: usize = 100;

/// The hyper connection settings of a front.
#[derive(Clone)]
pub(crate) struct Builders {
    h1: http1::Builder,
    h2: http2::Builder<TokioExecutor>,
}

impl Builders {
    pub(crate) fn new(config: &ProxyConfig) -> Builders {
        let mut h1 = http1::Builder::new();
        h1.max_buf_size(config.max_header_size.max(8192))
            // TimedIo enforces the head timeout, with a 408.
            .header_read_timeout(None)
            .timer(TokioTimer::new());
        if config.max_headers != HYPER_DEFAULT_MAX_HEADERS {
            // Only when it differs: with an explicit cap hyper initialises
            // heap arrays of that many entries for every request it parses
            // (about 1,700 instructions per request at 100); its own
            // default of 100 parses into uninitialised stack arrays.
            h1.max_headers(config.max_headers);
        }
        let mut h2 = http2::Builder::new(TokioExecutor::new());
        h2.max_header_list_size(config.max_header_size as u32)
            .timer(TokioTimer::new());
        Builders { h1, h2 }
    }
}

/// Serves `io` with `svc` until the connection ends, an upgrade takes it
/// over, or the server drains (`drain` turns true).
pub(crate) async fn drive<S>(
    mut io: TimedIo<Stream>,
    svc: S,
    builders: &Builders,
    mut drain: watch::Receiver<bool>,
) where
    S: Service<Request<Incoming>, Response = Response<ProxyBody>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let act = io.activity().clone();
    // HTTP/2 is known from ALPN; otherwise the first bytes tell.
    while io.is_h2().is_none() {
        let read = poll_fn(|cx| io.poll_read_ahead(cx));
        let more = until_drained(read, &act, &mut drain).await;
        if !matches!(more, Ok(true)) {
            // Nothing came in time, the client left, or the server drains.
            return;
        }
    }
    if io.is_h2() == Some(true) {
        // Boxed: an HTTP/2 connection's state would otherwise size every
        // connection's task.
        Box::pin(serve_h2(io, svc, builders, &mut drain)).await;
        return;
    }
    // Releases seen so far (see `ConnActivity::releases`).
    let mut releases = act.releases();
    loop {
        // Boxed: hyper's state lives only while a cycle runs.
        let cycle = Box::pin(
            builders
                .h1
                .serve_connection(TokioIo::new(io), svc.clone())
                .without_shutdown(),
        );
        let parts = match until_drained(cycle, &act, &mut drain).await {
            Ok(parts) => parts,
            Err(e) => {
                tracing::debug!(error = %e, "downstream connection ended with an error");
                return;
            }
        };
        // Take everything out now: what `parts` still held (the read
        // buffer hyper's last bytes share, the service) would otherwise
        // live on while the connection waits.
        let http1::Parts {
            io: tokio_io,
            read_buf,
            service,
            ..
        } = parts;
        drop(service);
        io = tokio_io.into_inner();
        if read_buf.is_empty() {
            drop(read_buf);
        } else {
            io.set_prefix(read_buf);
        }
        if let Some(tunnel) = act.take_upgrade() {
            // hyper wrote the `101`: the connection now carries the tunnel.
            let _ = tunnel.send(io);
            return;
        }
        let seen = std::mem::replace(&mut releases, act.releases());
        if seen == releases {
            // The connection is done (the client closed it, keep-alive is
            // off, the idle timeout passed, or the server drains).
            let _ = io.shutdown().await;
            return;
        }
        tracing::trace!("idle HTTP/1 connection released its HTTP state");
        if io.has_prefix() {
            continue;
        }
        // Idle, holding no buffer, until the next request's first bytes.
        let read = poll_fn(|cx| io.poll_read_ahead(cx));
        let more = until_drained(read, &act, &mut drain).await;
        if !matches!(more, Ok(true)) {
            let _ = io.shutdown().await;
            return;
        }
    }
}

/// Polls `fut` to completion; when the server starts draining meanwhile,
/// tells the connection ([`ConnActivity::drain`]) and goes on polling.
/// (`serve_h2` has the same shape with hyper's graceful shutdown instead: a
/// version generic over that action makes rustc lose the `Send`-ness of
/// the HTTP/2 connection's future.)
async fn until_drained<F: Future>(
    fut: F,
    act: &ConnActivity,
    drain: &mut watch::Receiver<bool>,
) -> F::Output {
    let mut fut = pin!(fut);
    let mut signal = pin!(Signal::new(drain.wait_for(|d| *d)));
    poll_fn(|cx| {
        // An error means the server is gone: drain as well.
        if signal.as_mut().poll_fired(cx) {
            act.drain();
        }
        fut.as_mut().poll(cx)
    })
    .await
}

pin_project_lite::pin_project! {
    /// The drain signal's future, polled only when it has woken: each
    /// poll of a watch's wait registers with its waiter list (a lock), and
    /// a connection is polled a few times per request. The future is
    /// polled with a waker of its own, which notes the wake-up and wakes
    /// the connection's task.
    struct Signal<F> {
        #[pin]
        fut: F,
        bridge: Arc<Bridge>,
        waker: Waker,
        // Answered true once.
        done: bool,
    }
}

/// [`Signal`]'s waker.
struct Bridge {
    /// The signal's future woke (true at first: it has not been polled).
    woken: AtomicBool,
    /// The task polling the connection.
    task: AtomicWaker,
}

impl Wake for Bridge {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

impl<F: Future> Signal<F> {
    fn new(fut: F) -> Self {
        let bridge = Arc::new(Bridge {
            woken: AtomicBool::new(true),
            task: AtomicWaker::new(),
        });
        Signal {
            fut,
            waker: Waker::from(bridge.clone()),
            bridge,
            done: false,
        }
    }

    /// Whether the signal came with this poll (once; false after).
    fn poll_fired(self: Pin<&mut Self>, cx: &mut Context<'_>) -> bool {
        let this = self.project();
        if *this.done {
            return false;
        }
        // Registered before the flag is read: a wake-up after the read
        // wakes this task.
        this.bridge.task.register(cx.waker());
        if !this.bridge.woken.swap(false, Ordering::AcqRel) {
            return false;
        }
        let mut own = Context::from_waker(this.waker);
        if this.fut.poll(&mut own).is_ready() {
            *this.done = true;
            return true;
        }
        false
    }
}

/// Serves an HTTP/2 connection; draining sends a graceful GOAWAY.
async fn serve_h2<S>(
    io: TimedIo<Stream>,
    svc: S,
    builders: &Builders,
    drain: &mut watch::Receiver<bool>,
) where
    S: Service<Request<Incoming>, Response = Response<ProxyBody>, Error = Infallible>
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let mut conn = pin!(builders.h2.serve_connection(TokioIo::new(io), svc));
    let mut signal = pin!(Signal::new(drain.wait_for(|d| *d)));
    let result = poll_fn(|cx| {
        if signal.as_mut().poll_fired(cx) {
            conn.as_mut().graceful_shutdown();
        }
        conn.as_mut().poll(cx)
    })
    .await;
    if let Err(e) = result {
        tracing::debug!(error = %e, "downstream HTTP/2 connection ended with an error");
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use bytes::Bytes;
    use http::StatusCode;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;
    use crate::net::Rewind;
    use crate::proxy::io::IoTimeouts;
    use crate::proxy::response::error_response;

    const RELEASE: Duration = Duration::from_millis(40);
    /// A response far larger than the socket buffers take at once.
    const BIG: usize = 16 << 20;

    /// A served connection (release after [`RELEASE`]) and its client end.
    struct Served {
        client: TcpStream,
        act: Arc<ConnActivity>,
        drain: watch::Sender<bool>,
        done: tokio::task::JoinHandle<()>,
        /// Tunnels the service accepted: the client's connection, handed over.
        tunnels: tokio::sync::mpsc::UnboundedReceiver<TimedIo<Stream>>,
    }

    async fn served() -> Served {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (tcp, _) = listener.accept().await.unwrap();
        let act = Arc::new(ConnActivity::default());
        let secs = Duration::from_secs(5);
        let io = TimedIo::new(
            Stream::Plain(Rewind::new(Bytes::new(), tcp)),
            act.clone(),
            IoTimeouts {
                first_byte: secs,
                header: secs,
                keepalive: secs,
                send: secs,
                max_head: 16 * 1024,
                release: Some(RELEASE),
            },
            None,
        );
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let (tunnels_tx, tunnels) = tokio::sync::mpsc::unbounded_channel();
        let svc_act = act.clone();
        let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
            let act = svc_act.clone();
            let tx = tx.clone();
            // In flight from the call, as the front's handler is (the
            // reader relies on it: see `ConnActivity::start`).
            let busy = act.start();
            async move {
                let _busy = busy;
                if req.uri().path() == "/slow" {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                if req.uri().path() == "/big" {
                    // As the front does: in flight until the body is out.
                    let body = crate::proxy::response::full(Bytes::from(vec![b'x'; BIG]));
                    let body = crate::proxy::body::Tracked::new(body, act.start(), None);
                    return Ok(Response::new(http_body_util::BodyExt::boxed_unsync(body)));
                }
                if req.headers().contains_key(http::header::UPGRADE) {
                    let down = act.expect_upgrade();
                    let _ = tx.send(down);
                    let mut r = error_response(StatusCode::SWITCHING_PROTOCOLS, "");
                    r.headers_mut().insert(
                        http::header::UPGRADE,
                        http::HeaderValue::from_static("test"),
                    );
                    r.headers_mut().insert(
                        http::header::CONNECTION,
                        http::HeaderValue::from_static("upgrade"),
                    );
                    return Ok::<_, Infallible>(r);
                }
                Ok(error_response(StatusCode::OK, req.uri().path()))
            }
        });
        tokio::spawn(async move {
            while let Some(down) = rx.recv().await {
                if let Ok(io) = down.await {
                    let _ = tunnels_tx.send(io);
                }
            }
        });
        let (drain, draining) = watch::channel(false);
        let builders = Builders::new(&ProxyConfig::default());
        let done = tokio::spawn(async move { drive(io, svc, &builders, draining).await });
        Served {
            client,
            act,
            drain,
            done,
            tunnels,
        }
    }

    /// Sends `GET path` and reads its response.
    async fn get(client: &mut TcpStream, path: &str) -> String {
        let head = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
        client.write_all(head.as_bytes()).await.unwrap();
        responses(client, &[path]).await
    }

    /// Reads until `n` complete responses (each ends with its path line).
    async fn responses(client: &mut TcpStream, paths: &[&str]) -> String {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        let ends = |got: &[u8]| {
            let text = String::from_utf8_lossy(got);
            text.matches("HTTP/1.1 200 OK").count() == paths.len()
                && text.ends_with(&format!("{}\n", paths[paths.len() - 1]))
        };
        while !ends(&got) {
            let n = tokio::time::timeout(Duration::from_secs(5), client.read(&mut buf))
                .await
                .expect("response in time")
                .unwrap();
            assert!(
                n > 0,
                "connection closed after {:?}",
                String::from_utf8_lossy(&got)
            );
            got.extend_from_slice(&buf[..n]);
        }
        String::from_utf8(got).unwrap()
    }

    #[tokio::test]
    async fn an_idle_http1_connection_releases_its_state_and_serves_on() {
        let mut s = served().await;
        // Nothing is released before the first request: hyper is not built.
        tokio::time::sleep(RELEASE * 3).await;
        assert_eq!(s.act.releases(), 0);
        let text = get(&mut s.client, "/a").await;
        assert!(!text.contains("connection: close"), "{text}");
        tokio::time::sleep(RELEASE * 4).await;
        assert_eq!(s.act.releases(), 1, "released once while idle");
        // A head split across reads, then two pipelined requests.
        s.client.write_all(b"GET /b HT").await.unwrap();
        tokio::time::sleep(RELEASE * 3).await;
        s.client
            .write_all(b"TP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        responses(&mut s.client, &["/b"]).await;
        assert_eq!(s.act.releases(), 1, "no release while a head is arriving");
        tokio::time::sleep(RELEASE * 4).await;
        assert_eq!(s.act.releases(), 2);
        s.client
            .write_all(b"GET /c HTTP/1.1\r\nHost: x\r\n\r\nGET /d HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let text = responses(&mut s.client, &["/c", "/d"]).await;
        assert!(text.find("/c\n").unwrap() < text.find("/d\n").unwrap());
        // The drain ends an idle connection at once, quietly.
        s.drain.send(true).unwrap();
        let mut rest = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), s.client.read_to_end(&mut rest))
            .await
            .expect("closed in time")
            .unwrap();
        assert!(rest.is_empty());
        tokio::time::timeout(Duration::from_secs(5), s.done)
            .await
            .expect("the loop ends")
            .unwrap();
    }

    #[tokio::test]
    async fn an_upgrade_after_a_release_gets_the_connection_with_its_early_bytes() {
        let mut s = served().await;
        get(&mut s.client, "/a").await;
        tokio::time::sleep(RELEASE * 4).await;
        assert_eq!(s.act.releases(), 1);
        // The client's first tunnel bytes ride in the same write as the head.
        s.client
            .write_all(
                b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: test\r\n\r\nearly",
            )
            .await
            .unwrap();
        let mut tunnel = tokio::time::timeout(Duration::from_secs(5), s.tunnels.recv())
            .await
            .expect("tunnel in time")
            .expect("a tunnel");
        let mut early = [0u8; 5];
        tunnel.read_exact(&mut early).await.unwrap();
        assert_eq!(&early, b"early");
        tunnel.write_all(b"from the app").await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        while !String::from_utf8_lossy(&got).ends_with("from the app") {
            let n = s.client.read(&mut buf).await.unwrap();
            assert!(n > 0);
            got.extend_from_slice(&buf[..n]);
        }
        assert!(String::from_utf8_lossy(&got).starts_with("HTTP/1.1 101"));
        s.done.await.unwrap();
    }

    #[tokio::test]
    async fn a_draining_server_closes_a_busy_connection_after_its_response() {
        let mut s = served().await;
        s.client
            .write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(30)).await;
        s.drain.send(true).unwrap();
        let mut all = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), s.client.read_to_end(&mut all))
            .await
            .expect("closed in time")
            .unwrap();
        let text = String::from_utf8_lossy(&all);
        assert!(
            text.starts_with("HTTP/1.1 200 OK") && text.ends_with("/slow\n"),
            "{text}"
        );
        s.done.await.unwrap();
        assert_eq!(s.act.releases(), 0);
    }

    #[tokio::test]
    async fn no_release_while_the_last_response_is_still_going_out() {
        let mut s = served().await;
        s.client
            .write_all(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        // The client reads nothing for a while: the body is handed to hyper
        // (nothing in flight any more) but most of it cannot be written.
        tokio::time::sleep(RELEASE * 5).await;
        assert_eq!(s.act.releases(), 0, "released with the response unsent");
        let mut got = Vec::new();
        let mut buf = vec![0u8; 1 << 16];
        let want = |got: &[u8]| {
            let at = memchr::memmem::find(got, b"\r\n\r\n")?;
            Some(at + 4 + BIG)
        };
        while want(&got) != Some(got.len()) {
            let n = tokio::time::timeout(Duration::from_secs(10), s.client.read(&mut buf))
                .await
                .expect("the response keeps coming")
                .unwrap();
            assert!(n > 0, "closed after {} bytes", got.len());
            got.extend_from_slice(&buf[..n]);
        }
        // Once it is out and the connection idles, the release comes.
        tokio::time::sleep(RELEASE * 4).await;
        assert_eq!(s.act.releases(), 1);
        get(&mut s.client, "/a").await;
    }

    /// The last request to finish does not wake the reader (that would
    /// poll the connection once more per request): the reader parked while
    /// the request ran keeps a check-back timer, which sees the idle phase
    /// and arms its deadline from when the request ended. A request longer
    /// than the check-back (here the release delay) re-arms it on the way.
    #[tokio::test]
    async fn the_idle_phase_after_a_slow_request_counts_from_its_end() {
        let mut s = served().await;
        get(&mut s.client, "/slow").await;
        assert_eq!(s.act.releases(), 0, "released before the request ended");
        tokio::time::sleep(RELEASE * 4).await;
        assert_eq!(s.act.releases(), 1, "released once idle");
        get(&mut s.client, "/a").await;
        // The next idle phase releases again.
        tokio::time::sleep(RELEASE * 4).await;
        assert_eq!(s.act.releases(), 2);
    }

    /// Counts its wake-ups.
    struct Count(std::sync::atomic::AtomicUsize);

    impl std::task::Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    /// The signal wakes the task when the watch moves, fires once it says
    /// true (or the sender is gone), and only then.
    #[tokio::test]
    async fn the_drain_signal_wakes_the_task_and_fires_once() {
        for gone in [false, true] {
            let (tx, mut rx) = watch::channel(false);
            let mut signal = pin!(Signal::new(rx.wait_for(|d| *d)));
            let count = Arc::new(Count(Default::default()));
            let waker = std::task::Waker::from(count.clone());
            let mut cx = std::task::Context::from_waker(&waker);
            let woken = || count.0.load(std::sync::atomic::Ordering::SeqCst);
            assert!(!signal.as_mut().poll_fired(&mut cx));
            assert!(!signal.as_mut().poll_fired(&mut cx));
            tx.send(false).unwrap();
            assert_eq!(woken(), 1, "a change wakes the task");
            assert!(!signal.as_mut().poll_fired(&mut cx), "still false");
            if gone {
                drop(tx);
            } else {
                tx.send(true).unwrap();
            }
            assert_eq!(woken(), 2);
            assert!(signal.as_mut().poll_fired(&mut cx), "gone: {gone}");
            assert!(!signal.as_mut().poll_fired(&mut cx), "once");
        }
    }
}
