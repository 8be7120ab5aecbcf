//! A subscription's consumer lag: per partition assigned to this consumer, the high
//! watermark minus the group's committed offset.
//!
//! The subscription's own consumer belongs to its thread, which polls it and drops it to
//! leave the group; the lag is read instead by a second client of the same group that
//! never joins it (it does not subscribe), made at the first question and kept for the
//! next ones. It asks the group coordinator for the committed offsets and each
//! partition's leader for its watermarks; a partition with no committed offset counts
//! from its low watermark, where this backend starts such a partition (see
//! [`broker_core::lag`]).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use broker_core::backend::{LagSource, async_trait};
use broker_core::lag::{Lag, PartitionLag};
use broker_core::{Error, ErrorKind, Result};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use super::shared::{PartitionKey, SharedPartitions};
use crate::context::LogContext;
use crate::error::{config, kafka};

/// How long each request for committed offsets or watermarks may take.
const LAG_TIMEOUT: Duration = Duration::from_secs(5);

type LagClient = BaseConsumer<LogContext>;

/// The lag of one subscription.
pub(super) struct KafkaLag {
    shared: Arc<SharedPartitions>,
    /// The lag client's configuration: the broker's, with the subscription's group.
    config: ClientConfig,
    client: Mutex<Option<Arc<LagClient>>>,
    /// Cancelled when the subscription ends.
    token: CancellationToken,
}

impl KafkaLag {
    /// The lag of the partitions in `shared`, read by a client made from `config` (which
    /// names the group) once asked.
    pub(super) fn new(
        shared: Arc<SharedPartitions>,
        mut config: ClientConfig,
        token: CancellationToken,
    ) -> Self {
        // Nothing polls this client for statistics between questions.
        config.set("statistics.interval.ms", "0");
        config.set("enable.auto.commit", "false");
        KafkaLag {
            shared,
            config,
            client: Mutex::new(None),
            token,
        }
    }

    fn client(&self) -> Result<Arc<LagClient>> {
        let mut slot = self
            .client
            .lock()
            .map_err(|_| Error::new(ErrorKind::Subscribe, "the lag client is unusable"))?;
        if let Some(client) = slot.as_ref() {
            return Ok(client.clone());
        }
        let client: Arc<LagClient> = Arc::new(
            self.config
                .create_with_context(LogContext)
                .map_err(|e| config("lag client", e))?,
        );
        *slot = Some(client.clone());
        Ok(client)
    }
}

impl Drop for KafkaLag {
    fn drop(&mut self) {
        // Closing a client waits for its threads: not on a thread of the async runtime.
        let client = self.client.get_mut().ok().and_then(Option::take);
        if let (Some(client), Ok(runtime)) = (client, tokio::runtime::Handle::try_current()) {
            runtime.spawn_blocking(move || drop(client));
        }
    }
}

#[async_trait]
impl LagSource for KafkaLag {
    async fn lag(&self) -> Result<Lag> {
        if self.token.is_cancelled() {
            return Err(Error::closed("the subscription"));
        }
        let mut assigned: Vec<PartitionKey> = self
            .shared
            .with_parts(|parts| parts.keys().cloned().collect())
            .unwrap_or_default();
        assigned.sort();
        let client = self.client()?;
        tokio::task::spawn_blocking(move || measure(&client, &assigned))
            .await
            .map_err(|e| Error::with_source(ErrorKind::Subscribe, "the lag lookup failed", e))?
    }
}

/// The lag of `assigned`, asked with `client` (blocking).
fn measure(client: &LagClient, assigned: &[PartitionKey]) -> Result<Lag> {
    // Handles what librdkafka queued for the client since the last question (errors).
    let _ = client.poll(Duration::ZERO);
    if assigned.is_empty() {
        return Ok(Lag::from_partitions(Vec::new()));
    }
    let mut tpl = TopicPartitionList::new();
    for (topic, partition) in assigned {
        tpl.add_partition(topic, *partition);
    }
    let committed = client.committed_offsets(tpl, LAG_TIMEOUT).map_err(|e| {
        kafka(
            ErrorKind::Subscribe,
            "cannot read the group's committed offsets",
            e,
        )
    })?;
    let mut partitions = Vec::with_capacity(assigned.len());
    for elem in committed.elements() {
        let (topic, partition) = (elem.topic(), elem.partition());
        let (low, high) = client
            .fetch_watermarks(topic, partition, LAG_TIMEOUT)
            .map_err(|e| {
                kafka(
                    ErrorKind::Subscribe,
                    format!("cannot read the watermarks of `{topic}` partition {partition}"),
                    e,
                )
            })?;
        let committed = match elem.offset() {
            Offset::Offset(offset) => Some(offset),
            _ => None,
        };
        partitions.push(PartitionLag::new(topic, partition, high, committed, low));
    }
    Ok(Lag::from_partitions(partitions))
}
