//! The product service: answers [`ProductQuery`] requests on `product.list` with a
//! [`ProductList`], through [`BrokerExt::reply`].

use std::sync::Arc;
use std::time::Duration;

use broker::codec::{Codec, Json};
use broker::observe::ObserveLayer;
use broker::{
    BoxError, Broker, BrokerExt, Event, HandlerExt, HandlerOptions, Message, SubscribeOptions,
    SubscriberHandle,
};

use crate::event::{Product, ProductList, ProductQuery, Topics};

/// The queue group product instances join: each request is answered once.
pub const QUEUE_GROUP: &str = "product";

/// How many products a query without `size` gets.
pub const DEFAULT_SIZE: u32 = 3;

/// The catalogue.
const CATALOGUE: [&str; 6] = ["Tea", "Coffee", "Cake", "Juice", "Bagel", "Muffin"];

/// How a product instance runs.
#[derive(Debug, Clone)]
pub struct ProductOptions {
    /// Where queries arrive.
    pub topics: Topics,
    /// The queue group, [`QUEUE_GROUP`] unless changed.
    pub queue: String,
    /// This instance's name, sent back in every answer.
    pub instance: String,
    /// How long each answer takes: a slow service, to see the gateway time out.
    pub delay: Duration,
}

impl Default for ProductOptions {
    fn default() -> Self {
        ProductOptions {
            topics: Topics::default(),
            queue: QUEUE_GROUP.to_owned(),
            instance: "product".to_owned(),
            delay: Duration::ZERO,
        }
    }
}

impl ProductOptions {
    /// The defaults: topic `product.list`, queue group `product`, no delay.
    pub fn new() -> Self {
        ProductOptions::default()
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

    /// Waits `delay` before each answer.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

/// The products a query asks for.
pub fn products(query: &ProductQuery) -> Vec<Product> {
    let size = query.size.unwrap_or(DEFAULT_SIZE) as usize;
    CATALOGUE
        .iter()
        .zip(1..)
        .take(size)
        .map(|(name, id)| Product {
            id,
            name: (*name).to_owned(),
        })
        .collect()
}

/// Starts a product instance on `broker`. It answers until the handle is shut down or
/// the broker closes.
///
/// The handler runs under [`ObserveLayer`]: with an [`observed`](broker::observe::observed)
/// broker the answer carries the query's correlation id (and continues its trace), and
/// deliveries, acks and handler durations are recorded.
pub async fn run_product_service(
    broker: Arc<dyn Broker>,
    options: ProductOptions,
) -> broker::Result<SubscriberHandle> {
    let ProductOptions {
        topics,
        queue,
        instance,
        delay,
    } = options;
    let replier = broker.clone();
    let layer = ObserveLayer::new(broker.capabilities().backend, &topics.list);
    let handler = (move |event: Event| {
        let broker = replier.clone();
        let instance = instance.clone();
        async move {
            let query: ProductQuery = Json.decode(event.message().payload())?;
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let answer = ProductList {
                products: products(&query),
                served_by: instance,
            };
            tracing::info!(size = answer.products.len(), served_by = %answer.served_by, "answering a product query");
            let payload = Json.encode(&answer)?;
            broker.reply(event.message(), Message::new(payload)).await?;
            Ok::<_, BoxError>(())
        }
    })
    .with(layer);
    let handle = broker
        .subscribe_with(
            &topics.list,
            SubscribeOptions::new().queue(queue.clone()),
            HandlerOptions::new().concurrency(8),
            handler,
        )
        .await?;
    tracing::info!(topic = %topics.list, queue = %queue, "product service subscribed");
    Ok(handle)
}
