use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;

use crate::handler::Layer;
use crate::headers::names;
use crate::{BoxError, Broker, Error, ErrorKind, Event, Handler};

/// Sends an event that keeps failing to a dead-letter topic, and acks it there.
///
/// A failure at attempt `n < max_attempts`, on a backend that redelivers, is passed on:
/// the message is nacked and comes back as attempt `n + 1`. At the last attempt, or on a
/// backend that cannot redeliver (core NATS), the message is published to the dead-letter
/// topic with its id, key, payload and headers (the same bytes that arrived), plus
/// `x-dead-letter-error`, `x-dead-letter-attempts` and `x-dead-letter-topic`; then the
/// event succeeds. If that publish fails, the original error is passed on, so the message
/// is not lost.
///
/// A message that cannot be read goes there at once, whatever the attempt: one that
/// arrived with a [`defect`](Event::defect) (the handler is not called), and one whose
/// handler failed with an error of kind [`Codec`](crate::ErrorKind::Codec), as a typed
/// handler does for a payload it cannot decode. Redelivering those would fail the same way.
#[derive(Debug, Clone)]
pub struct DeadLetterLayer {
    broker: Arc<dyn Broker>,
    topic: String,
    max_attempts: u32,
}

impl DeadLetterLayer {
    /// Dead letters go to `topic` on `broker`, after 3 attempts by default.
    pub fn new(broker: Arc<dyn Broker>, topic: impl Into<String>) -> Self {
        DeadLetterLayer {
            broker,
            topic: topic.into(),
            max_attempts: 3,
        }
    }

    /// After how many delivery attempts a failing message goes to the dead-letter topic
    /// (at least 1).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }
}

impl DeadLetterLayer {
    /// Whether a failure at `attempt` goes to the dead-letter topic: at the last attempt,
    /// on a backend that cannot redeliver, or when the message cannot be read.
    pub(crate) fn takes(&self, attempt: u32, unreadable: bool) -> bool {
        let can_redeliver = self.broker.capabilities().redelivery;
        !can_redeliver || attempt >= self.max_attempts || unreadable
    }

    /// Publishes `failed`'s message to the dead-letter topic, marked with `error`, and
    /// logs it; on failure logs that and returns the publish error.
    pub(crate) async fn send(&self, failed: &Event, error: &str) -> crate::Result<()> {
        let attempt = failed.attempt();
        let mut message = failed.message().clone();
        let headers = message.headers_mut();
        headers.insert(names::DEAD_LETTER_ERROR, error);
        headers.insert(names::DEAD_LETTER_ATTEMPTS, attempt.to_string());
        headers.insert(names::DEAD_LETTER_TOPIC, failed.topic());
        match self.broker.publish(&self.topic, message).await {
            Ok(()) => {
                #[cfg(feature = "metrics")]
                crate::observe::count_dead_letter(self.broker.capabilities().backend, &self.topic);
                tracing::warn!(
                    %error,
                    attempt,
                    dead_letter_topic = %self.topic,
                    message_id = %failed.message().id(),
                    "message sent to the dead-letter topic"
                );
                Ok(())
            }
            Err(publish_err) => {
                tracing::error!(
                    error = %publish_err.display_chain(),
                    "publishing a dead letter failed; nacking instead"
                );
                Err(publish_err)
            }
        }
    }
}

impl<H: Handler> Layer<H> for DeadLetterLayer {
    type Handler = DeadLetter<H>;
    fn layer(&self, inner: H) -> DeadLetter<H> {
        DeadLetter {
            inner,
            config: Arc::new(self.clone()),
        }
    }
}

/// The handler built by [`DeadLetterLayer`].
#[derive(Debug)]
pub struct DeadLetter<H> {
    inner: H,
    config: Arc<DeadLetterLayer>,
}

impl<H: Handler> Handler for DeadLetter<H> {
    fn call(&self, event: Event) -> BoxFuture<'static, Result<(), BoxError>> {
        let config = self.config.clone();
        let failed = event.clone();
        let outcome = match event.defect() {
            Some(defect) => {
                let err: BoxError = Box::new(Error::new(ErrorKind::Codec, defect.message()));
                futures::future::ready(Err(err)).boxed()
            }
            None => self.inner.call(event),
        };
        outcome
            .then(move |result| async move {
                let err = match result {
                    Ok(()) => return Ok(()),
                    Err(err) => err,
                };
                let attempt = failed.attempt();
                let unreadable = Error::is_unreadable(&err);
                if !config.takes(attempt, unreadable) {
                    return Err(err);
                }
                match config.send(&failed, &err.to_string()).await {
                    Ok(()) => Ok(()),
                    Err(_) => Err(err),
                }
            })
            .boxed()
    }
}
