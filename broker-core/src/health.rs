//! Whether a broker is connected, for readiness checks: [`Broker::health`](crate::Broker::health)
//! returns a [`Health`].
//!
//! ```
//! # fn demo(broker: &dyn broker_core::Broker) {
//! let health = broker.health();
//! if !health.connected {
//!     eprintln!("broker down: {}", health.last_error.as_deref().unwrap_or("no error seen"));
//! }
//! # }
//! ```
//!
//! Each backend says what it knows: `memory://` is connected until it is closed; NATS
//! follows its client's connection state; Kafka is disconnected while a broker of the
//! cluster is unreachable (`broker_kafka::outages`). With the `metrics` feature, the
//! gauge `broker_connected` (label `backend`) is 1 while connected and 0 while not.

use std::time::Instant;

/// A broker's connection, as far as its backend knows.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Health {
    /// Whether the broker can publish and deliver now.
    pub connected: bool,
    /// The last connection error seen, also after the connection came back; `None` when
    /// there was none.
    pub last_error: Option<String>,
    /// Since when the broker is in its current state (connected or not), where the
    /// backend knows.
    pub since: Option<Instant>,
}

impl Health {
    /// Connected, no error seen, since an unknown time: what a backend that tracks
    /// nothing reports.
    pub fn connected() -> Self {
        Health {
            connected: true,
            last_error: None,
            since: None,
        }
    }

    /// Not connected, because of `error`.
    pub fn disconnected(error: impl Into<String>) -> Self {
        Health {
            connected: false,
            last_error: Some(error.into()),
            since: None,
        }
    }

    /// The same, with `error` as the last error seen.
    pub fn with_last_error(mut self, error: Option<String>) -> Self {
        self.last_error = error;
        self
    }

    /// The same, in its state since `since`.
    pub fn since(mut self, since: Instant) -> Self {
        self.since = Some(since);
        self
    }
}

impl Default for Health {
    fn default() -> Self {
        Health::connected()
    }
}

/// Sets the `broker_connected` gauge of `backend`: 1 when `connected`, else 0.
#[cfg(feature = "metrics")]
pub(crate) fn record(backend: &'static str, connected: bool) {
    metrics::gauge!(crate::observe::metric_names::CONNECTED, "backend" => backend)
        .set(if connected { 1.0 } else { 0.0 });
}
