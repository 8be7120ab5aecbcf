//! The example's AsyncAPI document, served at `GET /asyncapi.json` on the order port.

use broker::asyncapi::AsyncApi;
use broker::codec::Protobuf;

use crate::event::{SubmitRequest, Topics};
use crate::notification::QUEUE_GROUP;

/// What the order service publishes and the notification service receives (in its
/// default queue group), on `topics`, with the servers of `broker_url` (secrets left
/// out).
///
/// # Errors
///
/// `broker_url` has no scheme or host.
pub fn document(topics: &Topics, broker_url: &str) -> broker::Result<AsyncApi> {
    Ok(
        AsyncApi::new("order-notification", env!("CARGO_PKG_VERSION"))
            .description(
                "The order service publishes each submitted order, as a protobuf \
             `order.SubmitRequest`; notification instances in a queue group log one line \
             per order.",
            )
            .server_from_url(broker_url)?
            .publishes::<SubmitRequest>(&topics.submit, Protobuf)
            .receives::<SubmitRequest>(&topics.submit, Protobuf, Some(QUEUE_GROUP)),
    )
}
