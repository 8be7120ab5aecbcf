use futures::FutureExt;
use futures::future::BoxFuture;
use std::panic::AssertUnwindSafe;

use crate::handler::{HandlerError, panic_message, unit_layer};
use crate::{BoxError, Event, Handler};

unit_layer! {
    /// Turns a handler panic into an error, so the layers around it (retry, dead letter)
    /// treat it as a failure. The handler runner catches panics anyway; this layer is for
    /// composing.
    pub struct RecoverLayer => Recover;
}

impl<H: Handler> Handler for Recover<H> {
    fn call(&self, event: Event) -> BoxFuture<'static, Result<(), BoxError>> {
        let id = event.message().id().clone();
        // A panic may come from building the future, or from polling it.
        let future = match std::panic::catch_unwind(AssertUnwindSafe(|| self.inner.call(event))) {
            Ok(future) => future,
            Err(panic) => {
                let text = panic_message(&*panic);
                return futures::future::ready(Err(panicked(&id, &text))).boxed();
            }
        };
        AssertUnwindSafe(future)
            .catch_unwind()
            .map(move |outcome| match outcome {
                Ok(result) => result,
                Err(panic) => Err(panicked(&id, &panic_message(&*panic))),
            })
            .boxed()
    }
}

fn panicked(id: &crate::MessageId, text: &str) -> BoxError {
    tracing::error!(message_id = %id, panic = %text, "handler panicked");
    Box::new(HandlerError(format!("handler panicked: {text}")))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::middleware::test_support::{BOUND, Marker};
    use crate::{HandlerExt, Message};

    fn event(payload: &'static str) -> Event {
        Event::new("orders.created", Message::new(payload), 1)
    }

    async fn run(handler: &impl Handler, payload: &'static str) -> Result<(), BoxError> {
        tokio::time::timeout(BOUND, handler.call(event(payload)))
            .await
            .expect("the handler finished within the bound")
    }

    /// A handler that panics while it is polled, in the way its payload names:
    /// `str` (a `&'static str` payload), `string` (a `String` payload), `number` (an
    /// `i32` payload); `fail` returns an error, anything else succeeds. Counts its calls.
    fn panicky(calls: Arc<AtomicUsize>) -> impl Handler {
        move |event: Event| {
            let calls = calls.clone();
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                // Yield once, so the panic comes from a later poll, not the first.
                tokio::task::yield_now().await;
                match &event.message().payload()[..] {
                    b"str" => panic!("static str payload"),
                    b"string" => {
                        let n = 42;
                        panic!("formatted String payload {n}")
                    }
                    b"number" => std::panic::panic_any(7_i32),
                    b"fail" => Err(Marker(3)),
                    _ => Ok(()),
                }
            }
        }
    }

    fn handler_error_text(err: &BoxError) -> String {
        let err = err
            .downcast_ref::<HandlerError>()
            .expect("a panic comes out as a HandlerError");
        err.0.clone()
    }

    /// The error a [`panicky`] handler under the layer fails with on `payload`.
    async fn panic_error(payload: &'static str) -> BoxError {
        let handler = panicky(Arc::default()).with(RecoverLayer::new());
        run(&handler, payload)
            .await
            .expect_err("a panic is a failure")
    }

    #[tokio::test]
    async fn str_panic_becomes_an_error_naming_it() {
        let err = panic_error("str").await;
        assert_eq!(
            handler_error_text(&err),
            "handler panicked: static str payload"
        );
        assert_eq!(err.to_string(), "handler panicked: static str payload");
    }

    #[tokio::test]
    async fn string_panic_becomes_an_error_naming_it() {
        let err = panic_error("string").await;
        assert_eq!(
            handler_error_text(&err),
            "handler panicked: formatted String payload 42"
        );
    }

    #[tokio::test]
    async fn non_string_panic_becomes_an_error() {
        let err = panic_error("number").await;
        assert_eq!(
            handler_error_text(&err),
            "handler panicked: a non-string panic payload"
        );
    }

    #[tokio::test]
    async fn panic_while_building_the_future_becomes_an_error() {
        /// Panics in `call` itself, before there is a future to poll.
        struct PanicsInCall;

        impl Handler for PanicsInCall {
            fn call(&self, event: Event) -> BoxFuture<'static, Result<(), BoxError>> {
                if &event.message().payload()[..] == b"str" {
                    panic!("panicked in call");
                }
                futures::future::ready(Ok(())).boxed()
            }
        }

        let handler = PanicsInCall.with(RecoverLayer::new());
        let err = run(&handler, "str")
            .await
            .expect_err("a panic is a failure");
        assert_eq!(
            handler_error_text(&err),
            "handler panicked: panicked in call"
        );
        // And the next event is handled normally.
        run(&handler, "ok").await.expect("the next event succeeds");
    }

    #[tokio::test]
    async fn ok_and_err_pass_through_unchanged() {
        let calls = Arc::new(AtomicUsize::new(0));
        let handler = panicky(calls.clone()).with(RecoverLayer::new());

        run(&handler, "ok").await.expect("Ok passes through");

        let err = run(&handler, "fail").await.expect_err("Err passes through");
        let marker = err
            .downcast_ref::<Marker>()
            .expect("the handler's own error, not a wrapper");
        assert_eq!(marker.0, 3);
        assert!(err.downcast_ref::<HandlerError>().is_none());

        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn handler_stays_usable_after_a_panic() {
        let calls = Arc::new(AtomicUsize::new(0));
        let handler = panicky(calls.clone()).with(RecoverLayer::new());

        for payload in ["str", "string", "number"] {
            run(&handler, payload)
                .await
                .expect_err("a panic is a failure");
            run(&handler, "ok")
                .await
                .expect("the event after a panic is handled normally");
        }
        let err = run(&handler, "fail").await.expect_err("Err passes through");
        assert!(err.downcast_ref::<Marker>().is_some());
        assert_eq!(calls.load(Ordering::SeqCst), 7);
    }

    #[tokio::test]
    async fn panic_in_one_call_does_not_disturb_a_concurrent_one() {
        // Two events in flight on one wrapped handler at once: the one that panics fails,
        // the other still succeeds, and both reached the inner handler.
        let calls = Arc::new(AtomicUsize::new(0));
        let handler = panicky(calls.clone()).with(RecoverLayer::new());
        let (a, b) = tokio::join!(run(&handler, "str"), run(&handler, "ok"));
        assert_eq!(
            handler_error_text(&a.expect_err("the panicking event fails")),
            "handler panicked: static str payload"
        );
        b.expect("the concurrent event succeeds");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }
}
