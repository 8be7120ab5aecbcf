//! A subscription: a stream of deliveries.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};

use futures::Stream;
use futures::stream::BoxStream;
use futures::task::AtomicWaker;

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
    in_flight: Arc<InFlight>,
    permit: Option<Permit>,
    lag: lag::Attached,
}

/// The in-flight bound of one subscription: the permits left, and the subscription's
/// task waiting for one. Only the subscription takes permits (its `poll_next` has
/// `&mut self`), so one waker is enough; settled deliveries give them back.
#[derive(Debug)]
struct InFlight {
    available: AtomicUsize,
    waker: AtomicWaker,
}

impl InFlight {
    fn try_take(self: &Arc<Self>) -> Option<Permit> {
        let mut available = self.available.load(Ordering::Acquire);
        while available > 0 {
            match self.available.compare_exchange_weak(
                available,
                available - 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    return Some(Permit {
                        in_flight: self.clone(),
                    });
                }
                Err(seen) => available = seen,
            }
        }
        None
    }

    fn poll_take(self: &Arc<Self>, cx: &mut Context<'_>) -> Poll<Permit> {
        if let Some(permit) = self.try_take() {
            return Poll::Ready(permit);
        }
        self.waker.register(cx.waker());
        // A permit given back between the first try and the registration.
        match self.try_take() {
            Some(permit) => Poll::Ready(permit),
            None => Poll::Pending,
        }
    }
}

/// One unsettled delivery's share of the in-flight bound, given back when dropped.
pub(crate) struct Permit {
    in_flight: Arc<InFlight>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        // The subscription waits only after it found no permit left, and registers before
        // it looks again: the permit that ends a wait is the one that finds none left.
        if self.in_flight.available.fetch_add(1, Ordering::AcqRel) == 0 {
            self.in_flight.waker.wake();
        }
    }
}

impl fmt::Debug for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit").finish_non_exhaustive()
    }
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
            in_flight: Arc::new(InFlight {
                available: AtomicUsize::new(options.max_in_flight.max(1)),
                waker: AtomicWaker::new(),
            }),
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
            this.permit = Some(ready!(this.in_flight.poll_take(cx)));
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
