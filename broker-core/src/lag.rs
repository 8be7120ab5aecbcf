//! Consumer lag: how far a subscription is behind what was published to it.
//!
//! Ask a [`Subscription`](crate::Subscription) or a
//! [`SubscriberHandle`](crate::SubscriberHandle) with `lag().await`. What each backend
//! counts in [`Lag::total`]:
//!
//! | backend | `total` | detail |
//! |---|---|---|
//! | Kafka | per partition assigned to this consumer: the high watermark minus the group's committed offset | [`partitions`](Lag::partitions) |
//! | JetStream | the consumer's `num_pending` (not yet delivered) plus `num_ack_pending` (delivered, not yet acked); a queue group's members share one durable consumer, so each reports the group's lag | [`unacked`](Lag::unacked): `num_ack_pending` |
//! | memory | the messages waiting in this subscriber's buffer (a group member's own), not yet handed out | — |
//! | core NATS | the messages waiting in this subscription's client-side buffer (not those still in the client's socket); NATS keeps no backlog on the server | — |
//!
//! So on Kafka and JetStream a message counts until it is acked (on Kafka: until its
//! offset is committed, every `commit_interval`); in memory and on core NATS until it is
//! handed out. A backend that cannot tell answers with an error of kind
//! [`Unsupported`](crate::ErrorKind::Unsupported); after the subscription ends, `lag`
//! fails with [`Closed`](crate::ErrorKind::Closed).
//!
//! On Kafka, lag is counted in offsets, as Kafka's own tools count it: transaction
//! markers, offsets removed by compaction and messages of open transactions count too.
//! A partition with no committed offset counts from its low watermark (its first
//! retained offset), where this backend starts such a partition; a subscriber starting
//! at the latest offset commits that position as soon as it gets the partition, so it
//! counts from there. Several members of one group each report their own partitions.
//!
//! With the `metrics` feature, `observe::MetricsBroker` samples the lag of each
//! subscription into the gauge `broker_consumer_lag` (see `observe::metric_names`).

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;

use crate::{Error, ErrorKind, Result};

/// How far a subscription is behind; see the [module docs](self) for what each backend
/// counts.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Lag {
    /// The messages published to the subscription that it has not yet consumed.
    pub total: u64,
    /// Of `total`, those delivered and not yet acked, where the backend tells them apart
    /// (JetStream); `None` elsewhere.
    pub unacked: Option<u64>,
    /// The lag of each partition assigned to this subscriber (Kafka); `None` where the
    /// backend has no partitions.
    pub partitions: Option<Vec<PartitionLag>>,
}

impl Lag {
    /// A lag of `total` messages, without detail.
    pub fn new(total: u64) -> Self {
        Lag {
            total,
            ..Lag::default()
        }
    }

    /// Says how many of the messages are delivered and not yet acked.
    pub fn with_unacked(mut self, unacked: u64) -> Self {
        self.unacked = Some(unacked);
        self
    }

    /// The lag of these partitions: `total` is their sum.
    pub fn from_partitions(partitions: Vec<PartitionLag>) -> Self {
        Lag {
            total: partitions.iter().map(|p| p.lag).sum(),
            unacked: None,
            partitions: Some(partitions),
        }
    }
}

/// The lag of one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PartitionLag {
    /// The partition's topic.
    pub topic: String,
    /// The partition's number.
    pub partition: i32,
    /// The offset the next message published to the partition gets (the high watermark).
    pub end: i64,
    /// The group's committed offset: the next one it consumes. `None`: nothing committed.
    pub committed: Option<i64>,
    /// `end` minus where the group goes on from: `committed`, or without one `start`.
    pub lag: u64,
}

impl PartitionLag {
    /// Partition `partition` of `topic`, which ends at `end`, where the group committed
    /// `committed`; without a committed offset the group starts at `start`.
    pub fn new(
        topic: impl Into<String>,
        partition: i32,
        end: i64,
        committed: Option<i64>,
        start: i64,
    ) -> Self {
        let from = committed.unwrap_or(start);
        PartitionLag {
            topic: topic.into(),
            partition,
            end,
            committed,
            lag: u64::try_from(end.saturating_sub(from)).unwrap_or(0),
        }
    }
}

/// What a backend attaches to a subscription to answer `lag()` (see
/// [`Subscription::with_lag`](crate::Subscription::with_lag)). It lives as long as the
/// subscription, and the handle of a handler running it; after the subscription ends it
/// may fail with [`Error::closed`].
#[async_trait]
pub trait LagSource: Send + Sync + 'static {
    /// The subscription's lag now.
    async fn lag(&self) -> Result<Lag>;
}

/// The [`LagSource`] attached to a subscription, if any.
#[derive(Clone, Default)]
pub(crate) struct Attached(Option<Arc<dyn LagSource>>);

impl Attached {
    pub(crate) fn new(source: Arc<dyn LagSource>) -> Self {
        Attached(Some(source))
    }

    /// The lag, or why there is none.
    pub(crate) async fn lag(&self) -> Result<Lag> {
        match &self.0 {
            Some(source) => source.lag().await,
            None => Err(Error::new(
                ErrorKind::Unsupported,
                "this subscription's backend does not report consumer lag",
            )),
        }
    }

    /// Whether a source is attached.
    #[cfg(feature = "metrics")]
    pub(crate) fn is_some(&self) -> bool {
        self.0.is_some()
    }
}

impl fmt::Debug for Attached {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "LagSource"
        } else {
            "None"
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_lag_counts_from_the_commit_or_the_start() {
        assert_eq!(PartitionLag::new("t", 0, 10, Some(4), 0).lag, 6);
        assert_eq!(PartitionLag::new("t", 0, 10, None, 3).lag, 7);
        // A commit past the end the broker reported (it moved meanwhile) is no lag.
        assert_eq!(PartitionLag::new("t", 0, 10, Some(12), 0).lag, 0);
        let lag = Lag::from_partitions(vec![
            PartitionLag::new("t", 0, 10, Some(4), 0),
            PartitionLag::new("t", 1, 5, None, 0),
        ]);
        assert_eq!(lag.total, 11);
        assert_eq!(lag.unacked, None);
    }

    #[tokio::test]
    async fn a_subscription_without_a_source_is_unsupported() {
        let err = Attached::default().lag().await.expect_err("no source");
        assert_eq!(err.kind(), ErrorKind::Unsupported);
    }
}
