//! The deliveries stream handed to broker-core's [`Subscription`](broker_core::Subscription),
//! fed by the consumer thread in batches, and the acker that settles each delivery.

use std::sync::Arc;
use std::time::{Duration, Instant};

use broker_core::backend::Acknowledger;
use broker_core::delivery::Redelivery;
use broker_core::{Delivery, Result};
use futures::StreamExt;
use futures::future::BoxFuture;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::shared::{PartitionKey, SharedPartitions};
use crate::convert::Fetched;

/// A record ready to be handed out, before it becomes a [`Delivery`].
pub(super) struct Pending {
    pub(super) fetched: Fetched,
    pub(super) attempt: u32,
    pub(super) generation: u64,
}

/// Records handed to the stream at once.
pub(super) type Batch = Vec<Pending>;

/// The subscription's stream: takes the consumer thread's batches (waking the thread,
/// which may be waiting for room), drops records of partitions revoked meanwhile (their
/// new owner reads them from the last commit), and makes the rest deliveries.
pub(super) fn delivery_stream(
    rx: mpsc::Receiver<Batch>,
    thread: std::thread::Thread,
    shared: Arc<SharedPartitions>,
    token: CancellationToken,
    guard: tokio_util::sync::DropGuard,
) -> impl futures::Stream<Item = Result<Delivery>> + Send + 'static {
    let batches = {
        let shared = shared.clone();
        futures::stream::unfold(rx, move |mut rx| {
            let thread = thread.clone();
            let shared = shared.clone();
            async move {
                let mut batch = rx.recv().await?;
                thread.unpark();
                shared.with_parts(|parts| {
                    batch.retain(|pending| {
                        parts
                            .get(&(pending.fetched.topic.clone(), pending.fetched.partition))
                            .is_some_and(|part| part.generation == pending.generation)
                    })
                });
                Some((futures::stream::iter(batch), rx))
            }
        })
    };
    let deliveries = batches.flatten().map(move |pending| {
        let _keep = &guard;
        let Fetched {
            topic,
            partition,
            offset,
            message,
            defect,
        } = pending.fetched;
        let acker = KafkaAcker {
            shared: shared.clone(),
            key: (topic.clone(), partition),
            generation: pending.generation,
            offset,
        };
        let delivery = Delivery::new(message, topic, Box::new(acker))
            .with_attempt(pending.attempt)
            .with_partition(partition);
        Ok(match defect {
            Some(defect) => delivery.with_defect(defect),
            None => delivery,
        })
    });
    deliveries.take_until(token.cancelled_owned())
}

/// Settles one delivery in its partition's tracker.
struct KafkaAcker {
    shared: Arc<SharedPartitions>,
    key: PartitionKey,
    generation: u64,
    offset: i64,
}

impl Acknowledger for KafkaAcker {
    fn ack(self: Box<Self>) -> BoxFuture<'static, Result<()>> {
        self.shared
            .settle(&self.key, self.generation, self.offset, None);
        broker_core::backend::settled()
    }

    fn nack(self: Box<Self>, redelivery: Redelivery) -> BoxFuture<'static, Result<()>> {
        let delay = match redelivery {
            Redelivery::After(delay) => delay,
            _ => Duration::ZERO,
        };
        self.shared.settle(
            &self.key,
            self.generation,
            self.offset,
            Some(Instant::now() + delay),
        );
        broker_core::backend::settled()
    }
}
