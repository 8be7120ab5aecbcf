//! The core of a broker-agnostic messaging framework: publish and consume events without
//! marrying one broker.
//!
//! - [`Broker`] is the whole contract a backend implements: `publish`, `subscribe`,
//!   `close`, plus the [`Capabilities`](backend::Capabilities) it guarantees;
//!   [`publish_batch`](Broker::publish_batch) publishes many messages in one call and
//!   reports each one that failed ([`batch`], which also has batch consume).
//! - [`Message`] carries ordered [`Headers`] (values are bytes with a text face), a
//!   `bytes` payload, an optional key and an id. A [`Subscription`] is a stream of
//!   [`Delivery`]s, each acked or nacked; a handler sees each as an [`Event`].
//! - Writing a backend: [`backend`] has what only backend authors need.
//! - [`BrokerExt::subscribe_with`] runs a [`Handler`] with bounded concurrency and a
//!   graceful [`shutdown`](SubscriberHandle::shutdown), or one within a deadline
//!   ([`shutdown_within`](SubscriberHandle::shutdown_within));
//!   [`BrokerExt::subscribe_batches`] hands a [`batch::BatchHandler`] many events at once,
//!   settled together; [`middleware`] adds retry,
//!   dead letters, timeouts and panic recovery; [`codec`] and [`typed`] add typed
//!   messages; [`Requester`] does request/reply; `asyncapi` (feature `asyncapi`) writes
//!   the AsyncAPI document of what a service publishes and receives.
//! - [`lag`]: how far a subscription is behind, from [`Subscription::lag`] or
//!   [`SubscriberHandle::lag`].
//! - [`Broker::health`] says whether the broker is connected, for readiness checks
//!   ([`health`]).
//! - [`connect`] picks a backend by URL scheme (`memory://`, `nats://`, `jetstream://`,
//!   `kafka://`) among those compiled in.
//!
//! ```
//! # async fn demo() -> broker_core::Result<()> {
//! use broker_core::{BoxError, BrokerExt, Event, HandlerOptions, Message, SubscribeOptions};
//!
//! let broker = broker_core::connect_from_env().await?; // BROKER_URL, or memory://
//! let handle = broker
//!     .subscribe_with("order.*", SubscribeOptions::new().queue("audit"), HandlerOptions::new(),
//!         |event: Event| async move {
//!             println!("{}: {:?}", event.topic(), event.message().payload());
//!             Ok::<_, BoxError>(())
//!         })
//!     .await?;
//! broker.publish("order.created", Message::new(r#"{"id":1}"#)).await?;
//! handle.shutdown().await?;
//! broker.close().await
//! # }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

#[cfg(feature = "asyncapi")]
pub mod asyncapi;
pub mod backend;
pub mod batch;
mod broker;
pub mod codec;
pub mod delivery;
mod error;
mod ext;
#[cfg(feature = "json")]
pub mod gomicro;
pub mod handler;
pub mod headers;
pub mod health;
pub mod lag;
mod message;
pub mod middleware;
pub mod observe;
pub mod options;
pub mod registry;
mod request;
pub mod subject;
mod subscriber;
mod subscription;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod typed;

// The user's vocabulary: what a service names to publish, subscribe and handle. What
// only backend authors need is in [`backend`]; the rest sits in its module.
pub use broker::Broker;
pub use delivery::Delivery;
pub use error::{BoxError, Error, ErrorKind, Result};
pub use ext::BrokerExt;
pub use handler::{Event, Handler, HandlerExt};
pub use headers::Headers;
pub use message::{Message, MessageId};
pub use options::SubscribeOptions;
pub use registry::{connect, connect_from_env};
pub use request::Requester;
pub use subscriber::{HandlerOptions, SubscriberHandle};
pub use subscription::Subscription;

/// Re-exports for this crate's macros. Not part of the public API.
#[doc(hidden)]
pub mod __private {
    pub use inventory;
}
