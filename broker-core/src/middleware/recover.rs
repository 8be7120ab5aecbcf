use futures::FutureExt;
use futures::future::BoxFuture;
use std::panic::AssertUnwindSafe;

use crate::handler::{HandlerError, panic_message};
use crate::{BoxError, Event, Handler, Layer};

/// Turns a handler panic into an error, so the layers around it (retry, dead letter) treat
/// it as a failure. The handler runner catches panics anyway; this layer is for composing.
#[derive(Debug, Clone, Copy, Default)]
pub struct RecoverLayer;

impl RecoverLayer {
    /// The layer.
    pub fn new() -> Self {
        RecoverLayer
    }
}

impl<H: Handler> Layer<H> for RecoverLayer {
    type Handler = Recover<H>;
    fn layer(&self, inner: H) -> Recover<H> {
        Recover { inner }
    }
}

/// The handler built by [`RecoverLayer`].
#[derive(Debug, Clone)]
pub struct Recover<H> {
    inner: H,
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
