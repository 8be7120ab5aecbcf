//! Core NATS and JetStream against async-nats.
//!
//! Both sides connect to the same server with the same connect options (connection and
//! request timeouts, unlimited reconnects, default subscription capacity). Core NATS:
//! publishes are fire-and-forget, with one flush at the end of a batch on both sides.
//! JetStream: both sides keep the same number of publishes waiting for their ack
//! ([`JS_WINDOW`]), read the same stream with pull consumers sending the same pull
//! requests, one at a time ([`JS_PULL_BATCH`] messages, expiring after
//! [`JS_PULL_EXPIRES`]; see [`RawPull`]), and ack every message.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use async_nats::jetstream::{self, consumer::pull};
use async_nats::{Client, ConnectOptions, HeaderMap, Subject};
use broker::nats::NatsBroker;
use broker::{Broker, Message};
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};

use crate::framework::{Flush, Framework, connect_error};
use crate::scenario::{self, NoPrepare, Plan, Row, Topics};
use crate::side::{MsgSpec, RAW_ID_HEADER, Side, Sub, Subscribers};
use crate::{JetStreamAcks, NatsIds};

/// JetStream publishes in flight, on both sides.
pub(crate) const JS_WINDOW: usize = 256;
/// Messages per JetStream pull request, on both sides.
pub(crate) const JS_PULL_BATCH: usize = 64;
/// How long one pull request waits on the server, on both sides (the framework's
/// default `pull_expires_ms`).
pub(crate) const JS_PULL_EXPIRES: Duration = Duration::from_secs(2);
/// The stream both sides use.
const STREAM: &str = "BENCHFILE";
/// What it captures.
const STREAM_SUBJECTS: &str = "benchjs.>";

/// The NATS server to use: `NATS_URL`, or the local default.
pub(crate) fn server() -> String {
    std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned())
}

/// `[credentials@]host:port` of `server`, for the framework's URLs.
fn host_of(server: &str) -> String {
    server
        .trim_start_matches("nats://")
        .rsplit('@')
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// What to do when NATS is not reachable at `server`.
fn hint(server: &str) -> String {
    format!(
        "NATS is not reachable at {server}: start it with `scripts/nats.sh start` (and export the NATS_URL it prints)"
    )
}

/// The framework's core NATS side as [`run`] measures it (`nats://…?name=broker-bench`,
/// the backend's defaults, message ids on): publishes through `Arc<dyn Broker>`, one
/// flush of the client at the end of a batch. Returns the broker too, to close it.
pub(crate) async fn core_framework() -> anyhow::Result<(Framework, Arc<dyn Broker>)> {
    let server = server();
    let url = format!("nats://{}?name=broker-bench", host_of(&server));
    let nats = NatsBroker::connect_url(&url)
        .await
        .map_err(|err| connect_error(err, || hint(&server)))?;
    let client = nats.client().clone();
    let broker: Arc<dyn Broker> = Arc::new(nats);
    Ok((
        Framework::new(broker.clone()).flush(flush_of(client)),
        broker,
    ))
}

/// Measures core NATS (`jetstream` false) or JetStream.
pub(crate) async fn run(
    jetstream: bool,
    acks: JetStreamAcks,
    ids: NatsIds,
    plan: &Plan,
    rows: &mut Vec<Row>,
) -> anyhow::Result<()> {
    let server = server();
    let host = host_of(&server);
    let hint = || hint(&server);
    let url = if jetstream {
        format!(
            "jetstream://{host}?name=broker-bench&stream={STREAM}&stream_subjects={STREAM_SUBJECTS}&storage=file&max_age_secs=60&duplicate_window_ms=30000&pull_batch={JS_PULL_BATCH}&pull_expires_ms={}",
            JS_PULL_EXPIRES.as_millis()
        )
    } else {
        format!("nats://{host}?name=broker-bench")
    };
    let nats = NatsBroker::connect_url(&url)
        .await
        .map_err(|err| connect_error(err, hint))?;
    let client = nats.client().clone();
    let broker: Arc<dyn Broker> = Arc::new(nats);
    let mut fw = Framework::new(broker.clone());
    if jetstream {
        fw = fw.window(JS_WINDOW);
        // The framework creates the stream on first use; the raw side then reads it.
        broker
            .publish("benchjs.init", Message::new("init"))
            .await
            .context("creating the JetStream stream through the framework")?;
    } else {
        fw = fw.flush(flush_of(client));
    }

    let raw_client = ConnectOptions::new()
        .name("broker-bench-raw")
        .connection_timeout(Duration::from_secs(5))
        .request_timeout(Some(Duration::from_secs(10)))
        .max_reconnects(None)
        .connect(server.as_str())
        .await
        .with_context(hint)?;
    let js_baseline = |ack: &str| {
        format!(
            "async-nats JetStream: {JS_WINDOW} publish acks in flight, pull consumers sending one pull request of {JS_PULL_BATCH} at a time (expiring after {} s), {ack} per message (file stream with a 60 s max age, same for both)",
            JS_PULL_EXPIRES.as_secs()
        )
    };
    let (name, baseline) = if jetstream {
        (
            "jetstream",
            js_baseline("`double_ack()` (acks the server confirms, as the framework's default)"),
        )
    } else {
        (
            "nats",
            "async-nats core: publish_with_headers, one flush at the end of a batch".to_owned(),
        )
    };
    let raw = if jetstream {
        let js = jetstream::new(raw_client.clone());
        let stream = js
            .get_stream(STREAM)
            .await
            .context("the raw side looking up the framework's stream")?;
        RawNats {
            client: raw_client,
            js: Some((js, stream)),
            confirm_acks: true,
        }
    } else {
        RawNats {
            client: raw_client,
            js: None,
            confirm_acks: false,
        }
    };
    let result = if (!jetstream && (ids.on() || plan.raw_ids)) || (jetstream && acks.confirmed()) {
        scenario::compare(
            name,
            &baseline,
            &raw,
            &fw,
            &NoPrepare,
            &Topics::new(if jetstream { "benchjs" } else { "bench" }),
            plan,
            rows,
        )
        .await
    } else {
        Ok(())
    };
    broker.close().await?;
    result?;
    if !jetstream && ids.off() && !plan.raw_ids {
        // The same with the message id left off the wire (`message_ids=off`), so that
        // both sides send the same bytes: the framework's own cost, without the id's.
        compare_variant(
            &format!("{url}&message_ids=off"),
            "nats, message_ids=off",
            "async-nats core: publish_with_headers (publish without headers), one flush at the end of a batch",
            &raw,
            plan,
            rows,
        )
        .await?;
    }
    if jetstream && acks.unconfirmed() {
        // The same with acks that are sent, not confirmed: the raw side's `ack()`.
        let raw = RawNats {
            confirm_acks: false,
            ..raw
        };
        compare_variant(
            &format!("{url}&confirm_acks=off"),
            "jetstream, confirm_acks=off",
            &js_baseline("`ack()`"),
            &raw,
            plan,
            rows,
        )
        .await?;
    }
    Ok(())
}

/// The comparisons once more, against the framework connected to `url` (a variant of the
/// first connection's options), under the backend name `name`.
async fn compare_variant(
    url: &str,
    name: &str,
    baseline: &str,
    raw: &RawNats,
    plan: &Plan,
    rows: &mut Vec<Row>,
) -> anyhow::Result<()> {
    let nats = NatsBroker::connect_url(url)
        .await
        .with_context(|| format!("connecting the framework for `{name}`"))?;
    let jetstream = raw.js.is_some();
    let client = nats.client().clone();
    let broker: Arc<dyn Broker> = Arc::new(nats);
    let fw = if jetstream {
        Framework::new(broker.clone()).window(JS_WINDOW)
    } else {
        Framework::new(broker.clone()).flush(flush_of(client))
    };
    let root = if jetstream { "benchjs" } else { "bench" };
    let result = scenario::compare(
        name,
        baseline,
        raw,
        &fw,
        &NoPrepare,
        &Topics::new(root),
        plan,
        rows,
    )
    .await;
    broker.close().await?;
    result
}

/// The framework side's end of a core NATS batch: the client's flush, as the raw side's.
fn flush_of(client: Client) -> Flush {
    Arc::new(move || {
        let client = client.clone();
        async move { client.flush().await.context("flush") }.boxed()
    })
}

/// async-nats, used directly.
pub(crate) struct RawNats {
    client: Client,
    js: Option<(jetstream::Context, jetstream::stream::Stream)>,
    /// JetStream: ack with `double_ack()`, which waits for the server's confirmation,
    /// instead of `ack()`, which returns once the ack is sent.
    confirm_acks: bool,
}

fn header_map(spec: &MsgSpec) -> Option<HeaderMap> {
    spec.has_headers().then(|| {
        let mut map = HeaderMap::new();
        for (k, v) in spec.headers.iter() {
            map.append(k.as_str(), v.as_str());
        }
        map
    })
}

/// The headers of one raw message: the shared ones, or with `--raw-ids` a copy with a
/// fresh id header added. On JetStream (`dedup_topic` set) the id also goes into
/// `Nats-Msg-Id` as `<topic>:<id>`, for the server's duplicate detection, as the
/// framework sends it.
fn headers_for(
    spec: &MsgSpec,
    shared: &Option<HeaderMap>,
    dedup_topic: Option<&str>,
) -> Option<HeaderMap> {
    match spec.raw_id() {
        Some(id) => {
            let mut map = shared.clone().unwrap_or_default();
            map.insert(RAW_ID_HEADER, id.as_str());
            if let Some(topic) = dedup_topic {
                map.insert(
                    async_nats::header::NATS_MESSAGE_ID,
                    format!("{topic}:{id}").as_str(),
                );
            }
            Some(map)
        }
        None => shared.clone(),
    }
}

impl Side for RawNats {
    type Sub = RawNatsSub;

    async fn publish_many(&self, topic: &str, n: u64, spec: &MsgSpec) -> anyhow::Result<()> {
        let subject = Subject::from(topic);
        let headers = header_map(spec);
        match &self.js {
            None => {
                for _ in 0..n {
                    match headers_for(spec, &headers, None) {
                        Some(h) => {
                            self.client
                                .publish_with_headers(subject.clone(), h, spec.payload.clone())
                                .await?
                        }
                        None => {
                            self.client
                                .publish(subject.clone(), spec.payload.clone())
                                .await?
                        }
                    }
                }
                self.client.flush().await?;
            }
            Some((js, _)) => {
                let mut pending = FuturesUnordered::new();
                for _ in 0..n {
                    let ack = match headers_for(spec, &headers, Some(topic)) {
                        Some(h) => {
                            js.publish_with_headers(subject.clone(), h, spec.payload.clone())
                                .await?
                        }
                        None => js.publish(subject.clone(), spec.payload.clone()).await?,
                    };
                    pending.push(ack.into_future());
                    if pending.len() >= JS_WINDOW
                        && let Some(ack) = pending.next().await
                    {
                        ack?;
                    }
                }
                while let Some(ack) = pending.next().await {
                    ack?;
                }
            }
        }
        Ok(())
    }

    async fn publish_one(&self, topic: &str, spec: &MsgSpec) -> anyhow::Result<()> {
        let subject = Subject::from(topic);
        let dedup_topic = self.js.as_ref().map(|_| topic);
        match (&self.js, headers_for(spec, &header_map(spec), dedup_topic)) {
            (None, Some(h)) => {
                self.client
                    .publish_with_headers(subject, h, spec.payload.clone())
                    .await?
            }
            (None, None) => self.client.publish(subject, spec.payload.clone()).await?,
            (Some((js, _)), Some(h)) => {
                js.publish_with_headers(subject, h, spec.payload.clone())
                    .await?
                    .await?;
            }
            (Some((js, _)), None) => {
                js.publish(subject, spec.payload.clone()).await?.await?;
            }
        }
        Ok(())
    }

    async fn subscribe(&self, topic: &str, who: Subscribers<'_>) -> anyhow::Result<Vec<Self::Sub>> {
        let Subscribers { group, members } = who;
        let mut subs = Vec::with_capacity(members);
        match &self.js {
            None => {
                for _ in 0..members {
                    let sub = match group {
                        Some(g) => {
                            self.client
                                .queue_subscribe(topic.to_owned(), g.to_owned())
                                .await?
                        }
                        None => self.client.subscribe(topic.to_owned()).await?,
                    };
                    subs.push(RawNatsSub::Core(sub));
                }
                // The SUBs reach the server before anything published afterwards.
                self.client.flush().await?;
            }
            Some((_, stream)) => {
                let config = |durable: Option<String>| pull::Config {
                    durable_name: durable,
                    filter_subject: topic.to_owned(),
                    ack_policy: jetstream::consumer::AckPolicy::Explicit,
                    ack_wait: Duration::from_secs(30),
                    deliver_policy: if group.is_some() {
                        jetstream::consumer::DeliverPolicy::All
                    } else {
                        jetstream::consumer::DeliverPolicy::New
                    },
                    inactive_threshold: Duration::from_secs(60),
                    ..Default::default()
                };
                let shared = match group {
                    Some(g) => {
                        let durable = format!("raw-{g}-{}", topic.replace('.', "-"));
                        Some(
                            stream
                                .create_consumer(config(Some(durable)))
                                .await
                                .map_err(|e| anyhow!("creating the raw durable consumer: {e}"))?,
                        )
                    }
                    None => None,
                };
                for _ in 0..members {
                    let consumer = match &shared {
                        Some(c) => c.clone(),
                        None => stream
                            .create_consumer(config(None))
                            .await
                            .map_err(|e| anyhow!("creating a raw consumer: {e}"))?,
                    };
                    subs.push(RawNatsSub::Js(Box::new(RawPull {
                        consumer,
                        batch: None,
                        confirm_acks: self.confirm_acks,
                    })));
                }
            }
        }
        Ok(subs)
    }
}

/// A raw subscription.
pub(crate) enum RawNatsSub {
    /// Core NATS.
    Core(async_nats::Subscriber),
    /// A JetStream pull consumer, read one pull request at a time.
    Js(Box<RawPull>),
}

/// A raw JetStream pull consumer read the way the framework's subscriber reads one: one
/// pull request of [`JS_PULL_BATCH`] messages at a time, each expiring after
/// [`JS_PULL_EXPIRES`], the next sent when it ends. (The continuous `stream()` API keeps
/// pull requests overlapped instead, and was seen to stop delivering partway through a
/// run here, as reported against async-nats, e.g. nats-io/nats.rs#1285.)
pub(crate) struct RawPull {
    consumer: jetstream::consumer::PullConsumer,
    /// The open pull request.
    batch: Option<pull::Batch>,
    /// Ack with `double_ack()` instead of `ack()`.
    confirm_acks: bool,
}

impl RawPull {
    /// The next message, pulling as needed.
    async fn next(&mut self) -> anyhow::Result<jetstream::Message> {
        loop {
            let batch = match &mut self.batch {
                Some(batch) => batch,
                None => self.batch.insert(
                    self.consumer
                        .batch()
                        .max_messages(JS_PULL_BATCH)
                        .expires(JS_PULL_EXPIRES)
                        .messages()
                        .await
                        .map_err(|e| anyhow!("pulling from the raw consumer: {e}"))?,
                ),
            };
            match batch.next().await {
                Some(Ok(message)) => return Ok(message),
                Some(Err(err)) => bail!("raw JetStream consumer: {err}"),
                None => self.batch = None,
            }
        }
    }
}

impl Sub for RawNatsSub {
    async fn recv(&mut self) -> anyhow::Result<Option<usize>> {
        match self {
            RawNatsSub::Core(sub) => Ok(sub.next().await.map(|m| m.payload.len())),
            RawNatsSub::Js(pull) => {
                let message = pull.next().await?;
                let len = message.payload.len();
                if pull.confirm_acks {
                    message.double_ack().await
                } else {
                    message.ack().await
                }
                .map_err(|e| anyhow!("raw JetStream ack: {e}"))?;
                Ok(Some(len))
            }
        }
    }
}
