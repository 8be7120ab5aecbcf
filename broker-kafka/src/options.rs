//! Options of the Kafka broker, from a builder or from the URL.

use std::fmt;
use std::time::Duration;

use broker_core::registry::is_secret_key;
use broker_core::{Error, ErrorKind, Result};
use rdkafka::ClientConfig;
use url::Url;

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
///
/// Any query key containing a dot is a librdkafka property, passed to every client the
/// broker makes (producer, consumers, admin), as with rdkafka's `ClientConfig`; so is
/// anything given to [`set`](Self::set). Credentials in the URL's user-info become
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

    /// Reads options from a `kafka://` URL string. Unlike [`from_url`](Self::from_url),
    /// this accepts a comma-separated list of `host:port` pairs, which a parsed
    /// [`Url`] cannot hold.
    pub fn from_url_str(url: &str) -> Result<Self> {
        let redacted = broker_core::registry::redact_url(url);
        let invalid = |why: &str| {
            Error::new(
                ErrorKind::InvalidUrl,
                format!("invalid Kafka URL `{redacted}`: {why}"),
            )
        };
        let rest = url
            .strip_prefix("kafka://")
            .ok_or_else(|| invalid("it must start with kafka://"))?;
        let (authority, query) = match rest.split_once('?') {
            Some((a, q)) => (a, Some(q)),
            None => (rest, None),
        };
        let authority = authority.trim_end_matches('/');
        if authority.contains('/') {
            return Err(invalid("a Kafka URL has no path"));
        }
        let (userinfo, hosts) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let mut options = KafkaOptions::default();
        if !hosts.is_empty() {
            options.brokers = parse_hosts(hosts, None).map_err(|why| invalid(&why))?;
        }
        if let Some(userinfo) = userinfo {
            let (user, password) = match userinfo.split_once(':') {
                Some((u, p)) => (u, Some(p)),
                None => (userinfo, None),
            };
            let decode = |s: &str| {
                url::form_urlencoded::parse(format!("x={s}").as_bytes())
                    .next()
                    .map(|(_, v)| v.into_owned())
                    .unwrap_or_default()
            };
            options = options.set("sasl.username", decode(user));
            if let Some(password) = password {
                options = options.set("sasl.password", decode(password));
            }
        }
        if let Some(query) = query {
            options.apply_query(url::form_urlencoded::parse(query.as_bytes()))?;
        }
        Ok(options)
    }

    /// Reads options from a parsed `kafka://` URL (as the registry hands it over). Several
    /// hosts sharing one port can be written `kafka://h1,h2,h3:9092`; for other lists use
    /// [`from_url_str`](Self::from_url_str) or the `bootstrap.servers` query key.
    pub fn from_url(url: &Url) -> Result<Self> {
        if url.scheme() != SCHEME {
            return Err(Error::new(
                ErrorKind::InvalidUrl,
                format!(
                    "not a kafka:// URL: `{}`",
                    broker_core::registry::redact_url(url.as_str())
                ),
            ));
        }
        let mut options = KafkaOptions::default();
        if let Some(hosts) = url.host_str().filter(|h| !h.is_empty()) {
            options.brokers = parse_hosts(hosts, url.port()).map_err(|why| {
                Error::new(ErrorKind::InvalidUrl, format!("invalid Kafka URL: {why}"))
            })?;
        }
        if !url.username().is_empty() {
            let user = url::form_urlencoded::parse(format!("x={}", url.username()).as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default();
            options = options.set("sasl.username", user);
        }
        if let Some(password) = url.password() {
            let password = url::form_urlencoded::parse(format!("x={password}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default();
            options = options.set("sasl.password", password);
        }
        options.apply_query(url.query_pairs())?;
        Ok(options)
    }

    fn apply_query<'a>(
        &mut self,
        pairs: impl Iterator<Item = (std::borrow::Cow<'a, str>, std::borrow::Cow<'a, str>)>,
    ) -> Result<()> {
        for (key, value) in pairs {
            let number = || {
                value.parse::<u64>().map_err(|_| {
                    Error::new(
                        ErrorKind::InvalidConfig,
                        format!("Kafka URL option `{key}` must be a whole number, got `{value}`"),
                    )
                })
            };
            let millis = || number().map(Duration::from_millis);
            let count = || {
                number().and_then(|n| {
                    i32::try_from(n).map_err(|_| {
                        Error::new(
                            ErrorKind::InvalidConfig,
                            format!("Kafka URL option `{key}` is too large: {n}"),
                        )
                    })
                })
            };
            let flag = || match &*value {
                "true" | "1" | "yes" => Ok(true),
                "false" | "0" | "no" => Ok(false),
                other => Err(Error::new(
                    ErrorKind::InvalidConfig,
                    format!("Kafka URL option `{key}` is true or false, got `{other}`"),
                )),
            };
            let this = std::mem::take(self);
            *self = match &*key {
                "partitions" => this.partitions(count()?),
                "replication" => this.replication(count()?),
                "create_topics" => this.create_topics(flag()?),
                "max_message_bytes" => this.max_message_bytes(number()? as usize),
                "publish_timeout_ms" => this.publish_timeout(millis()?),
                "subscribe_timeout_ms" => this.subscribe_timeout(millis()?),
                "commit_interval_ms" => this.commit_interval(millis()?),
                "pattern_refresh_ms" => this.pattern_refresh(millis()?),
                "client_id" => this.client_id(value.into_owned()),
                // `hosts` is where the registry puts the host list of
                // `kafka://h1:9092,h2:9093`, which the URL standard cannot parse.
                key @ ("bootstrap.servers" | "hosts") => {
                    let brokers = parse_hosts(&value, None).map_err(|why| {
                        Error::new(ErrorKind::InvalidConfig, format!("`{key}`: {why}"))
                    })?;
                    this.brokers(brokers)
                }
                dotted if dotted.contains('.') => this.set(dotted, value.into_owned()),
                other => {
                    return Err(Error::new(
                        ErrorKind::InvalidConfig,
                        format!(
                            "unknown Kafka URL option `{other}` (known: partitions, replication, create_topics, max_message_bytes, publish_timeout_ms, subscribe_timeout_ms, commit_interval_ms, pattern_refresh_ms, client_id; librdkafka properties contain a dot)"
                        ),
                    ));
                }
            };
        }
        Ok(())
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

fn parse_hosts(hosts: &str, default_port: Option<u16>) -> std::result::Result<Vec<String>, String> {
    hosts
        .split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(|host| {
            if host.contains(':') && !host.starts_with('[') || host.contains("]:") {
                Ok(host.to_owned())
            } else {
                Ok(format!("{host}:{}", default_port.unwrap_or(9092)))
            }
        })
        .collect::<std::result::Result<Vec<_>, String>>()
        .and_then(|list| {
            if list.is_empty() {
                Err("no broker address".to_owned())
            } else {
                Ok(list)
            }
        })
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
    fn url_with_several_hosts_and_options() {
        let o = KafkaOptions::from_url_str(
            "kafka://a:1,b:2/?partitions=4&replication=2&create_topics=false&linger.ms=5",
        )
        .expect("valid");
        assert_eq!(o.brokers, ["a:1", "b:2"]);
        assert_eq!(
            (o.partitions, o.replication, o.create_topics),
            (4, 2, false)
        );
        assert_eq!(o.get("linger.ms"), Some("5"));
    }

    #[test]
    fn parsed_url_hosts_share_the_port() {
        let url = Url::parse("kafka://a,b:19092?commit_interval_ms=50").expect("url");
        let o = KafkaOptions::from_url(&url).expect("valid");
        assert_eq!(o.brokers, ["a:19092", "b:19092"]);
        assert_eq!(o.commit_interval, Duration::from_millis(50));
        let o = KafkaOptions::from_url(&Url::parse("kafka://h").expect("url")).expect("valid");
        assert_eq!(o.brokers, ["h:9092"]);
    }

    #[test]
    fn a_host_list_with_ports_comes_through_the_registry_parser() {
        let url =
            broker_core::registry::parse_url("kafka://h1:9092,h2:9093?client_id=x").expect("url");
        let o = KafkaOptions::from_url(&url).expect("valid");
        assert_eq!(o.brokers, ["h1:9092", "h2:9093"]);
    }

    #[test]
    fn unknown_and_malformed_options_are_errors() {
        for bad in [
            "kafka://h:1?nope=1",
            "kafka://h:1?partitions=x",
            "kafka://h:1?create_topics=maybe",
        ] {
            let err = KafkaOptions::from_url_str(bad).expect_err(bad);
            assert_eq!(err.kind(), ErrorKind::InvalidConfig, "{bad}");
        }
        let err = KafkaOptions::from_url_str("nats://h:1").expect_err("scheme");
        assert_eq!(err.kind(), ErrorKind::InvalidUrl);
    }

    #[test]
    fn secrets_stay_out_of_debug_and_errors() {
        let o = KafkaOptions::from_url_str(
            "kafka://alice:hunter2@h:1?sasl.password=pw1&ssl.key.password=pw2&ssl.key.pem=PEM&sasl.mechanism=PLAIN",
        )
        .expect("valid");
        assert_eq!(o.get("sasl.username"), Some("alice"));
        assert_eq!(
            o.get("sasl.password"),
            Some("pw1"),
            "query wins over user-info"
        );
        let debug = format!("{o:?}");
        for secret in ["hunter2", "pw1", "pw2", "PEM"] {
            assert!(!debug.contains(secret), "{debug}");
        }
        assert!(debug.contains("PLAIN"), "{debug}");
        let err = KafkaOptions::from_url_str("kafka://alice:hunter2@h:1?bad=1&sasl.password=pw1")
            .expect_err("bad option");
        assert!(!err.display_chain().contains("hunter2"));
        assert!(!err.display_chain().contains("pw1"));
    }

    #[test]
    fn set_replaces_and_wins() {
        let o = KafkaOptions::new().set("acks", "1").set("acks", "0");
        assert_eq!(o.get("acks"), Some("0"));
        let config = o.client_config(&[("acks", "all".to_owned())]);
        assert_eq!(config.get("acks"), Some("0"));
    }
}
