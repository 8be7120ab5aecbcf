//! Picking a backend from a URL: each backend crate registers its scheme here.

use std::fmt;
use std::sync::Arc;

use futures::future::BoxFuture;
use url::Url;

use crate::{Broker, Error, ErrorKind, Result};

/// The environment variable [`connect_from_env`] reads.
pub const BROKER_URL_ENV: &str = "BROKER_URL";

/// The URL [`connect_from_env`] falls back to.
pub const DEFAULT_URL: &str = "memory://";

/// Builds a broker from a parsed URL.
pub type ConnectFn = fn(Url) -> BoxFuture<'static, Result<Arc<dyn Broker>>>;

/// A backend's entry in the registry: its URL scheme and how to connect.
///
/// Backend crates submit one per scheme with [`register_backend!`](crate::register_backend).
pub struct Registration {
    /// The URL scheme, such as `kafka`.
    pub scheme: &'static str,
    /// The crate that registered it.
    pub crate_name: &'static str,
    /// Builds the broker.
    pub connect: ConnectFn,
}

impl fmt::Debug for Registration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registration")
            .field("scheme", &self.scheme)
            .field("crate_name", &self.crate_name)
            .finish_non_exhaustive()
    }
}

inventory::collect!(Registration);

/// Registers a backend's URL scheme. Used once per scheme in each backend crate:
///
/// ```
/// use std::sync::Arc;
/// use broker_core::{Broker, Result};
/// use futures::FutureExt;
///
/// async fn connect(url: url::Url) -> Result<Arc<dyn Broker>> {
///     Err(broker_core::Error::new(broker_core::ErrorKind::Unsupported, format!("demo: {url}")))
/// }
///
/// broker_core::register_backend!("demo", |url| connect(url).boxed());
/// ```
#[macro_export]
macro_rules! register_backend {
    ($scheme:expr, $connect:expr) => {
        $crate::__private::inventory::submit! {
            $crate::registry::Registration {
                scheme: $scheme,
                crate_name: env!("CARGO_PKG_NAME"),
                connect: $connect,
            }
        }
    };
}

/// The schemes registered in this binary, sorted.
pub fn registered_schemes() -> Vec<&'static str> {
    let mut schemes: Vec<_> = inventory::iter::<Registration>
        .into_iter()
        .map(|r| r.scheme)
        .collect();
    schemes.sort_unstable();
    schemes.dedup();
    schemes
}

/// Connects to the broker `url` names, through the backend that registered its scheme.
///
/// ```
/// # async fn demo() {
/// use broker_core::ErrorKind;
///
/// let err = broker_core::connect("carrier-pigeon://coop").await.unwrap_err();
/// assert_eq!(err.kind(), ErrorKind::UnknownScheme);
/// let err = broker_core::connect("not a url").await.unwrap_err();
/// assert_eq!(err.kind(), ErrorKind::InvalidUrl);
/// # }
/// ```
pub async fn connect(url: &str) -> Result<Arc<dyn Broker>> {
    let parsed = parse_url(url)?;
    let scheme = parsed.scheme().to_owned();
    let registration = inventory::iter::<Registration>
        .into_iter()
        .find(|r| r.scheme == scheme)
        .ok_or_else(|| unknown_scheme(&scheme))?;
    tracing::debug!(url = %redact_url(url), backend = registration.crate_name, "connecting");
    // `format` (see [`crate::gomicro`]) is every backend's key: taken off the URL, and
    // checked before connecting.
    let (parsed, format) = take_query_key(parsed, "format");
    #[cfg(feature = "json")]
    let format = format
        .as_deref()
        .map(crate::gomicro::WireFormat::parse)
        .transpose()?;
    #[cfg(not(feature = "json"))]
    if format.is_some() {
        return Err(Error::new(
            ErrorKind::Unsupported,
            "the `format` URL option needs broker-core's `json` feature",
        ));
    }
    let broker = (registration.connect)(parsed).await?;
    #[cfg(feature = "json")]
    if let Some(format) = format {
        return Ok(crate::gomicro::GoMicroBroker::wrap(broker, format));
    }
    Ok(broker)
}

/// `url` without the query key `key`, and that key's value if it was there.
fn take_query_key(mut url: Url, key: &str) -> (Url, Option<String>) {
    let Some(value) = url
        .query_pairs()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
    else {
        return (url, None);
    };
    let rest: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| k != key)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    if rest.is_empty() {
        url.set_query(None);
    } else {
        url.query_pairs_mut().clear().extend_pairs(rest);
    }
    (url, Some(value))
}

/// Parses a broker URL. An authority listing several hosts (`kafka://h1:9092,h2:9093`),
/// which the URL standard cannot parse, reaches the backend as its first host, with the
/// whole list in the `hosts` query parameter.
///
/// ```
/// let url = broker_core::registry::parse_url("kafka://h1:9092,h2:9093/x?acks=1").unwrap();
/// assert_eq!(url.host_str(), Some("h1"));
/// assert_eq!(url.port(), Some(9092));
/// let hosts = url.query_pairs().find(|(k, _)| k == "hosts").map(|(_, v)| v.into_owned());
/// assert_eq!(hosts.as_deref(), Some("h1:9092,h2:9093"));
/// ```
pub fn parse_url(url: &str) -> Result<Url> {
    let invalid = |e: url::ParseError| {
        Error::with_source(
            ErrorKind::InvalidUrl,
            format!("cannot parse broker URL `{}`", redact_url(url)),
            e,
        )
    };
    let Some((scheme, rest)) = url.split_once("://") else {
        return Url::parse(url).map_err(invalid);
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let (userinfo, hosts) = match authority.rsplit_once('@') {
        Some((userinfo, hosts)) => (Some(userinfo), hosts),
        None => (None, authority),
    };
    if !hosts.contains(',') {
        return Url::parse(url).map_err(invalid);
    }
    let first = hosts.split(',').next().unwrap_or_default();
    let userinfo = userinfo.map(|u| format!("{u}@")).unwrap_or_default();
    let mut parsed = Url::parse(&format!("{scheme}://{userinfo}{first}{tail}")).map_err(invalid)?;
    parsed.query_pairs_mut().append_pair("hosts", hosts);
    Ok(parsed)
}

/// Connects to the broker named by the `BROKER_URL` environment variable, or to
/// `memory://` when it is unset or empty.
pub async fn connect_from_env() -> Result<Arc<dyn Broker>> {
    let url = std::env::var(BROKER_URL_ENV)
        .ok()
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_URL.to_owned());
    connect(url.trim()).await
}

fn unknown_scheme(scheme: &str) -> Error {
    let compiled = registered_schemes();
    let compiled = if compiled.is_empty() {
        "none".to_owned()
    } else {
        compiled.join(", ")
    };
    Error::new(
        ErrorKind::UnknownScheme,
        format!(
            "no backend for the URL scheme `{scheme}`; compiled in: {compiled} (a backend crate registers its scheme, and is linked by calling its `link()`)"
        ),
    )
}

/// `url` with any password or token replaced by `***`, for logs and error messages.
///
/// ```
/// use broker_core::registry::redact_url;
///
/// assert_eq!(redact_url("nats://alice:s3cret@host:4222"), "nats://alice:***@host:4222");
/// assert_eq!(redact_url("nats://tok3n@host"), "nats://***@host");
/// assert_eq!(redact_url("kafka://h:9092?sasl.password=pw&x=1"), "kafka://h:9092?sasl.password=***&x=1");
/// ```
pub fn redact_url(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let mut out = match base.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((userinfo, host)) => {
                let userinfo = match userinfo.split_once(':') {
                    Some((user, _)) => format!("{user}:***"),
                    None => "***".to_owned(),
                };
                format!("{scheme}://{userinfo}@{host}")
            }
            None => base.to_owned(),
        },
        None => base.to_owned(),
    };
    if let Some(query) = query {
        out.push('?');
        let parts: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _)) if is_secret_key(key) => format!("{key}=***"),
                _ => pair.to_owned(),
            })
            .collect();
        out.push_str(&parts.join("&"));
    }
    out
}

/// Whether a URL query key or option name holds a secret.
pub fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    [
        "password",
        "token",
        "secret",
        "creds",
        "credentials",
        "nkey",
        "jwt",
        "key.pem",
    ]
    .iter()
    .any(|s| key.contains(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unknown_scheme_names_what_is_compiled_in() {
        let err = connect("kafka://127.0.0.1:9092")
            .await
            .expect_err("no kafka here");
        assert_eq!(err.kind(), ErrorKind::UnknownScheme);
        let text = err.to_string();
        assert!(text.contains("scheme `kafka`"), "{text}");
        assert!(text.contains("compiled in: "), "{text}");
    }

    #[tokio::test]
    async fn malformed_urls_are_invalid_and_redacted() {
        let err = connect("nats://user:hunter2@[::1").await.expect_err("bad");
        assert_eq!(err.kind(), ErrorKind::InvalidUrl);
        assert!(
            !err.display_chain().contains("hunter2"),
            "{}",
            err.display_chain()
        );
        assert_eq!(
            connect("").await.expect_err("empty").kind(),
            ErrorKind::InvalidUrl
        );
    }

    #[test]
    fn host_lists_keep_userinfo_path_and_query() {
        let url = parse_url("kafka://u:secret@h1:1,h2:2,h3/db?acks=all").expect("parses");
        assert_eq!((url.username(), url.password()), ("u", Some("secret")));
        assert_eq!(
            (url.host_str(), url.port(), url.path()),
            (Some("h1"), Some(1), "/db")
        );
        let query: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        assert_eq!(
            query,
            [
                ("acks".into(), "all".into()),
                ("hosts".into(), "h1:1,h2:2,h3".into())
            ]
        );
        let err = parse_url("kafka://h1:x,h2:2").expect_err("bad port");
        assert_eq!(err.kind(), ErrorKind::InvalidUrl);
        assert_eq!(parse_url("memory://").expect("plain").as_str(), "memory://");
    }
}
