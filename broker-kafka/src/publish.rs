//! Publishing: the record is handed to librdkafka when `publish` is called, and the
//! future it returns only waits for the record's delivery report (rdkafka's
//! [`DeliveryFuture`]).
//!
//! Handing the record over at once keeps a publisher's records in call order (several
//! publishes started before any is awaited reach the partition in the order they were
//! made). Only a publish that must first create its topic, or wait for room in a full
//! queue, waits before its record is handed over.

use std::time::Duration;

use broker_core::{Error, ErrorKind, Message, Result};
use futures::future::BoxFuture;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use tokio::time::Instant;

use crate::broker::Inner;
use crate::context::LogContext;
use crate::convert;
use crate::error::{check_topic, kafka, publish_kind};

/// The producer every publish goes through: its own thread serves the delivery reports,
/// and its logs, errors and statistics go through [`LogContext`].
pub(crate) type Producer = FutureProducer<LogContext>;

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
                delivered(topic, self.send_when_room(topic, &message).await?).await
            });
        }
        match self.try_send(topic, &message) {
            Ok(delivery) => Box::pin(delivered(topic, delivery)),
            Err(Sent::QueueFull) => Box::pin(async move {
                delivered(topic, self.send_when_room(topic, &message).await?).await
            }),
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
    pub(crate) fn try_send(&self, topic: &str, message: &Message) -> Result<DeliveryFuture, Sent> {
        let mut record: FutureRecord<'_, [u8], [u8]> =
            FutureRecord::to(topic).headers(convert::record_headers(message));
        if !message.is_tombstone() {
            record = record.payload(message.payload().as_ref());
        }
        if let Some(key) = message.key() {
            record = record.key(key);
        }
        match self.producer.send_result(record) {
            Ok(delivery) => Ok(delivery),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                Err(Sent::QueueFull)
            }
            Err((err, _)) => Err(Sent::Failed(failed(topic, err))),
        }
    }

    /// Hands `message`'s record to librdkafka, waiting while its queue is full, for at
    /// most the publish timeout.
    pub(crate) async fn send_when_room(
        &self,
        topic: &str,
        message: &Message,
    ) -> Result<DeliveryFuture> {
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

/// Waits for the delivery report of a record handed to librdkafka.
///
/// librdkafka reports every record it accepted, delivered or failed (at the latest after
/// `message.timeout.ms`, or with a purge error when the producer is closed).
pub(crate) async fn delivered(topic: &str, delivery: DeliveryFuture) -> Result<()> {
    match delivery.await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((err, _))) => Err(failed(topic, err)),
        Err(_) => Err(Error::new(
            ErrorKind::Closed,
            format!("publish to `{topic}`: the producer went away before reporting the record"),
        )),
    }
}
