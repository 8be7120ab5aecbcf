//! The notification service: a queue-group subscriber of `notification.submit` that logs
//! one line per order, such as `user 1 bought 1 × product 1 (Tea), order 7263…`.

use std::fmt;
use std::sync::Arc;

use broker::codec::Protobuf;
use broker::middleware::DeadLetterLayer;
use broker::observe::ObserveLayer;
use broker::typed::{TypedEvent, typed_handler};
use broker::{
    BoxError, Broker, BrokerExt, HandlerExt, HandlerOptions, SubscribeOptions, SubscriberHandle,
};
use tokio::sync::mpsc;

use crate::event::{SubmitRequest, Topics};

/// The queue group notification instances join: each order goes to one of them.
pub const QUEUE_GROUP: &str = "notification";

/// One notification sent (here: logged) for one order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// The instance that handled it.
    pub instance: String,
    /// The order.
    pub order_id: String,
    /// The buyer.
    pub uid: i64,
    /// The product bought.
    pub product_id: i64,
    /// The product's name.
    pub product_name: String,
    /// How many.
    pub count: i32,
}

impl fmt::Display for Notification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "user {} bought {} × product {} ({}), order {}",
            self.uid, self.count, self.product_id, self.product_name, self.order_id
        )
    }
}

/// How a notification instance runs.
#[derive(Debug, Clone)]
pub struct NotificationOptions {
    /// Where orders are published.
    pub topics: Topics,
    /// The queue group, [`QUEUE_GROUP`] unless changed.
    pub queue: String,
    /// This instance's name, for logs.
    pub instance: String,
    /// How many orders it handles at once.
    pub concurrency: usize,
    /// Receives a copy of every notification, for tests and demos.
    pub observer: Option<mpsc::UnboundedSender<Notification>>,
}

impl Default for NotificationOptions {
    fn default() -> Self {
        NotificationOptions {
            topics: Topics::default(),
            queue: QUEUE_GROUP.to_owned(),
            instance: "notification".to_owned(),
            concurrency: 1,
            observer: None,
        }
    }
}

impl NotificationOptions {
    /// The defaults: topic `notification.submit`, queue group `notification`.
    pub fn new() -> Self {
        NotificationOptions::default()
    }

    /// Listens on `topics`.
    pub fn topics(mut self, topics: Topics) -> Self {
        self.topics = topics;
        self
    }

    /// Joins the queue group `queue`.
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = queue.into();
        self
    }

    /// Names this instance.
    pub fn instance(mut self, instance: impl Into<String>) -> Self {
        self.instance = instance.into();
        self
    }

    /// Handles up to `n` orders at once.
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n;
        self
    }

    /// Sends a copy of every notification to `observer`.
    pub fn observe(mut self, observer: mpsc::UnboundedSender<Notification>) -> Self {
        self.observer = Some(observer);
        self
    }
}

/// Starts a notification instance on `broker`. It runs until the returned handle is
/// [shut down](SubscriberHandle::shutdown) or the broker closes.
///
/// The handler runs under [`ObserveLayer`]: its span continues the order's trace, the
/// order's correlation id is current while it runs, and its duration is recorded. Pass
/// an [`observed`](broker::observe::observed) broker (as
/// [`example_support::plugin::connect`] returns) for the delivery and ack counters.
pub async fn run_notifications(
    broker: Arc<dyn Broker>,
    options: NotificationOptions,
) -> broker::Result<SubscriberHandle> {
    let NotificationOptions {
        topics,
        queue,
        instance,
        concurrency,
        observer,
    } = options;
    let instance: Arc<str> = Arc::from(instance);
    // The work happens in the returned future: the layers' span and correlation id cover
    // the future, not the closure's synchronous part.
    let handler = typed_handler(Protobuf, move |event: TypedEvent<SubmitRequest>| {
        let instance = instance.clone();
        let observer = observer.clone();
        async move {
            let order = event.value;
            let notification = Notification {
                instance: instance.to_string(),
                order_id: order.order_id,
                uid: order.uid,
                product_id: order.product_id,
                product_name: order.product_name,
                count: order.count,
            };
            tracing::info!(instance = %instance, "{notification}");
            if let Some(observer) = &observer {
                // Nobody listening any more is not the handler's failure.
                let _ = observer.send(notification);
            }
            Ok::<_, BoxError>(())
        }
    })
    // A message that cannot be decoded, or that fails on every attempt, is parked on
    // `<topic>.dead` with the error, instead of being redelivered forever.
    .with(DeadLetterLayer::new(
        broker.clone(),
        format!("{}.dead", topics.submit),
    ))
    .with(ObserveLayer::new(
        broker.capabilities().backend,
        &topics.submit,
    ));
    let handle = broker
        .subscribe_with(
            &topics.submit,
            SubscribeOptions::new().queue(queue.clone()),
            HandlerOptions::new().concurrency(concurrency),
            handler,
        )
        .await?;
    tracing::info!(topic = %topics.submit, queue = %queue, "notification service subscribed");
    Ok(handle)
}
