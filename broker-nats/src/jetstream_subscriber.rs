//! JetStream subscriptions: a pull consumer, read by a background pull loop that hands
//! each message to the subscription as a delivery settled with JetStream acks.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_nats::jetstream::AckKind;
use async_nats::jetstream::consumer::{AckPolicy, Consumer, DeliverPolicy, pull};
use async_nats::jetstream::message::Acker;
use broker_core::backend::Acknowledger;
use broker_core::delivery::Redelivery;
use broker_core::options::StartPosition;
use broker_core::{Delivery, Result, SubscribeOptions, Subscription};
use futures::future::BoxFuture;
use futures::{FutureExt, Stream, StreamExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::broker::Inner;
use crate::jetstream::durable_name;
use crate::lag::JetStreamLag;
use crate::{convert, error};

/// A JetStream subscription: a durable consumer named after the queue group, or an
/// ephemeral one, filtered on `pattern`, with explicit acks. The consumer exists when
/// this returns, so later publishes reach it.
pub(crate) async fn subscribe(
    inner: &Arc<Inner>,
    pattern: &str,
    options: SubscribeOptions,
) -> Result<Subscription> {
    let js = inner.js()?;
    let stream_name = inner.stream_for(pattern).await?;
    let stream = js
        .get_stream_no_info(&stream_name)
        .await
        .map_err(|e| error::subscribe(pattern, e))?;
    let jo = &inner.options.jetstream;
    let mut config = pull::Config {
        filter_subject: pattern.to_owned(),
        ack_policy: AckPolicy::Explicit,
        ack_wait: jo.ack_wait,
        max_deliver: jo.max_deliver.unwrap_or_default(),
        max_ack_pending: jo.max_ack_pending.unwrap_or_default(),
        deliver_policy: match options.start_position() {
            StartPosition::Earliest => DeliverPolicy::All,
            _ => DeliverPolicy::New,
        },
        ..Default::default()
    };
    let (consumer, name, ephemeral) = match &options.queue {
        Some(group) => {
            let name = durable_name(group, pattern);
            config.durable_name = Some(name.clone());
            config.description = Some(format!("queue group `{group}` on `{pattern}`"));
            let consumer = stream
                .get_or_create_consumer(&name, config.clone())
                .await
                .map_err(|e| error::subscribe(pattern, e))?;
            (consumer, name, None)
        }
        None => {
            let name = format!("eph-{}", uuid::Uuid::now_v7().simple());
            config.name = Some(name.clone());
            config.inactive_threshold = jo.ephemeral_inactive;
            let consumer = stream
                .create_consumer(config.clone())
                .await
                .map_err(|e| error::subscribe(pattern, e))?;
            (consumer, name.clone(), Some(name))
        }
    };

    let (tx, rx) = mpsc::channel(1);
    let cancel = inner.shutdown.child_token();
    let lag = Arc::new(JetStreamLag {
        stream: stream.clone(),
        consumer: name.clone(),
        cancel: cancel.clone(),
    });
    let pull = PullLoop {
        consumer,
        stream,
        name,
        config,
        ephemeral: ephemeral.is_some(),
        last_sequence: 0,
        tx,
        cancel: cancel.clone(),
        batch: jo.pull_batch.min(options.max_in_flight).max(1),
        expires: jo.pull_expires,
        pattern: pattern.to_owned(),
        client: inner.client.clone(),
        failures: 0,
        warned: false,
    };
    inner.tasks.spawn(pull.run());
    let deliveries = JetStreamDeliveries {
        rx,
        guard: ConsumerGuard {
            inner: inner.clone(),
            cancel,
            stream: stream_name,
            ephemeral,
        },
        confirm: jo.confirm_acks.then(|| inner.client.clone()),
    };
    Ok(Subscription::new(pattern, &options, deliveries).with_lag(lag))
}

struct PullLoop {
    consumer: Consumer<pull::Config>,
    stream: async_nats::jetstream::stream::Stream<()>,
    name: String,
    config: pull::Config,
    ephemeral: bool,
    /// The stream sequence of the last message fetched, to recreate a lost ephemeral
    /// consumer where it stopped.
    last_sequence: u64,
    tx: mpsc::Sender<async_nats::jetstream::Message>,
    cancel: CancellationToken,
    batch: usize,
    expires: Duration,
    pattern: String,
    client: async_nats::Client,
    /// Failed pulls in a row.
    failures: u32,
    /// Whether this run of failures was logged as a WARN.
    warned: bool,
}

impl PullLoop {
    /// Pulls batches until the subscription is dropped or the broker closed, then hands
    /// back (NAKs) what was fetched and not delivered, so it goes to another member at
    /// once instead of after `ack_wait`.
    async fn run(mut self) {
        loop {
            let batch = tokio::select! {
                _ = self.cancel.cancelled() => return,
                _ = self.tx.closed() => return,
                batch = self
                    .consumer
                    .batch()
                    .max_messages(self.batch)
                    .expires(self.expires)
                    .messages() => batch,
            };
            let mut batch = match batch {
                Ok(batch) => batch,
                Err(err) => {
                    self.failed(&err).await;
                    continue;
                }
            };
            loop {
                let next = tokio::select! {
                    _ = self.cancel.cancelled() => return self.hand_back(batch).await,
                    next = batch.next() => next,
                };
                match next {
                    None => {
                        self.pulled();
                        break;
                    }
                    Some(Err(err)) => {
                        self.failed(&*err).await;
                        break;
                    }
                    Some(Ok(message)) => {
                        self.pulled();
                        if let Ok(info) = message.info() {
                            self.last_sequence = info.stream_sequence;
                        }
                        let permit = tokio::select! {
                            _ = self.cancel.cancelled() => Err(()),
                            permit = self.tx.reserve() => permit.map_err(|_| ()),
                        };
                        match permit {
                            Ok(permit) => permit.send(message),
                            Err(()) => {
                                nak(message).await;
                                return self.hand_back(batch).await;
                            }
                        }
                    }
                }
            }
        }
    }

    /// After repeated failures, makes sure the consumer exists: it may have been deleted
    /// (by an operator, or as an inactive ephemeral during a long outage). A lost
    /// ephemeral consumer is recreated after the last message it fetched.
    async fn recover(&mut self) {
        if self.failures < 3 || self.cancel.is_cancelled() {
            return;
        }
        let mut config = self.config.clone();
        if self.ephemeral && self.last_sequence > 0 {
            config.deliver_policy = DeliverPolicy::ByStartSequence {
                start_sequence: self.last_sequence + 1,
            };
        }
        match self.stream.get_or_create_consumer(&self.name, config).await {
            Ok(consumer) => self.consumer = consumer,
            Err(err) => {
                tracing::debug!(consumer = %self.name, error = %err, "cannot check or recreate the consumer yet")
            }
        }
    }

    /// NAKs the rest of an open pull request (it ends within `expires`).
    async fn hand_back(&self, mut batch: pull::Batch) {
        let drain = async {
            while let Some(Ok(message)) = batch.next().await {
                nak(message).await;
            }
        };
        let _ = tokio::time::timeout(self.expires + Duration::from_secs(1), drain).await;
    }

    /// A pull worked: ends a run of failures, with an INFO if it was logged as a WARN.
    fn pulled(&mut self) {
        if self.warned {
            tracing::info!(pattern = %self.pattern, failures = self.failures, "JetStream pull works again");
        }
        self.failures = 0;
        self.warned = false;
    }

    /// A pull failed: logs, waits, and makes sure the consumer exists.
    async fn failed(&mut self, err: &(dyn std::error::Error + Send + Sync + 'static)) {
        self.failures += 1;
        self.pause(err).await;
        self.recover().await;
    }

    /// Waits before pulling again after a failure (the server may be restarting). A run
    /// of failures logs one WARN, at its second failure, and none while the connection
    /// is down (the connection's outage has its own WARN); the rest are DEBUG.
    async fn pause(&mut self, err: &(dyn std::error::Error + Send + Sync + 'static)) {
        let connected = self.client.connection_state() == async_nats::connection::State::Connected;
        if self.failures >= 2 && !self.warned && connected {
            self.warned = true;
            tracing::warn!(pattern = %self.pattern, error = %err, "JetStream pull keeps failing; retrying");
        } else {
            tracing::debug!(pattern = %self.pattern, error = %err, failures = self.failures, "JetStream pull failed; retrying");
        }
        let delay = Duration::from_millis(100 * u64::from(self.failures.min(10)));
        tokio::select! {
            _ = self.cancel.cancelled() => {}
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

async fn nak(message: async_nats::jetstream::Message) {
    if let Err(err) = message.ack_with(AckKind::Nak(None)).await {
        tracing::debug!(error = %err, "handing back an undelivered JetStream message failed; it returns after ack_wait");
    }
}

/// Stops the pull loop when the subscription is dropped, and deletes an ephemeral
/// consumer (durable ones stay, keeping the group's position).
struct ConsumerGuard {
    inner: Arc<Inner>,
    cancel: CancellationToken,
    stream: String,
    ephemeral: Option<String>,
}

impl Drop for ConsumerGuard {
    fn drop(&mut self) {
        self.cancel.cancel();
        let Some(name) = self.ephemeral.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.inner.closed.load(std::sync::atomic::Ordering::Acquire) {
            return; // The server removes it after `ephemeral_inactive`.
        }
        let inner = self.inner.clone();
        let stream = std::mem::take(&mut self.stream);
        runtime.spawn(async move {
            if let Ok(js) = inner.js()
                && let Err(err) = js.delete_consumer_from_stream(&name, &stream).await
            {
                tracing::debug!(consumer = %name, error = %err, "deleting an ephemeral consumer failed; the server removes it when inactive");
            }
        });
    }
}

/// The deliveries of a JetStream subscription. Messages fetched and not yet handed out
/// are NAKed when it is dropped.
struct JetStreamDeliveries {
    rx: mpsc::Receiver<async_nats::jetstream::Message>,
    guard: ConsumerGuard,
    /// With [`JetStreamOptions::confirm_acks`](crate::JetStreamOptions::confirm_acks):
    /// the client that sends the acks as requests.
    confirm: Option<async_nats::Client>,
}

impl Stream for JetStreamDeliveries {
    type Item = Result<Delivery>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(message)) => {
                Poll::Ready(Some(Ok(delivery(message, self.confirm.as_ref()))))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for JetStreamDeliveries {
    fn drop(&mut self) {
        self.guard.cancel.cancel();
        self.rx.close();
        let mut left = Vec::new();
        while let Ok(message) = self.rx.try_recv() {
            left.push(message);
        }
        if left.is_empty() {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                for message in left {
                    nak(message).await;
                }
            });
        }
    }
}

/// A JetStream message as a delivery. A message without the framework's id (another
/// client published it) gets `STREAM-SEQUENCE` as its id, the same for every subscriber
/// and every redelivery.
fn delivery(
    message: async_nats::jetstream::Message,
    confirm: Option<&async_nats::Client>,
) -> Delivery {
    let has_id = message
        .headers
        .as_ref()
        .is_some_and(|h| h.get(broker_core::headers::names::MESSAGE_ID).is_some());
    // The stream position is formatted only for a message that needs it as its id.
    let (attempt, position) = match message.info() {
        Ok(info) => (
            u32::try_from(info.delivered.max(1)).unwrap_or(u32::MAX),
            (!has_id).then(|| format!("{}-{}", info.stream, info.stream_sequence)),
        ),
        Err(_) => (1, None),
    };
    let confirm = confirm.zip(message.reply.clone());
    let (message, acker) = message.split();
    let defect = convert::defect(&message);
    let topic = message.subject.to_string();
    let mut converted = convert::from_nats(&topic, message.headers.as_ref(), message.payload, None);
    if let Some(position) = position {
        converted = converted.with_id(position);
    }
    let delivery = Delivery::new(
        converted,
        topic,
        Box::new(JetStreamAcker {
            acker,
            confirm: confirm.map(|(client, reply)| (client.clone(), reply)),
        }),
    )
    .with_attempt(attempt);
    match defect {
        Some(defect) => delivery.with_defect(defect),
        None => delivery,
    }
}

/// Settles one JetStream delivery: ack waits for the server's confirmation (when
/// `confirm` holds the client and the message's ack subject; else it resolves once the
/// ack is sent); nack is a NAK, with a delay for [`Redelivery::After`].
struct JetStreamAcker {
    acker: Acker,
    confirm: Option<(async_nats::Client, async_nats::Subject)>,
}

impl Acknowledger for JetStreamAcker {
    fn ack(self: Box<Self>) -> BoxFuture<'static, Result<()>> {
        async move {
            match self.confirm {
                Some((client, ack_subject)) => confirm_ack(client, ack_subject).await,
                None => self
                    .acker
                    .ack()
                    .await
                    .map_err(|e| error::ack("acknowledging a JetStream message", e)),
            }
        }
        .boxed()
    }

    fn nack(self: Box<Self>, redelivery: Redelivery) -> BoxFuture<'static, Result<()>> {
        let delay = match redelivery {
            Redelivery::After(delay) if !delay.is_zero() => Some(delay),
            _ => None,
        };
        async move {
            self.acker
                .ack_with(AckKind::Nak(delay))
                .await
                .map_err(|e| error::ack("NAKing a JetStream message", e))
        }
        .boxed()
    }
}

/// Sends an ack as a request and waits for the consumer leader's answer, which it sends
/// once the ack is stored: on a replicated consumer, once a quorum of its replicas has it
/// (nats-server `processReplicatedAck`). While no server leads the consumer (the moments
/// of a failover), nobody subscribes to the ack subject and the server answers at once
/// with a "no responders" status: the ack reached nobody, so that answer is an error, not
/// a confirmation. (async-nats's `double_ack` takes any answer, that one too, as a
/// confirmation.)
async fn confirm_ack(client: async_nats::Client, ack_subject: async_nats::Subject) -> Result<()> {
    use async_nats::RequestErrorKind;
    const WHAT: &str = "acknowledging a JetStream message";
    match client
        .request(ack_subject, bytes::Bytes::from_static(b"+ACK"))
        .await
    {
        Ok(answer) => match answer.status {
            None | Some(async_nats::StatusCode::OK) => Ok(()),
            Some(status) => Err(error::ack(
                WHAT,
                format!("the server answered with status {status}"),
            )),
        },
        Err(err) if err.kind() == RequestErrorKind::NoResponders => Err(error::ack(
            WHAT,
            format!(
                "no server leads the consumer (a failover?), so the ack reached nobody and the message will be redelivered: {err}"
            ),
        )),
        Err(err) => Err(error::ack(WHAT, err)),
    }
}
