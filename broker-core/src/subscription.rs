//! A subscription: a stream of deliveries.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use futures::Stream;
use futures::stream::BoxStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::PollSemaphore;

use crate::lag::{self, Lag, LagSource};
use crate::options::AckMode;
use crate::{Delivery, Result, SubscribeOptions};

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
    /// The in-flight bound: one permit per delivery handed out and not yet settled.
    in_flight: PollSemaphore,
    permit: Option<Permit>,
    lag: lag::Attached,
}

/// One unsettled delivery's share of the subscription's in-flight bound, given back when
/// the delivery is settled or dropped.
pub(crate) type Permit = OwnedSemaphorePermit;

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
            in_flight: PollSemaphore::new(Arc::new(Semaphore::new(
                options.max_in_flight.clamp(1, Semaphore::MAX_PERMITS),
            ))),
            permit: None,
            lag: lag::Attached::default(),
        }
    }

    /// Answers [`lag`](Subscription::lag) with `source` (for backend authors). Without
    /// one, `lag` fails with [`Unsupported`](crate::ErrorKind::Unsupported).
    pub fn with_lag(mut self, source: Arc<dyn LagSource>) -> Self {
        self.lag = lag::Attached::new(source);
        self
    }

    /// How far this subscription is behind what was published to it; see
    /// [`lag`](crate::lag) for what each backend counts.
    pub async fn lag(&self) -> Result<Lag> {
        self.lag.lag().await
    }

    /// What answers [`lag`](Subscription::lag), for a decorator that wraps this
    /// subscription in a new one, or a handler that runs it.
    pub(crate) fn lag_source(&self) -> lag::Attached {
        self.lag.clone()
    }

    /// This subscription answering [`lag`](Subscription::lag) with `source`, the
    /// [`lag_source`](Subscription::lag_source) of the subscription it wraps.
    #[cfg(any(feature = "json", feature = "metrics"))]
    pub(crate) fn with_lag_source(mut self, source: lag::Attached) -> Self {
        self.lag = source;
        self
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
            // `None` only once the semaphore is closed, which nothing here does.
            this.permit = ready!(this.in_flight.poll_acquire(cx));
        }
        // Attached in place, and the poll handed on as it came: a delivery is large, and
        // each move of it is a copy.
        let mut next = this.inner.as_mut().poll_next(cx);
        if let Poll::Ready(Some(Ok(delivery))) = &mut next {
            delivery.attach(this.ack_mode, this.permit.take());
        }
        next
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
