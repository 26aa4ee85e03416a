//! A deadline around a future that costs nothing unless the future has to
//! wait: [`within`].

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

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
        deadline,
        timer: None,
    }
}

pin_project_lite::pin_project! {
    /// See [`within`]. A plain `Future` rather than an `async fn`, which
    /// would trip the compiler's higher-ranked `Send` inference on a
    /// handler's future.
    pub(crate) struct Within<F> {
        #[pin]
        fut: F,
        deadline: Option<Instant>,
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
        let Some(deadline) = *this.deadline else {
            return Poll::Pending;
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
}
