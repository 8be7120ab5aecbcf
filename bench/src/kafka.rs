//! Kafka against rdkafka.
//!
//! Both sides use the same producer settings ([`PRODUCER`]: idempotence, `acks=all`,
//! `linger.ms`, queue size), set explicitly on the raw producer and passed through the
//! `kafka://` URL to the framework. The raw producer is a `ThreadedProducer` (the upper
//! bound: no future per message); a batch ends when every one of its delivery reports
//! is in, each counted (not with `flush`, which with a `ThreadedProducer` takes 100 ms:
//! it polls for reports that the producer's own thread takes first). The framework
//! keeps [`KAFKA_WINDOW`] publishes in flight. Topics are created up front with
//! [`PARTITIONS`] partitions, read from the earliest offset by `StreamConsumer`s (raw)
//! and framework subscriptions, each plain subscriber in its own consumer group, a queue
//! group as one consumer group. Both sides wait [`SETTLE`] after subscribing, so that a
//! run measures delivery rather than the consumers' start.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use broker::Broker;
use broker::kafka::{KafkaBroker, KafkaOptions};
use broker::options::StartPosition;
use rdkafka::ClientContext;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Message as _, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use tokio::sync::Notify;

use crate::framework::{Framework, connect_error};
use crate::handlers;
use crate::scenario::{self, Plan, Prepare, Row, Sample, Scenario, Topics};
use crate::side::{MsgSpec, RAW_ID_HEADER, Side, Sub, Subscribers};

/// Partitions of every benchmark topic (at least the queue group's 4 members).
pub(crate) const PARTITIONS: i32 = 4;
/// Framework publishes in flight.
pub(crate) const KAFKA_WINDOW: usize = 4096;
/// How long both sides wait after subscribing before a run starts: longer than
/// librdkafka's `fetch.wait.max.ms` (500 ms). librdkafka sends a consumer's first fetch
/// as soon as one partition is ready to be fetched and keeps one fetch in flight per
/// broker; partitions that become ready a moment later (a race between librdkafka's own
/// threads, on either side) wait for that fetch, which the broker holds for
/// `fetch.wait.max.ms` unless something arrives in the partitions it covers. With a few
/// hundred messages per subscriber, that one wait would be most of a run; after it,
/// every fetch covers every partition.
pub(crate) const SETTLE: Duration = Duration::from_millis(600);
/// How long the raw side waits for a batch's delivery reports.
const REPORTS_TIMEOUT: Duration = Duration::from_secs(60);
/// The producer settings both sides use.
pub(crate) const PRODUCER: &[(&str, &str)] = &[
    ("enable.idempotence", "true"),
    ("acks", "all"),
    ("linger.ms", "5"),
    ("queue.buffering.max.messages", "100000"),
    ("message.timeout.ms", "30000"),
];

/// The Kafka brokers to use: `KAFKA_BROKERS`, or the local default.
pub(crate) fn brokers() -> String {
    std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".to_owned())
}

/// The framework's Kafka broker, with [`PRODUCER`]'s settings and topics of
/// [`PARTITIONS`] partitions; fails with how to start Kafka when it is not reachable.
pub(crate) async fn connect_framework(brokers: &str) -> anyhow::Result<KafkaBroker> {
    let hint = || {
        format!(
            "Kafka is not reachable at {brokers}: start it with `scripts/kafka.sh start` (and export the KAFKA_BROKERS it prints)"
        )
    };
    let url = format!("kafka://{brokers}?client_id=broker-bench&partitions={PARTITIONS}");
    let mut options = KafkaOptions::from_url_str(&url)?;
    for (k, v) in PRODUCER {
        options = options.set(*k, *v);
    }
    KafkaBroker::connect(options)
        .await
        .map_err(|err| connect_error(err, hint))
}

/// Measures Kafka.
pub(crate) async fn run(plan: &Plan, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let brokers = brokers();
    let query: Vec<String> = PRODUCER.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let kafka = connect_framework(&brokers).await?;
    let framework_topics = kafka.clone();
    let broker: Arc<dyn Broker> = Arc::new(kafka);
    let fw = Framework::new(broker.clone())
        .window(KAFKA_WINDOW)
        .start(StartPosition::Earliest)
        .settle(SETTLE);

    let mut producer_config = ClientConfig::new();
    producer_config
        .set("bootstrap.servers", &brokers)
        .set("client.id", "broker-bench-raw");
    for (k, v) in PRODUCER {
        producer_config.set(*k, *v);
    }
    let producer: ThreadedProducer<Counting> = producer_config
        .create_with_context(Counting::default())
        .context("creating the raw producer")?;
    let raw = RawKafka {
        brokers: brokers.clone(),
        producer,
    };
    let baseline = format!(
        "rdkafka ThreadedProducer (a batch ends when all its delivery reports are in) and StreamConsumer; framework with {KAFKA_WINDOW} publishes in flight; both {}; topics of {PARTITIONS} partitions; runs start {} ms after subscribing",
        query.join(", "),
        SETTLE.as_millis()
    );
    let result = scenario::compare(
        "kafka",
        &baseline,
        &raw,
        &fw,
        &CreateTopics::new(&brokers, framework_topics)?,
        &Topics::new("bench"),
        plan,
        rows,
    )
    .await;
    let result = match result {
        Ok(()) if plan.scenarios.contains(&Scenario::KeyedHandlers) => {
            keyed_handlers(&broker, &brokers, plan, rows).await
        }
        other => other,
    };
    broker.close().await?;
    result
}

/// The keyed-handlers row: [`handlers::measure`] on fresh one-partition topics, the
/// median of `plan.reps` runs (messages: a tenth of the plan's, at least 200).
async fn keyed_handlers(
    broker: &Arc<dyn Broker>,
    brokers: &str,
    plan: &Plan,
    rows: &mut Vec<Row>,
) -> anyhow::Result<()> {
    let keyed = handlers::Keyed {
        messages: (plan.messages / 10).max(200),
        keys: 64,
        concurrency: 8,
        work: Duration::from_millis(10),
    };
    let framework = connect_framework(brokers).await?;
    let create = CreateTopics::new(brokers, framework.clone())?.partitions(1);
    let topics = Topics::new("bench.keyed");
    let (mut busy, mut rates) = (Vec::new(), Vec::new());
    for _ in 0..plan.reps {
        busy.push(keyed.busy_tasks().await?);
        let topic = topics.next();
        create.prepare(std::slice::from_ref(&topic)).await?;
        rates.push(handlers::measure(broker, &topic, keyed, plan.stall).await?);
    }
    framework.close().await?;
    let median = |mut values: Vec<f64>| {
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    let row = Row {
        backend: "kafka, keyed handlers".to_owned(),
        baseline: format!(
            "{} tokio tasks sleeping {} ms back to back (the ideal on paper: {:.0}/s); the framework: `concurrency({})`, a handler sleeping {} ms, {} messages over {} keys in one partition, published before the group joins, timed from the first handler's start to the last one's end, each key's order checked",
            keyed.concurrency,
            keyed.work.as_millis(),
            keyed.ideal(),
            keyed.concurrency,
            keyed.work.as_millis(),
            keyed.messages,
            keyed.keys
        ),
        scenario: Scenario::KeyedHandlers,
        size: 128,
        headers: false,
        raw: Sample::Rate(median(busy)),
        fw: Sample::Rate(median(rates)),
    };
    eprintln!("{}", crate::report::progress_line(&row));
    rows.push(row);
    Ok(())
}

/// Creates the topics of a scenario in one admin request, and tells the framework's
/// broker about them, as the raw side knows them: a service publishes to a topic many
/// times, and the first publish's check and creation request (each run here uses a new
/// topic) is start-up, not throughput.
pub(crate) struct CreateTopics {
    admin: AdminClient<DefaultClientContext>,
    framework: KafkaBroker,
    partitions: i32,
}

impl CreateTopics {
    /// Creates topics on `brokers` and tells `framework` about them.
    pub(crate) fn new(brokers: &str, framework: KafkaBroker) -> anyhow::Result<Self> {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .create()
            .context("creating the admin client")?;
        Ok(CreateTopics {
            admin,
            framework,
            partitions: PARTITIONS,
        })
    }

    /// Creates topics of `partitions` partitions instead.
    pub(crate) fn partitions(mut self, partitions: i32) -> Self {
        self.partitions = partitions;
        self
    }
}

impl Prepare for CreateTopics {
    async fn prepare(&self, topics: &[String]) -> anyhow::Result<()> {
        let new: Vec<NewTopic<'_>> = topics
            .iter()
            .map(|t| NewTopic::new(t, self.partitions, TopicReplication::Fixed(1)))
            .collect();
        let results = self
            .admin
            .create_topics(
                &new,
                &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
            )
            .await
            .context("creating the benchmark topics")?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => bail!("creating topic `{topic}`: {code}"),
            }
        }
        for topic in topics {
            self.framework
                .create_topic(topic)
                .await
                .with_context(|| format!("the framework's broker finding topic `{topic}`"))?;
        }
        Ok(())
    }
}

/// Counts delivery reports.
#[derive(Default)]
struct Counting {
    delivered: AtomicU64,
    failed: AtomicU64,
    last_error: std::sync::Mutex<Option<String>>,
    /// Signalled on every report.
    reported: Notify,
}

impl Counting {
    /// Reports so far: (delivered, failed).
    fn counts(&self) -> (u64, u64) {
        (
            self.delivered.load(Ordering::Acquire),
            self.failed.load(Ordering::Acquire),
        )
    }
}

impl ClientContext for Counting {}

impl ProducerContext for Counting {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _opaque: ()) {
        match result {
            Ok(_) => {
                self.delivered.fetch_add(1, Ordering::AcqRel);
            }
            Err((err, _)) => {
                self.failed.fetch_add(1, Ordering::AcqRel);
                if let Ok(mut last) = self.last_error.lock() {
                    *last = Some(err.to_string());
                }
            }
        }
        self.reported.notify_one();
    }
}

/// rdkafka, used directly.
pub(crate) struct RawKafka {
    brokers: String,
    producer: ThreadedProducer<Counting>,
}

fn owned_headers(spec: &MsgSpec) -> Option<OwnedHeaders> {
    spec.has_headers()
        .then(|| with_spec_headers(OwnedHeaders::new(), spec))
}

/// `headers` followed by the benchmark headers of `spec`, in order.
fn with_spec_headers(headers: OwnedHeaders, spec: &MsgSpec) -> OwnedHeaders {
    spec.headers.iter().fold(headers, |h, (k, v)| {
        h.insert(Header {
            key: k,
            value: Some(v.as_bytes()),
        })
    })
}

impl RawKafka {
    /// A raw consumer of `topic` in the consumer group `group_id`, reading from the
    /// earliest offset.
    fn consumer(&self, topic: &str, group_id: &str) -> anyhow::Result<StreamConsumer> {
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .set("client.id", "broker-bench-raw")
            .set("group.id", group_id)
            .set("auto.offset.reset", "earliest")
            .create()
            .context("creating a raw consumer")?;
        consumer
            .subscribe(&[topic])
            .context("raw consumer subscribe")?;
        Ok(consumer)
    }

    /// Enqueues one record, waiting while librdkafka's queue is full.
    async fn send(
        &self,
        topic: &str,
        spec: &MsgSpec,
        headers: &Option<OwnedHeaders>,
    ) -> anyhow::Result<()> {
        let mut record: BaseRecord<'_, (), [u8]> =
            BaseRecord::to(topic).payload(spec.payload.as_ref());
        if let Some(id) = spec.raw_id() {
            // The id first, then the benchmark headers, as the framework writes them.
            let with_id = OwnedHeaders::new_with_capacity(spec.headers.len() + 1).insert(Header {
                key: RAW_ID_HEADER,
                value: Some(id.as_str().as_bytes()),
            });
            record = record.headers(with_spec_headers(with_id, spec));
        } else if let Some(h) = headers {
            record = record.headers(h.clone());
        }
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    tokio::time::sleep(Duration::from_micros(200)).await;
                }
                Err((err, _)) => return Err(anyhow!("raw produce to `{topic}`: {err}")),
            }
        }
    }
}

impl Side for RawKafka {
    type Sub = RawKafkaSub;

    async fn publish_many(&self, topic: &str, n: u64, spec: &MsgSpec) -> anyhow::Result<()> {
        let context = self.producer.context();
        let (delivered, failed) = context.counts();
        let headers = owned_headers(spec);
        for _ in 0..n {
            self.send(topic, spec, &headers).await?;
        }
        // Every record sent gets exactly one report, delivered or failed.
        let deadline = tokio::time::Instant::now() + REPORTS_TIMEOUT;
        loop {
            let (now_delivered, now_failed) = context.counts();
            if (now_delivered - delivered) + (now_failed - failed) >= n {
                break;
            }
            if tokio::time::timeout_at(deadline, context.reported.notified())
                .await
                .is_err()
            {
                bail!(
                    "only {} of {n} raw delivery reports within {REPORTS_TIMEOUT:?}",
                    (now_delivered - delivered) + (now_failed - failed)
                );
            }
        }
        let now_failed = context.failed.load(Ordering::Acquire) - failed;
        if now_failed > 0 {
            let last = context.last_error.lock().ok().and_then(|l| l.clone());
            bail!("{now_failed} raw deliveries failed; last error: {last:?}");
        }
        let got = context.delivered.load(Ordering::Acquire) - delivered;
        if got < n {
            bail!("only {got} of {n} raw deliveries were reported");
        }
        Ok(())
    }

    async fn publish_one(&self, topic: &str, spec: &MsgSpec) -> anyhow::Result<()> {
        self.send(topic, spec, &owned_headers(spec)).await
    }

    async fn subscribe(&self, topic: &str, who: Subscribers<'_>) -> anyhow::Result<Vec<Self::Sub>> {
        let Subscribers { group, members } = who;
        let consumers = (0..members)
            .map(|i| match group {
                Some(group) => self.consumer(topic, group),
                None => self.consumer(topic, &format!("raw-{topic}-{i}")),
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        // Live when this returns, as the framework's: poll until the group(s) have
        // handed out every partition. The topic is new, so nothing can arrive yet.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            for consumer in &consumers {
                match tokio::time::timeout(Duration::from_millis(20), consumer.recv()).await {
                    Err(_) => {}
                    Ok(Ok(_)) => bail!("a message arrived on `{topic}` before anything was sent"),
                    Ok(Err(err)) => bail!("raw consumer while joining: {err}"),
                }
            }
            let counts: Vec<usize> = consumers
                .iter()
                .map(|c| c.assignment().map(|a| a.count()).unwrap_or(0))
                .collect();
            let partitions = PARTITIONS as usize;
            let ready = if group.is_some() {
                counts.iter().sum::<usize>() >= partitions
                    && counts.iter().all(|&c| c > 0 || members > partitions)
            } else {
                counts.iter().all(|&c| c >= partitions)
            };
            if ready {
                break;
            }
            if Instant::now() > deadline {
                bail!("raw consumers of `{topic}` got no partitions within 30 s: {counts:?}");
            }
        }
        tokio::time::sleep(SETTLE).await;
        Ok(consumers.into_iter().map(RawKafkaSub).collect())
    }
}

/// A raw consumer.
pub(crate) struct RawKafkaSub(StreamConsumer);

impl Sub for RawKafkaSub {
    async fn recv(&mut self) -> anyhow::Result<Option<usize>> {
        let message = self.0.recv().await.context("raw consumer")?;
        Ok(Some(message.payload().map_or(0, <[u8]>::len)))
    }
}
