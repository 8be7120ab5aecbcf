//! A subscription: a stream of deliveries.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use futures::Stream;
use futures::stream::BoxStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::PollSemaphore;

use crate::{AckMode, Delivery, Result, SubscribeOptions};

/// A live subscription: a [`Stream`] of deliveries. Dropping it unsubscribes.
///
/// It hands out at most [`SubscribeOptions::max_in_flight`] unsettled deliveries; the next
/// one waits until one of them is acked or nacked. An `Err` item reports a problem the
/// backend met while consuming (the stream goes on); the stream ends when the
/// subscription or the broker is closed.
pub struct Subscription {
    pattern: Arc<str>,
    inner: BoxStream<'static, Result<Delivery>>,
    ack_mode: AckMode,
    in_flight: PollSemaphore,
    permit: Option<OwnedSemaphorePermit>,
}

impl Subscription {
    /// Wraps a backend's stream of deliveries for `pattern`, applying `options`' ack mode
    /// and in-flight bound.
    pub fn new<S>(pattern: &str, options: &SubscribeOptions, deliveries: S) -> Self
    where
        S: Stream<Item = Result<Delivery>> + Send + 'static,
    {
        Subscription {
            pattern: Arc::from(pattern),
            inner: Box::pin(deliveries),
            ack_mode: options.ack_mode,
            in_flight: PollSemaphore::new(Arc::new(Semaphore::new(options.max_in_flight.max(1)))),
            permit: None,
        }
    }

    /// The pattern this subscription was made with.
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// The ack mode of this subscription.
    pub fn ack_mode(&self) -> AckMode {
        self.ack_mode
    }
}

impl Stream for Subscription {
    type Item = Result<Delivery>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.permit.is_none() {
            match ready!(this.in_flight.poll_acquire(cx)) {
                Some(permit) => this.permit = Some(permit),
                None => return Poll::Ready(None),
            }
        }
        match ready!(this.inner.as_mut().poll_next(cx)) {
            Some(Ok(mut delivery)) => {
                delivery.attach(this.ack_mode, this.permit.take());
                Poll::Ready(Some(Ok(delivery)))
            }
            other => Poll::Ready(other),
        }
    }
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("pattern", &self.pattern)
            .field("ack_mode", &self.ack_mode)
            .finish_non_exhaustive()
    }
}
