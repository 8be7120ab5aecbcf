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

/// The backends this crate can compile in: scheme, the cargo feature that adds it, and
/// its crate.
const BACKENDS: &[(&str, &str, &str)] = &[
    ("memory", "memory", "broker-memory"),
    ("nats", "nats", "broker-nats"),
    ("jetstream", "nats", "broker-nats"),
    ("kafka", "kafka", "broker-kafka"),
];

/// Connects to the broker `url` names, with the backend that registered its scheme. See
/// [`broker_core::connect`]. A scheme that is not compiled in is an
/// [`ErrorKind::UnknownScheme`] error that names the feature that adds it.
pub async fn connect(url: &str) -> Result<Arc<dyn Broker>> {
    link_backends();
    broker_core::connect(url).await.map_err(with_feature_hint)
}

/// Connects to the broker in `BROKER_URL`, or to `memory://` when it is unset. See
/// [`broker_core::connect_from_env`].
pub async fn connect_from_env() -> Result<Arc<dyn Broker>> {
    link_backends();
    broker_core::connect_from_env()
        .await
        .map_err(with_feature_hint)
}

/// An unknown-scheme error, told which cargo feature adds the scheme.
fn with_feature_hint(err: Error) -> Error {
    if err.kind() != ErrorKind::UnknownScheme {
        return err;
    }
    let scheme = err.message().split('`').nth(1).unwrap_or_default();
    let hint = match BACKENDS.iter().find(|(s, _, _)| *s == scheme) {
        Some((_, feature, krate)) => format!(
            "enable the `{feature}` cargo feature of the `broker` crate (or depend on `{krate}` and call its `link()`)"
        ),
        None => {
            let known: Vec<_> = BACKENDS.iter().map(|(s, _, _)| *s).collect();
            format!("schemes this project knows: {}", known.join(", "))
        }
    };
    Error::new(
        ErrorKind::UnknownScheme,
        format!("{}; {hint}", err.message()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_scheme_is_told_its_feature() {
        let missing = Error::new(
            ErrorKind::UnknownScheme,
            "no backend for the URL scheme `jetstream`; compiled in: memory",
        );
        let told = with_feature_hint(missing);
        assert_eq!(told.kind(), ErrorKind::UnknownScheme);
        assert!(told.message().contains("compiled in: memory"), "{told}");
        assert!(
            told.message().contains("enable the `nats` cargo feature"),
            "{told}"
        );
        let other = Error::new(ErrorKind::InvalidUrl, "bad `kafka`");
        assert_eq!(with_feature_hint(other).message(), "bad `kafka`");
    }
}

/// The README's code, compiled and run as a doc test.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
