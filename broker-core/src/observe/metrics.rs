//! Metrics through the `metrics` facade, labelled by backend and subscription pattern
//! (never by concrete topic, whose cardinality is unbounded).

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use futures::FutureExt;
use futures::future::BoxFuture;
use metrics::{counter, gauge, histogram};

use super::wrap::{DeliveryHooks, wrap_subscription};
use crate::{
    BoxError, Broker, Capabilities, Delivery, Event, Handler, Layer, Message, Result,
    SubscribeOptions, Subscription,
};

/// The metric names.
pub mod names {
    /// Counter: messages published (label `backend`).
    pub const PUBLISHED: &str = "broker_messages_published_total";
    /// Counter: publishes that failed (labels `backend`, `kind`).
    pub const PUBLISH_FAILED: &str = "broker_publish_failures_total";
    /// Histogram: publish latency in seconds (label `backend`).
    pub const PUBLISH_DURATION: &str = "broker_publish_duration_seconds";
    /// Counter: deliveries (labels `backend`, `pattern`).
    pub const DELIVERED: &str = "broker_messages_delivered_total";
    /// Counter: deliveries acked (labels `backend`, `pattern`).
    pub const ACKED: &str = "broker_messages_acked_total";
    /// Counter: deliveries nacked (labels `backend`, `pattern`).
    pub const NACKED: &str = "broker_messages_nacked_total";
    /// Counter: messages sent to a dead-letter topic (labels `backend`, `dead_letter_topic`).
    pub const DEAD_LETTERED: &str = "broker_messages_dead_lettered_total";
    /// Histogram: handler duration in seconds (labels `backend`, `pattern`, `outcome`).
    pub const HANDLER_DURATION: &str = "broker_handler_duration_seconds";
    /// Gauge: handlers running (labels `backend`, `pattern`).
    pub const IN_FLIGHT: &str = "broker_handlers_in_flight";
}

/// A broker decorator recording publishes (count, failures, latency) and, per
/// subscription pattern, deliveries, acks and nacks.
#[derive(Debug, Clone)]
pub struct MetricsBroker {
    inner: Arc<dyn Broker>,
    backend: &'static str,
}

impl MetricsBroker {
    /// Wraps `inner`; the `backend` label is its capabilities' backend name.
    pub fn new(inner: Arc<dyn Broker>) -> Self {
        let backend = inner.capabilities().backend;
        MetricsBroker { inner, backend }
    }
}

#[async_trait]
impl Broker for MetricsBroker {
    async fn publish(&self, topic: &str, message: Message) -> Result<()> {
        let started = Instant::now();
        let result = self.inner.publish(topic, message).await;
        histogram!(names::PUBLISH_DURATION, "backend" => self.backend)
            .record(started.elapsed().as_secs_f64());
        match &result {
            Ok(()) => counter!(names::PUBLISHED, "backend" => self.backend).increment(1),
            Err(err) => counter!(
                names::PUBLISH_FAILED,
                "backend" => self.backend,
                "kind" => format!("{:?}", err.kind())
            )
            .increment(1),
        }
        result
    }

    async fn subscribe(&self, pattern: &str, options: SubscribeOptions) -> Result<Subscription> {
        let subscription = self.inner.subscribe(pattern, options.clone()).await?;
        let hooks = Arc::new(Counters {
            backend: self.backend,
            pattern: Arc::from(pattern),
        });
        Ok(wrap_subscription(subscription, &options, hooks))
    }

    async fn close(&self) -> Result<()> {
        self.inner.close().await
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
}

struct Counters {
    backend: &'static str,
    pattern: Arc<str>,
}

impl Counters {
    fn count(&self, name: &'static str) {
        counter!(name, "backend" => self.backend, "pattern" => self.pattern.to_string())
            .increment(1);
    }
}

impl DeliveryHooks for Counters {
    fn delivered(&self, _delivery: &Delivery) {
        self.count(names::DELIVERED);
    }
    fn acked(&self, ok: bool) {
        if ok {
            self.count(names::ACKED);
        }
    }
    fn nacked(&self, ok: bool) {
        if ok {
            self.count(names::NACKED);
        }
    }
}

/// A handler layer recording handler duration (by outcome) and the handlers in flight,
/// labelled by backend and subscription pattern.
#[derive(Debug, Clone)]
pub struct MetricsLayer {
    backend: &'static str,
    pattern: Arc<str>,
}

impl MetricsLayer {
    /// Labels for a handler subscribed to `pattern` on `backend`.
    pub fn new(backend: &'static str, pattern: &str) -> Self {
        MetricsLayer {
            backend,
            pattern: Arc::from(pattern),
        }
    }
}

impl<H: Handler> Layer<H> for MetricsLayer {
    type Handler = MetricsHandler<H>;
    fn layer(&self, inner: H) -> MetricsHandler<H> {
        MetricsHandler {
            inner,
            labels: self.clone(),
        }
    }
}

/// The handler built by [`MetricsLayer`].
#[derive(Debug, Clone)]
pub struct MetricsHandler<H> {
    inner: H,
    labels: MetricsLayer,
}

impl<H: Handler> Handler for MetricsHandler<H> {
    fn call(&self, event: Event) -> BoxFuture<'static, std::result::Result<(), BoxError>> {
        let backend = self.labels.backend;
        let pattern = self.labels.pattern.to_string();
        let in_flight =
            gauge!(names::IN_FLIGHT, "backend" => backend, "pattern" => pattern.clone());
        in_flight.increment(1.0);
        let started = Instant::now();
        let call = self.inner.call(event);
        async move {
            // Decrements even if the handler panics and the future is dropped mid-way.
            let _guard = InFlightGuard(in_flight);
            let result = call.await;
            let outcome = if result.is_ok() { "ok" } else { "error" };
            histogram!(
                names::HANDLER_DURATION,
                "backend" => backend,
                "pattern" => pattern,
                "outcome" => outcome
            )
            .record(started.elapsed().as_secs_f64());
            result
        }
        .boxed()
    }
}

struct InFlightGuard(metrics::Gauge);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

/// Counts a dead letter (used by the dead-letter layer).
pub(crate) fn dead_lettered(backend: &'static str, topic: &str) {
    counter!(names::DEAD_LETTERED, "backend" => backend, "dead_letter_topic" => topic.to_owned())
        .increment(1);
}
