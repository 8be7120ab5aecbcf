//! One side of a comparison: the raw client of a backend, or the framework's backend.
//!
//! Scenarios are written once, generically over [`Side`], so the raw client and the
//! framework run exactly the same driver code; only the calls into the transport differ.

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;

/// The message a scenario sends: a payload of the chosen size and, optionally, the same
/// three headers on both sides.
#[derive(Debug, Clone)]
pub(crate) struct MsgSpec {
    /// The payload, shared by every message of a run.
    pub(crate) payload: Bytes,
    /// The headers, in order; empty for runs without headers.
    pub(crate) headers: Arc<Vec<(String, String)>>,
    /// Whether the raw NATS and Kafka sides add an id header per message
    /// ([`RAW_ID_HEADER`]), as the framework does.
    pub(crate) raw_ids: bool,
}

/// The id header the raw sides send with `--raw-ids`: the framework's name on NATS and
/// Kafka.
#[cfg_attr(not(any(feature = "nats", feature = "kafka")), allow(dead_code))]
pub(crate) const RAW_ID_HEADER: &str = "x-message-id";

impl MsgSpec {
    /// A payload of `size` bytes, with the three benchmark headers when `headers` is set.
    pub(crate) fn new(size: usize, headers: bool) -> Self {
        let payload = Bytes::from(
            (0..size)
                .map(|i| b'a' + (i % 26) as u8)
                .collect::<Vec<u8>>(),
        );
        let headers = if headers {
            vec![
                ("tenant".to_owned(), "acme-corporation".to_owned()),
                (
                    "trace-id".to_owned(),
                    "4bf92f3577b34da6a3ce929d0e0e4736".to_owned(),
                ),
                ("content-type".to_owned(), "application/json".to_owned()),
            ]
        } else {
            Vec::new()
        };
        MsgSpec {
            payload,
            headers: Arc::new(headers),
            raw_ids: false,
        }
    }

    /// Sets whether the raw sides send an id header per message.
    pub(crate) fn with_raw_ids(mut self, raw_ids: bool) -> Self {
        self.raw_ids = raw_ids;
        self
    }

    /// A fresh id for a raw message, when the raw sides send ids.
    #[cfg_attr(not(any(feature = "nats", feature = "kafka")), allow(dead_code))]
    pub(crate) fn raw_id(&self) -> Option<broker::MessageId> {
        self.raw_ids.then(broker::MessageId::generate)
    }

    /// Whether the messages carry headers.
    pub(crate) fn has_headers(&self) -> bool {
        !self.headers.is_empty()
    }
}

/// The subscriptions a scenario makes to its topic: plain subscribers (each gets every
/// message) without a group, members sharing the load with one.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Subscribers<'a> {
    /// The queue group the subscriptions share, if any.
    pub(crate) group: Option<&'a str>,
    /// How many subscriptions.
    pub(crate) members: usize,
}

impl<'a> Subscribers<'a> {
    /// `members` plain subscribers, each getting every message.
    pub(crate) fn each(members: usize) -> Self {
        Subscribers {
            group: None,
            members,
        }
    }

    /// `members` members of `group`, sharing the messages.
    pub(crate) fn group(group: &'a str, members: usize) -> Self {
        Subscribers {
            group: Some(group),
            members,
        }
    }
}

/// A transport under test.
pub(crate) trait Side: Send + Sync + 'static {
    /// A subscription of this side.
    type Sub: Sub;

    /// Publishes `n` copies of `spec` to `topic` and returns once all of them are as far
    /// as this side's guarantees take them (flushed to the server, or acknowledged).
    fn publish_many(
        &self,
        topic: &str,
        n: u64,
        spec: &MsgSpec,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;

    /// Publishes one batch of `n` copies of `spec` as this side's client does it best,
    /// and returns once the batch is as far as [`publish_many`](Side::publish_many)
    /// takes it. The raw clients' `publish_many` is already their batch (send all, then
    /// flush or await the acks), so that is the default.
    fn publish_batch(
        &self,
        topic: &str,
        n: u64,
        spec: &MsgSpec,
    ) -> impl Future<Output = anyhow::Result<()>> + Send {
        self.publish_many(topic, n, spec)
    }

    /// Publishes one message, for the round-trip scenario (no explicit flush).
    fn publish_one(
        &self,
        topic: &str,
        spec: &MsgSpec,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;

    /// Makes the subscriptions `who` asks for to `topic`. They are live when this
    /// returns.
    fn subscribe(
        &self,
        topic: &str,
        who: Subscribers<'_>,
    ) -> impl Future<Output = anyhow::Result<Vec<Self::Sub>>> + Send;

    /// Makes one subscription to `topic` that receives in batches of up to `max` messages
    /// as this side's client does it best. The raw clients' receive loop already takes
    /// what has arrived, so that is the default.
    fn subscribe_batches(
        &self,
        topic: &str,
        max: usize,
    ) -> impl Future<Output = anyhow::Result<Vec<Self::Sub>>> + Send {
        let _ = max;
        self.subscribe(topic, Subscribers::each(1))
    }

    /// Whether a publish-only run needs a consumer to drain the messages (in-process
    /// channels: without one the first full buffer stops the publisher).
    fn publish_needs_sink(&self) -> bool {
        false
    }

    /// Forgets what this side kept for `topic` once a run is over.
    fn cleanup(&self, _topic: &str) {}
}

/// What a subscription received at once: `count` messages, each with a payload of
/// `len` bytes (a mismatch is reported as the odd length).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Got {
    pub(crate) count: u64,
    pub(crate) len: usize,
}

/// A subscription of a [`Side`].
pub(crate) trait Sub: Send + 'static {
    /// Waits for the next message, settles it, and returns its payload length; `None`
    /// when the subscription ended.
    fn recv(&mut self) -> impl Future<Output = anyhow::Result<Option<usize>>> + Send;

    /// Waits for the next messages (one, unless the subscription receives in batches),
    /// settled; `None` when the subscription ended.
    fn recv_many(&mut self) -> impl Future<Output = anyhow::Result<Option<Got>>> + Send {
        async {
            let got = self.recv().await?;
            Ok(got.map(|len| Got { count: 1, len }))
        }
    }
}
