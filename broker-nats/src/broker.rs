//! The NATS broker: its shared state, the `Broker` methods, capabilities, close, and
//! native request/reply. Connecting is in `connect`.

mod connect;

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream;
use broker_core::backend::{Capabilities, DeliveryGuarantee, OrderingGuarantee, async_trait};
use broker_core::batch::{self, BatchError};
use broker_core::headers::names;
use broker_core::health::Health;
use broker_core::subject::{validate_pattern, validate_topic};
use broker_core::{Broker, Error, ErrorKind, Message, Result, SubscribeOptions, Subscription};
use futures::StreamExt;
use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::convert::IdHeaders;
use crate::jetstream::is_inbox;
use crate::options::{Mode, NatsOptions};
use crate::{batch_publisher, convert, core_subscriber, error, jetstream_subscriber, publisher};

/// A broker on NATS: core NATS (`nats://`) or JetStream (`jetstream://`). Cloning gives
/// another handle to the same connection.
///
/// See the [crate docs](crate) for what each mode guarantees.
///
/// ```no_run
/// # async fn demo() -> broker_core::Result<()> {
/// use broker_core::{Broker, Message, SubscribeOptions};
/// use broker_nats::{NatsBroker, NatsOptions};
/// use futures::StreamExt;
///
/// let broker = NatsBroker::connect(NatsOptions::new("nats://127.0.0.1:4222").name("demo")).await?;
/// let mut sub = broker.subscribe("user.>", SubscribeOptions::new()).await?;
/// broker.publish("user.created", Message::new("alice")).await?;
/// let delivery = sub.next().await.expect("a delivery")?;
/// assert_eq!(delivery.topic(), "user.created");
/// broker.close().await
/// # }
/// ```
#[derive(Clone)]
pub struct NatsBroker {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) options: NatsOptions,
    pub(crate) client: async_nats::Client,
    pub(crate) js: Option<jetstream::Context>,
    /// Stream key (first token, or "" for a single stream) to stream name.
    pub(crate) streams: Mutex<HashMap<String, String>>,
    pub(crate) closed: AtomicBool,
    /// Core NATS messages dropped for slow consumers (see `dropped_messages`).
    pub(crate) dropped: Arc<AtomicU64>,
    /// How many times the connection was lost; core subscriptions compare it with the
    /// count they saw last and report each loss (see `core_subscriber::CoreDeliveries`).
    pub(crate) disconnects: Arc<AtomicU64>,
    /// Connection outages: logged once each, attempts counted.
    pub(crate) outages: Arc<broker_core::backend::OutageLog>,
    pub(crate) shutdown: CancellationToken,
    pub(crate) tasks: TaskTracker,
    /// Subjects of recent core publishes.
    pub(crate) subjects: publisher::Subjects,
}

impl Inner {
    pub(crate) fn check_open(&self) -> Result<()> {
        broker_core::backend::check_open(&self.closed, "the NATS broker")
    }

    pub(crate) fn js(&self) -> Result<&jetstream::Context> {
        self.js.as_ref().ok_or_else(|| {
            Error::new(
                ErrorKind::Unsupported,
                "JetStream is not enabled on this broker (use a jetstream:// URL)",
            )
        })
    }

    /// Whether `subject` goes through JetStream (reply inboxes never do).
    pub(crate) fn uses_jetstream(&self, subject: &str) -> bool {
        self.js.is_some() && !is_inbox(subject)
    }

    /// Waits until the server has processed everything this connection sent so far: a
    /// request to a subject nobody listens on, which the server answers with "no
    /// responders" (a flush alone only empties the client's socket buffer).
    pub(crate) async fn sync(&self, what: &str) -> Result<()> {
        let probe = self.client.new_inbox();
        match self.client.request(probe, bytes::Bytes::new()).await {
            Ok(_) => Ok(()),
            Err(err) if err.kind() == async_nats::client::RequestErrorKind::NoResponders => Ok(()),
            Err(err) => Err(Error::with_source(
                ErrorKind::Subscribe,
                format!("the server did not confirm the subscription to `{what}`"),
                err,
            )),
        }
    }

    /// Fails with [`ErrorKind::PayloadTooLarge`] when the message would exceed the
    /// server's `max_payload`.
    pub(crate) fn check_size(
        &self,
        topic: &str,
        payload: usize,
        headers: Option<&async_nats::HeaderMap>,
    ) -> Result<()> {
        let size = payload + headers.map_or(0, convert::headers_wire_len);
        let max = self.client.max_payload();
        if max > 0 && size > max {
            return Err(Error::new(
                ErrorKind::PayloadTooLarge,
                format!(
                    "a message of {size} bytes (payload and headers) to `{topic}` exceeds the server's max_payload of {max} bytes"
                ),
            ));
        }
        Ok(())
    }
}

impl NatsBroker {
    /// The options in force.
    pub fn options(&self) -> &NatsOptions {
        &self.inner.options
    }

    /// Core NATS or JetStream.
    pub fn mode(&self) -> Mode {
        self.inner.options.mode
    }

    /// The underlying async-nats client, for what this crate does not wrap.
    pub fn client(&self) -> &async_nats::Client {
        &self.inner.client
    }

    /// The largest message the server accepts (its `max_payload`), payload and headers
    /// together, in bytes.
    pub fn max_payload(&self) -> usize {
        self.inner.client.max_payload()
    }

    /// How many core NATS messages were dropped because a subscriber read too slowly,
    /// since this broker connected (all its subscriptions together).
    ///
    /// A core subscription buffers up to `subscription_capacity` messages its reader has
    /// not taken yet; each message that arrives while that buffer is full is dropped,
    /// counted here, logged (`tracing::warn!`, once per run of drops) and reported to
    /// that subscription as an [`ErrorKind::Subscribe`] error item whose source is a
    /// [`SlowConsumer`](crate::SlowConsumer) with the count. Messages the client itself
    /// reports dropping are counted here too. JetStream never drops: it pulls only what
    /// the subscription has room for.
    pub fn dropped_messages(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }

    /// The connection's outages: a lost connection logs one WARN, its return one INFO,
    /// and the reconnect attempts between are counted here (and, with broker-core's
    /// `metrics` feature, in `broker_connection_failures_total` and
    /// `broker_outages_total`), not logged.
    pub fn outages(&self) -> &broker_core::backend::OutageLog {
        &self.inner.outages
    }

    /// Whether [`close`](Broker::close) was called.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::Acquire)
    }

    /// Sends `request` to `topic` and waits up to `timeout` for one reply, with NATS's
    /// native request/reply: the reply subject is a fresh inbox, also given to the
    /// responder as the `reply-to` header (so [`BrokerExt::reply`] answers it).
    ///
    /// Fails with [`ErrorKind::NoResponders`] at once when nobody subscribes to `topic`,
    /// and with [`ErrorKind::Timeout`] when nobody answers in time. On `jetstream://`
    /// the request is stored in the topic's stream like any publish and the reply comes
    /// over core NATS; the stream always takes the request, so there "no responders"
    /// shows as a timeout.
    ///
    /// [`BrokerExt::reply`]: broker_core::BrokerExt::reply
    pub async fn request(
        &self,
        topic: &str,
        request: Message,
        timeout: Duration,
    ) -> Result<Message> {
        let inner = &self.inner;
        inner.check_open()?;
        validate_topic(topic)?;
        if inner.uses_jetstream(topic) {
            return self.request_over_jetstream(topic, request, timeout).await;
        }
        let headers = convert::to_nats_headers(topic, &request, IdHeaders::MessageId)?;
        inner.check_size(topic, request.payload().len(), Some(&headers))?;
        let reply = inner
            .client
            .send_request(
                topic.to_owned(),
                async_nats::Request::new()
                    .payload(request.payload().clone())
                    .headers(headers)
                    .timeout(Some(timeout)),
            )
            .await
            .map_err(|e| error::request(topic, e))?;
        let subject = reply.subject.to_string();
        Ok(convert::from_nats(
            &subject,
            reply.headers.as_ref(),
            reply.payload,
            None,
        ))
    }

    async fn request_over_jetstream(
        &self,
        topic: &str,
        request: Message,
        timeout: Duration,
    ) -> Result<Message> {
        let inner = &self.inner;
        let inbox = inner.client.new_inbox();
        let mut replies = inner
            .client
            .subscribe(inbox.clone())
            .await
            .map_err(|e| error::subscribe(&inbox, e))?;
        let request = request.with_header(names::REPLY_TO, inbox.as_str());
        let id = request.id().as_str().to_owned();
        let outcome = tokio::time::timeout(timeout, async {
            publisher::publish(inner, topic, request).await?;
            while let Some(reply) = replies.next().await {
                let subject = reply.subject.to_string();
                let message =
                    convert::from_nats(&subject, reply.headers.as_ref(), reply.payload, None);
                if message
                    .headers()
                    .get(names::IN_REPLY_TO)
                    .is_none_or(|r| r == id)
                {
                    return Ok(message);
                }
            }
            Err(Error::closed("the NATS connection"))
        })
        .await;
        match outcome {
            Ok(result) => result,
            Err(_) => Err(Error::new(
                ErrorKind::Timeout,
                format!("no reply on `{topic}` within {timeout:?}"),
            )),
        }
    }
}

impl fmt::Debug for NatsBroker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsBroker")
            .field("options", &self.inner.options)
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Broker for NatsBroker {
    /// Converts the message when called; the future sends it (core NATS) or waits for
    /// the stream's ack (JetStream). Written out instead of `async fn`, so that the box
    /// the object-safe trait requires holds the client's send future, not the message.
    // The signature is the one `#[async_trait]` gives the trait's `async fn publish`.
    // Measured in the git history of BENCHMARKS.md ("core NATS, second pass":
    // `#[async_trait]` copied the whole publish future into its box; "core NATS, third
    // pass": this written-out form).
    fn publish<'a, 'b, 'c>(&'a self, topic: &'b str, message: Message) -> BoxFuture<'c, Result<()>>
    where
        'a: 'c,
        'b: 'c,
        Self: 'c,
    {
        if let Err(err) = self.inner.check_open() {
            return Box::pin(std::future::ready(Err(err)));
        }
        // The topic is checked by `publisher::publish`.
        publisher::publish(&self.inner, topic, message)
    }

    /// Core NATS hands every message to the client, then flushes once; JetStream sends
    /// them all and awaits their acks together (see the [crate docs](crate)).
    async fn publish_batch(&self, topic: &str, messages: Vec<Message>) -> Result<(), BatchError> {
        batch::publish_with(messages, |messages| {
            batch_publisher::publish_batch(&self.inner, topic, messages)
        })
        .await
    }

    async fn subscribe(&self, pattern: &str, options: SubscribeOptions) -> Result<Subscription> {
        self.inner.check_open()?;
        validate_pattern(pattern)?;
        if let Some(group) = &options.queue
            && (group.is_empty() || group.chars().any(|c| c.is_whitespace() || c.is_control()))
        {
            return Err(Error::new(
                ErrorKind::InvalidConfig,
                format!(
                    "queue group `{}` must be non-empty, without whitespace",
                    group.escape_debug()
                ),
            ));
        }
        if self.inner.uses_jetstream(pattern) {
            jetstream_subscriber::subscribe(&self.inner, pattern, options).await
        } else {
            core_subscriber::subscribe(&self.inner, pattern, options).await
        }
    }

    async fn close(&self) -> Result<()> {
        let inner = &self.inner;
        if inner.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        inner.shutdown.cancel();
        inner.tasks.close();
        // Pull loops hand back what they fetched and did not deliver.
        let grace = inner.options.jetstream.pull_expires + Duration::from_millis(500);
        if tokio::time::timeout(grace, inner.tasks.wait())
            .await
            .is_err()
        {
            tracing::debug!("JetStream pull loops still draining at close");
        }
        let flushed = inner.client.flush().await;
        if let Err(err) = inner.client.drain().await {
            // The connection is going away either way.
            tracing::debug!(error = %err, "draining the NATS connection at close failed");
        }
        flushed.map_err(|e| {
            Error::with_source(
                ErrorKind::Publish,
                "flushing pending publishes at close failed",
                e,
            )
        })
    }

    fn capabilities(&self) -> Capabilities {
        let max = Some(self.inner.client.max_payload()).filter(|m| *m > 0);
        // JetStream stores messages, and so redelivers them; core NATS does neither.
        let (backend, delivery, stored) = match self.inner.options.mode {
            Mode::Core => ("nats", DeliveryGuarantee::AtMostOnce, false),
            Mode::JetStream => ("jetstream", DeliveryGuarantee::AtLeastOnce, true),
        };
        Capabilities::new(backend)
            .delivery(delivery)
            .ordering(OrderingGuarantee::PerPublisher)
            .persistence(stored)
            .redelivery(stored)
            .queue_groups(true)
            .max_message_bytes(max)
    }

    /// Connected while the client's connection is up (it reconnects in the background);
    /// the last error is the last lost connection, or error the server or the client
    /// reported (see [`outages`](NatsBroker::outages)).
    fn health(&self) -> Health {
        let inner = &self.inner;
        if self.is_closed() {
            return Health::disconnected("the NATS broker is closed");
        }
        let mut health = inner.outages.health();
        health.connected =
            inner.client.connection_state() == async_nats::connection::State::Connected;
        health
    }
}
