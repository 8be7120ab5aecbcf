//! Run: `cargo run -p event-bus -- demo` (memory://, gateway and product service in one process).
//!
//! An event bus with a timeout, after the Go example that answers `GET /prods` through
//! channels: the cause (a request for products) is an event on the broker, the effect
//! (the product list) comes back as a reply.
//!
//! - the **gateway** ([`gateway`]) serves `GET /prods[?size=N]` with axum. It sends a
//!   [`ProductQuery`] to `product.list` with a [`Requester`](broker::Requester) and waits
//!   a bounded time. No answer in time: `504 {"message":"timeout"}`;
//! - the **product service** ([`product`]) subscribes to `product.list` in the queue
//!   group `product` and answers with [`BrokerExt::reply`](broker::BrokerExt::reply).
//!
//! [`asyncapi::document`] describes both, as the gateway serves it at
//! `GET /asyncapi.json`.
//!
//! `BROKER_URL` picks the transport (default `memory://`); the cargo features `nats` and
//! `kafka` compile those backends in (see [`example_support::plugin`]). On NATS or Kafka
//! the gateway and the product service can run in separate processes (`gateway`,
//! `products`).
//!
//! The services are library functions, used by the binary and the tests alike:
//! [`router`] and [`run_product_service`].
#![forbid(unsafe_code)]

pub mod asyncapi;
pub mod event;
pub mod gateway;
pub mod product;

pub use event::{Product, ProductList, ProductQuery, Topics};
pub use gateway::{DEFAULT_TIMEOUT, Gateway, GatewayError, router};
pub use product::{ProductOptions, product_options, run_product_service};
