//! A memory subscription: reads its member buffer, settles through its queue.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use broker_core::{Acknowledger, Delivery, Redelivery, Result, SubscribeOptions, Subscription};
use futures::future::BoxFuture;
use futures::{FutureExt, Stream};
use tokio::sync::mpsc;

use crate::broker::Inner;
use crate::queue::{Entry, Queue};

/// A member's buffer as a stream of deliveries. Dropping it leaves the queue: the
/// member is removed first (no new message is offered to it), then its buffer is closed
/// and what was still in it goes to the other members.
struct Deliveries {
    inner: Arc<Inner>,
    queue: Arc<Queue>,
    member: u64,
    buffer: mpsc::Receiver<Entry>,
}

impl Stream for Deliveries {
    type Item = Result<Delivery>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let Some(entry) = ready!(this.buffer.poll_recv(cx)) else {
            return Poll::Ready(None);
        };
        let attempt = entry.attempt;
        let delivery = Delivery::new(
            entry.message.clone(),
            entry.topic.clone(),
            Box::new(MemoryAcker {
                queue: this.queue.clone(),
                entry,
            }),
        )
        .with_attempt(attempt);
        Poll::Ready(Some(Ok(delivery)))
    }
}

impl Drop for Deliveries {
    fn drop(&mut self) {
        let empty = self.queue.leave(self.member);
        self.buffer.close();
        let mut left = Vec::new();
        while let Ok(entry) = self.buffer.try_recv() {
            left.push(entry);
        }
        self.inner.leave(&self.queue, empty, left);
    }
}

pub(crate) fn subscription(
    inner: Arc<Inner>,
    queue: Arc<Queue>,
    member: u64,
    buffer: mpsc::Receiver<Entry>,
    pattern: &str,
    options: &SubscribeOptions,
) -> Subscription {
    let deliveries = Deliveries {
        inner,
        queue,
        member,
        buffer,
    };
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
