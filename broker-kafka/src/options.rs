//! Options of the Kafka broker, from a builder (reading them from a URL is in
//! [`kafka_url`](crate::kafka_url)).

use std::fmt;
use std::time::Duration;

use broker_core::registry::is_secret_key;
use rdkafka::ClientConfig;

/// The URL scheme this crate registers.
pub const SCHEME: &str = "kafka";

/// Options of a [`KafkaBroker`](crate::KafkaBroker).
///
/// Build them with the methods, or read them from a URL:
///
/// ```text
/// kafka://host:port[,host:port...][?option=value&librdkafka.key=value...]
/// ```
///
/// | URL option | method | default |
/// |---|---|---|
/// | `partitions` | [`partitions`](Self::partitions) | 3 |
/// | `replication` | [`replication`](Self::replication) | 1 |
/// | `min_insync_replicas` | [`min_insync_replicas`](Self::min_insync_replicas) | the broker's |
/// | `group_protocol` | [`group_protocol`](Self::group_protocol) | `classic` |
/// | `session_timeout_ms` | [`session_timeout`](Self::session_timeout) | 10 s (classic) |
/// | `heartbeat_interval_ms` | [`heartbeat_interval`](Self::heartbeat_interval) | 3 s (classic) |
/// | `create_topics` | [`create_topics`](Self::create_topics) | true |
/// | `max_message_bytes` | [`max_message_bytes`](Self::max_message_bytes) | 8 MiB |
/// | `publish_timeout_ms` | [`publish_timeout`](Self::publish_timeout) | 30 s |
/// | `subscribe_timeout_ms` | [`subscribe_timeout`](Self::subscribe_timeout) | 30 s |
/// | `commit_interval_ms` | [`commit_interval`](Self::commit_interval) | 100 ms |
/// | `pattern_refresh_ms` | [`pattern_refresh`](Self::pattern_refresh) | 1 s |
/// | `client_id` | [`client_id`](Self::client_id) | `broker-rs` |
/// | `bootstrap.servers`, `hosts` | [`brokers`](Self::brokers) | `127.0.0.1:9092` |
///
/// The URL's own hosts set [`brokers`](Self::brokers) too. Any other query key containing
/// a dot is a librdkafka property, passed to every client the broker makes (producer,
/// consumers, admin), as with rdkafka's `ClientConfig`; so is anything given to
/// [`set`](Self::set). Credentials in the URL's user-info become
/// `sasl.username` / `sasl.password`. Secrets never appear in `Debug` output or logs.
///
/// ```
/// use broker_kafka::KafkaOptions;
///
/// let options = KafkaOptions::from_url_str(
///     "kafka://10.0.0.1:9092,10.0.0.2:9092?partitions=6&security.protocol=SASL_SSL&sasl.password=pw",
/// )?;
/// assert_eq!(options.brokers, ["10.0.0.1:9092", "10.0.0.2:9092"]);
/// assert_eq!(options.partitions, 6);
/// assert_eq!(options.get("security.protocol"), Some("SASL_SSL"));
/// assert!(!format!("{options:?}").contains("pw"));
/// # Ok::<(), broker_core::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct KafkaOptions {
    /// Bootstrap servers, `host:port` each.
    pub brokers: Vec<String>,
    /// The client id sent to the brokers.
    pub client_id: String,
    /// Partitions of topics the broker creates.
    pub partitions: i32,
    /// Replication factor of topics the broker creates.
    pub replication: i32,
    /// `min.insync.replicas` of topics the broker creates; `None` leaves the broker's
    /// default. With `acks=all` (the producer's setting), a publish succeeds only once
    /// this many replicas have the record.
    pub min_insync_replicas: Option<i32>,
    /// The consumer group protocol.
    pub group_protocol: GroupProtocol,
    /// How long the group waits for a silent consumer before giving its partitions to
    /// the others (`session.timeout.ms`); `None` is [`DEFAULT_SESSION_TIMEOUT`]. Classic
    /// protocol only: with [`GroupProtocol::Consumer`] the broker sets it.
    pub session_timeout: Option<Duration>,
    /// How often a consumer tells its group it is alive (`heartbeat.interval.ms`); `None`
    /// is [`DEFAULT_HEARTBEAT_INTERVAL`]. Classic protocol only, like the session timeout.
    pub heartbeat_interval: Option<Duration>,
    /// Whether topics are created on first publish or subscribe (through the admin API).
    pub create_topics: bool,
    /// The largest message accepted (payload, key, id and headers), in bytes. Topics the
    /// broker creates get a `max.message.bytes` that fits it.
    pub max_message_bytes: usize,
    /// How long a publish may take until the broker acknowledges it
    /// (librdkafka's `message.timeout.ms`).
    pub publish_timeout: Duration,
    /// How long `subscribe` waits for the consumer to join its group and get partitions.
    pub subscribe_timeout: Duration,
    /// How often acked offsets are committed while consuming (they are also committed when
    /// partitions are revoked and when a subscription ends).
    pub commit_interval: Duration,
    /// How often a wildcard subscription looks for new matching topics
    /// (librdkafka's `topic.metadata.refresh.interval.ms` on its consumer).
    pub pattern_refresh: Duration,
    config: Vec<(String, String)>,
}

/// A consumer group protocol (`group.protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum GroupProtocol {
    /// The classic protocol: the group stops to rebalance; the client sets the session
    /// timeout and heartbeat interval.
    #[default]
    Classic,
    /// The consumer protocol of KIP-848 (Kafka 4.0 and later): the broker assigns
    /// partitions incrementally, without stopping the group, and sets the session timeout
    /// (`group.consumer.session.timeout.ms`, 45 s by default) and heartbeat interval.
    Consumer,
}

impl GroupProtocol {
    /// The value of `group.protocol`.
    pub fn as_str(self) -> &'static str {
        match self {
            GroupProtocol::Classic => "classic",
            GroupProtocol::Consumer => "consumer",
        }
    }
}

impl std::str::FromStr for GroupProtocol {
    type Err = broker_core::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "classic" => Ok(GroupProtocol::Classic),
            "consumer" => Ok(GroupProtocol::Consumer),
            other => Err(broker_core::Error::new(
                broker_core::ErrorKind::InvalidConfig,
                format!("unknown Kafka group protocol `{other}` (known: classic, consumer)"),
            )),
        }
    }
}

/// The session timeout of a classic consumer unless set: librdkafka's default is 45 s,
/// which leaves a crashed member's partitions unread for that long.
pub const DEFAULT_SESSION_TIMEOUT: Duration = Duration::from_secs(10);

/// The heartbeat interval of a classic consumer unless set (a third of the session
/// timeout).
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(3);

/// The default of [`KafkaOptions::max_message_bytes`]: 8 MiB.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 8 * 1024 * 1024;

/// Room for Kafka's own record and batch framing above
/// [`KafkaOptions::max_message_bytes`].
pub(crate) const FRAMING_ALLOWANCE: usize = 64 * 1024;

impl Default for KafkaOptions {
    fn default() -> Self {
        KafkaOptions {
            brokers: vec!["127.0.0.1:9092".to_owned()],
            client_id: "broker-rs".to_owned(),
            partitions: 3,
            replication: 1,
            min_insync_replicas: None,
            group_protocol: GroupProtocol::Classic,
            session_timeout: None,
            heartbeat_interval: None,
            create_topics: true,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            publish_timeout: Duration::from_secs(30),
            subscribe_timeout: Duration::from_secs(30),
            commit_interval: Duration::from_millis(100),
            pattern_refresh: Duration::from_secs(1),
            config: Vec::new(),
        }
    }
}

impl KafkaOptions {
    /// The defaults, for a broker on `127.0.0.1:9092`.
    pub fn new() -> Self {
        KafkaOptions::default()
    }

    /// Sets the bootstrap servers (`host:port` each).
    pub fn brokers<I, S>(mut self, brokers: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.brokers = brokers.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the client id.
    pub fn client_id(mut self, id: impl Into<String>) -> Self {
        self.client_id = id.into();
        self
    }

    /// Sets the partitions of created topics (at least 1).
    pub fn partitions(mut self, partitions: i32) -> Self {
        self.partitions = partitions.max(1);
        self
    }

    /// Sets the replication factor of created topics (at least 1).
    pub fn replication(mut self, replication: i32) -> Self {
        self.replication = replication.max(1);
        self
    }

    /// Sets `min.insync.replicas` of created topics (at least 1).
    pub fn min_insync_replicas(mut self, replicas: i32) -> Self {
        self.min_insync_replicas = Some(replicas.max(1));
        self
    }

    /// Sets the consumer group protocol.
    pub fn group_protocol(mut self, protocol: GroupProtocol) -> Self {
        self.group_protocol = protocol;
        self
    }

    /// Sets the session timeout of classic consumers.
    pub fn session_timeout(mut self, timeout: Duration) -> Self {
        self.session_timeout = Some(timeout);
        self
    }

    /// Sets the heartbeat interval of classic consumers.
    pub fn heartbeat_interval(mut self, interval: Duration) -> Self {
        self.heartbeat_interval = Some(interval);
        self
    }

    /// The group settings of a consumer: `group.protocol`, and for the classic protocol
    /// the session timeout and heartbeat interval. The consumer protocol takes those from
    /// the broker, so setting them is an `InvalidConfig` error there.
    pub(crate) fn group_settings(&self) -> broker_core::Result<Vec<(&'static str, String)>> {
        let protocol = ("group.protocol", self.group_protocol.as_str().to_owned());
        match self.group_protocol {
            GroupProtocol::Classic => {
                let session = self.session_timeout.unwrap_or(DEFAULT_SESSION_TIMEOUT);
                let heartbeat = self
                    .heartbeat_interval
                    .unwrap_or(DEFAULT_HEARTBEAT_INTERVAL);
                Ok(vec![
                    protocol,
                    ("session.timeout.ms", session.as_millis().to_string()),
                    ("heartbeat.interval.ms", heartbeat.as_millis().to_string()),
                ])
            }
            GroupProtocol::Consumer => {
                if self.session_timeout.is_some() || self.heartbeat_interval.is_some() {
                    return Err(broker_core::Error::new(
                        broker_core::ErrorKind::InvalidConfig,
                        "the Kafka consumer group protocol takes its session timeout and heartbeat interval from the broker (group.consumer.session.timeout.ms, group.consumer.heartbeat.interval.ms); unset them or use group_protocol=classic",
                    ));
                }
                Ok(vec![protocol])
            }
        }
    }

    /// Sets whether topics are created on demand.
    pub fn create_topics(mut self, create: bool) -> Self {
        self.create_topics = create;
        self
    }

    /// Sets the largest message accepted.
    pub fn max_message_bytes(mut self, bytes: usize) -> Self {
        self.max_message_bytes = bytes;
        self
    }

    /// Sets how long a publish may wait for the broker's acknowledgement.
    pub fn publish_timeout(mut self, timeout: Duration) -> Self {
        self.publish_timeout = timeout;
        self
    }

    /// Sets how long `subscribe` waits for the partition assignment.
    pub fn subscribe_timeout(mut self, timeout: Duration) -> Self {
        self.subscribe_timeout = timeout;
        self
    }

    /// Sets how often acked offsets are committed.
    pub fn commit_interval(mut self, interval: Duration) -> Self {
        self.commit_interval = interval;
        self
    }

    /// Sets how often wildcard subscriptions look for new topics.
    pub fn pattern_refresh(mut self, interval: Duration) -> Self {
        self.pattern_refresh = interval;
        self
    }

    /// Sets any librdkafka property (`security.protocol`, `sasl.mechanism`,
    /// `session.timeout.ms`, `linger.ms`, ...) on every client the broker makes. Later
    /// values win, and they win over the broker's own defaults (such as `acks=all`).
    pub fn set(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        let key = key.into();
        self.config.retain(|(k, _)| *k != key);
        self.config.push((key, value.into()));
        self
    }

    /// The librdkafka property `key`, as set with [`set`](Self::set) or the URL.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.config
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The base configuration of every client: bootstrap servers, client id and the
    /// pass-through properties (applied last, so they win).
    pub(crate) fn client_config(&self, role_defaults: &[(&str, String)]) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", self.brokers.join(","));
        config.set("client.id", &self.client_id);
        config.set("statistics.interval.ms", crate::context::STATS_INTERVAL_MS);
        for (key, value) in role_defaults {
            config.set(*key, value);
        }
        for (key, value) in &self.config {
            config.set(key, value);
        }
        config
    }
}

impl fmt::Debug for KafkaOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Config<'a>(&'a [(String, String)]);
        impl fmt::Debug for Config<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_map()
                    .entries(self.0.iter().map(|(k, v)| {
                        let value = if is_secret(k) { "***" } else { v.as_str() };
                        (k.as_str(), value)
                    }))
                    .finish()
            }
        }
        f.debug_struct("KafkaOptions")
            .field("brokers", &self.brokers)
            .field("client_id", &self.client_id)
            .field("partitions", &self.partitions)
            .field("replication", &self.replication)
            .field("min_insync_replicas", &self.min_insync_replicas)
            .field("group_protocol", &self.group_protocol)
            .field("session_timeout", &self.session_timeout)
            .field("heartbeat_interval", &self.heartbeat_interval)
            .field("create_topics", &self.create_topics)
            .field("max_message_bytes", &self.max_message_bytes)
            .field("publish_timeout", &self.publish_timeout)
            .field("subscribe_timeout", &self.subscribe_timeout)
            .field("commit_interval", &self.commit_interval)
            .field("pattern_refresh", &self.pattern_refresh)
            .field("config", &Config(&self.config))
            .finish()
    }
}

/// Whether a librdkafka property holds a secret: broker-core's rule, plus the SSL and
/// SASL keys it does not name (`ssl.key.password`, `ssl.keystore.password`,
/// `ssl.key.pem`, `sasl.oauthbearer.client.secret`, `sasl.oauthbearer.config`, ...).
pub(crate) fn is_secret(key: &str) -> bool {
    is_secret_key(key)
        || matches!(
            key,
            "ssl.key.pem" | "ssl_key" | "ssl.key.location" | "sasl.oauthbearer.config"
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_replaces_and_wins() {
        let o = KafkaOptions::new().set("acks", "1").set("acks", "0");
        assert_eq!(o.get("acks"), Some("0"));
        let config = o.client_config(&[("acks", "all".to_owned())]);
        assert_eq!(config.get("acks"), Some("0"));
    }

    #[test]
    fn group_settings_follow_the_protocol() {
        let classic = KafkaOptions::new().group_settings().expect("classic");
        assert!(classic.contains(&("session.timeout.ms", "10000".to_owned())));
        assert!(classic.contains(&("heartbeat.interval.ms", "3000".to_owned())));

        let consumer = KafkaOptions::new().group_protocol(GroupProtocol::Consumer);
        assert_eq!(
            consumer.group_settings().expect("consumer"),
            [("group.protocol", "consumer".to_owned())]
        );
        let err = consumer
            .session_timeout(Duration::from_secs(5))
            .group_settings()
            .expect_err("the broker sets it");
        assert_eq!(err.kind(), broker_core::ErrorKind::InvalidConfig);
    }
}
