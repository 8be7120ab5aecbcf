//! The notification service: a queue-group subscriber of `notification.submit` that logs
//! one line per order, such as `user 1 bought 1 × product 1 (Tea), order 7263…`.

use std::fmt;
use std::sync::Arc;

use broker::codec::Protobuf;
use broker::typed::TypedEvent;
use broker::{Broker, SubscriberHandle};
use example_support::service::ServiceOptions;

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
pub type NotificationOptions = ServiceOptions<Topics, Notification>;

/// Starts a notification instance on `broker`. It runs until the returned handle is
/// [shut down](SubscriberHandle::shutdown) or the broker closes.
///
/// The handler runs under [`ObserveLayer`](broker::observe::ObserveLayer) (see
/// [`ServiceOptions::subscribe_typed`]): its span continues the order's trace, the
/// order's correlation id is current while it runs, and its duration is recorded. Pass
/// an [`observed`](broker::observe::observed) broker (as
/// [`example_support::plugin::connect`] returns) for the delivery and ack counters.
pub async fn run_notifications(
    broker: Arc<dyn Broker>,
    options: NotificationOptions,
) -> broker::Result<SubscriberHandle> {
    let topic = &options.topics.submit;
    options
        .subscribe_typed(&broker, topic, "notification service", Protobuf, notify)
        .await
}

/// The defaults: topic `notification.submit`, queue group [`QUEUE_GROUP`], instance
/// `notification`, one order at a time.
pub fn notification_options() -> NotificationOptions {
    ServiceOptions::named(QUEUE_GROUP)
}

/// The notification of one order, logged by `instance`.
fn notify(instance: &str, event: TypedEvent<SubmitRequest>) -> Notification {
    let order = event.value;
    let notification = Notification {
        instance: instance.to_owned(),
        order_id: order.order_id,
        uid: order.uid,
        product_id: order.product_id,
        product_name: order.product_name,
        count: order.count,
    };
    tracing::info!(instance, "{notification}");
    notification
}
