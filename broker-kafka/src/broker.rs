//! The Kafka broker: the producer, the admin client, the connection check, closing
//! (topic creation is in [`topics`](crate::topics)).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use broker_core::backend::{Capabilities, DeliveryGuarantee, OrderingGuarantee, async_trait};
use broker_core::batch::{self, BatchError};
use broker_core::health::Health;
use broker_core::{Broker, Error, ErrorKind, Message, Result, SubscribeOptions, Subscription};
use futures::future::BoxFuture;
use rdkafka::admin::AdminClient;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, DeliveryResult, Producer as _, ProducerContext};
use rdkafka::util::Timeout;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::context::LogContext;
use crate::error::{check_topic, config, kafka, publish_kind};
use crate::options::{FRAMING_ALLOWANCE, KafkaOptions};
use crate::publish::Producer;
use crate::subscriber;
use crate::topics::KnownTopics;

/// A Kafka broker: an idempotent producer shared by every publish, an admin client that
/// creates topics on demand, and one consumer per subscription. Cloning gives another
/// handle to the same broker.
///
/// See the [crate documentation](crate) for the guarantees.
///
/// ```no_run
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> broker_core::Result<()> {
/// use broker_core::{Broker, Message, SubscribeOptions};
/// use broker_kafka::{KafkaBroker, KafkaOptions};
/// use futures::StreamExt;
///
/// let broker = KafkaBroker::connect(KafkaOptions::new().brokers(["127.0.0.1:9092"])).await?;
/// let mut sub = broker.subscribe("orders.*", SubscribeOptions::new().queue("billing")).await?;
/// broker.publish("orders.created", Message::new("{}").with_key("order-1")).await?;
/// let delivery = sub.next().await.expect("a delivery")?;
/// delivery.ack().await?;
/// broker.close().await
/// # }
/// ```
#[derive(Clone)]
pub struct KafkaBroker {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) options: KafkaOptions,
    pub(crate) producer: Producer,
    pub(crate) admin: Arc<AdminClient<LogContext>>,
    /// Topics this broker created, found to exist or published to. A publish to a topic
    /// found here with its name checked (and created, when creation is on) costs one
    /// lookup under a read lock instead of the checks, a mutex, an allocation and an await.
    pub(crate) known_topics: KnownTopics,
    closed: AtomicBool,
    pub(crate) shutdown: CancellationToken,
    /// How many consumer threads are running.
    pub(crate) consumers: Arc<watch::Sender<usize>>,
}

impl KafkaBroker {
    /// Connects with `options`: builds the producer and the admin client and checks, by
    /// asking for the cluster's metadata, that a broker answers.
    pub async fn connect(options: KafkaOptions) -> Result<Self> {
        // A consumer's group settings that cannot work fail here, not at `subscribe`.
        options.group_settings()?;
        let max = options.max_message_bytes + FRAMING_ALLOWANCE;
        let producer: Producer = options
            .client_config(&[
                ("enable.idempotence", "true".to_owned()),
                ("acks", "all".to_owned()),
                // Each publish waits for its own delivery report, so a sequential
                // publisher pays the linger on every message (librdkafka's default is
                // 5 ms); concurrent publishes still share batches.
                ("linger.ms", "1".to_owned()),
                (
                    "message.timeout.ms",
                    options.publish_timeout.as_millis().to_string(),
                ),
                ("message.max.bytes", max.to_string()),
            ])
            .create_with_context(LogContext)
            .map_err(|e| config("producer", e))?;
        let admin: AdminClient<LogContext> = options
            .client_config(&[])
            .create_with_context(LogContext)
            .map_err(|e| config("admin client", e))?;
        let broker = KafkaBroker {
            inner: Arc::new(Inner {
                options,
                producer,
                admin: Arc::new(admin),
                known_topics: KnownTopics::default(),
                closed: AtomicBool::new(false),
                shutdown: CancellationToken::new(),
                consumers: Arc::new(watch::channel(0).0),
            }),
        };
        broker.inner.check_reachable().await?;
        Ok(broker)
    }

    /// Connects to the broker a `kafka://` URL names (see [`KafkaOptions::from_url_str`]).
    pub async fn connect_url(url: &str) -> Result<Self> {
        KafkaBroker::connect(KafkaOptions::from_url_str(url)?).await
    }

    /// The options in force.
    pub fn options(&self) -> &KafkaOptions {
        &self.inner.options
    }

    /// Whether [`close`](Broker::close) was called.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::Acquire)
    }

    /// Creates `topic` with the configured partitions and replication, unless this broker
    /// already knows it exists. Publishing and subscribing do this on their own when
    /// [`KafkaOptions::create_topics`] is on; this is for creating topics up front.
    ///
    /// Afterwards every publish to `topic` hands its record to librdkafka when called
    /// (see the [crate documentation](crate)), the first one included.
    pub async fn create_topic(&self, topic: &str) -> Result<()> {
        self.inner.check_open()?;
        check_topic(topic)?;
        self.inner.mark_checked(topic);
        self.inner.create_topic(topic).await
    }
}

impl std::fmt::Debug for KafkaBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaBroker")
            .field("options", &self.inner.options)
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

/// Whether a client error means the broker refused the credentials.
fn is_auth(code: Option<RDKafkaErrorCode>) -> bool {
    matches!(
        code,
        Some(RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SaslAuthenticationFailed)
    )
}

/// The context of the connection check's client: logs as [`LogContext`] does, and keeps
/// the last client error (its code and librdkafka's reason, which holds no secret).
#[derive(Default)]
struct ProbeContext {
    last: Mutex<Option<(Option<RDKafkaErrorCode>, String)>>,
}

impl ProbeContext {
    fn last(&self) -> Option<(Option<RDKafkaErrorCode>, String)> {
        self.last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Keeps `reason`, unless it only says that every broker is down and a cause is known.
    fn record(&self, code: Option<RDKafkaErrorCode>, reason: &str) {
        let mut last = self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if code != Some(RDKafkaErrorCode::AllBrokersDown) || last.is_none() {
            *last = Some((code, reason.to_owned()));
        }
    }
}

impl ClientContext for ProbeContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        // With `debug` set, librdkafka reports a failed connection as a log line instead
        // of an error.
        if facility == "FAIL" {
            let code = message
                .contains("SASL authentication error")
                .then_some(RDKafkaErrorCode::Authentication);
            self.record(code, message);
        }
        crate::context::log(level, facility, message);
    }

    fn error(&self, err: KafkaError, reason: &str) {
        self.record(err.rdkafka_error_code(), reason);
        crate::context::error(err, reason);
    }

    fn stats_raw(&self, json: &[u8]) {
        crate::context::stats(json);
    }
}

impl ProducerContext for ProbeContext {
    type DeliveryOpaque = ();

    fn delivery(&self, _: &DeliveryResult<'_>, _: Self::DeliveryOpaque) {}
}

impl Inner {
    pub(crate) fn check_open(&self) -> Result<()> {
        broker_core::backend::check_open(&self.closed, "the Kafka broker")
    }

    /// Asks for the cluster's metadata with a client of its own, whose context keeps the
    /// last error librdkafka reports: a refused login fails at once with `Auth`, and any
    /// other failure (a TLS handshake, an unreachable host) says why after the timeout.
    async fn check_reachable(&self) -> Result<()> {
        let timeout = self.options.subscribe_timeout.min(Duration::from_secs(10));
        let probe: BaseProducer<ProbeContext> = self
            .options
            .client_config(&[])
            .create_with_context(ProbeContext::default())
            .map_err(|e| config("connection check", e))?;
        let (result, last) = tokio::task::spawn_blocking(move || {
            let deadline = Instant::now() + timeout;
            loop {
                let slice = deadline
                    .saturating_duration_since(Instant::now())
                    .min(Duration::from_millis(250));
                let result = probe.client().fetch_metadata(None, slice).map(|_| ());
                // Serves the error callbacks.
                probe.poll(Duration::ZERO);
                let last = probe.context().last();
                let refused = last.as_ref().is_some_and(|(code, _)| is_auth(*code));
                if result.is_ok() || refused || Instant::now() >= deadline {
                    return (result, last);
                }
            }
        })
        .await
        .map_err(|e| Error::with_source(ErrorKind::Connect, "metadata request panicked", e))?;
        let Err(err) = result else {
            return Ok(());
        };
        let brokers = self.options.brokers.join(",");
        let (kind, what) = match last {
            Some((code, reason)) if is_auth(code) => (
                ErrorKind::Auth,
                format!("Kafka at {brokers} refused the credentials: {reason}"),
            ),
            Some((_, reason)) => (
                ErrorKind::Connect,
                format!("no Kafka broker answered at {brokers} within {timeout:?} ({reason})"),
            ),
            None => (
                match publish_kind(&err) {
                    ErrorKind::Auth => ErrorKind::Auth,
                    _ => ErrorKind::Connect,
                },
                format!("no Kafka broker answered at {brokers} within {timeout:?}"),
            ),
        };
        Err(kafka(kind, what, err))
    }
}

#[async_trait]
impl Broker for KafkaBroker {
    /// Hands the record to librdkafka when called; the future waits for its delivery
    /// report (see the [crate documentation](crate)).
    //
    // Written as `#[async_trait]` expands the trait's `async fn publish` (an impl must
    // repeat those three lifetimes, or it is error E0195), not as an `async fn`. An
    // `async fn` would hand the record over only when its future is first polled: the
    // records of publishes awaited out of order would leave out of order
    // (`kafka::publish_hands_the_record_over_when_called` fails, the records arriving in
    // reverse), and the box would hold a larger future (measured with callgrind in
    // "Kafka publish, second pass", in the git history of BENCHMARKS.md).
    fn publish<'a, 'b, 'c>(&'a self, topic: &'b str, message: Message) -> BoxFuture<'c, Result<()>>
    where
        'a: 'c,
        'b: 'c,
        Self: 'c,
    {
        self.inner.publish(topic, message)
    }

    /// Hands every record to librdkafka, then awaits their delivery reports together
    /// (see the [crate documentation](crate)).
    async fn publish_batch(&self, topic: &str, messages: Vec<Message>) -> Result<(), BatchError> {
        batch::publish_with(messages, |messages| {
            self.inner.publish_batch(topic, messages)
        })
        .await
    }

    async fn subscribe(&self, pattern: &str, options: SubscribeOptions) -> Result<Subscription> {
        self.inner.check_open()?;
        subscriber::subscribe(self.inner.clone(), pattern, options).await
    }

    async fn close(&self) -> Result<()> {
        let inner = &self.inner;
        if inner.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        inner.shutdown.cancel();
        let flush = {
            let inner = inner.clone();
            tokio::task::spawn_blocking(move || {
                inner
                    .producer
                    .flush(Timeout::After(inner.options.publish_timeout))
            })
        };
        let mut consumers = inner.consumers.subscribe();
        let consumers_done = tokio::time::timeout(Duration::from_secs(30), async move {
            consumers
                .wait_for(|running| *running == 0)
                .await
                .map(|_| ())
        });
        let (flushed, _) = tokio::join!(flush, consumers_done);
        match flushed {
            Ok(Ok(())) => Ok(()),
            Ok(Err(err)) => Err(kafka(
                ErrorKind::Timeout,
                "messages still unacknowledged when closing the Kafka broker",
                err,
            )),
            Err(join) => Err(Error::with_source(
                ErrorKind::Publish,
                "flushing the producer panicked",
                join,
            )),
        }
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::new(crate::SCHEME)
            .delivery(DeliveryGuarantee::AtLeastOnce)
            .ordering(OrderingGuarantee::PerKey)
            .persistence(true)
            .redelivery(true)
            .queue_groups(true)
            .max_message_bytes(Some(self.inner.options.max_message_bytes))
            .disposable_topics(false)
    }

    /// Disconnected while a Kafka broker this process's clients use is unreachable (an
    /// outage of [`outages`](crate::outages), which all the process's Kafka clients
    /// share), with the last transport error librdkafka reported.
    fn health(&self) -> Health {
        if self.inner.closed.load(Ordering::Acquire) {
            return Health::disconnected("the Kafka broker is closed");
        }
        crate::outages().health()
    }
}
