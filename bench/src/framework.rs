//! The framework's side: any backend, used as a service uses it, through
//! `Arc<dyn Broker>`, `publish`, `subscribe` and `Delivery::ack`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use anyhow::bail;
use broker::batch::{Batch, BatchOptions};
use broker::options::StartPosition;
use broker::{
    BoxError, Broker, BrokerExt, ErrorKind, Headers, Message, SubscribeOptions, SubscriberHandle,
    Subscription,
};
use futures::future::BoxFuture;
use futures::{StreamExt, TryStreamExt};
use tokio::sync::mpsc;

use crate::side::{Got, MsgSpec, Side, Sub, Subscribers};

/// Something to await after a batch of publishes (core NATS: the client's flush).
pub(crate) type Flush = Arc<dyn Fn() -> BoxFuture<'static, anyhow::Result<()>> + Send + Sync>;

/// The framework's backend behind `Arc<dyn Broker>`.
pub(crate) struct Framework {
    broker: Arc<dyn Broker>,
    /// Concurrent publishes in a batch: 1 awaits each publish before the next, more keeps
    /// that many in flight (for backends whose publish waits for the server's ack).
    window: usize,
    start: Option<StartPosition>,
    flush: Option<Flush>,
    /// How long `subscribe` waits after the subscriptions are made.
    settle: Duration,
}

impl Framework {
    /// Publishes one at a time, subscribes with the default start position.
    pub(crate) fn new(broker: Arc<dyn Broker>) -> Self {
        Framework {
            broker,
            window: 1,
            start: None,
            flush: None,
            settle: Duration::ZERO,
        }
    }

    /// Keeps `window` publishes in flight.
    #[cfg_attr(not(any(feature = "nats", feature = "kafka")), allow(dead_code))]
    pub(crate) fn window(mut self, window: usize) -> Self {
        self.window = window.max(1);
        self
    }

    /// Subscribes from `start`.
    #[cfg_attr(not(feature = "kafka"), allow(dead_code))]
    pub(crate) fn start(mut self, start: StartPosition) -> Self {
        self.start = Some(start);
        self
    }

    /// Waits `settle` after subscribing, before a run starts (the same wait as the raw
    /// side's).
    #[cfg_attr(not(feature = "kafka"), allow(dead_code))]
    pub(crate) fn settle(mut self, settle: Duration) -> Self {
        self.settle = settle;
        self
    }

    /// Awaits `flush` after each batch.
    #[cfg_attr(not(feature = "nats"), allow(dead_code))]
    pub(crate) fn flush(mut self, flush: Flush) -> Self {
        self.flush = Some(flush);
        self
    }

    /// The broker.
    pub(crate) fn broker(&self) -> &Arc<dyn Broker> {
        &self.broker
    }
}

/// `err`, from connecting the framework's broker, with `hint` (how to start the server)
/// added when the server could not be reached.
#[cfg_attr(not(any(feature = "nats", feature = "kafka")), allow(dead_code))]
pub(crate) fn connect_error(err: broker::Error, hint: impl FnOnce() -> String) -> anyhow::Error {
    let connect = err.kind() == ErrorKind::Connect;
    let err = anyhow::Error::new(err);
    if connect { err.context(hint()) } else { err }
}

/// Builds the framework's message for `spec`, as a service would for each event.
fn message(spec: &MsgSpec, headers: &Headers) -> Message {
    let message = Message::new(spec.payload.clone());
    if spec.has_headers() {
        message.with_headers(headers.clone())
    } else {
        message
    }
}

fn headers(spec: &MsgSpec) -> Headers {
    spec.headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

impl Side for Framework {
    type Sub = FrameworkSub;

    async fn publish_many(&self, topic: &str, n: u64, spec: &MsgSpec) -> anyhow::Result<()> {
        let headers = headers(spec);
        if self.window == 1 {
            for _ in 0..n {
                self.broker
                    .publish(topic, message(spec, &headers))
                    .await
                    .with_context(|| format!("framework publish to `{topic}`"))?;
            }
        } else {
            futures::stream::iter(0..n)
                .map(|_| self.broker.publish(topic, message(spec, &headers)))
                .buffer_unordered(self.window)
                .try_for_each(|()| futures::future::ready(Ok(())))
                .await
                .with_context(|| format!("framework publish to `{topic}`"))?;
        }
        if let Some(flush) = &self.flush {
            flush().await?;
        }
        Ok(())
    }

    /// One `publish_batch` call (which flushes on core NATS, so no flush after it).
    async fn publish_batch(&self, topic: &str, n: u64, spec: &MsgSpec) -> anyhow::Result<()> {
        let headers = headers(spec);
        let batch = (0..n).map(|_| message(spec, &headers)).collect();
        self.broker
            .publish_batch(topic, batch)
            .await
            .with_context(|| format!("framework publish_batch to `{topic}`"))
    }

    async fn publish_one(&self, topic: &str, spec: &MsgSpec) -> anyhow::Result<()> {
        self.broker
            .publish(topic, message(spec, &headers(spec)))
            .await
            .with_context(|| format!("framework publish to `{topic}`"))
    }

    async fn subscribe(&self, topic: &str, who: Subscribers<'_>) -> anyhow::Result<Vec<Self::Sub>> {
        let Subscribers { group, members } = who;
        let mut options = SubscribeOptions::new();
        if let Some(group) = group {
            options = options.queue(group);
        }
        if let Some(start) = self.start {
            options = options.start(start);
        }
        let mut subs = Vec::with_capacity(members);
        for _ in 0..members {
            let sub = self
                .broker
                .subscribe(topic, options.clone())
                .await
                .with_context(|| format!("framework subscribe to `{topic}`"))?;
            subs.push(FrameworkSub::Stream(sub));
        }
        if !self.settle.is_zero() {
            tokio::time::sleep(self.settle).await;
        }
        Ok(subs)
    }

    /// `subscribe_batches` with batches of up to `max` events; the handler reports each
    /// batch's size to the subscription's receiver.
    async fn subscribe_batches(&self, topic: &str, max: usize) -> anyhow::Result<Vec<Self::Sub>> {
        let mut options = SubscribeOptions::new();
        if let Some(start) = self.start {
            options = options.start(start);
        }
        let (sender, received) = mpsc::unbounded_channel();
        let handler = move |batch: Batch| {
            let count = batch.len() as u64;
            let mut lens = batch.iter().map(|event| event.message().payload().len());
            let first = lens.next().unwrap_or_default();
            let len = lens.find(|&len| len != first).unwrap_or(first);
            let _ = sender.send(Got { count, len });
            futures::future::ready(Ok::<_, BoxError>(()))
        };
        let batches = BatchOptions::new().max_events(max);
        let handle = self
            .broker
            .subscribe_batches(topic, options, batches, handler)
            .await
            .with_context(|| format!("framework subscribe_batches to `{topic}`"))?;
        if !self.settle.is_zero() {
            tokio::time::sleep(self.settle).await;
        }
        Ok(vec![FrameworkSub::Batches {
            received,
            handle: Some(handle),
        }])
    }

    fn publish_needs_sink(&self) -> bool {
        self.broker.capabilities().backend == "memory"
    }
}

/// A framework subscription: a stream whose deliveries are acked explicitly, as
/// documented, or a batch handler reporting what it got.
pub(crate) enum FrameworkSub {
    Stream(Subscription),
    Batches {
        received: mpsc::UnboundedReceiver<Got>,
        handle: Option<SubscriberHandle>,
    },
}

impl Sub for FrameworkSub {
    async fn recv(&mut self) -> anyhow::Result<Option<usize>> {
        let FrameworkSub::Stream(subscription) = self else {
            bail!("a batch subscription receives batches, not single messages");
        };
        match subscription.next().await {
            Some(Ok(delivery)) => {
                let len = delivery.message().payload().len();
                delivery.ack().await.context("framework ack")?;
                Ok(Some(len))
            }
            Some(Err(err)) => Err(anyhow::Error::new(err).context("framework subscription")),
            None => Ok(None),
        }
    }

    async fn recv_many(&mut self) -> anyhow::Result<Option<Got>> {
        match self {
            FrameworkSub::Stream(_) => Ok(self.recv().await?.map(|len| Got { count: 1, len })),
            FrameworkSub::Batches { received, .. } => Ok(received.recv().await),
        }
    }
}

impl Drop for FrameworkSub {
    /// A batch subscriber is shut down in the background (its events are acked by then).
    fn drop(&mut self) {
        if let FrameworkSub::Batches { handle, .. } = self
            && let Some(handle) = handle.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(handle.shutdown());
        }
    }
}
