//! A deadline around a future that costs nothing unless the future has to
//! wait: [`within`], and a timeout that starts when it does: [`within_for`].

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// `fut` bounded by `deadline` (none: unbounded): `None` once it passes.
/// A future that is ready on its first poll (most handlers, most response
/// body chunks) costs no timer; one that waits gets it boxed. Inline, as
/// in `tokio::time::Timeout`, the timer would widen the state of every
/// request, timer or not. For a future that nearly always waits (an
/// upstream's answer), `Timeout` is the better fit: no allocation.
pub(crate) fn within<F: Future>(deadline: Option<Instant>, fut: F) -> Within<F> {
    Within {
        fut,
        limit: deadline.map_or(Limit::None, Limit::At),
        timer: None,
    }
}

/// `fut` bounded by `timeout` (none: unbounded), counted from the first
/// time it has to wait: `None` once it has waited that long. A progress
/// limit (a send that the peer does not take), where the moment before
/// the first poll and the moment the future first waits are the same for
/// any purpose, and one that is ready at once reads no clock at all.
pub(crate) fn within_for<F: Future>(timeout: Option<Duration>, fut: F) -> Within<F> {
    Within {
        fut,
        limit: timeout.map_or(Limit::None, Limit::After),
        timer: None,
    }
}

/// When a [`Within`] gives up.
#[derive(Debug, Clone, Copy)]
enum Limit {
    /// Never.
    None,
    /// At this instant.
    At(Instant),
    /// This long after the future first waits.
    After(Duration),
}

pin_project_lite::pin_project! {
    /// See [`within`] and [`within_for`]. A plain `Future` rather than an
    /// `async fn`, which would trip the compiler's higher-ranked `Send`
    /// inference on a handler's future.
    pub(crate) struct Within<F> {
        #[pin]
        fut: F,
        limit: Limit,
        timer: Option<Pin<Box<Sleep>>>,
    }
}

impl<F: Future> Future for Within<F> {
    type Output = Option<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        // The future first, as `tokio::time::timeout` does: one that is
        // ready when the deadline passes still counts.
        if let Poll::Ready(v) = this.fut.poll(cx) {
            return Poll::Ready(Some(v));
        }
        let deadline = match *this.limit {
            Limit::None => return Poll::Pending,
            Limit::At(deadline) => deadline,
            Limit::After(timeout) => {
                // Fixed at the first wait, so later polls keep it.
                let deadline = Instant::now() + timeout;
                *this.limit = Limit::At(deadline);
                deadline
            }
        };
        this.timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)))
            .as_mut()
            .poll(cx)
            .map(|()| None)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_ready_future_wins_and_a_waiting_one_times_out() {
        let now = Instant::now();
        // Ready on the first poll: its output, even past the deadline.
        assert_eq!(within(Some(now), async { 7 }).await, Some(7));
        assert_eq!(within(None, async { 8 }).await, Some(8));
        let d = Duration::from_millis(50);
        let never = std::future::pending::<()>();
        assert_eq!(within(Some(now + d), never).await, None);
        assert!(Instant::now() >= now + d);
        // Ready after a wait, well before the deadline.
        let soon = tokio::time::sleep(Duration::from_millis(5));
        let later = Instant::now();
        assert_eq!(within(Some(later + 20 * d), soon).await, Some(()));
        assert!(Instant::now() < later + 20 * d);
    }

    #[tokio::test]
    async fn a_timeout_counts_from_the_first_wait() {
        let d = Duration::from_millis(50);
        assert_eq!(within_for(Some(Duration::ZERO), async { 7 }).await, Some(7));
        assert_eq!(within_for(None, async { 8 }).await, Some(8));
        // Built long before it is polled: the wait still gets the whole
        // timeout, counted from the poll.
        // (A deadline fixed when it was built would have passed.)
        let slow = within_for(Some(2 * d), async move { tokio::time::sleep(d).await });
        tokio::time::sleep(3 * d).await;
        assert_eq!(slow.await, Some(()));
        let start = Instant::now();
        let never = std::future::pending::<()>();
        assert_eq!(within_for(Some(d), never).await, None);
        assert!(Instant::now() >= start + d);
    }
}
