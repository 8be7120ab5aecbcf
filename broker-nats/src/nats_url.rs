//! Reading [`NatsOptions`] from a `nats://` or `jetstream://` URL: the scheme picks the
//! mode, the userinfo gives credentials, and the query keys of the table [`URL_KEYS`],
//! each written once and applied by [`apply_query_key`], set the rest.

use std::time::Duration;

use broker_core::registry::is_secret_key;
use broker_core::{Error, ErrorKind, Result};
use url::Url;

use crate::options::{Auth, JETSTREAM_SCHEME, Mode, NatsOptions, SCHEME, Storage};
use crate::percent;

use Scope::{Both, CoreOnly, JetStreamOnly};
use Setter::{Count, FileOrMemory, Millis, Number, Switch, Text};

impl NatsOptions {
    /// Reads options from a `nats://` or `jetstream://` URL: the scheme picks the mode,
    /// userinfo gives credentials, the query gives the rest (see the crate docs for the
    /// keys). Unknown keys are an error, and so are JetStream keys on `nats://`.
    pub fn from_url(url: &Url) -> Result<Self> {
        let mode = match url.scheme() {
            SCHEME => Mode::Core,
            JETSTREAM_SCHEME => Mode::JetStream,
            other => {
                return Err(Error::new(
                    ErrorKind::InvalidUrl,
                    format!(
                        "broker-nats handles `nats://` and `jetstream://` URLs, not `{other}://`"
                    ),
                ));
            }
        };
        let host = url.host_str().unwrap_or("127.0.0.1");
        let host = if host.is_empty() { "127.0.0.1" } else { host };
        let port = url.port().unwrap_or(4222);
        let mut options = NatsOptions::new(format!("nats://{host}:{port}")).mode(mode);

        let user = percent::decode_text(url.username());
        let password = url.password().map(percent::decode_text);
        match (user.is_empty(), password) {
            (true, None) => {}
            (false, None) => options = options.token(user),
            (_, Some(password)) => options = options.user_and_password(user, password),
        }

        let mut query = Query {
            options,
            user: None,
            password: None,
        };
        for (key, value) in url.query_pairs() {
            apply_query_key(&mut query, &key, value.into_owned())?;
        }
        let Query {
            mut options,
            user,
            password,
        } = query;
        match (user, password) {
            (None, None) => {}
            (Some(user), password) => {
                options = options.user_and_password(user, password.unwrap_or_default())
            }
            (None, Some(_)) => {
                return Err(Error::new(
                    ErrorKind::InvalidConfig,
                    "NATS URL option `password` needs `user` (or `nats://user:password@host`)",
                ));
            }
        }
        options.validate()?;
        Ok(options)
    }
}

/// `nats://` addresses for a comma-separated list of `host:port` (or full URLs).
fn seed_list(hosts: &str) -> String {
    hosts
        .split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(|h| {
            if h.contains("://") {
                h.to_owned()
            } else {
                format!("nats://{h}")
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// What the URL query sets: the options, and the `user` and `password` keys, which
/// become the credentials once every key is read (whatever their order, and over a
/// `token` or `creds` key or the userinfo).
struct Query {
    options: NatsOptions,
    user: Option<String>,
    password: Option<String>,
}

/// The URLs a key applies to.
#[derive(Debug, Clone, Copy)]
enum Scope {
    /// `nats://` and `jetstream://`.
    Both,
    /// `nats://` only, for the reason given.
    CoreOnly(&'static str),
    /// `jetstream://` only.
    JetStreamOnly,
}

/// How a query value is parsed, and what it sets.
#[derive(Clone, Copy)]
enum Setter {
    /// Any text.
    Text(fn(&mut Query, String)),
    /// `on` or `off` (also `true`/`false`, `yes`/`no`, `1`/`0`).
    Switch(fn(&mut Query, bool)),
    /// A whole number.
    Number(fn(&mut Query, u64)),
    /// A whole number up to `i64::MAX`.
    Count(fn(&mut Query, i64)),
    /// A whole number of milliseconds.
    Millis(fn(&mut Query, Duration)),
    /// `file` or `memory`.
    FileOrMemory(fn(&mut Query, Storage)),
}

/// One query key of a NATS URL: its name, the URLs it applies to, and how its value is
/// parsed and what it sets.
struct UrlKey {
    name: &'static str,
    /// Another name accepted for the key, not listed in errors.
    alias: Option<&'static str>,
    scope: Scope,
    sets: Setter,
}

/// The key `name`, for the URLs of `scope`, parsed and set as `sets` says.
const fn key(name: &'static str, scope: Scope, sets: Setter) -> UrlKey {
    UrlKey {
        name,
        alias: None,
        scope,
        sets,
    }
}

impl UrlKey {
    /// The key, also accepted as `alias`.
    const fn or(self, alias: &'static str) -> UrlKey {
        UrlKey {
            alias: Some(alias),
            ..self
        }
    }
}

/// Every URL query key of the NATS backend. A key not listed here is an error that lists
/// these (see [`unknown_key`]); the crate docs list them for users.
const URL_KEYS: &[UrlKey] = &[
    key("name", Both, Text(|q, v| q.options.name = Some(v))),
    // A seed list: `nats://a:4222,b:4223` reaches here as `hosts=a:4222,b:4223`.
    key("hosts", Both, Text(|q, v| q.options.server = seed_list(&v))),
    key(
        "connect_timeout_ms",
        Both,
        Millis(|q, d| q.options.connection_timeout = d),
    ),
    key(
        "request_timeout_ms",
        Both,
        Millis(|q, d| q.options.request_timeout = d),
    ),
    key("token", Both, Text(|q, v| q.options.auth = Auth::Token(v))),
    key("user", Both, Text(|q, v| q.user = Some(v))),
    key("password", Both, Text(|q, v| q.password = Some(v))),
    key(
        "creds",
        Both,
        Text(|q, v| q.options.auth = Auth::CredentialsFile(v.into())),
    )
    .or("credentials"),
    key("tls", Both, Switch(|q, on| q.options.tls.required = on)),
    key(
        "tls_ca",
        Both,
        Text(|q, v| q.options.tls.ca_file = Some(v.into())),
    ),
    key(
        "tls_cert",
        Both,
        Text(|q, v| q.options.tls.cert_file = Some(v.into())),
    ),
    key(
        "tls_key",
        Both,
        Text(|q, v| q.options.tls.key_file = Some(v.into())),
    ),
    key(
        "subscription_capacity",
        Both,
        Number(|q, n| q.options.subscription_capacity = Some((n as usize).max(1))),
    ),
    key(
        "message_ids",
        CoreOnly("JetStream publishes always carry the id, which de-duplication needs"),
        Switch(|q, on| q.options.message_ids = on),
    ),
    key(
        "stream",
        JetStreamOnly,
        Text(|q, v| q.options.jetstream.stream = Some(v)),
    ),
    key(
        "stream_subjects",
        JetStreamOnly,
        Text(|q, v| q.options.jetstream.stream_subjects = subject_list(&v)),
    ),
    key(
        "stream_prefix",
        JetStreamOnly,
        Text(|q, v| q.options.jetstream.stream_prefix = v),
    ),
    key(
        "create_streams",
        JetStreamOnly,
        Switch(|q, on| q.options.jetstream.create_streams = on),
    ),
    key(
        "max_deliver",
        JetStreamOnly,
        Count(|q, n| q.options.jetstream.max_deliver = Some(n)),
    ),
    key(
        "ack_wait_ms",
        JetStreamOnly,
        Millis(|q, d| q.options.jetstream.ack_wait = d),
    ),
    key(
        "max_ack_pending",
        JetStreamOnly,
        Count(|q, n| q.options.jetstream.max_ack_pending = Some(n)),
    ),
    key(
        "replicas",
        JetStreamOnly,
        Number(|q, n| q.options.jetstream.replicas = (n as usize).max(1)),
    ),
    key(
        "storage",
        JetStreamOnly,
        FileOrMemory(|q, s| q.options.jetstream.storage = s),
    ),
    key(
        "max_age_secs",
        JetStreamOnly,
        Number(|q, n| q.options.jetstream.max_age = Some(Duration::from_secs(n))),
    ),
    key(
        "duplicate_window_ms",
        JetStreamOnly,
        Millis(|q, d| q.options.jetstream.duplicate_window = d),
    ),
    key(
        "publish_timeout_ms",
        JetStreamOnly,
        Millis(|q, d| q.options.jetstream.publish_timeout = d),
    ),
    key(
        "pull_batch",
        JetStreamOnly,
        Number(|q, n| q.options.jetstream.pull_batch = (n as usize).max(1)),
    ),
    key(
        "pull_expires_ms",
        JetStreamOnly,
        Millis(|q, d| q.options.jetstream.pull_expires = d),
    ),
    key(
        "ephemeral_inactive_ms",
        JetStreamOnly,
        Millis(|q, d| q.options.jetstream.ephemeral_inactive = d),
    ),
    key(
        "confirm_acks",
        JetStreamOnly,
        Switch(|q, on| q.options.jetstream.confirm_acks = on),
    ),
];

/// Applies the query key `key` with `value`: finds it in [`URL_KEYS`], checks that it
/// applies to the URL's mode, reads the value and sets what the key sets.
fn apply_query_key(query: &mut Query, key: &str, value: String) -> Result<()> {
    let Some(entry) = URL_KEYS
        .iter()
        .find(|k| k.name == key || k.alias == Some(key))
    else {
        return Err(unknown_key(key));
    };
    match entry.scope {
        CoreOnly(why) if query.options.mode != Mode::Core => {
            return Err(Error::new(
                ErrorKind::InvalidConfig,
                format!("NATS URL option `{key}` applies to `nats://` URLs only: {why}"),
            ));
        }
        JetStreamOnly if query.options.mode != Mode::JetStream => {
            return Err(Error::new(
                ErrorKind::InvalidConfig,
                format!("NATS URL option `{key}` applies to `jetstream://` URLs only"),
            ));
        }
        _ => {}
    }
    let read = match entry.sets {
        Text(set) => {
            set(query, value);
            return Ok(());
        }
        Switch(set) => switch(&value).map(|on| set(query, on)),
        Number(set) => number(&value).map(|n| set(query, n)),
        Count(set) => count(&value).map(|n| set(query, n)),
        Millis(set) => number(&value).map(|n| set(query, Duration::from_millis(n))),
        FileOrMemory(set) => storage(&value).map(|s| set(query, s)),
    };
    read.map_err(|what| {
        let shown = if is_secret_key(key) { "***" } else { &value };
        Error::new(
            ErrorKind::InvalidConfig,
            format!("NATS URL option `{key}` must be {what}, got `{shown}`"),
        )
    })
}

/// The error for a key that is not in [`URL_KEYS`], listing those that are.
fn unknown_key(key: &str) -> Error {
    let mut known = Vec::new();
    let mut jetstream = Vec::new();
    for k in URL_KEYS {
        match k.scope {
            Both => known.push(k.name.to_owned()),
            CoreOnly(_) => known.push(format!("{} (nats:// only)", k.name)),
            JetStreamOnly => jetstream.push(k.name),
        }
    }
    Error::new(
        ErrorKind::InvalidConfig,
        format!(
            "unknown NATS URL option `{key}` (known: {}; jetstream:// also: {})",
            known.join(", "),
            jetstream.join(", ")
        ),
    )
}

// How values are parsed; an error says what the value must be.

fn number(value: &str) -> Result<u64, &'static str> {
    value.parse().map_err(|_| "a whole number")
}

fn count(value: &str) -> Result<i64, &'static str> {
    i64::try_from(number(value)?).map_err(|_| "smaller")
}

fn switch(value: &str) -> Result<bool, &'static str> {
    match value {
        "on" | "true" | "1" | "yes" => Ok(true),
        "off" | "false" | "0" | "no" => Ok(false),
        _ => Err("`on` or `off`"),
    }
}

fn storage(value: &str) -> Result<Storage, &'static str> {
    match value {
        "file" => Ok(Storage::File),
        "memory" => Ok(Storage::Memory),
        _ => Err("`file` or `memory`"),
    }
}

/// `a.>, b.>` as `["a.>", "b.>"]`: comma-separated, trimmed, empty items left out.
fn subject_list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests;
