//! A memory subscription: reads its member buffer, settles through its queue.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use broker_core::backend::{LagSource, Nacked, Requeue, async_trait};
use broker_core::delivery::Redelivery;
use broker_core::lag::Lag;
use broker_core::{Delivery, Error, Result, SubscribeOptions, Subscription};
use futures::Stream;
use futures::future::BoxFuture;
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
    /// Entries taken from `buffer` in one go and not handed out yet, the next one last
    /// (see [`Queue::read_ahead`]).
    taken: Vec<Entry>,
    /// How many entries `taken` holds, for [`BufferedLag`].
    held: Arc<AtomicUsize>,
    /// The topic of entries that carry none: the pattern, which has no wildcards then.
    /// This member's own copy, counted by this member alone.
    literal_topic: Arc<str>,
    /// Settles this member's deliveries: a nack puts the message back in the queue.
    requeue: Arc<dyn Requeue>,
}

impl Stream for Deliveries {
    type Item = Result<Delivery>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.taken.is_empty() {
            if ready!(
                this.buffer
                    .poll_recv_many(cx, &mut this.taken, this.queue.read_ahead())
            ) == 0
            {
                return Poll::Ready(None);
            }
            this.taken.reverse();
        }
        let Some(entry) = this.taken.pop() else {
            return Poll::Ready(None);
        };
        this.held.store(this.taken.len(), Ordering::Relaxed);
        let topic = entry.topic.unwrap_or_else(|| this.literal_topic.clone());
        let delivery =
            Delivery::requeued(entry.message, topic, entry.attempt, this.requeue.clone());
        Poll::Ready(Some(Ok(delivery)))
    }
}

impl Drop for Deliveries {
    fn drop(&mut self) {
        let empty = self.queue.leave(self.member);
        self.buffer.close();
        let mut left: Vec<Entry> = self.taken.drain(..).rev().collect();
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
    let requeue = Arc::new(MemoryRequeue {
        queue: queue.clone(),
    });
    let literal_topic = Arc::from(queue.pattern.as_str());
    let read_ahead = queue.read_ahead();
    let held = Arc::new(AtomicUsize::new(0));
    let lag = Arc::new(BufferedLag {
        queue: queue.clone(),
        member,
        held: held.clone(),
    });
    let deliveries = Deliveries {
        inner,
        queue,
        member,
        buffer,
        taken: Vec::with_capacity(read_ahead),
        held,
        literal_topic,
        requeue,
    };
    Subscription::new(pattern, options, deliveries).with_lag(lag)
}

/// A member's lag: the messages waiting in its buffer, and those it took from there and
/// has not handed out yet. Messages handed out and not yet settled do not count, nor do
/// publishes waiting for room in a full buffer.
struct BufferedLag {
    queue: Arc<Queue>,
    member: u64,
    held: Arc<AtomicUsize>,
}

#[async_trait]
impl LagSource for BufferedLag {
    async fn lag(&self) -> Result<Lag> {
        let buffered = self
            .queue
            .buffered(self.member)
            .ok_or_else(|| Error::closed("the subscription"))?;
        let held = self.held.load(Ordering::Relaxed);
        Ok(Lag::new(u64::try_from(buffered + held).unwrap_or(u64::MAX)))
    }
}

/// Puts nacked messages back in their queue.
struct MemoryRequeue {
    queue: Arc<Queue>,
}

impl Requeue for MemoryRequeue {
    fn requeue(&self, nacked: Nacked, redelivery: Redelivery) -> BoxFuture<'static, Result<()>> {
        let entry = Entry {
            topic: Some(nacked.topic),
            message: nacked.message,
            attempt: nacked.attempt.saturating_add(1),
        };
        let delay = match redelivery {
            Redelivery::After(delay) => delay,
            _ => Duration::ZERO,
        };
        let queue = self.queue.clone();
        // Requeue from a task: the nacking consumer may be the only one draining a full
        // queue, so waiting for room here could deadlock.
        tokio::spawn(async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            queue.requeue(entry).await;
        });
        broker_core::backend::settled()
    }
}
