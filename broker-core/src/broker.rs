//! The `Broker` trait and what a backend guarantees.

use std::fmt;

use async_trait::async_trait;

use crate::batch::{BatchError, publish_one_by_one};
use crate::health::Health;
use crate::{Message, Result, SubscribeOptions, Subscription};

/// A message broker: publish, subscribe, close; the provided `publish_batch` and `health`
/// have defaults that a backend overrides where it can do better.
///
/// Everything else (typed messages, handlers, retries, dead letters, request/reply) is
/// built on these three methods by [`BrokerExt`](crate::BrokerExt) and the
/// [`middleware`](crate::middleware), so it works the same on every backend. The trait is
/// object-safe: a service usually holds an `Arc<dyn Broker>` it got from
/// [`connect`](crate::connect).
///
/// ```
/// # async fn demo(broker: std::sync::Arc<dyn broker_core::Broker>) -> broker_core::Result<()> {
/// use broker_core::{Message, SubscribeOptions};
/// use futures::StreamExt;
///
/// let mut sub = broker.subscribe("order.*", SubscribeOptions::new()).await?;
/// broker.publish("order.created", Message::new("{}")).await?;
/// if let Some(delivery) = sub.next().await {
///     let delivery = delivery?;
///     assert_eq!(delivery.topic(), "order.created");
///     delivery.ack().await?;
/// }
/// # Ok(()) }
/// ```
#[async_trait]
pub trait Broker: Send + Sync + fmt::Debug + 'static {
    /// Publishes `message` to the concrete subject `topic`. It resolves once the backend
    /// has taken the message as far as its guarantees say (for at-least-once backends:
    /// the broker acknowledged it).
    async fn publish(&self, topic: &str, message: Message) -> Result<()>;

    /// Publishes `messages` to `topic`, in order, and resolves when each is stored as far
    /// as the backend's guarantees say (as [`publish`](Broker::publish) would).
    ///
    /// Not atomic: on `Err`, the [`BatchError`] lists each message that was not stored
    /// by its index in `messages`, with a typed error; every other message was stored. A
    /// problem of one message (too large, a header the backend cannot carry) fails that
    /// message alone; a problem of the call (an invalid topic, a closed broker) fails
    /// every message with the same kind. See [`batch`](crate::batch).
    ///
    /// The default publishes one message after another. Backends override it to send
    /// them all before waiting (Kafka, NATS, JetStream); a decorator forwards it to the
    /// broker it wraps, so that path is kept.
    async fn publish_batch(&self, topic: &str, messages: Vec<Message>) -> Result<(), BatchError> {
        publish_one_by_one(self, topic, messages).await
    }

    /// Subscribes to the subjects that `pattern` matches (see [`subject`](crate::subject)).
    /// The subscription is live when this returns: a message published afterwards is
    /// delivered to it.
    async fn subscribe(&self, pattern: &str, options: SubscribeOptions) -> Result<Subscription>;

    /// Closes the broker: pending publishes are flushed, open subscriptions end, and later
    /// calls fail with [`ErrorKind::Closed`](crate::ErrorKind::Closed).
    async fn close(&self) -> Result<()>;

    /// What this backend guarantees.
    fn capabilities(&self) -> Capabilities;

    /// Whether the broker is connected now, and the last connection error it saw (see
    /// [`health`](crate::health)). The default, for a backend that tracks nothing, is
    /// connected; a wrapper forwards its inner broker's.
    fn health(&self) -> Health {
        Health::connected()
    }
}

/// How often a published message reaches a subscriber, at best.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeliveryGuarantee {
    /// A message may be lost (for example while a subscriber is disconnected), never
    /// duplicated by the backend.
    AtMostOnce,
    /// A message acknowledged by the broker is delivered until it is acked; it may be
    /// delivered more than once.
    AtLeastOnce,
}

/// Which messages keep their relative order on the way to one subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum OrderingGuarantee {
    /// No order is promised.
    None,
    /// Messages from one publisher to one topic arrive in the order they were published
    /// (redeliveries aside).
    PerPublisher,
    /// Messages with the same key arrive in the order they were published (Kafka: per
    /// partition).
    PerKey,
}

/// Builder setters: each `field: Type;` becomes `pub fn field(mut self, field: Type) -> Self`,
/// which sets the field of that name; the attributes before it (its docs) go on the method.
macro_rules! setters {
    ($($(#[$attr:meta])* $field:ident: $ty:ty;)*) => {
        $(
            $(#[$attr])*
            pub fn $field(mut self, $field: $ty) -> Self {
                self.$field = $field;
                self
            }
        )*
    };
}

/// What a backend guarantees, for users to read and for the conformance kit to test.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// The backend's name, as in its URL scheme.
    pub backend: &'static str,
    /// Delivery guarantee.
    pub delivery: DeliveryGuarantee,
    /// Ordering guarantee.
    pub ordering: OrderingGuarantee,
    /// Whether messages outlive their subscribers: unacked messages come back to a later
    /// subscriber of the same queue group.
    pub persistence: bool,
    /// Whether `nack` makes the backend deliver the message again.
    pub redelivery: bool,
    /// Whether queue groups (consumer groups) are supported.
    pub queue_groups: bool,
    /// The largest message the backend accepts, in bytes, when known.
    pub max_message_bytes: Option<usize>,
    /// Whether a topic costs nothing once nobody uses it (NATS subjects, in-process
    /// queues). Where it does not (a Kafka topic is a log kept until deleted), the
    /// [`Requester`](crate::Requester)s share one inbox topic instead of making one each.
    pub disposable_topics: bool,
}

impl Capabilities {
    /// Capabilities of `backend`: at-most-once, unordered, nothing else. Backends start
    /// from here and set what they offer.
    pub fn new(backend: &'static str) -> Self {
        Capabilities {
            backend,
            delivery: DeliveryGuarantee::AtMostOnce,
            ordering: OrderingGuarantee::None,
            persistence: false,
            redelivery: false,
            queue_groups: false,
            max_message_bytes: None,
            disposable_topics: true,
        }
    }

    setters! {
        /// Sets the delivery guarantee.
        delivery: DeliveryGuarantee;
        /// Sets the ordering guarantee.
        ordering: OrderingGuarantee;
        /// Sets whether messages outlive their subscribers.
        persistence: bool;
        /// Sets whether `nack` redelivers.
        redelivery: bool;
        /// Sets whether queue groups are supported.
        queue_groups: bool;
        /// Sets the largest message accepted.
        max_message_bytes: Option<usize>;
        /// Sets whether topics are free to leave behind.
        disposable_topics: bool;
    }
}
