//! Thread-per-core serving: the calling thread and `n - 1` more, each
//! running its own current-thread tokio runtime on a shared listening
//! socket, as nginx runs worker processes. A connection stays on the thread
//! that accepted it, and so do its requests, its handlers and (for the
//! proxy's `Front`) the upstream connections they use:
//! nothing on a request's path wakes another thread.
//!
//! `uwire serve`, `uwire proxy`, `uwire quickstart` and the Python
//! runtime's HTTP front (`python -m uwire --http`) serve this way:
//!
//! ```no_run
//! # async fn demo(front: std::sync::Arc<uwire::proxy::Front>,
//! #               listener: tokio::net::TcpListener,
//! #               shutdown: impl std::future::Future<Output = ()>)
//! #               -> Result<(), uwire::net::threads::BoxError> {
//! use std::time::Duration;
//! use uwire::net::threads;
//! let serve_one = move |l, stop: threads::Stop| {
//!     let front = front.clone();
//!     async move { Ok(front.serve(l, stop.wait()).await?) }
//! };
//! threads::serve_tcp(2, Duration::ZERO, || {}, listener, serve_one, shutdown).await?;
//! # Ok(())
//! # }
//! ```

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::watch;

use super::busy_poll;

/// The error of a serving thread.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Builds a runtime from `builder` (I/O and time enabled) with `busy_poll`
/// of busy polling before its threads sleep ([`busy_poll::build`], which
/// warns where it is not available).
pub fn runtime(
    mut builder: tokio::runtime::Builder,
    busy_poll: Duration,
) -> std::io::Result<tokio::runtime::Runtime> {
    busy_poll::build(builder.enable_all(), busy_poll).map(|(rt, _)| rt)
}

/// A signal that the work should wind down, readable on any thread.
#[derive(Clone, Debug)]
pub struct Stop(watch::Receiver<bool>);

impl From<watch::Receiver<bool>> for Stop {
    fn from(rx: watch::Receiver<bool>) -> Stop {
        Stop(rx)
    }
}

impl Stop {
    /// Resolves once shutdown starts (`true` sent), or once its sender is
    /// gone.
    pub async fn wait(mut self) {
        let _ = self.0.wait_for(|s| *s).await;
    }
}

/// The extra serving threads of [`spawn`].
#[derive(Debug)]
pub struct Workers {
    handles: Vec<JoinHandle<Result<(), BoxError>>>,
    stop: watch::Sender<bool>,
}

impl Workers {
    /// A handle that tells them to stop from elsewhere: send `true`.
    pub fn stopper(&self) -> watch::Sender<bool> {
        self.stop.clone()
    }

    /// Waits for the extra threads; the first error wins. The wait happens
    /// on the blocking pool: this thread's runtime keeps running its tasks
    /// meanwhile (its upstream connections may still be what another
    /// thread's drain waits on).
    pub async fn join(self) -> Result<(), BoxError> {
        if self.handles.is_empty() {
            return Ok(());
        }
        match tokio::task::spawn_blocking(move || self.join_blocking()).await {
            Ok(r) => r,
            Err(_) => Err("waiting for the serving threads failed".into()),
        }
    }

    fn join_blocking(self) -> Result<(), BoxError> {
        let mut result = Ok(());
        for h in self.handles {
            let r = match h.join() {
                Ok(r) => r,
                Err(_) => Err("a serving thread panicked".into()),
            };
            if result.is_ok() {
                result = r;
            }
        }
        result
    }
}

/// Starts `n - 1` extra threads (`uwire-1`, ...), each running `work(i,
/// stop)` (i = 1..n) on a current-thread runtime with `busy_poll` (see
/// [`runtime`]), after `on_start` (run inside that runtime: the place to
/// spawn per-thread upkeep such as `uwire::alloc::spawn_upkeep`); the
/// caller's thread is the first.
pub fn spawn<W, Fut>(
    n: usize,
    busy_poll: Duration,
    on_start: fn(),
    work: W,
) -> std::io::Result<Workers>
where
    W: Fn(usize, Stop) -> Result<Fut, BoxError> + Send + Clone + 'static,
    Fut: Future<Output = Result<(), BoxError>> + 'static,
{
    let (tx, rx) = watch::channel(false);
    let mut handles = Vec::new();
    for i in 1..n.max(1) {
        let work = work.clone();
        let stop = Stop(rx.clone());
        handles.push(
            std::thread::Builder::new()
                .name(format!("uwire-{i}"))
                .spawn(move || -> Result<(), BoxError> {
                    let rt = runtime(tokio::runtime::Builder::new_current_thread(), busy_poll)?;
                    // The future is made inside the runtime: it registers
                    // its listener with this thread's reactor.
                    rt.block_on(async move {
                        on_start();
                        work(i, stop)?.await
                    })
                })?,
        );
    }
    Ok(Workers { handles, stop: tx })
}

/// Serves on the calling thread and `n - 1` more until `shutdown`
/// resolves: [`spawn`]s the extra threads with `work` (see there for
/// `busy_poll` and `on_start`), runs `here(stop)` on this thread, and once
/// `shutdown` resolves tells every thread to stop. It returns when all
/// have finished; the first error wins, this thread's first.
///
/// Should this thread's serving end on its own (an error), the others are
/// told to stop as well: a process never lingers half served.
pub async fn serve<W, Fut, H, HFut, S>(
    n: usize,
    busy_poll: Duration,
    on_start: fn(),
    work: W,
    here: H,
    shutdown: S,
) -> Result<(), BoxError>
where
    W: Fn(usize, Stop) -> Result<Fut, BoxError> + Send + Clone + 'static,
    Fut: Future<Output = Result<(), BoxError>> + 'static,
    H: FnOnce(Stop) -> HFut,
    HFut: Future<Output = Result<(), BoxError>>,
    S: Future<Output = ()>,
{
    let others = spawn(n, busy_poll, on_start, work)?;
    let stop_all = others.stopper();
    let served = {
        let here = here(Stop(stop_all.subscribe()));
        tokio::pin!(here, shutdown);
        tokio::select! {
            r = &mut here => r,
            () = &mut shutdown => {
                let _ = stop_all.send(true);
                here.await
            }
        }
    };
    // This thread is done, shut down or failed on its own: the others stop
    // too (a second `true` after a shutdown changes nothing).
    let _ = stop_all.send(true);
    let joined = others.join().await;
    served?;
    joined
}

/// [`serve`] on one TCP listening socket: every thread, this one included,
/// runs `serve_one` on its own handle of `listener` ([`share_tcp`]).
pub async fn serve_tcp<F, Fut>(
    n: usize,
    busy_poll: Duration,
    on_start: fn(),
    listener: tokio::net::TcpListener,
    serve_one: F,
    shutdown: impl Future<Output = ()>,
) -> Result<(), BoxError>
where
    F: Fn(tokio::net::TcpListener, Stop) -> Fut + Send + Clone + 'static,
    Fut: Future<Output = Result<(), BoxError>> + 'static,
{
    let handles = share_tcp(&listener, n)?;
    let extra = {
        let serve_one = serve_one.clone();
        move |_i, stop| Ok(serve_one(take_tcp(&handles)?, stop))
    };
    let here = |stop| serve_one(listener, stop);
    serve(n, busy_poll, on_start, extra, here, shutdown).await
}

/// Values handed to the serving threads, one each (listener handles made
/// before the threads start).
#[derive(Debug)]
pub struct Handoff<T>(Arc<Mutex<Vec<T>>>);

impl<T> Clone for Handoff<T> {
    fn clone(&self) -> Self {
        Handoff(self.0.clone())
    }
}

impl<T> Handoff<T> {
    /// Hands out `items`, one per [`take`](Handoff::take).
    pub fn new(items: Vec<T>) -> Handoff<T> {
        Handoff(Arc::new(Mutex::new(items)))
    }

    /// One of the items; an error when none is left.
    pub fn take(&self) -> Result<T, BoxError> {
        self.0
            .lock()
            .map_err(|_| "listener handoff poisoned")?
            .pop()
            .ok_or_else(|| "no listener left for a serving thread".into())
    }
}

/// `n - 1` more handles on `listener` (duplicated descriptors of the one
/// listening socket), for the extra serving threads of [`spawn`].
pub fn share_tcp(
    listener: &tokio::net::TcpListener,
    n: usize,
) -> std::io::Result<Handoff<std::net::TcpListener>> {
    use std::os::fd::AsFd;
    let handles = (1..n)
        .map(|_| {
            listener
                .as_fd()
                .try_clone_to_owned()
                .map(std::net::TcpListener::from)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Handoff::new(handles))
}

/// One handle from [`share_tcp`], registered with the calling thread's
/// runtime.
pub fn take_tcp(
    handoff: &Handoff<std::net::TcpListener>,
) -> Result<tokio::net::TcpListener, BoxError> {
    let l = handoff.take()?;
    l.set_nonblocking(true)?;
    Ok(tokio::net::TcpListener::from_std(l)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three threads serve one listening socket, each on its own runtime:
    /// connections made to it are answered, whichever thread accepts them,
    /// and the shutdown ends them all.
    #[test]
    fn threads_share_a_listener_and_stop_together() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        async fn answer(l: tokio::net::TcpListener, stop: Stop) -> Result<(), BoxError> {
            let tid = format!("{:?}", std::thread::current().id());
            let stopped = stop.wait();
            tokio::pin!(stopped);
            loop {
                tokio::select! {
                    r = l.accept() => {
                        let (mut s, _) = r?;
                        s.write_all(tid.as_bytes()).await?;
                    }
                    _ = &mut stopped => return Ok(()),
                }
            }
        }
        let rt = runtime(
            tokio::runtime::Builder::new_current_thread(),
            Duration::ZERO,
        )
        .unwrap();
        let answered = rt.block_on(async {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = l.local_addr().unwrap();
            static STARTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            let clients = tokio::spawn(async move {
                let mut answered = Vec::new();
                for _ in 0..30 {
                    let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
                    let mut who = String::new();
                    c.read_to_string(&mut who).await.unwrap();
                    answered.push(who);
                }
                let _ = tx.send(());
                answered
            });
            serve_tcp(
                3,
                Duration::ZERO,
                || {
                    STARTED.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                },
                l,
                answer,
                async move {
                    let _ = rx.await;
                },
            )
            .await
            .unwrap();
            let answered = clients.await.unwrap();
            assert_eq!(STARTED.load(std::sync::atomic::Ordering::SeqCst), 2);
            answered
        });
        assert_eq!(answered.len(), 30);
        assert!(answered.iter().all(|w| w.starts_with("ThreadId(")));
    }

    /// This thread's serving fails while the others wait for a stop: they
    /// are told to stop, and the error is what `serve` returns (where it
    /// would otherwise wait for a shutdown that never comes).
    #[test]
    fn a_failing_first_thread_stops_the_others() {
        // On a thread of its own: should the others never stop, the test
        // fails at the timeout instead of waiting with them.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = runtime(
                tokio::runtime::Builder::new_current_thread(),
                Duration::ZERO,
            )
            .unwrap();
            let served = rt.block_on(serve(
                3,
                Duration::ZERO,
                || {},
                |_i, stop: Stop| {
                    Ok(async move {
                        stop.wait().await;
                        Ok(())
                    })
                },
                |_stop| async { Err::<(), BoxError>("no more accepting".into()) },
                std::future::pending(),
            ));
            let _ = tx.send(served.map_err(|e| e.to_string()));
        });
        let served = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the other threads stopped");
        assert_eq!(served.unwrap_err(), "no more accepting");
    }

    #[test]
    fn a_handoff_runs_out() {
        let h = Handoff::new(vec![1, 2]);
        let h2 = h.clone();
        let mut got = vec![h.take().unwrap(), h2.take().unwrap()];
        got.sort();
        assert_eq!(got, [1, 2]);
        let e = h.take().unwrap_err();
        assert!(e.to_string().contains("no listener left"), "{e}");
    }

    #[test]
    fn a_failing_thread_fails_the_join() {
        let rt = runtime(
            tokio::runtime::Builder::new_current_thread(),
            Duration::ZERO,
        )
        .unwrap();
        rt.block_on(async {
            let others = spawn(
                3,
                Duration::ZERO,
                || {},
                |i, _stop| {
                    Ok(async move {
                        if i == 2 {
                            Err::<(), BoxError>("thread 2 failed".into())
                        } else {
                            Ok(())
                        }
                    })
                },
            )
            .unwrap();
            let e = others.join().await.unwrap_err();
            assert_eq!(e.to_string(), "thread 2 failed");
        });
    }
}
