//! The product service: answers [`ProductQuery`] requests on `product.list` with a
//! [`ProductList`], through [`BrokerExt::reply`].

use std::sync::Arc;
use std::time::Duration;

use broker::codec::{Codec, Json};
use broker::{BoxError, Broker, BrokerExt, Event, Message, SubscriberHandle};
use example_support::service::ServiceOptions;

use crate::event::{Product, ProductList, ProductQuery, Topics};

/// The queue group product instances join: each request is answered once.
pub const QUEUE_GROUP: &str = "product";

/// How many products a query without `size` gets.
pub const DEFAULT_SIZE: u32 = 3;

/// The catalogue.
const CATALOGUE: [&str; 6] = ["Tea", "Coffee", "Cake", "Juice", "Bagel", "Muffin"];

/// How a product instance runs; its observer receives a copy of every answer.
pub type ProductOptions = ServiceOptions<Topics, ProductList>;

/// The defaults: topic `product.list`, queue group [`QUEUE_GROUP`], instance `product`,
/// eight queries at once.
pub fn product_options() -> ProductOptions {
    ServiceOptions::named(QUEUE_GROUP).concurrency(8)
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

/// Starts a product instance on `broker`, which waits `delay` before each answer (a slow
/// service, to see the gateway time out; [`Duration::ZERO`] for none). It answers until
/// the handle is shut down or the broker closes.
///
/// The handler runs under [`ObserveLayer`](broker::observe::ObserveLayer) (see
/// [`ServiceOptions::subscribe`]): with an [`observed`](broker::observe::observed)
/// broker the answer carries the query's correlation id (and continues its trace), and
/// deliveries, acks and handler durations are recorded.
pub async fn run_product_service(
    broker: Arc<dyn Broker>,
    options: ProductOptions,
    delay: Duration,
) -> broker::Result<SubscriberHandle> {
    let replier = broker.clone();
    let instance = options.instance.clone();
    let observer = options.observer.clone();
    let handler = move |event: Event| {
        let broker = replier.clone();
        let instance = instance.clone();
        let observer = observer.clone();
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
            observer.send(answer);
            Ok::<_, BoxError>(())
        }
    };
    options
        .subscribe(&broker, &options.topics.list, "product service", handler)
        .await
}
