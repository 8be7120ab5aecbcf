//! Metrics through the `metrics` facade, labelled by backend and subscription pattern
//! (never by concrete topic, whose cardinality is unbounded).

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::FutureExt;
use futures::future::BoxFuture;
use metrics::{Counter, Gauge, Histogram, counter, gauge, histogram};

use super::lag_gauge;
use super::wrap::{DeliveryHooks, wrap_subscription};
use crate::backend::Capabilities;
use crate::batch::BatchError;
use crate::handler::Layer;
use crate::health::Health;
use crate::{
    BoxError, Broker, Delivery, Event, Handler, Message, Result, SubscribeOptions, Subscription,
};

/// The metric names.
pub mod names {
    /// Counter: messages published (label `backend`).
    pub const PUBLISHED: &str = "broker_messages_published_total";
    /// Counter: publishes that failed (labels `backend`, `kind`).
    pub const PUBLISH_FAILED: &str = "broker_publish_failures_total";
    /// Histogram: publish latency in seconds (label `backend`).
    pub const PUBLISH_DURATION: &str = "broker_publish_duration_seconds";
    /// Histogram: duration of a whole `publish_batch` call in seconds (label `backend`);
    /// its messages are counted one by one in [`PUBLISHED`] and [`PUBLISH_FAILED`].
    pub const PUBLISH_BATCH_DURATION: &str = "broker_publish_batch_duration_seconds";
    /// Counter: deliveries (labels `backend`, `pattern`).
    pub const DELIVERED: &str = "broker_messages_delivered_total";
    /// Counter: deliveries acked (labels `backend`, `pattern`).
    pub const ACKED: &str = "broker_messages_acked_total";
    /// Counter: deliveries nacked (labels `backend`, `pattern`).
    pub const NACKED: &str = "broker_messages_nacked_total";
    /// Counter: messages sent to a dead-letter topic (labels `backend`, `dead_letter_topic`).
    pub const DEAD_LETTERED: &str = "broker_messages_dead_lettered_total";
    /// Counter: messages a subscriber gave up on and acked without handling them, because
    /// they could not be read or failed on every allowed attempt, with no dead-letter
    /// topic to take them (labels `pattern`, `reason`: `unreadable` or `attempts`).
    pub const DROPPED: &str = "broker_messages_dropped_total";
    /// Counter: handlers cancelled, their messages nacked, because a shutdown's deadline
    /// passed (label `pattern`; see `SubscriberHandle::shutdown_within`).
    pub const CANCELLED: &str = "broker_handlers_cancelled_total";
    /// Histogram: handler duration in seconds (labels `backend`, `pattern`, `outcome`).
    pub const HANDLER_DURATION: &str = "broker_handler_duration_seconds";
    /// Gauge: handlers running (labels `backend`, `pattern`).
    pub const IN_FLIGHT: &str = "broker_handlers_in_flight";
    /// Gauge: 1 while the broker is connected, 0 while it is not (label `backend`; see
    /// `Broker::health`).
    pub const CONNECTED: &str = "broker_connected";
    /// Counter: failed connection attempts and lost connections to a server (label
    /// `backend`).
    pub const CONNECTION_FAILURES: &str = "broker_connection_failures_total";
    /// Counter: outages, each a run of failures to reach one server that ends when it
    /// answers again (label `backend`).
    pub const OUTAGES: &str = "broker_outages_total";
    /// Gauge: the consumer lag of a subscription made through
    /// [`MetricsBroker`](super::MetricsBroker), sampled when it starts and then every
    /// [`lag_interval`](super::MetricsBroker::lag_interval) (5 s by default), 0 once it
    /// ends (labels `backend`, `pattern`, `group`: the queue group, empty for none). See
    /// [`lag`](crate::lag) for what each backend counts; members of one group in one
    /// process share the series, each writing its own lag. Backends that do not report
    /// lag have no series.
    pub const CONSUMER_LAG: &str = "broker_consumer_lag";
}

/// A broker decorator recording publishes (count, failures, latency; a batch counts each
/// of its messages) and, per
/// subscription pattern, deliveries, acks and nacks.
///
/// The metric handles are resolved once, when the decorator is made and when a
/// subscription starts, so the per-message cost is an atomic update each. Install the
/// metrics recorder first: handles resolved before it exists record nowhere.
#[derive(Clone)]
pub struct MetricsBroker {
    inner: Arc<dyn Broker>,
    backend: &'static str,
    published: Counter,
    publish_duration: Histogram,
    lag_interval: Duration,
    publish_batch_duration: Histogram,
}

/// How often a subscription's consumer lag is sampled by default.
const DEFAULT_LAG_INTERVAL: Duration = Duration::from_secs(5);

impl MetricsBroker {
    /// Wraps `inner`; the `backend` label is its capabilities' backend name. Sets the
    /// `broker_connected` gauge from `inner`'s health, as each call of
    /// [`health`](Broker::health) does.
    pub fn new(inner: Arc<dyn Broker>) -> Self {
        let backend = inner.capabilities().backend;
        crate::health::record(backend, inner.health().connected);
        MetricsBroker {
            published: counter!(names::PUBLISHED, "backend" => backend),
            publish_duration: histogram!(names::PUBLISH_DURATION, "backend" => backend),
            publish_batch_duration: histogram!(names::PUBLISH_BATCH_DURATION, "backend" => backend),
            inner,
            backend,
            lag_interval: DEFAULT_LAG_INTERVAL,
        }
    }

    /// Samples each subscription's consumer lag every `interval` (see
    /// [`names::CONSUMER_LAG`]); zero turns the sampling off. Each sample asks the
    /// broker: on JetStream one request, on Kafka a few, from a second client per
    /// subscription.
    pub fn lag_interval(mut self, interval: Duration) -> Self {
        self.lag_interval = interval;
        self
    }

    fn publish_failed(&self, kind: crate::ErrorKind) -> Counter {
        counter!(
            names::PUBLISH_FAILED,
            "backend" => self.backend,
            "kind" => format!("{kind:?}")
        )
    }
}

impl std::fmt::Debug for MetricsBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsBroker")
            .field("inner", &self.inner)
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Broker for MetricsBroker {
    async fn publish(&self, topic: &str, message: Message) -> Result<()> {
        let started = Instant::now();
        let result = self.inner.publish(topic, message).await;
        self.publish_duration
            .record(started.elapsed().as_secs_f64());
        match &result {
            Ok(()) => self.published.increment(1),
            Err(err) => self.publish_failed(err.kind()).increment(1),
        }
        result
    }

    /// Counts each message of the batch as published or failed (by kind), and the
    /// batch's duration in its own histogram.
    async fn publish_batch(&self, topic: &str, messages: Vec<Message>) -> Result<(), BatchError> {
        let batch_len = messages.len() as u64;
        let started = Instant::now();
        let result = self.inner.publish_batch(topic, messages).await;
        self.publish_batch_duration
            .record(started.elapsed().as_secs_f64());
        match &result {
            Ok(()) => self.published.increment(batch_len),
            Err(err) => {
                let failed = err.failures();
                self.published
                    .increment(batch_len.saturating_sub(failed.len() as u64));
                for failure in failed {
                    self.publish_failed(failure.error().kind()).increment(1);
                }
            }
        }
        result
    }

    async fn subscribe(&self, pattern: &str, options: SubscribeOptions) -> Result<Subscription> {
        let subscription = self.inner.subscribe(pattern, options.clone()).await?;
        let labels = |name: &'static str| counter!(name, "backend" => self.backend, "pattern" => pattern.to_owned());
        let lag = gauge!(
            names::CONSUMER_LAG,
            "backend" => self.backend,
            "pattern" => pattern.to_owned(),
            "group" => options.queue.clone().unwrap_or_default()
        );
        let hooks = Arc::new(Counters {
            delivered: labels(names::DELIVERED),
            acked: labels(names::ACKED),
            nacked: labels(names::NACKED),
            _lag_sampler: lag_gauge::sample(subscription.lag_source(), lag, self.lag_interval),
        });
        Ok(wrap_subscription(subscription, &options, hooks))
    }

    async fn close(&self) -> Result<()> {
        self.inner.close().await
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    /// The inner broker's health, also recorded in the `broker_connected` gauge.
    fn health(&self) -> Health {
        let health = self.inner.health();
        crate::health::record(self.backend, health.connected);
        health
    }
}

struct Counters {
    delivered: Counter,
    acked: Counter,
    nacked: Counter,
    /// Samples the lag while the subscription (and so these hooks) lives.
    _lag_sampler: Option<tokio_util::sync::DropGuard>,
}

impl DeliveryHooks for Counters {
    fn delivered(&self, _delivery: &Delivery) {
        self.delivered.increment(1);
    }
    fn acked(&self, ok: bool) {
        if ok {
            self.acked.increment(1);
        }
    }
    fn nacked(&self, ok: bool) {
        if ok {
            self.nacked.increment(1);
        }
    }
}

/// A handler layer recording handler duration (by outcome) and the handlers in flight,
/// labelled by backend and subscription pattern. Like [`MetricsBroker`], it resolves its
/// metric handles when it is made, so install the recorder first.
#[derive(Clone)]
pub struct MetricsLayer {
    backend: &'static str,
    pattern: Arc<str>,
    in_flight: Gauge,
    ok: Histogram,
    failed: Histogram,
}

impl MetricsLayer {
    /// Labels for a handler subscribed to `pattern` on `backend`.
    pub fn new(backend: &'static str, pattern: &str) -> Self {
        let duration = |outcome: &'static str| {
            histogram!(
                names::HANDLER_DURATION,
                "backend" => backend,
                "pattern" => pattern.to_owned(),
                "outcome" => outcome
            )
        };
        MetricsLayer {
            backend,
            pattern: Arc::from(pattern),
            in_flight: gauge!(names::IN_FLIGHT, "backend" => backend, "pattern" => pattern.to_owned()),
            ok: duration("ok"),
            failed: duration("error"),
        }
    }
}

impl std::fmt::Debug for MetricsLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsLayer")
            .field("backend", &self.backend)
            .field("pattern", &self.pattern)
            .finish_non_exhaustive()
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
        let labels = self.labels.clone();
        labels.in_flight.increment(1.0);
        let started = Instant::now();
        let call = self.inner.call(event);
        async move {
            // Decrements even if the handler panics and the future is dropped mid-way.
            let _guard = InFlightGuard(labels.in_flight.clone());
            let result = call.await;
            let duration = if result.is_ok() {
                &labels.ok
            } else {
                &labels.failed
            };
            duration.record(started.elapsed().as_secs_f64());
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

/// Counts a message a subscriber gave up on (see [`names::DROPPED`]).
pub(crate) fn dropped(pattern: &str, reason: &'static str) {
    counter!(names::DROPPED, "pattern" => pattern.to_owned(), "reason" => reason).increment(1);
}

/// Counts a dead letter (used by the dead-letter layer).
pub(crate) fn dead_lettered(backend: &'static str, topic: &str) {
    counter!(names::DEAD_LETTERED, "backend" => backend, "dead_letter_topic" => topic.to_owned())
        .increment(1);
}
