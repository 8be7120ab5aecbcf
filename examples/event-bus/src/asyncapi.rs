//! The example's AsyncAPI document, served at `GET /asyncapi.json` on the gateway port.

use broker::asyncapi::AsyncApi;
use broker::codec::Json;

use crate::event::{ProductList, ProductQuery, Topics};
use crate::product::QUEUE_GROUP;

/// The gateway's requests and the product service's replies (it answers in its queue
/// group), on `topics`, with the servers of `broker_url` (secrets left out).
///
/// # Errors
///
/// `broker_url` has no scheme or host.
pub fn document(topics: &Topics, broker_url: &str) -> broker::Result<AsyncApi> {
    Ok(AsyncApi::new("event-bus", env!("CARGO_PKG_VERSION"))
        .description(
            "The gateway asks for products with a `ProductQuery` request on `product.list`; \
             a product instance of the queue group answers with a `ProductList` on the \
             requester's inbox.",
        )
        .server_from_url(broker_url)?
        .publishes::<ProductQuery>(&topics.list, Json)
        .replies::<ProductList>(Json)
        .receives::<ProductQuery>(&topics.list, Json, Some(QUEUE_GROUP))
        .replies::<ProductList>(Json))
}
