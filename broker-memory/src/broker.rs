//! The in-memory broker.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use broker_core::subject::{Pattern, validate_topic};
use broker_core::{
    Broker, Capabilities, DeliveryGuarantee, Error, ErrorKind, Message, OrderingGuarantee, Result,
    SubscribeOptions, Subscription, async_trait,
};
use tracing::Instrument;

use crate::options::{MemoryOptions, Overflow};
use crate::queue::{Entry, Queue};
use crate::subscriber;

/// An in-process broker on tokio. Cloning gives another handle to the same broker.
///
/// - Subjects and wildcards as everywhere (`*`, `>`); queue groups share a buffer that
///   their members pull from in turn, so each message goes to one member.
/// - `publish` resolves when every matching subscriber has the message in its buffer; a
///   full buffer makes it wait (bounded by [`MemoryOptions::publish_timeout`]). Nothing is
///   dropped unless [`Overflow::DropNewest`] is chosen, and then it is counted.
/// - `nack` puts the message back with its attempt count raised, at once or after a delay.
/// - Messages published by one task reach each subscriber in order.
/// - Nothing outlives the process, and a plain subscriber's buffer goes with it.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> broker_core::Result<()> {
/// use broker_core::{Broker, Message, SubscribeOptions};
/// use broker_memory::MemoryBroker;
/// use futures::StreamExt;
///
/// let broker = MemoryBroker::new();
/// let mut sub = broker.subscribe("user.>", SubscribeOptions::new()).await?;
/// broker.publish("user.created", Message::new("alice")).await?;
/// let delivery = sub.next().await.expect("a delivery")?;
/// assert_eq!(delivery.topic(), "user.created");
/// assert_eq!(delivery.message().payload().as_ref(), b"alice");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct MemoryBroker {
    inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    options: MemoryOptions,
    queues: RwLock<Vec<Arc<Queue>>>,
    next_id: AtomicU64,
    closed: AtomicBool,
    dropped: AtomicU64,
}

impl MemoryBroker {
    /// A broker with the default options.
    pub fn new() -> Self {
        MemoryBroker::with_options(MemoryOptions::default())
    }

    /// A broker with `options`.
    pub fn with_options(options: MemoryOptions) -> Self {
        MemoryBroker {
            inner: Arc::new(Inner {
                options,
                queues: RwLock::new(Vec::new()),
                next_id: AtomicU64::new(1),
                closed: AtomicBool::new(false),
                dropped: AtomicU64::new(0),
            }),
        }
    }

    /// The options in force.
    pub fn options(&self) -> &MemoryOptions {
        &self.inner.options
    }

    /// How many deliveries were dropped under [`Overflow::DropNewest`] (always 0 under the
    /// default [`Overflow::Wait`]).
    pub fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }

    /// How many subscribers (queue-group members counted one by one) are live.
    pub fn subscriber_count(&self) -> usize {
        self.inner
            .read_queues()
            .map(|qs| qs.iter().map(|q| q.members()).sum())
            .unwrap_or(0)
    }

    /// Whether [`close`](Broker::close) was called.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::Acquire)
    }
}

impl Default for MemoryBroker {
    fn default() -> Self {
        MemoryBroker::new()
    }
}

impl std::fmt::Debug for MemoryBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBroker")
            .field("options", &self.inner.options)
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

impl Inner {
    fn read_queues(&self) -> Result<std::sync::RwLockReadGuard<'_, Vec<Arc<Queue>>>> {
        self.queues
            .read()
            .map_err(|_| Error::new(ErrorKind::Closed, "the memory broker's state is poisoned"))
    }

    fn write_queues(&self) -> Result<std::sync::RwLockWriteGuard<'_, Vec<Arc<Queue>>>> {
        self.queues
            .write()
            .map_err(|_| Error::new(ErrorKind::Closed, "the memory broker's state is poisoned"))
    }

    fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            Err(Error::closed("the memory broker"))
        } else {
            Ok(())
        }
    }

    /// Removes `queue` when its last member has left.
    pub(crate) fn leave(&self, queue: &Arc<Queue>) {
        if !queue.leave() {
            return;
        }
        let Ok(mut queues) = self.write_queues() else {
            return;
        };
        // A new member may have joined between `leave` and the lock.
        if queue.members() == 0 {
            queues.retain(|q| q.id != queue.id);
            queue.tx.close();
            let left = queue.rx.len();
            if left > 0 {
                tracing::debug!(pattern = %queue.pattern, left, "unsubscribed with messages still buffered");
            }
        }
    }

    async fn deliver(&self, queue: &Queue, entry: Entry) -> Result<()> {
        let entry = match queue.tx.try_send(entry) {
            Ok(()) => return Ok(()),
            Err(async_channel::TrySendError::Closed(_)) => return Ok(()), // unsubscribed meanwhile
            Err(async_channel::TrySendError::Full(entry)) => entry,
        };
        if self.options.overflow == Overflow::DropNewest {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(pattern = %queue.pattern, "subscriber buffer full; message dropped (overflow=drop)");
            return Ok(());
        }
        match tokio::time::timeout(self.options.publish_timeout, queue.tx.send(entry)).await {
            Ok(_) => Ok(()),
            Err(_) => Err(Error::new(
                ErrorKind::Timeout,
                format!(
                    "the buffer of subscriber `{}`{} stayed full for {:?}",
                    queue.pattern,
                    queue
                        .group
                        .as_deref()
                        .map(|g| format!(" (group `{g}`)"))
                        .unwrap_or_default(),
                    self.options.publish_timeout
                ),
            )),
        }
    }
}

#[async_trait]
impl Broker for MemoryBroker {
    async fn publish(&self, topic: &str, message: Message) -> Result<()> {
        let inner = &self.inner;
        inner.check_open()?;
        validate_topic(topic)?;
        let size = message.encoded_len();
        if size > inner.options.max_message_bytes {
            return Err(Error::new(
                ErrorKind::PayloadTooLarge,
                format!(
                    "message of {size} bytes exceeds the memory broker's limit of {} bytes",
                    inner.options.max_message_bytes
                ),
            ));
        }
        let targets: Vec<Arc<Queue>> = inner
            .read_queues()?
            .iter()
            .filter(|q| q.pattern.matches(topic))
            .cloned()
            .collect();
        let Some((last, others)) = targets.split_last() else {
            return Ok(());
        };
        let span = tracing::trace_span!("publish", backend = "memory", topic);
        async {
            let topic: Arc<str> = Arc::from(topic);
            let mut first_error = None;
            let entry = |message| Entry {
                topic: topic.clone(),
                message,
                attempt: 1,
            };
            for queue in others {
                if let Err(err) = inner.deliver(queue, entry(message.clone())).await {
                    first_error.get_or_insert(err);
                }
            }
            if let Err(err) = inner.deliver(last, entry(message)).await {
                first_error.get_or_insert(err);
            }
            first_error.map_or(Ok(()), Err)
        }
        .instrument(span)
        .await
    }

    async fn subscribe(&self, pattern: &str, options: SubscribeOptions) -> Result<Subscription> {
        self.inner.check_open()?;
        let parsed = Pattern::parse(pattern)?;
        let queue = {
            let mut queues = self.inner.write_queues()?;
            let existing = options.queue.as_deref().and_then(|group| {
                queues
                    .iter()
                    .find(|q| q.group.as_deref() == Some(group) && q.pattern == parsed)
                    .cloned()
            });
            let queue = match existing {
                Some(queue) => queue,
                None => {
                    let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
                    let queue = Arc::new(Queue::new(
                        id,
                        parsed,
                        options.queue.clone(),
                        self.inner.options.buffer,
                    ));
                    queues.push(queue.clone());
                    queue
                }
            };
            queue.join();
            queue
        };
        Ok(subscriber::subscription(
            self.inner.clone(),
            queue,
            pattern,
            &options,
        ))
    }

    async fn close(&self) -> Result<()> {
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let queues = std::mem::take(&mut *self.inner.write_queues()?);
        for queue in queues {
            queue.tx.close();
        }
        Ok(())
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::new("memory")
            .delivery(DeliveryGuarantee::AtLeastOnce)
            .ordering(OrderingGuarantee::PerPublisher)
            .persistence(false)
            .redelivery(true)
            .queue_groups(true)
            .max_message_bytes(Some(self.inner.options.max_message_bytes))
    }
}
