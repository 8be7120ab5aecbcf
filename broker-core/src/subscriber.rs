//! Running a handler over a subscription, with bounded concurrency and graceful shutdown.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::handler::panic_message;
use crate::{Delivery, Error, ErrorKind, Event, Handler, Redelivery, Result, Subscription};

/// How [`BrokerExt::subscribe_with`](crate::BrokerExt::subscribe_with) runs its handler.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HandlerOptions {
    /// How many events are handled at once. Events from one partition (Kafka) or with one
    /// key are handled one after another, in order, whatever the concurrency.
    pub concurrency: usize,
    /// When a failed event should come back.
    pub redelivery: Redelivery,
}

impl Default for HandlerOptions {
    fn default() -> Self {
        HandlerOptions {
            concurrency: 1,
            redelivery: Redelivery::Now,
        }
    }
}

impl HandlerOptions {
    /// One event at a time, failures redelivered at once.
    pub fn new() -> Self {
        HandlerOptions::default()
    }

    /// Handles up to `n` events at once (at least 1).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// Failed events come back after `delay`.
    pub fn retry_after(mut self, delay: Duration) -> Self {
        self.redelivery = Redelivery::After(delay);
        self
    }
}

/// A handler running over a subscription. [`shutdown`](SubscriberHandle::shutdown) stops it
/// gracefully; dropping the handle leaves it running until the broker closes.
#[derive(Debug)]
pub struct SubscriberHandle {
    pattern: String,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl SubscriberHandle {
    /// The pattern the handler is subscribed to.
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// Whether the handler has stopped (after a shutdown, or because the broker closed).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Stops taking new messages, waits for the events being handled to finish and their
    /// acks or nacks to be settled, then unsubscribes. Nothing taken is lost.
    pub async fn shutdown(self) -> Result<()> {
        self.stop.cancel();
        self.task
            .await
            .map_err(|e| Error::with_source(ErrorKind::Handler, "the subscriber task failed", e))
    }
}

pub(crate) fn spawn(
    subscription: Subscription,
    handler: Arc<dyn Handler>,
    options: HandlerOptions,
) -> SubscriberHandle {
    let stop = CancellationToken::new();
    let pattern = subscription.pattern().to_owned();
    let span = tracing::info_span!("subscriber", pattern = %pattern);
    let task = tokio::spawn(run(subscription, handler, options, stop.clone()).instrument(span));
    SubscriberHandle {
        pattern,
        stop,
        task,
    }
}

async fn run(
    mut subscription: Subscription,
    handler: Arc<dyn Handler>,
    options: HandlerOptions,
    stop: CancellationToken,
) {
    let lanes = options.concurrency.max(1);
    let mut senders = Vec::with_capacity(lanes);
    let mut workers = Vec::with_capacity(lanes);
    for _ in 0..lanes {
        let (tx, rx) = mpsc::channel::<Delivery>(1);
        senders.push(tx);
        workers.push(tokio::spawn(
            lane(rx, handler.clone(), options.redelivery).in_current_span(),
        ));
    }
    let mut next_lane = 0usize;
    loop {
        let delivery = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            item = subscription.next() => match item {
                Some(Ok(delivery)) => delivery,
                Some(Err(err)) => {
                    tracing::warn!(error = %err.display_chain(), "subscription error");
                    continue;
                }
                None => break,
            },
        };
        let lane = match ordering_key(&delivery) {
            Some(key) => (key % lanes as u64) as usize,
            None => {
                next_lane = (next_lane + 1) % lanes;
                next_lane
            }
        };
        if let Err(mpsc::error::SendError(delivery)) = senders[lane].send(delivery).await {
            // The lane is gone (its task panicked outside the handler): put it back.
            tracing::error!("a handler lane stopped unexpectedly");
            let _ = delivery.nack().await;
        }
    }
    drop(senders);
    for worker in workers {
        let _ = worker.await;
    }
    drop(subscription);
}

fn ordering_key(delivery: &Delivery) -> Option<u64> {
    let mut hasher = DefaultHasher::new();
    if let Some(partition) = delivery.partition() {
        partition.hash(&mut hasher);
    } else {
        delivery.message().key()?.hash(&mut hasher);
    }
    Some(hasher.finish())
}

async fn lane(mut rx: mpsc::Receiver<Delivery>, handler: Arc<dyn Handler>, redelivery: Redelivery) {
    while let Some(delivery) = rx.recv().await {
        let span = tracing::debug_span!(
            "deliver",
            topic = %delivery.topic(),
            message_id = %delivery.message().id(),
            attempt = delivery.attempt().unwrap_or(1),
        );
        handle(delivery, &*handler, redelivery)
            .instrument(span)
            .await;
    }
}

async fn handle(delivery: Delivery, handler: &dyn Handler, redelivery: Redelivery) {
    let (message, info, settle) = delivery.into_parts();
    let event = Event::from_delivery(message, info);
    let outcome = AssertUnwindSafe(handler.call(event))
        .catch_unwind()
        .instrument(tracing::debug_span!("handle"))
        .await;
    let settled = match outcome {
        Ok(Ok(())) => settle.ack().await,
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "handler failed; nacking");
            settle.nack(redelivery).await
        }
        Err(panic) => {
            tracing::error!(panic = %panic_message(&*panic), "handler panicked; nacking");
            settle.nack(redelivery).await
        }
    };
    if let Err(err) = settled {
        tracing::warn!(error = %err.display_chain(), "settling a delivery failed");
    }
}
