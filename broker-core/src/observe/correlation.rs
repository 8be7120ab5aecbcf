//! Correlation ids: follow-up messages name the message that caused them.

use std::future::Future;
use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;

use crate::handler::unit_layer;
use crate::headers::names;
use crate::{BoxError, Event, Handler, Message};

tokio::task_local! {
    static CURRENT: Arc<str>;
}

/// The correlation id of the event the current task is handling under a
/// [`CorrelationLayer`], if any.
pub fn current_correlation_id() -> Option<String> {
    CURRENT.try_with(|id| id.to_string()).ok()
}

/// Runs `future` with `id` as the current correlation id.
pub(crate) fn scope<F: Future>(id: Arc<str>, future: F) -> impl Future<Output = F::Output> {
    CURRENT.scope(id, future)
}

/// The correlation id of `message`: its `correlation-id` header, or else its own id.
pub(crate) fn correlation_of(message: &Message) -> Arc<str> {
    match message.headers().get(names::CORRELATION_ID) {
        Some(id) if !id.is_empty() => Arc::from(id),
        _ => Arc::from(message.id().as_str()),
    }
}

unit_layer! {
    /// A handler layer that makes the event's correlation id (its `correlation-id`
    /// header, or its message id when it has none) current while the handler runs, so
    /// that a [`CorrelatingBroker`] stamps it on whatever the handler publishes.
    pub struct CorrelationLayer => Correlation;
}

impl<H: Handler> Handler for Correlation<H> {
    fn call(&self, event: Event) -> BoxFuture<'static, std::result::Result<(), BoxError>> {
        let id = correlation_of(event.message());
        // Current both while the handler builds its future and while the future runs.
        let call = CURRENT.sync_scope(id.clone(), || self.inner.call(event));
        scope(id, call).boxed()
    }
}

stamping_broker! {
    /// A broker decorator: a message published while a handler runs under a
    /// [`CorrelationLayer`] gets that event's correlation id in its `correlation-id`
    /// header, unless it already has one.
    pub struct CorrelatingBroker => stamp_correlation_id;
}

/// Gives `message` the current correlation id, unless it has one.
fn stamp_correlation_id(message: &mut Message) {
    if !message.headers().contains(names::CORRELATION_ID)
        && let Some(id) = current_correlation_id()
    {
        message.headers_mut().insert(names::CORRELATION_ID, id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::HandlerExt;

    #[tokio::test]
    async fn the_correlation_id_is_current_in_the_handler_and_its_future() {
        let message = Message::new("cause").with_header(names::CORRELATION_ID, "order-42");
        let handler = (|_event: Event| {
            let outside = current_correlation_id();
            async move {
                assert_eq!(
                    outside.as_deref(),
                    Some("order-42"),
                    "while building the future"
                );
                assert_eq!(
                    current_correlation_id().as_deref(),
                    Some("order-42"),
                    "inside it"
                );
                Ok::<(), BoxError>(())
            }
        })
        .with(CorrelationLayer::new());
        let result = handler.call(Event::new("order.placed", message, 1)).await;
        assert!(result.is_ok(), "{result:?}");
        assert_eq!(
            current_correlation_id(),
            None,
            "nothing leaks past the handler"
        );
    }

    #[tokio::test]
    async fn without_a_header_the_message_id_is_the_correlation_id() {
        let message = Message::new("cause").with_id("m-1");
        let (tx, rx) = tokio::sync::oneshot::channel();
        let tx = std::sync::Mutex::new(Some(tx));
        let handler = (move |_event: Event| {
            if let Some(tx) = tx.lock().ok().and_then(|mut t| t.take()) {
                let _ = tx.send(current_correlation_id());
            }
            async { Ok::<(), BoxError>(()) }
        })
        .with(CorrelationLayer::new());
        let _ = handler.call(Event::new("order.placed", message, 1)).await;
        assert_eq!(rx.await.ok().flatten().as_deref(), Some("m-1"));
    }
}
