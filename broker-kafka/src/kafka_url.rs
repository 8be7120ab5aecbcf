//! Reading [`KafkaOptions`] from a `kafka://` URL: the URL's parts, and the table of its
//! query keys ([`URL_KEYS`]), each written once and applied by [`apply_query_key`].

use std::borrow::Cow;
use std::time::Duration;

use broker_core::{Error, ErrorKind, Result};
use url::Url;

use crate::options::{GroupProtocol, KafkaOptions, SCHEME};

/// One query key of a `kafka://` URL: its name, and how its value is parsed and what
/// it sets (a builder method of [`KafkaOptions`]).
struct UrlKey {
    name: &'static str,
    sets: Setter,
}

/// How a query value is parsed, and the builder method that takes it.
enum Setter {
    /// A whole number that fits an `i32`.
    Count(fn(KafkaOptions, i32) -> KafkaOptions),
    /// A whole number of bytes.
    Bytes(fn(KafkaOptions, usize) -> KafkaOptions),
    /// A whole number of milliseconds.
    Millis(fn(KafkaOptions, Duration) -> KafkaOptions),
    /// `true`, `1`, `yes`, `false`, `0` or `no`.
    Flag(fn(KafkaOptions, bool) -> KafkaOptions),
    /// Any text.
    Text(fn(KafkaOptions, String) -> KafkaOptions),
    /// A consumer group protocol: `classic` or `consumer`.
    Protocol(fn(KafkaOptions, GroupProtocol) -> KafkaOptions),
    /// A comma-separated list of `host[:port]` (9092 when the port is left out).
    Hosts(fn(KafkaOptions, Vec<String>) -> KafkaOptions),
}

/// The query keys of a `kafka://` URL. Any other key with a dot is a librdkafka
/// property (see [`KafkaOptions::set`]); any other key without one is an error that
/// lists these.
const URL_KEYS: &[UrlKey] = &[
    UrlKey {
        name: "partitions",
        sets: Setter::Count(KafkaOptions::partitions),
    },
    UrlKey {
        name: "replication",
        sets: Setter::Count(KafkaOptions::replication),
    },
    UrlKey {
        name: "min_insync_replicas",
        sets: Setter::Count(KafkaOptions::min_insync_replicas),
    },
    UrlKey {
        name: "group_protocol",
        sets: Setter::Protocol(KafkaOptions::group_protocol),
    },
    UrlKey {
        name: "session_timeout_ms",
        sets: Setter::Millis(KafkaOptions::session_timeout),
    },
    UrlKey {
        name: "heartbeat_interval_ms",
        sets: Setter::Millis(KafkaOptions::heartbeat_interval),
    },
    UrlKey {
        name: "create_topics",
        sets: Setter::Flag(KafkaOptions::create_topics),
    },
    UrlKey {
        name: "max_message_bytes",
        sets: Setter::Bytes(KafkaOptions::max_message_bytes),
    },
    UrlKey {
        name: "publish_timeout_ms",
        sets: Setter::Millis(KafkaOptions::publish_timeout),
    },
    UrlKey {
        name: "subscribe_timeout_ms",
        sets: Setter::Millis(KafkaOptions::subscribe_timeout),
    },
    UrlKey {
        name: "commit_interval_ms",
        sets: Setter::Millis(KafkaOptions::commit_interval),
    },
    UrlKey {
        name: "pattern_refresh_ms",
        sets: Setter::Millis(KafkaOptions::pattern_refresh),
    },
    UrlKey {
        name: "client_id",
        sets: Setter::Text(KafkaOptions::client_id),
    },
    // librdkafka's own name for the broker list; it sets `brokers`, which every client
    // gets as `bootstrap.servers`, rather than passing through.
    UrlKey {
        name: "bootstrap.servers",
        sets: Setter::Hosts(KafkaOptions::brokers),
    },
    // Where the registry puts the host list of `kafka://h1:9092,h2:9093`, which the URL
    // standard cannot parse.
    UrlKey {
        name: "hosts",
        sets: Setter::Hosts(KafkaOptions::brokers),
    },
];

/// The parts of a `kafka://` URL, however it was given.
struct UrlParts<'a> {
    /// The URL, for error messages (redacted there).
    url: &'a str,
    /// The comma-separated host list, when the URL has one.
    hosts: Option<&'a str>,
    /// The port of hosts written without one (9092 when `None`).
    default_port: Option<u16>,
    /// The user-info's user and password, percent-encoded.
    user: Option<&'a str>,
    password: Option<&'a str>,
    /// The query string, percent-encoded.
    query: Option<&'a str>,
}

impl KafkaOptions {
    /// Reads options from a `kafka://` URL string. Unlike [`from_url`](Self::from_url),
    /// this accepts a comma-separated list of `host:port` pairs, which a parsed
    /// [`Url`] cannot hold.
    pub fn from_url_str(url: &str) -> Result<Self> {
        let rest = url
            .strip_prefix("kafka://")
            .ok_or_else(|| invalid_url(url, "it must start with kafka://"))?;
        let (authority, query) = match rest.split_once('?') {
            Some((a, q)) => (a, Some(q)),
            None => (rest, None),
        };
        let authority = authority.trim_end_matches('/');
        if authority.contains('/') {
            return Err(invalid_url(url, "a Kafka URL has no path"));
        }
        let (userinfo, hosts) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (user, password) = match userinfo.map(|u| u.split_once(':').ok_or(u)) {
            Some(Ok((user, password))) => (Some(user), Some(password)),
            Some(Err(user)) => (Some(user), None),
            None => (None, None),
        };
        from_parts(UrlParts {
            url,
            hosts: Some(hosts).filter(|h| !h.is_empty()),
            default_port: None,
            user,
            password,
            query,
        })
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
        from_parts(UrlParts {
            url: url.as_str(),
            hosts: url.host_str().filter(|h| !h.is_empty()),
            default_port: url.port(),
            user: Some(url.username()).filter(|u| !u.is_empty()),
            password: url.password(),
            query: url.query(),
        })
    }
}

/// The options a URL's parts give: its hosts, its user-info as `sasl.username` and
/// `sasl.password`, then its query keys in order.
fn from_parts(parts: UrlParts<'_>) -> Result<KafkaOptions> {
    let mut options = KafkaOptions::default();
    if let Some(hosts) = parts.hosts {
        options.brokers =
            parse_hosts(hosts, parts.default_port).map_err(|why| invalid_url(parts.url, &why))?;
    }
    if let Some(user) = parts.user {
        options = options.set("sasl.username", percent_decode(user));
    }
    if let Some(password) = parts.password {
        options = options.set("sasl.password", percent_decode(password));
    }
    for (key, value) in url::form_urlencoded::parse(parts.query.unwrap_or_default().as_bytes()) {
        options = apply_query_key(options, &key, value)?;
    }
    Ok(options)
}

/// Applies one query key: one of [`URL_KEYS`], or a librdkafka property (a key with a
/// dot).
fn apply_query_key(options: KafkaOptions, key: &str, value: Cow<'_, str>) -> Result<KafkaOptions> {
    let Some(known) = URL_KEYS.iter().find(|known| known.name == key) else {
        if key.contains('.') {
            return Ok(options.set(key, value.into_owned()));
        }
        let names: Vec<&str> = URL_KEYS.iter().map(|known| known.name).collect();
        return Err(Error::new(
            ErrorKind::InvalidConfig,
            format!(
                "unknown Kafka URL option `{key}` (known: {}; librdkafka properties contain a dot)",
                names.join(", ")
            ),
        ));
    };
    let value = QueryValue { key, value };
    Ok(match known.sets {
        Setter::Count(set) => set(options, value.count()?),
        Setter::Bytes(set) => set(options, value.number()? as usize),
        Setter::Millis(set) => set(options, Duration::from_millis(value.number()?)),
        Setter::Flag(set) => set(options, value.flag()?),
        Setter::Text(set) => set(options, value.value.into_owned()),
        Setter::Protocol(set) => set(options, value.value.parse()?),
        Setter::Hosts(set) => set(options, value.hosts()?),
    })
}

/// A query value, with its key for error messages.
struct QueryValue<'a> {
    key: &'a str,
    value: Cow<'a, str>,
}

impl QueryValue<'_> {
    fn error(&self, why: String) -> Error {
        Error::new(
            ErrorKind::InvalidConfig,
            format!("Kafka URL option `{}` {why}", self.key),
        )
    }

    fn number(&self) -> Result<u64> {
        self.value
            .parse::<u64>()
            .map_err(|_| self.error(format!("must be a whole number, got `{}`", self.value)))
    }

    fn count(&self) -> Result<i32> {
        let n = self.number()?;
        i32::try_from(n).map_err(|_| self.error(format!("is too large: {n}")))
    }

    fn flag(&self) -> Result<bool> {
        match &*self.value {
            "true" | "1" | "yes" => Ok(true),
            "false" | "0" | "no" => Ok(false),
            other => Err(self.error(format!("is true or false, got `{other}`"))),
        }
    }

    fn hosts(&self) -> Result<Vec<String>> {
        parse_hosts(&self.value, None)
            .map_err(|why| Error::new(ErrorKind::InvalidConfig, format!("`{}`: {why}", self.key)))
    }
}

/// An `InvalidUrl` error for `url` (redacted), saying why.
fn invalid_url(url: &str, why: &str) -> Error {
    Error::new(
        ErrorKind::InvalidUrl,
        format!(
            "invalid Kafka URL `{}`: {why}",
            broker_core::registry::redact_url(url)
        ),
    )
}

/// The user-info part `s`, percent-decoded.
fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

fn parse_hosts(hosts: &str, default_port: Option<u16>) -> std::result::Result<Vec<String>, String> {
    let list: Vec<String> = hosts
        .split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(|host| {
            if host.contains(':') && !host.starts_with('[') || host.contains("]:") {
                host.to_owned()
            } else {
                format!("{host}:{}", default_port.unwrap_or(9092))
            }
        })
        .collect();
    if list.is_empty() {
        Err("no broker address".to_owned())
    } else {
        Ok(list)
    }
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
    fn every_key_sets_its_option_from_either_parser() {
        let query = "partitions=6&replication=2&create_topics=no&max_message_bytes=1000\
            &publish_timeout_ms=1&subscribe_timeout_ms=2&commit_interval_ms=3\
            &pattern_refresh_ms=4&client_id=me&bootstrap.servers=x:1,y&min_insync_replicas=2\
            &session_timeout_ms=6000&heartbeat_interval_ms=2000&group_protocol=classic";
        let from_str = KafkaOptions::from_url_str(&format!("kafka://h:1?{query}")).expect("str");
        let url = Url::parse(&format!("kafka://h:1?{query}")).expect("url");
        let from_url = KafkaOptions::from_url(&url).expect("url");
        assert_eq!(from_str, from_url);
        let expected = KafkaOptions::new()
            .partitions(6)
            .replication(2)
            .create_topics(false)
            .max_message_bytes(1000)
            .publish_timeout(Duration::from_millis(1))
            .subscribe_timeout(Duration::from_millis(2))
            .commit_interval(Duration::from_millis(3))
            .pattern_refresh(Duration::from_millis(4))
            .client_id("me")
            .brokers(["x:1", "y:9092"])
            .min_insync_replicas(2)
            .session_timeout(Duration::from_secs(6))
            .heartbeat_interval(Duration::from_secs(2))
            .group_protocol(GroupProtocol::Classic);
        assert_eq!(from_str, expected);
        let consumer =
            KafkaOptions::from_url_str("kafka://h?group_protocol=consumer").expect("kip-848");
        assert_eq!(consumer.group_protocol, GroupProtocol::Consumer);
        let hosts = KafkaOptions::from_url_str("kafka://h:1?hosts=a:2,b").expect("hosts");
        assert_eq!(hosts.brokers, ["a:2", "b:9092"]);
    }

    #[test]
    fn unknown_and_malformed_options_are_errors() {
        for bad in [
            "kafka://h:1?nope=1",
            "kafka://h:1?partitions=x",
            "kafka://h:1?partitions=3000000000",
            "kafka://h:1?create_topics=maybe",
            "kafka://h:1?group_protocol=eager",
            "kafka://h:1?bootstrap.servers=,",
        ] {
            let err = KafkaOptions::from_url_str(bad).expect_err(bad);
            assert_eq!(err.kind(), ErrorKind::InvalidConfig, "{bad}");
        }
        let err = KafkaOptions::from_url_str("kafka://h:1?nope=1").expect_err("unknown");
        for key in URL_KEYS {
            assert!(err.to_string().contains(key.name), "{err}");
        }
        let err = KafkaOptions::from_url_str("nats://h:1").expect_err("scheme");
        assert_eq!(err.kind(), ErrorKind::InvalidUrl);
        let url = Url::parse("nats://h:1").expect("url");
        let err = KafkaOptions::from_url(&url).expect_err("scheme");
        assert_eq!(err.kind(), ErrorKind::InvalidUrl);
    }

    #[test]
    fn every_key_is_in_the_documented_table() {
        let options_rs = include_str!("options.rs");
        for key in URL_KEYS {
            let row = format!("`{}`", key.name);
            assert!(
                options_rs
                    .lines()
                    .any(|line| line.starts_with("/// | ") && line.contains(&row)),
                "{} is missing from the table in KafkaOptions' documentation",
                key.name
            );
        }
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
    fn user_info_is_percent_decoded_from_either_parser() {
        let text = "kafka://al%40ice:p%3Aw@h:1";
        let from_str = KafkaOptions::from_url_str(text).expect("str");
        let from_url = KafkaOptions::from_url(&Url::parse(text).expect("url")).expect("url");
        for o in [from_str, from_url] {
            assert_eq!(o.get("sasl.username"), Some("al@ice"));
            assert_eq!(o.get("sasl.password"), Some("p:w"));
        }
    }
}
