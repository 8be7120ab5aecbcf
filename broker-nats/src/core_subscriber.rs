//! Core NATS subscriptions: a forwarding task moves messages from the client into the
//! subscription's own buffer, where a slow reader is detected and reported.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use broker_core::backend::Acknowledger;
use broker_core::delivery::Redelivery;
use broker_core::{Delivery, Result, SubscribeOptions, Subscription};
use futures::future::BoxFuture;
use futures::{Stream, StreamExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::broker::Inner;
use crate::error::SlowConsumer;
use crate::lag::CoreLag;
use crate::{convert, error};

/// The buffer of a core subscription when `subscription_capacity` is not set (the
/// async-nats default).
pub(crate) const DEFAULT_CAPACITY: usize = 64 * 1024;

/// A core NATS subscription. It is live when this returns: the server has the
/// subscription (a flush round trip) before it does.
///
/// A forwarding task moves messages from the client into the subscription's own buffer
/// of `subscription_capacity`; a message that finds it full is dropped and counted, and
/// the count is reported to the reader as an error item (see
/// [`NatsBroker::dropped_messages`](crate::NatsBroker::dropped_messages)).
pub(crate) async fn subscribe(
    inner: &Arc<Inner>,
    pattern: &str,
    options: SubscribeOptions,
) -> Result<Subscription> {
    let client = &inner.client;
    let subscriber = match &options.queue {
        Some(group) => {
            client
                .queue_subscribe(pattern.to_owned(), group.clone())
                .await
        }
        None => client.subscribe(pattern.to_owned()).await,
    }
    .map_err(|e| error::subscribe(pattern, e))?;
    inner.sync(pattern).await?;
    let capacity = inner
        .options
        .subscription_capacity
        .unwrap_or(DEFAULT_CAPACITY)
        .max(1);
    let (tx, rx) = mpsc::channel(capacity);
    let lag = Arc::new(CoreLag {
        buffer: tx.downgrade(),
    });
    let pending = Arc::new(AtomicU64::new(0));
    let subscriber = Arc::new(Mutex::new(Some(subscriber)));
    let forward = Forward {
        subscriber: subscriber.clone(),
        tx,
        pending: pending.clone(),
        total: inner.dropped.clone(),
        cancel: inner.shutdown.child_token(),
        pattern: pattern.to_owned(),
        capacity,
    };
    inner.tasks.spawn(forward.run());
    let deliveries = CoreDeliveries {
        subscriber,
        rx,
        pending,
        pattern: pattern.to_owned(),
        capacity,
        last_topic: Arc::from(pattern),
        disconnects: inner.disconnects.clone(),
        disconnects_seen: inner.disconnects.load(Ordering::Acquire),
    }
    .take_until(inner.shutdown.clone().cancelled_owned());
    Ok(Subscription::new(pattern, &options, deliveries).with_lag(lag))
}

/// The client's subscription, shared by the forwarding task (which reads it) and the
/// subscription (which drops it when it is dropped, so the UNSUB is queued at once, in
/// order with the publishes that follow).
type SharedSubscriber = Arc<Mutex<Option<async_nats::Subscriber>>>;

fn lock(subscriber: &SharedSubscriber) -> MutexGuard<'_, Option<async_nats::Subscriber>> {
    subscriber
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Moves messages from the client's subscription into the subscription's buffer, and
/// counts those the full buffer cannot take.
struct Forward {
    subscriber: SharedSubscriber,
    tx: mpsc::Sender<async_nats::Message>,
    /// Dropped and not reported to the reader yet.
    pending: Arc<AtomicU64>,
    /// The broker's count of dropped messages.
    total: Arc<AtomicU64>,
    cancel: CancellationToken,
    pattern: String,
    capacity: usize,
}

/// Messages [`Forward`] moves per wake-up, under one lock, before it looks at the
/// cancellation and the reader again.
const FORWARD_BATCH: usize = 256;

impl Forward {
    async fn run(self) {
        let mut dropping = false;
        let mut dropped: u64 = 0;
        loop {
            let ended = tokio::select! {
                _ = self.cancel.cancelled() => break,
                _ = self.tx.closed() => break,
                ended = futures::future::poll_fn(|cx| self.move_ready(cx, &mut dropping, &mut dropped)) => ended,
            };
            if ended {
                break;
            }
        }
        if dropped > 0 {
            tracing::warn!(pattern = %self.pattern, dropped, "core NATS subscription ended after dropping messages for a slow reader");
        }
    }

    /// Moves what the client has ready, up to a batch; pending when it has nothing.
    /// `Ready(true)` when the client's subscription or the reader is gone.
    fn move_ready(
        &self,
        cx: &mut Context<'_>,
        dropping: &mut bool,
        dropped: &mut u64,
    ) -> Poll<bool> {
        let mut subscriber = lock(&self.subscriber);
        let Some(subscriber) = subscriber.as_mut() else {
            return Poll::Ready(true);
        };
        for _ in 0..FORWARD_BATCH {
            let message = match subscriber.poll_next_unpin(cx) {
                Poll::Ready(Some(message)) => message,
                Poll::Ready(None) => return Poll::Ready(true),
                Poll::Pending => return Poll::Pending,
            };
            match self.tx.try_send(message) {
                Ok(()) => *dropping = false,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    *dropped += 1;
                    self.pending.fetch_add(1, Ordering::AcqRel);
                    self.total.fetch_add(1, Ordering::Relaxed);
                    if !*dropping {
                        *dropping = true;
                        tracing::warn!(
                            pattern = %self.pattern,
                            capacity = self.capacity,
                            dropped_so_far = *dropped,
                            "slow consumer: the subscription's buffer is full; dropping core NATS messages until the reader catches up"
                        );
                    }
                }
                Err(mpsc::error::TrySendError::Closed(_)) => return Poll::Ready(true),
            }
        }
        Poll::Ready(false)
    }
}

/// The deliveries of a core subscription: a dropped-messages report first, when there
/// is one, then the next message.
struct CoreDeliveries {
    subscriber: SharedSubscriber,
    rx: mpsc::Receiver<async_nats::Message>,
    pending: Arc<AtomicU64>,
    pattern: String,
    capacity: usize,
    /// The topic of the last delivery, shared with the next one to the same subject (a
    /// subscription without wildcards always sees the same one) instead of copied.
    last_topic: Arc<str>,
    /// The broker's count of lost connections, and the count this subscription reported.
    disconnects: Arc<AtomicU64>,
    disconnects_seen: u64,
}

impl CoreDeliveries {
    /// An error item for a lost connection or for dropped messages, when there is one to
    /// report. A lost connection comes first: it is reported before the next message.
    fn report(&mut self) -> Option<Result<Delivery>> {
        let disconnects = self.disconnects.load(Ordering::Acquire);
        if disconnects != self.disconnects_seen {
            let lost = disconnects - self.disconnects_seen;
            self.disconnects_seen = disconnects;
            return Some(Err(error::connection_lost(&self.pattern, lost)));
        }
        let dropped = self.pending.swap(0, Ordering::AcqRel);
        (dropped > 0).then(|| {
            Err(error::slow_consumer(SlowConsumer {
                pattern: self.pattern.clone(),
                dropped,
                capacity: self.capacity,
            }))
        })
    }
}

impl Drop for CoreDeliveries {
    fn drop(&mut self) {
        // Unsubscribes now: the forwarding task would notice only later.
        drop(lock(&self.subscriber).take());
    }
}

impl Stream for CoreDeliveries {
    type Item = Result<Delivery>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Some(report) = self.report() {
            return Poll::Ready(Some(report));
        }
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(msg)) => {
                if *self.last_topic != *msg.subject.as_str() {
                    self.last_topic = Arc::from(msg.subject.as_str());
                }
                let topic = self.last_topic.clone();
                let defect = convert::defect(&msg);
                let message = convert::from_nats(
                    &topic,
                    msg.headers.as_ref(),
                    msg.payload,
                    msg.reply.as_deref(),
                );
                let delivery = Delivery::new(message, topic, Box::new(CoreAcker)).with_attempt(1);
                Poll::Ready(Some(Ok(match defect {
                    Some(defect) => delivery.with_defect(defect),
                    None => delivery,
                })))
            }
            // Drops counted just before the forwarding task ended are still reported.
            Poll::Ready(None) => Poll::Ready(self.report()),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Core NATS keeps nothing: acks and nacks have nobody to tell.
struct CoreAcker;

impl Acknowledger for CoreAcker {
    fn ack(self: Box<Self>) -> BoxFuture<'static, Result<()>> {
        broker_core::backend::settled()
    }

    fn ack_is_noop(&self) -> bool {
        true
    }

    fn nack(self: Box<Self>, _redelivery: Redelivery) -> BoxFuture<'static, Result<()>> {
        tracing::debug!("nack on core NATS: the message is not redelivered (at-most-once)");
        broker_core::backend::settled()
    }
}
