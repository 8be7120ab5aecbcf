//! The in-memory broker: its state, the publish path and the `Broker` methods. Which
//! queues a topic reaches is in `route`.

mod route;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use broker_core::backend::{Capabilities, DeliveryGuarantee, OrderingGuarantee, async_trait};
use broker_core::batch::{BatchError, BatchFailure};
use broker_core::health::Health;
use broker_core::subject::Pattern;
use broker_core::{Broker, Error, ErrorKind, Message, Result, SubscribeOptions, Subscription};
use futures::future::BoxFuture;
use tracing::Instrument;

use crate::options::{MemoryOptions, Overflow};
use crate::queue::{Entry, Offer, Queue};
use crate::subscriber;
use route::Route;

/// An in-process broker on tokio. Cloning gives another handle to the same broker.
///
/// - Subjects and wildcards as everywhere (`*`, `>`); queue groups share a buffer that
///   hand each message to one member, in turn (round-robin, skipping members whose
///   buffer is full).
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
    /// Bumped (under the `queues` write lock) whenever a queue is added or removed:
    /// cached routes of an older generation are stale.
    generation: AtomicU64,
    /// Topic → the queues it reaches, as of a generation.
    routes: RwLock<HashMap<Box<str>, Route>>,
    /// The route resolved last: a publisher sending to one topic finds it here without
    /// hashing the topic. [`Route::none`] until a first one is resolved.
    last_route: RwLock<Route>,
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
                generation: AtomicU64::new(0),
                routes: RwLock::new(HashMap::new()),
                last_route: RwLock::new(Route::none()),
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

/// A publish waiting for room in full buffers.
type Wait<'a> = BoxFuture<'a, Result<()>>;

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
        broker_core::backend::check_open(&self.closed, "the memory broker")
    }

    /// Removes member `member` from `queue`: what was in its buffer goes to the other
    /// members, and a queue left without members is removed.
    pub(crate) fn leave(&self, queue: &Arc<Queue>, empty: bool, left: Vec<Entry>) {
        if empty && let Ok(mut queues) = self.write_queues() {
            // A new member may have joined between `leave` and the lock.
            if queue.members() == 0 {
                queues.retain(|q| q.id != queue.id);
                self.invalidate_routes();
                if !left.is_empty() {
                    tracing::debug!(pattern = %queue.pattern, left = left.len(), "unsubscribed with messages still buffered");
                }
                return;
            }
        }
        if left.is_empty() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(pattern = %queue.pattern, left = left.len(), "a member left outside a tokio runtime; its buffered messages are lost");
            return;
        };
        let queue = queue.clone();
        runtime.spawn(async move {
            for entry in left {
                queue.requeue(entry).await;
            }
        });
    }

    /// A publish up to the wait: every buffer with room takes the message at once.
    /// Returns the wait for the buffers that were full, if any; they are waited on after
    /// the others (each subscriber still sees one publisher's messages in order: its
    /// next publish starts when this one resolves).
    #[inline(always)]
    fn publish_now(&self, topic: &str, message: Message) -> Result<Option<Wait<'_>>> {
        self.check_open()?;
        let route = self.route(topic)?;
        self.publish_on(&route, message)
    }

    /// [`publish_now`](Inner::publish_now) once the route is known.
    #[inline(always)]
    fn publish_on(&self, route: &Route, message: Message) -> Result<Option<Wait<'_>>> {
        message.check_size(self.options.max_message_bytes, "the memory broker")?;
        let Some((last, others)) = route.targets.split_last() else {
            return Ok(None);
        };
        let entry = |queue: &Queue, message| Entry {
            topic: (!queue.literal).then(|| route.topic.clone()),
            message,
            attempt: 1,
        };
        let mut full = Vec::new();
        for queue in others {
            if let Some((back, tx)) = self.offer_now(queue, entry(queue, message.clone())) {
                full.push((queue.clone(), back, tx));
            }
        }
        if let Some((back, tx)) = self.offer_now(last, entry(last, message)) {
            full.push((last.clone(), back, tx));
        }
        if full.is_empty() {
            return Ok(None);
        }
        let wait = self.deliver_when_room(full);
        let topic = &*route.topic;
        let span = tracing::trace_span!("publish", backend = "memory", topic);
        Ok(Some(if span.is_disabled() {
            Box::pin(wait)
        } else {
            Box::pin(wait.instrument(span))
        }))
    }

    /// Puts `entry` in `queue` if a member has room (or drops it under
    /// [`Overflow::DropNewest`]); else hands it back with the buffer to wait on.
    #[inline(always)]
    fn offer_now(
        &self,
        queue: &Queue,
        entry: Entry,
    ) -> Option<(Entry, tokio::sync::mpsc::Sender<Entry>)> {
        match queue.offer(entry) {
            Offer::Accepted | Offer::Gone => None,
            Offer::Full(back, tx) => {
                if self.options.overflow == Overflow::DropNewest {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(pattern = %queue.pattern, "subscriber buffer full; message dropped (overflow=drop)");
                    return None;
                }
                Some((back, tx))
            }
        }
    }

    /// The slow path of a publish: waits, one queue after the other, for room in the
    /// buffers that were full, until the publish deadline. Kept out of the publish
    /// future (it is boxed only when a buffer is full), so a publish that finds room
    /// everywhere stays small.
    async fn deliver_when_room(
        &self,
        full: Vec<(Arc<Queue>, Entry, tokio::sync::mpsc::Sender<Entry>)>,
    ) -> Result<()> {
        let deadline = tokio::time::Instant::now() + self.options.publish_timeout;
        let mut first_error = None;
        for (queue, entry, tx) in full {
            if let Err(err) = self.wait_for_room(&queue, entry, tx, deadline).await {
                first_error.get_or_insert(err);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    async fn wait_for_room(
        &self,
        queue: &Queue,
        entry: Entry,
        tx: tokio::sync::mpsc::Sender<Entry>,
        deadline: tokio::time::Instant,
    ) -> Result<()> {
        let (mut back, mut tx) = (entry, tx);
        loop {
            match tokio::time::timeout_at(deadline, queue.send_when_room(&tx, back)).await {
                Ok(Ok(())) => return Ok(()),
                // That member left meanwhile: offer the message again.
                Ok(Err(Some(entry))) => match self.offer_now(queue, entry) {
                    None => return Ok(()),
                    Some(full) => (back, tx) = full,
                },
                // The broker was closed: the subscriptions are ending.
                Ok(Err(None)) => return Ok(()),
                Err(_) => {
                    return Err(Error::new(
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
                    ));
                }
            }
        }
    }
}

#[async_trait]
impl Broker for MemoryBroker {
    /// Places the message in the subscribers' buffers when called; the future only waits
    /// where a buffer is full (see [`MemoryOptions::publish_timeout`]). Written out instead
    /// of `async fn`: a publish that finds room returns a zero-sized future, so the box
    /// that the object-safe trait requires allocates nothing.
    // The signature is the one `#[async_trait]` gives the trait's `async fn publish`.
    // Measured in the git history of BENCHMARKS.md ("memory, sixth pass": 1 923 → 1 626
    // instructions per pub→sub message); `publish_places_the_message_when_called_and_waits_only_for_room`
    // tests the placing on call, which an `async fn` would defer to the first poll.
    fn publish<'a, 'b, 'c>(&'a self, topic: &'b str, message: Message) -> BoxFuture<'c, Result<()>>
    where
        'a: 'c,
        'b: 'c,
        Self: 'c,
    {
        match self.inner.publish_now(topic, message) {
            Ok(None) => broker_core::backend::settled(),
            Ok(Some(wait)) => wait,
            Err(err) => Box::pin(std::future::ready(Err(err))),
        }
    }

    /// Resolves the topic's subscribers once, then places the messages one after
    /// another, waiting only where a buffer is full (each message's wait is bounded by
    /// [`MemoryOptions::publish_timeout`]). Subscribers that join during the batch get
    /// none of it.
    async fn publish_batch(&self, topic: &str, messages: Vec<Message>) -> Result<(), BatchError> {
        let batch_len = messages.len();
        if batch_len == 0 {
            return Ok(());
        }
        let route = match self
            .inner
            .check_open()
            .and_then(|()| self.inner.route(topic))
        {
            // Cloned out of the cache's lock, which must not be held across the waits.
            Ok(route) => Route::clone(&route),
            Err(err) => return Err(BatchError::whole(batch_len, err)),
        };
        let mut failures = Vec::new();
        for (index, message) in messages.into_iter().enumerate() {
            let placed = match self.inner.publish_on(&route, message) {
                Ok(None) => Ok(()),
                Ok(Some(wait)) => wait.await,
                Err(err) => Err(err),
            };
            if let Err(err) = placed {
                failures.push(BatchFailure::new(index, err));
            }
        }
        BatchError::check(batch_len, failures)
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
                    self.inner.invalidate_routes();
                    queue
                }
            };
            let (member, rx) = queue.join();
            (queue, member, rx)
        };
        let (queue, member, rx) = queue;
        Ok(subscriber::subscription(
            self.inner.clone(),
            queue,
            member,
            rx,
            pattern,
            &options,
        ))
    }

    async fn close(&self) -> Result<()> {
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let queues = {
            let mut queues = self.inner.write_queues()?;
            self.inner.invalidate_routes();
            std::mem::take(&mut *queues)
        };
        for queue in queues {
            queue.close();
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

    /// Connected until [`close`](Broker::close).
    fn health(&self) -> Health {
        if self.is_closed() {
            Health::disconnected("the memory broker is closed")
        } else {
            Health::connected()
        }
    }
}
