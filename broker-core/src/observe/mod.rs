//! Observability as layers: nothing here changes the `Broker` trait.
//!
//! Each concern comes as a broker decorator (for what happens on `publish` and on
//! `subscribe`) and, where a handler is involved, a handler [`Layer`](crate::handler::Layer):
//!
//! | concern | broker side | handler side | feature |
//! |---|---|---|---|
//! | correlation ids | [`CorrelatingBroker`]: a message published while a handler runs carries that event's correlation id | [`CorrelationLayer`]: makes the event's correlation id current | always |
//! | trace context | `TraceContextBroker`: writes the current span's W3C `traceparent`/`tracestate` into the headers | `TraceContextLayer`: the handler's span continues the publisher's trace | `otel` |
//! | metrics | `MetricsBroker`: published, failed publishes, publish latency; delivered, acked, nacked per subscription pattern | `MetricsLayer`: handler duration, in-flight handlers | `metrics` |
//!
//! [`observed`] stacks every broker decorator compiled in; [`ObserveLayer`] every handler
//! layer. Trace context and correlation ids only use headers, so they work the same on
//! every backend.
//!
//! ```
//! # async fn demo(bus: std::sync::Arc<dyn broker_core::Broker>) -> broker_core::Result<()> {
//! use broker_core::{BoxError, BrokerExt, Event, HandlerExt, HandlerOptions, SubscribeOptions};
//! use broker_core::observe::{observed, ObserveLayer};
//!
//! let bus = observed(bus);
//! let follow_up = bus.clone();
//! let handler = (move |event: Event| {
//!     let bus = follow_up.clone();
//!     async move {
//!         // Carries the correlation id (and trace context) of `event`.
//!         bus.publish("email.send", broker_core::Message::new("welcome")).await?;
//!         Ok::<_, BoxError>(())
//!     }
//! })
//! .with(ObserveLayer::new(bus.capabilities().backend, "user.created"));
//! bus.subscribe_with("user.created", SubscribeOptions::new(), HandlerOptions::new(), handler)
//!     .await?;
//! # Ok(()) }
//! ```

/// Defines `$decorator`, a decorator of the broker in its `inner` field (built with
/// `new(inner)`) that only changes what is published: `publish` and `publish_batch` hand
/// each message to `$stamp` (a `fn(&mut Message)`) first; subscribing, closing and the capabilities are
/// `inner`'s. The attributes given (its docs) go on the decorator.
macro_rules! stamping_broker {
    ($(#[$attr:meta])* pub struct $decorator:ident => $stamp:path;) => {
        $(#[$attr])*
        #[derive(Debug, Clone)]
        pub struct $decorator {
            inner: std::sync::Arc<dyn $crate::Broker>,
        }

        impl $decorator {
            /// Wraps `inner`.
            pub fn new(inner: std::sync::Arc<dyn $crate::Broker>) -> Self {
                $decorator { inner }
            }
        }

        #[async_trait::async_trait]
        impl $crate::Broker for $decorator {
            async fn publish(
                &self,
                topic: &str,
                mut message: $crate::Message,
            ) -> $crate::Result<()> {
                $stamp(&mut message);
                self.inner.publish(topic, message).await
            }

            async fn publish_batch(
                &self,
                topic: &str,
                mut messages: Vec<$crate::Message>,
            ) -> $crate::Result<(), $crate::batch::BatchError> {
                for message in &mut messages {
                    $stamp(message);
                }
                self.inner.publish_batch(topic, messages).await
            }

            async fn subscribe(
                &self,
                pattern: &str,
                options: $crate::SubscribeOptions,
            ) -> $crate::Result<$crate::Subscription> {
                self.inner.subscribe(pattern, options).await
            }

            async fn close(&self) -> $crate::Result<()> {
                self.inner.close().await
            }

            fn capabilities(&self) -> $crate::backend::Capabilities {
                self.inner.capabilities()
            }

            fn health(&self) -> $crate::health::Health {
                self.inner.health()
            }
        }
    };
}

mod correlation;
#[cfg(feature = "metrics")]
mod lag_gauge;
#[cfg(feature = "metrics")]
mod metrics;
mod observe_layer;
#[cfg(feature = "otel")]
mod trace_context;
#[cfg(feature = "metrics")]
mod wrap;

use std::sync::Arc;

use crate::Broker;

pub use correlation::{CorrelatingBroker, Correlation, CorrelationLayer, current_correlation_id};
#[cfg(feature = "metrics")]
pub use metrics::{MetricsBroker, MetricsHandler, MetricsLayer, names as metric_names};
#[cfg(feature = "metrics")]
pub(crate) use metrics::{dead_lettered as count_dead_letter, dropped as count_dropped};
pub use observe_layer::ObserveLayer;
#[cfg(feature = "otel")]
pub use trace_context::{TraceContextBroker, TraceContextHandler, TraceContextLayer};

/// Wraps `broker` in every observing decorator compiled in: correlation ids, then trace
/// context (`otel` feature), then metrics (`metrics` feature).
pub fn observed(broker: Arc<dyn Broker>) -> Arc<dyn Broker> {
    let broker: Arc<dyn Broker> = Arc::new(CorrelatingBroker::new(broker));
    #[cfg(feature = "otel")]
    let broker: Arc<dyn Broker> = Arc::new(TraceContextBroker::new(broker));
    #[cfg(feature = "metrics")]
    let broker: Arc<dyn Broker> = Arc::new(MetricsBroker::new(broker));
    broker
}
