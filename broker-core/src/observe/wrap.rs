//! Re-wrapping a subscription's deliveries so a decorator sees each delivery and how it
//! is settled.

use std::sync::Arc;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};

use crate::backend::Acknowledger;
use crate::delivery::{Redelivery, Settle};
use crate::{Delivery, Result, SubscribeOptions, Subscription};

/// What a decorator wants to hear about the deliveries of one subscription.
pub(crate) trait DeliveryHooks: Send + Sync + 'static {
    /// A delivery arrived.
    fn delivered(&self, _delivery: &Delivery) {}
    /// A delivery was acked (`ok`: whether the backend accepted it).
    fn acked(&self, _ok: bool) {}
    /// A delivery was nacked.
    fn nacked(&self, _ok: bool) {}
}

/// `subscription`'s deliveries, each passed to `hooks` and settled through them, as a new
/// subscription with the same options.
pub(crate) fn wrap_subscription(
    subscription: Subscription,
    options: &SubscribeOptions,
    hooks: Arc<dyn DeliveryHooks>,
) -> Subscription {
    let pattern = subscription.pattern().to_owned();
    let lag = subscription.lag_source();
    let deliveries = subscription.map(move |item| {
        item.map(|delivery| {
            hooks.delivered(&delivery);
            let (message, info, settle) = delivery.into_parts();
            let acker = HookedAcker {
                settle,
                hooks: hooks.clone(),
            };
            let mut wrapped = Delivery::new(message, info.topic, Box::new(acker));
            if let Some(attempt) = info.attempt {
                wrapped = wrapped.with_attempt(attempt);
            }
            if let Some(partition) = info.partition {
                wrapped = wrapped.with_partition(partition);
            }
            wrapped
        })
    });
    Subscription::new(&pattern, options, deliveries).with_lag_source(lag)
}

struct HookedAcker {
    settle: Settle,
    hooks: Arc<dyn DeliveryHooks>,
}

impl Acknowledger for HookedAcker {
    fn ack(self: Box<Self>) -> BoxFuture<'static, Result<()>> {
        let HookedAcker { settle, hooks } = *self;
        async move {
            let result = settle.ack().await;
            hooks.acked(result.is_ok());
            result
        }
        .boxed()
    }

    fn nack(self: Box<Self>, redelivery: Redelivery) -> BoxFuture<'static, Result<()>> {
        let HookedAcker { settle, hooks } = *self;
        async move {
            let result = settle.nack(redelivery).await;
            hooks.nacked(result.is_ok());
            result
        }
        .boxed()
    }
}
