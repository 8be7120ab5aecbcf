//! The broker backends compiled into an example, as a go-micro service's `plugin.go`
//! lists its `_` imports.
//!
//! Each example's cargo features choose them: `memory` (the default), `nats` (`nats://`,
//! `jetstream://`) and `kafka` (`kafka://`), each forwarding to the feature of the
//! `broker` crate that links the backend and registers its URL scheme. `BROKER_URL` then
//! picks one of them at run time:
//!
//! ```text
//! cargo run -p order-notification -- demo                                # memory://
//! BROKER_URL=nats://127.0.0.1:4222 cargo run -p user-email --features nats -- all
//! BROKER_URL=kafka://127.0.0.1:9092 cargo run -p event-bus --features kafka -- gateway
//! ```

use std::sync::Arc;

use broker::Broker;

/// The default broker URL, used when `BROKER_URL` is unset.
pub const DEFAULT_BROKER_URL: &str = "memory://";

/// The URL schemes compiled into this binary, sorted: `memory`, and `nats`, `jetstream`
/// and `kafka` when their features are on.
pub fn backends() -> Vec<&'static str> {
    broker::link_backends();
    broker::registry::registered_schemes()
}

/// Connects to the broker `url` names, with one of the [`backends`] compiled in, and
/// wraps it in [`observed`](broker::observe::observed): what the services publish carries
/// the correlation id (and W3C trace context) of the event being handled, and publishes,
/// deliveries and acks are counted in the `broker_*` metrics.
pub async fn connect(url: &str) -> broker::Result<Arc<dyn Broker>> {
    Ok(broker::observe::observed(broker::connect(url).await?))
}

/// Whether `url` names the in-process broker, which only services in the same process
/// share.
pub fn is_in_process(url: &str) -> bool {
    url.trim_start().starts_with("memory:")
}

/// `broker <url> (backends compiled in: …)`, with the URL's secrets redacted.
pub fn describe(url: &str) -> String {
    format!(
        "broker {} (backends compiled in: {})",
        broker::registry::redact_url(url),
        backends().join(", ")
    )
}
