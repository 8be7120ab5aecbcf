//! Run: `cargo run -p order-notification -- demo` (memory://, both services in one process).
//!
//! Order → notification, go-micro's order/notification pair done with this workspace's
//! broker:
//!
//! - the **order service** ([`order`]) serves `POST /order/submit`
//!   (`{"productId":1,"count":1,"uid":1}`) with axum. It checks and takes the stock of
//!   its own [`ProductStore`], records the order under a [snowflake] id and
//!   publishes a protobuf [`SubmitRequest`] to `notification.submit`. It answers
//!   `{"code":"200","msg":"order submitted","orderId":"…"}`, or a 400 when the stock is
//!   insufficient;
//! - the **notification service** ([`notification`]) subscribes to `notification.submit`
//!   in the queue group `notification` and logs one line per order. Run several
//!   instances and they share the load.
//!
//! `BROKER_URL` picks the transport (default `memory://`); the cargo features `nats` and
//! `kafka` compile those backends in (see [`example_support::plugin`]). On `memory://`
//! both services run in one process (`all`, `demo`); on NATS or Kafka they also run as
//! separate processes:
//!
//! ```text
//! scripts/nats.sh start
//! export BROKER_URL=nats://127.0.0.1:4222
//! cargo run -p order-notification --features nats -- notification --instance n1 &
//! cargo run -p order-notification --features nats -- notification --instance n2 &
//! cargo run -p order-notification --features nats -- order --addr 127.0.0.1:8080
//! curl -s localhost:8080/order/submit -H 'content-type: application/json' \
//!      -d '{"productId":1,"count":1,"uid":1}'
//! ```
//!
//! The services are library functions, used by the binary and the tests alike:
//! [`router`] and [`run_notifications`]. [`asyncapi::document`] describes both, as the
//! order port serves it at `GET /asyncapi.json`.
#![forbid(unsafe_code)]

pub mod asyncapi;
pub mod event;
pub mod notification;
pub mod order;
pub mod snowflake;
pub mod store;

pub use event::{SUBMIT_TOPIC, SubmitRequest, Topics};
pub use notification::{
    Notification, NotificationOptions, QUEUE_GROUP, notification_options, run_notifications,
};
pub use order::{OrderService, SubmitError, SubmitOrder, SubmitResponse, router};
pub use snowflake::Snowflake;
pub use store::{Order, OrderStore, Product, ProductStore, StockError};
