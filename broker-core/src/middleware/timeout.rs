use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;

use crate::handler::Layer;
use crate::{BoxError, Error, ErrorKind, Event, Handler};

/// Fails an event whose handler takes longer than a limit, with an
/// [`ErrorKind::Timeout`] error.
#[derive(Debug, Clone, Copy)]
pub struct TimeoutLayer {
    limit: Duration,
}

impl TimeoutLayer {
    /// Handlers get `limit` per event.
    pub fn new(limit: Duration) -> Self {
        TimeoutLayer { limit }
    }
}

impl<H: Handler> Layer<H> for TimeoutLayer {
    type Handler = Timeout<H>;
    fn layer(&self, inner: H) -> Timeout<H> {
        Timeout {
            inner,
            limit: self.limit,
        }
    }
}

/// The handler built by [`TimeoutLayer`].
#[derive(Debug, Clone)]
pub struct Timeout<H> {
    inner: H,
    limit: Duration,
}

impl<H: Handler> Handler for Timeout<H> {
    fn call(&self, event: Event) -> BoxFuture<'static, Result<(), BoxError>> {
        let limit = self.limit;
        let topic = event.topic().to_owned();
        tokio::time::timeout(limit, self.inner.call(event))
            .map(move |outcome| match outcome {
                Ok(result) => result,
                Err(_) => Err(Box::new(Error::new(
                    ErrorKind::Timeout,
                    format!("handler for `{topic}` took longer than {limit:?}"),
                )) as BoxError),
            })
            .boxed()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::time::Instant;

    use super::*;
    use crate::middleware::test_support::{BOUND, Marker};
    use crate::{HandlerExt, Message};

    fn event(topic: &str) -> Event {
        Event::new(topic, Message::new("payload"), 1)
    }

    /// Sets its flag when dropped: shows that a future holding it was dropped.
    struct DropFlag(Arc<AtomicBool>);

    impl Drop for DropFlag {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn slow_handler_times_out_with_timeout_error_and_is_dropped() {
        let limit = Duration::from_millis(50);
        let dropped = Arc::new(AtomicBool::new(false));
        let finished = Arc::new(AtomicBool::new(false));
        let handler = {
            let (dropped, finished) = (dropped.clone(), finished.clone());
            move |_event: Event| {
                let guard = DropFlag(dropped.clone());
                let finished = finished.clone();
                async move {
                    let _guard = guard;
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    finished.store(true, Ordering::SeqCst);
                    Ok::<_, BoxError>(())
                }
            }
        }
        .with(TimeoutLayer::new(limit));

        let future = handler.call(event("orders.created"));
        assert!(
            !dropped.load(Ordering::SeqCst),
            "the inner future is dropped before it was polled"
        );
        let start = Instant::now();
        let outcome = tokio::time::timeout(BOUND, future)
            .await
            .expect("the timeout layer did not fire within the bound");
        let elapsed = start.elapsed();

        let err = outcome.expect_err("a handler slower than the limit must fail");
        let err = err
            .downcast_ref::<Error>()
            .expect("the timeout error is a broker_core::Error");
        assert_eq!(err.kind(), ErrorKind::Timeout);
        assert_eq!(
            err.message(),
            "handler for `orders.created` took longer than 50ms"
        );
        assert_eq!(
            err.to_string(),
            "timeout: handler for `orders.created` took longer than 50ms"
        );
        assert!(
            elapsed >= limit,
            "fired after {elapsed:?}, before the limit"
        );
        assert!(
            dropped.load(Ordering::SeqCst),
            "the slow inner future must be dropped once the limit passes"
        );
        assert!(!finished.load(Ordering::SeqCst));
    }

    #[tokio::test]
    async fn fast_handler_ok_passes_through() {
        let calls = Arc::new(AtomicUsize::new(0));
        let handler = {
            let calls = calls.clone();
            move |event: Event| {
                let calls = calls.clone();
                async move {
                    assert_eq!(event.topic(), "orders.created");
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    calls.fetch_add(1, Ordering::SeqCst);
                    Ok::<_, BoxError>(())
                }
            }
        }
        .with(TimeoutLayer::new(BOUND));

        let outcome = tokio::time::timeout(BOUND, handler.call(event("orders.created")))
            .await
            .expect("a fast handler finished within the bound");
        assert!(outcome.is_ok(), "got {outcome:?}");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn fast_handler_err_passes_through_unchanged() {
        let handler =
            (|_event: Event| async { Err::<(), _>(Marker(7)) }).with(TimeoutLayer::new(BOUND));
        let err = handler
            .call(event("orders.created"))
            .await
            .expect_err("the handler's error must come out");
        let marker = err
            .downcast_ref::<Marker>()
            .expect("the handler's own error, not a wrapper");
        assert_eq!(marker.0, 7);

        // A broker_core::Error of another kind keeps its kind: it is not mistaken for a timeout.
        let handler =
            (|_event: Event| async { Err::<(), _>(Error::new(ErrorKind::Codec, "bad payload")) })
                .with(TimeoutLayer::new(BOUND));
        let err = handler
            .call(event("orders.created"))
            .await
            .expect_err("the handler's error must come out");
        let err = err.downcast_ref::<Error>().expect("a broker_core::Error");
        assert_eq!(err.kind(), ErrorKind::Codec);
        assert_eq!(err.message(), "bad payload");
    }

    #[tokio::test]
    async fn limit_applies_to_each_event() {
        // One event times out; the next, fast one on the same handler still succeeds.
        let handler = (|event: Event| async move {
            if event.topic() == "slow" {
                tokio::time::sleep(Duration::from_secs(30)).await;
            }
            Ok::<_, BoxError>(())
        })
        .with(TimeoutLayer::new(Duration::from_millis(20)));

        let slow = tokio::time::timeout(BOUND, handler.call(event("slow")))
            .await
            .expect("within the bound");
        let kind = slow
            .expect_err("the slow event times out")
            .downcast_ref::<Error>()
            .map(Error::kind);
        assert_eq!(kind, Some(ErrorKind::Timeout));

        let fast = tokio::time::timeout(BOUND, handler.call(event("fast")))
            .await
            .expect("within the bound");
        assert!(fast.is_ok(), "got {fast:?}");
    }

    #[tokio::test]
    async fn huge_limit_does_not_overflow() {
        let handler = (|_event: Event| async { Ok::<_, BoxError>(()) })
            .with(TimeoutLayer::new(Duration::MAX));
        let outcome = tokio::time::timeout(BOUND, handler.call(event("t")))
            .await
            .expect("within the bound");
        assert!(outcome.is_ok(), "got {outcome:?}");
    }
}
