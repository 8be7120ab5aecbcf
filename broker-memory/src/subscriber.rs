//! A memory subscription: reads its member buffer, settles through its queue.

use std::sync::Arc;
use std::time::Duration;

use broker_core::{Acknowledger, Delivery, Redelivery, Result, SubscribeOptions, Subscription};
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};

use crate::broker::Inner;
use crate::queue::{Entry, Queue};

/// Leaves the queue when the subscription (its stream) is dropped.
struct Membership {
    inner: Arc<Inner>,
    queue: Arc<Queue>,
    member: u64,
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.inner.leave(&self.queue, self.member);
    }
}

pub(crate) fn subscription(
    inner: Arc<Inner>,
    queue: Arc<Queue>,
    member: u64,
    buffer: async_channel::Receiver<Entry>,
    pattern: &str,
    options: &SubscribeOptions,
) -> Subscription {
    let membership = Membership {
        inner,
        queue: queue.clone(),
        member,
    };
    let deliveries = buffer.map(move |entry| {
        let _keep_membership = &membership;
        let attempt = entry.attempt;
        let delivery = Delivery::new(
            entry.message.clone(),
            entry.topic.clone(),
            Box::new(MemoryAcker {
                queue: queue.clone(),
                entry,
            }),
        )
        .with_attempt(attempt);
        Ok(delivery)
    });
    Subscription::new(pattern, options, deliveries)
}

struct MemoryAcker {
    queue: Arc<Queue>,
    entry: Entry,
}

impl Acknowledger for MemoryAcker {
    fn ack(self: Box<Self>) -> BoxFuture<'static, Result<()>> {
        futures::future::ready(Ok(())).boxed()
    }

    fn ack_is_noop(&self) -> bool {
        // The message left its buffer when it was delivered: nothing to forget.
        true
    }

    fn nack(self: Box<Self>, redelivery: Redelivery) -> BoxFuture<'static, Result<()>> {
        let MemoryAcker { queue, mut entry } = *self;
        entry.attempt = entry.attempt.saturating_add(1);
        let delay = match redelivery {
            Redelivery::After(delay) => delay,
            _ => Duration::ZERO,
        };
        // Requeue from a task: the nacking consumer may be the only one draining a full
        // queue, so waiting for room here could deadlock.
        tokio::spawn(async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            queue.requeue(entry).await;
        });
        futures::future::ready(Ok(())).boxed()
    }
}
