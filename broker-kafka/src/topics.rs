//! Topics: what the broker knows of each topic, creating them on demand through the
//! admin API, and listing the cluster's topics.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use broker_core::{Error, ErrorKind, Result};
use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::Producer as _;
use tokio::sync::OnceCell;

use crate::broker::Inner;
use crate::error::kafka;
use crate::options::FRAMING_ALLOWANCE;

/// What a broker knows of the topics it met, by name (see [`Inner::known_topics`]).
pub(crate) type KnownTopics = RwLock<HashMap<Box<str>, Arc<KnownTopic>>>;

/// What this broker knows of one topic.
#[derive(Default)]
pub(crate) struct KnownTopic {
    /// Set once the topic exists: created at most once at a time (concurrent first
    /// publishes to a new topic share one creation).
    created: OnceCell<()>,
    /// Whether the name passed [`check_topic`](crate::error::check_topic).
    checked: AtomicBool,
}

impl Inner {
    /// The names of the topics in the cluster.
    pub(crate) async fn topic_names(&self) -> Result<Vec<String>> {
        let producer = self.producer.clone();
        let timeout = self.options.subscribe_timeout.min(Duration::from_secs(10));
        tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(None, timeout)
                .map(|metadata| {
                    metadata
                        .topics()
                        .iter()
                        .map(|t| t.name().to_owned())
                        .collect()
                })
        })
        .await
        .map_err(|e| Error::with_source(ErrorKind::Subscribe, "metadata request panicked", e))?
        .map_err(|e| kafka(ErrorKind::Connect, "cannot list the cluster's topics", e))
    }

    /// Creates `topic` if topic creation is on and it is not known yet.
    pub(crate) async fn ensure_topic(&self, topic: &str) -> Result<()> {
        if !self.options.create_topics {
            return Ok(());
        }
        self.create_topic(topic).await
    }

    pub(crate) async fn create_topic(&self, topic: &str) -> Result<()> {
        self.known(topic)
            .created
            .get_or_try_init(|| self.create_topic_once(topic))
            .await
            .map(|_| ())
    }

    /// The entry of `topic`, added if missing.
    fn known(&self, topic: &str) -> Arc<KnownTopic> {
        if let Ok(known) = self.known_topics.read()
            && let Some(entry) = known.get(topic)
        {
            return entry.clone();
        }
        match self.known_topics.write() {
            Ok(mut known) => known.entry(topic.into()).or_default().clone(),
            Err(_) => Arc::default(),
        }
    }

    /// Whether a publish to `topic` may skip the name check and the creation: both were
    /// done before.
    pub(crate) fn ready_to_publish(&self, topic: &str) -> bool {
        let Ok(known) = self.known_topics.read() else {
            return false;
        };
        known.get(topic).is_some_and(|entry| {
            entry.checked.load(Ordering::Acquire)
                && (!self.options.create_topics || entry.created.initialized())
        })
    }

    /// Records that `topic` passed [`check_topic`](crate::error::check_topic).
    pub(crate) fn mark_checked(&self, topic: &str) {
        self.known(topic).checked.store(true, Ordering::Release);
    }

    /// Records that `topic` passed [`check_topic`](crate::error::check_topic), and creates
    /// it when creation is on.
    pub(crate) async fn prepare_publish(&self, topic: &str) -> Result<()> {
        self.mark_checked(topic);
        self.ensure_topic(topic).await
    }

    async fn create_topic_once(&self, topic: &str) -> Result<()> {
        let max = (self.options.max_message_bytes + FRAMING_ALLOWANCE).to_string();
        let min_insync = self.options.min_insync_replicas.map(|n| n.to_string());
        let mut new_topic = NewTopic::new(
            topic,
            self.options.partitions,
            TopicReplication::Fixed(self.options.replication),
        )
        .set("max.message.bytes", &max);
        if let Some(min_insync) = &min_insync {
            new_topic = new_topic.set("min.insync.replicas", min_insync);
        }
        let admin_options = AdminOptions::new()
            .operation_timeout(Some(Duration::from_secs(10)))
            .request_timeout(Some(Duration::from_secs(10)));
        let results = self
            .admin
            .create_topics([&new_topic], &admin_options)
            .await
            .map_err(|e| {
                kafka(
                    ErrorKind::Connect,
                    format!("cannot create topic `{topic}`"),
                    e,
                )
            })?;
        let mut created = false;
        let mut exists = false;
        for result in results {
            match result {
                Ok(_) => created = true,
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => exists = true,
                Err((
                    _,
                    code @ (RDKafkaErrorCode::TopicAuthorizationFailed
                    | RDKafkaErrorCode::ClusterAuthorizationFailed),
                )) => {
                    tracing::warn!(topic, error = %code, "not allowed to create the topic; assuming it exists");
                }
                Err((_, code)) => {
                    return Err(Error::with_source(
                        if code == RDKafkaErrorCode::InvalidTopic {
                            ErrorKind::InvalidSubject
                        } else {
                            ErrorKind::Publish
                        },
                        format!("cannot create topic `{topic}`"),
                        rdkafka::error::KafkaError::AdminOp(code),
                    ));
                }
            }
        }
        if created {
            tracing::debug!(topic, partitions = self.options.partitions, "created topic");
        }
        if created || exists {
            // It may have been created a moment ago, by us or by another client.
            self.wait_for_leaders(topic).await;
        }
        Ok(())
    }

    /// Waits (bounded) until the metadata shows every partition of a new topic with a
    /// leader, so that a consumer subscribing right after sees the topic.
    async fn wait_for_leaders(&self, topic: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let producer = self.producer.clone();
            let name = topic.to_owned();
            let metadata = tokio::task::spawn_blocking(move || {
                producer
                    .client()
                    .fetch_metadata(Some(&name), Duration::from_secs(2))
            })
            .await;
            let ready = metadata
                .ok()
                .and_then(|m| m.ok())
                .map(|metadata| {
                    metadata.topics().iter().any(|t| {
                        t.name() == topic
                            && t.error().is_none()
                            && !t.partitions().is_empty()
                            && t.partitions().iter().all(|p| p.leader() >= 0)
                    })
                })
                .unwrap_or(false);
            if ready || Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
