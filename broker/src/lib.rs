//! One dependency for a service: everything in [`broker_core`], plus the backends its
//! cargo features select, each linked and registered so that [`connect`] and
//! [`connect_from_env`] find it by URL scheme.
//!
//! | feature | schemes | crate |
//! |---|---|---|
//! | `memory` (default) | `memory://` | [`broker_memory`](https://docs.rs/broker-memory) |
//! | `nats` | `nats://`, `jetstream://` | [`broker_nats`](https://docs.rs/broker-nats) |
//! | `kafka` | `kafka://` | [`broker_kafka`](https://docs.rs/broker-kafka) |
//!
//! The features `json` (default) and `protobuf` add those codecs; `otel` (W3C trace
//! context in message headers) and `metrics` (through the `metrics` facade) add their
//! layers to [`observe`], so that [`observe::observed`] and [`observe::ObserveLayer`]
//! record them.
//!
//! A Rust binary leaves out a crate nothing names, and with it that crate's scheme
//! registration. This crate names every enabled backend, and its `connect` functions make
//! sure of it before looking a scheme up, so enabling a feature is all a service does:
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> broker::Result<()> {
//! // BROKER_URL=nats://127.0.0.1:4222 with the `nats` feature; memory:// when unset.
//! let bus = broker::connect_from_env().await?;
//! bus.publish("order.created", broker::Message::new(r#"{"id":1}"#)).await?;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

pub use broker_core::*;

#[cfg(feature = "kafka")]
pub use broker_kafka as kafka;
#[cfg(feature = "memory")]
pub use broker_memory as memory;
#[cfg(feature = "nats")]
pub use broker_nats as nats;

use std::sync::Arc;

/// Names every backend compiled in, so the linker keeps their scheme registrations.
/// [`connect`] and [`connect_from_env`] call it; call it yourself before using
/// [`broker_core::connect`] directly.
pub fn link_backends() {
    #[cfg(feature = "memory")]
    broker_memory::link();
    #[cfg(feature = "nats")]
    broker_nats::link();
    #[cfg(feature = "kafka")]
    broker_kafka::link();
}

/// Connects to the broker `url` names, with the backend that registered its scheme. See
/// [`broker_core::connect`].
pub async fn connect(url: &str) -> Result<Arc<dyn Broker>> {
    link_backends();
    broker_core::connect(url).await
}

/// Connects to the broker in `BROKER_URL`, or to `memory://` when it is unset. See
/// [`broker_core::connect_from_env`].
pub async fn connect_from_env() -> Result<Arc<dyn Broker>> {
    link_backends();
    broker_core::connect_from_env().await
}

/// The README's code, compiled and run as a doc test.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
