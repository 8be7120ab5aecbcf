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
}
