//! Publishing: the record is handed to librdkafka when `publish` is called, and the
//! future it returns only waits for the record's delivery report.
//!
//! Handing the record over at once keeps a publisher's records in call order (several
//! publishes started before any is awaited reach the partition in the order they were
//! made), and it keeps the future small: a publish to a known topic whose record fits
//! in librdkafka's queue boxes a future of three words (the record's shared report and
//! the topic name). Only a publish that must first create its topic, or wait for room
//! in a full queue, boxes an `async` block.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use broker_core::{Error, ErrorKind, Message, Result};
use futures::future::BoxFuture;
use futures::task::AtomicWaker;
use rdkafka::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, ProducerContext, ThreadedProducer};
use tokio::time::Instant;

use crate::broker::Inner;
use crate::convert;
use crate::error::{check_topic, kafka, publish_kind};

/// The producer every publish goes through. Its own thread serves the delivery reports.
pub(crate) type Producer = ThreadedProducer<PublishContext>;

/// The producer's context: librdkafka's logs and errors go to `tracing`, and each
/// delivery report settles the [`Report`] its record carries.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct PublishContext;

impl ClientContext for PublishContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        crate::context::log(level, facility, message);
    }

    fn error(&self, err: KafkaError, reason: &str) {
        crate::context::error(err, reason);
    }

    fn stats_raw(&self, json: &[u8]) {
        crate::context::stats(json);
    }
}

impl ProducerContext for PublishContext {
    type DeliveryOpaque = Arc<Report>;

    fn delivery(&self, result: &DeliveryResult<'_>, report: Arc<Report>) {
        let outcome = match result {
            Ok(_) => Ok(()),
            Err((err, _)) => Err(err.clone()),
        };
        // A record is reported once; a second report could only repeat the first.
        let _ = report.outcome.set(outcome);
        report.waker.wake();
    }
}

/// The outcome of one record's delivery, shared by the record (as its opaque) and the
/// publish waiting for it: one allocation per record.
#[derive(Debug, Default)]
pub(crate) struct Report {
    outcome: OnceLock<std::result::Result<(), KafkaError>>,
    waker: AtomicWaker,
}

/// The first wait for room in librdkafka's queue; each next one doubles, up to
/// [`MAX_ROOM_WAIT`].
const FIRST_ROOM_WAIT: Duration = Duration::from_millis(1);
/// The longest single wait for room in librdkafka's queue.
const MAX_ROOM_WAIT: Duration = Duration::from_millis(50);

impl Inner {
    /// Checks `message`, hands its record to librdkafka, and returns the wait for its
    /// delivery report.
    pub(crate) fn publish<'a>(
        &'a self,
        topic: &'a str,
        message: Message,
    ) -> BoxFuture<'a, Result<()>> {
        let ready = match self.check(topic, &message) {
            Ok(ready) => ready,
            Err(err) => return failed_now(err),
        };
        if !ready {
            return Box::pin(async move {
                self.prepare_publish(topic).await?;
                self.send_when_room(topic, &message).await?.await
            });
        }
        match self.try_send(topic, &message) {
            Ok(delivery) => Box::pin(delivery),
            Err(Sent::QueueFull) => {
                Box::pin(async move { self.send_when_room(topic, &message).await?.await })
            }
            Err(Sent::Failed(err)) => failed_now(err),
        }
    }

    /// The checks before sending: the broker is open, the topic name is valid (checked
    /// once per topic) and the message fits. Returns whether the topic is ready, that is
    /// checked and, when creation is on, created.
    fn check(&self, topic: &str, message: &Message) -> Result<bool> {
        self.check_open()?;
        let ready = self.ready_to_publish(topic);
        if !ready {
            check_topic(topic)?;
        }
        message.check_size(self.options.max_message_bytes, "the Kafka broker")?;
        Ok(ready)
    }

    /// Hands `message`'s record to librdkafka.
    pub(crate) fn try_send<'a>(
        &self,
        topic: &'a str,
        message: &Message,
    ) -> Result<Delivered<'a>, Sent> {
        let report = Arc::new(Report::default());
        let mut record: BaseRecord<'_, [u8], [u8], Arc<Report>> =
            BaseRecord::with_opaque_to(topic, report.clone())
                .headers(convert::record_headers(message));
        if !message.is_tombstone() {
            record = record.payload(message.payload().as_ref());
        }
        if let Some(key) = message.key() {
            record = record.key(key);
        }
        match self.producer.send(record) {
            Ok(()) => Ok(Delivered { report, topic }),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                Err(Sent::QueueFull)
            }
            Err((err, _)) => Err(Sent::Failed(failed(topic, err))),
        }
    }

    /// Hands `message`'s record to librdkafka, waiting while its queue is full, for at
    /// most the publish timeout.
    pub(crate) async fn send_when_room<'a>(
        &self,
        topic: &'a str,
        message: &Message,
    ) -> Result<Delivered<'a>> {
        let timeout = self.options.publish_timeout;
        let deadline = Instant::now() + timeout;
        let mut wait = FIRST_ROOM_WAIT;
        loop {
            match self.try_send(topic, message) {
                Ok(delivery) => return Ok(delivery),
                Err(Sent::Failed(err)) => return Err(err),
                Err(Sent::QueueFull) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Err(Error::new(
                            ErrorKind::Timeout,
                            format!(
                                "publish to `{topic}`: librdkafka's send queue stayed full for {timeout:?} (queue.buffering.max.messages / queue.buffering.max.kbytes)"
                            ),
                        ));
                    }
                    self.check_open()?;
                    tokio::time::sleep_until(deadline.min(now + wait)).await;
                    wait = (wait * 2).min(MAX_ROOM_WAIT);
                }
            }
        }
    }
}

/// Why a record was not handed over.
pub(crate) enum Sent {
    /// librdkafka's queue is full: try again after a while.
    QueueFull,
    /// Anything else: final.
    Failed(Error),
}

/// A publish that failed before anything was sent.
fn failed_now(err: Error) -> BoxFuture<'static, Result<()>> {
    Box::pin(std::future::ready(Err(err)))
}

fn failed(topic: &str, err: KafkaError) -> Error {
    kafka(
        publish_kind(&err),
        format!("publish to `{topic}` failed"),
        err,
    )
}

/// A record handed to librdkafka, waiting for its delivery report.
///
/// librdkafka reports every record it accepted, delivered or failed (at the latest after
/// `message.timeout.ms`, or with a purge error when the producer is dropped), and the
/// producer outlives this future, which borrows the broker.
pub(crate) struct Delivered<'a> {
    report: Arc<Report>,
    topic: &'a str,
}

impl Delivered<'_> {
    fn outcome(&self) -> Option<Result<()>> {
        self.report.outcome.get().map(|outcome| match outcome {
            Ok(()) => Ok(()),
            Err(err) => Err(failed(self.topic, err.clone())),
        })
    }
}

impl Future for Delivered<'_> {
    type Output = Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        if let Some(outcome) = self.outcome() {
            return Poll::Ready(outcome);
        }
        self.report.waker.register(cx.waker());
        // The report may have come between the first look and the registration.
        match self.outcome() {
            Some(outcome) => Poll::Ready(outcome),
            None => Poll::Pending,
        }
    }
}
