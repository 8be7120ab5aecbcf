//! The NATS broker: connection, capabilities, close, and native request/reply.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream;
use broker_core::backend::{Capabilities, DeliveryGuarantee, OrderingGuarantee, async_trait};
use broker_core::headers::names;
use broker_core::registry::redact_url;
use broker_core::subject::{validate_pattern, validate_topic};
use broker_core::{Broker, Error, ErrorKind, Message, Result, SubscribeOptions, Subscription};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::convert::IdHeaders;
use crate::jetstream::is_inbox;
use crate::options::{Auth, Mode, NatsOptions};
use crate::{convert, error, publisher, subscriber};

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
    /// count they saw last and report each loss (see `subscriber::CoreDeliveries`).
    pub(crate) disconnects: Arc<AtomicU64>,
    pub(crate) shutdown: CancellationToken,
    pub(crate) tasks: TaskTracker,
    /// Subjects of recent core publishes.
    pub(crate) subjects: publisher::Subjects,
}

impl Inner {
    pub(crate) fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            Err(Error::closed("the NATS broker"))
        } else {
            Ok(())
        }
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

/// How much longer than `connection_timeout` a whole connect may take.
const CONNECT_GRACE: Duration = Duration::from_secs(1);

impl NatsBroker {
    /// Connects with `options`. In JetStream mode it also checks that the server has
    /// JetStream enabled.
    pub async fn connect(options: NatsOptions) -> Result<Self> {
        options.validate()?;
        let shown = redact_url(&options.server);
        let dropped = Arc::new(AtomicU64::new(0));
        let disconnects = Arc::new(AtomicU64::new(0));
        let mut connect = async_nats::ConnectOptions::new()
            .connection_timeout(options.connection_timeout)
            .request_timeout(Some(options.request_timeout))
            .max_reconnects(None)
            // The client's own per-subscription channel only carries messages to the
            // subscription's forwarding task, which always keeps up with it; the
            // subscription's buffer, where slow readers are detected, is
            // `subscription_capacity` (see subscriber.rs).
            .subscription_capacity(
                options
                    .subscription_capacity
                    .unwrap_or(0)
                    .max(subscriber::DEFAULT_CAPACITY),
            )
            .event_callback({
                let server = shown.clone();
                let dropped = dropped.clone();
                let disconnects = disconnects.clone();
                move |event| {
                    let server = server.clone();
                    let dropped = dropped.clone();
                    let disconnects = disconnects.clone();
                    async move {
                        match event {
                            async_nats::Event::Disconnected => {
                                disconnects.fetch_add(1, Ordering::AcqRel);
                                tracing::warn!(%server, "NATS connection lost; reconnecting")
                            }
                            async_nats::Event::Connected => {
                                tracing::info!(%server, "NATS connection (re)established")
                            }
                            async_nats::Event::SlowConsumer(sid) => {
                                dropped.fetch_add(1, Ordering::Relaxed);
                                tracing::warn!(%server, sid, "slow consumer: the NATS client dropped a message for a subscription whose channel was full")
                            }
                            async_nats::Event::ServerError(err) => {
                                tracing::warn!(%server, error = %err, "NATS server error")
                            }
                            other => tracing::debug!(%server, event = %other, "NATS client event"),
                        }
                    }
                }
            });
        if let Some(name) = &options.name {
            connect = connect.name(name);
        }
        match &options.auth {
            Auth::None => {}
            Auth::Token(token) => connect = connect.token(token.clone()),
            Auth::UserPassword { user, password } => {
                connect = connect.user_and_password(user.clone(), password.clone())
            }
            Auth::CredentialsFile(path) => {
                connect = connect.credentials_file(path).await.map_err(|e| {
                    Error::with_source(
                        ErrorKind::InvalidConfig,
                        format!("cannot read the NATS credentials file {}", path.display()),
                        e,
                    )
                })?;
            }
        }
        let tls = &options.tls;
        if let Some(ca) = &tls.ca_file {
            connect = connect.add_root_certificates(ca.clone());
        }
        if let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) {
            connect = connect.add_client_certificate(cert.clone(), key.clone());
        }
        if tls.required || tls.ca_file.is_some() || tls.cert_file.is_some() {
            connect = connect.require_tls(true);
        }
        // async-nats bounds each attempt by `connection_timeout`; this bounds the whole
        // of it (address resolution, TCP, TLS and the CONNECT handshake) as well.
        let limit = options.connection_timeout + CONNECT_GRACE;
        let client = match tokio::time::timeout(limit, connect.connect(options.server.as_str()))
            .await
        {
            Ok(connected) => connected.map_err(|e| error::connect(&shown, e))?,
            Err(_) => {
                return Err(Error::new(
                    ErrorKind::Timeout,
                    format!(
                        "cannot connect to NATS at {shown}: no complete handshake within {limit:?}"
                    ),
                ));
            }
        };

        let js = match options.mode {
            Mode::Core => None,
            Mode::JetStream => {
                check_jetstream_version(&client.server_info().version, &shown)?;
                let js = jetstream::ContextBuilder::new()
                    .timeout(options.request_timeout)
                    .build(client.clone());
                js.query_account().await.map_err(|e| {
                    Error::with_source(
                        ErrorKind::Connect,
                        format!("JetStream is not available on {shown} (is the server started with JetStream?)"),
                        e,
                    )
                })?;
                Some(js)
            }
        };
        tracing::debug!(server = %shown, mode = ?options.mode, "connected to NATS");
        Ok(NatsBroker {
            inner: Arc::new(Inner {
                options,
                client,
                js,
                streams: Mutex::default(),
                closed: AtomicBool::new(false),
                dropped,
                disconnects,
                shutdown: CancellationToken::new(),
                tasks: TaskTracker::new(),
                subjects: publisher::Subjects::new(),
            }),
        })
    }

    /// Connects to a `nats://` or `jetstream://` URL (see [`NatsOptions::from_url`]).
    pub async fn connect_url(url: &str) -> Result<Self> {
        let parsed = url::Url::parse(url).map_err(|e| {
            Error::with_source(
                ErrorKind::InvalidUrl,
                format!("cannot parse NATS URL `{}`", redact_url(url)),
                e,
            )
        })?;
        NatsBroker::connect(NatsOptions::from_url(&parsed)?).await
    }

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
    fn publish<'a, 'b, 'c>(&'a self, topic: &'b str, message: Message) -> publisher::Publish<'c>
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
            subscriber::subscribe_jetstream(&self.inner, pattern, options).await
        } else {
            subscriber::subscribe_core(&self.inner, pattern, options).await
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
        match self.inner.options.mode {
            Mode::Core => Capabilities::new("nats")
                .delivery(DeliveryGuarantee::AtMostOnce)
                .ordering(OrderingGuarantee::PerPublisher)
                .persistence(false)
                .redelivery(false)
                .queue_groups(true)
                .max_message_bytes(max),
            Mode::JetStream => Capabilities::new("jetstream")
                .delivery(DeliveryGuarantee::AtLeastOnce)
                .ordering(OrderingGuarantee::PerPublisher)
                .persistence(true)
                .redelivery(true)
                .queue_groups(true)
                .max_message_bytes(max),
        }
    }
}

/// The oldest nats-server whose JetStream API the client can use: async-nats needs
/// account fields that 2.9 does not send, and then blames JetStream for being off.
const JETSTREAM_MIN_SERVER: (u64, u64) = (2, 10);

/// Fails, naming the version needed, when the server at `shown` runs `version`, older
/// than [`JETSTREAM_MIN_SERVER`]. A version that does not parse is let through.
fn check_jetstream_version(version: &str, shown: &str) -> Result<()> {
    let mut parts = version.trim_start_matches('v').split(['.', '-']);
    let (Some(Ok(major)), Some(Ok(minor))) = (
        parts.next().map(str::parse::<u64>),
        parts.next().map(str::parse::<u64>),
    ) else {
        return Ok(());
    };
    if (major, minor) >= JETSTREAM_MIN_SERVER {
        return Ok(());
    }
    let (need_major, need_minor) = JETSTREAM_MIN_SERVER;
    Err(Error::new(
        ErrorKind::Unsupported,
        format!(
            "jetstream:// needs nats-server {need_major}.{need_minor} or newer; {shown} runs {version}"
        ),
    ))
}

#[cfg(test)]
mod version_tests {
    use super::*;

    #[test]
    fn servers_older_than_2_10_are_named_and_refused() {
        let err = check_jetstream_version("2.9.10", "nats://h:4222").expect_err("2.9");
        assert_eq!(err.kind(), ErrorKind::Unsupported);
        assert!(err.message().contains("2.10 or newer"), "{err}");
        assert!(err.message().contains("runs 2.9.10"), "{err}");
        for ok in ["2.10.0", "2.12.15", "v2.11.3-beta.1", "3.0.0", "weird"] {
            assert!(check_jetstream_version(ok, "x").is_ok(), "{ok}");
        }
        assert!(check_jetstream_version("1.4.1", "x").is_err());
    }
}
