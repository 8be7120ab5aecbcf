//! Connecting: the client's options (credentials, TLS, timeouts, its events), the
//! bounded connect, and the JetStream check.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream;
use broker_core::backend::OutageLog;
use broker_core::registry::redact_url;
use broker_core::{Error, ErrorKind, Result};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{Inner, NatsBroker};
use crate::options::{Auth, Mode, NatsOptions};
use crate::{core_subscriber, error, publisher};

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
        let outages = Arc::new(OutageLog::new(match options.mode {
            Mode::Core => "nats",
            Mode::JetStream => "jetstream",
        }));
        let mut connect = async_nats::ConnectOptions::new()
            .connection_timeout(options.connection_timeout)
            .request_timeout(Some(options.request_timeout))
            .max_reconnects(None)
            .reconnect_delay_callback({
                let server = shown.clone();
                let outages = outages.clone();
                move |attempt| {
                    // Attempt n > 1 follows a failed one. Counted once an outage has
                    // started; the first connect reports its own failure.
                    if attempt > 1 && outages.any_down() {
                        outages.failed(&server, &"reconnect attempt failed");
                    }
                    reconnect_delay(attempt)
                }
            })
            // The client's own per-subscription channel only carries messages to the
            // subscription's forwarding task, which always keeps up with it; the
            // subscription's buffer, where slow readers are detected, is
            // `subscription_capacity` (see core_subscriber.rs).
            .subscription_capacity(
                options
                    .subscription_capacity
                    .unwrap_or(0)
                    .max(core_subscriber::DEFAULT_CAPACITY),
            )
            .event_callback({
                let server = shown.clone();
                let dropped = dropped.clone();
                let disconnects = disconnects.clone();
                let outages = outages.clone();
                move |event| {
                    let server = server.clone();
                    let dropped = dropped.clone();
                    let disconnects = disconnects.clone();
                    let outages = outages.clone();
                    async move {
                        match event {
                            // One WARN when the connection is lost, one INFO when it is
                            // back; the attempts between are counted (OutageLog).
                            async_nats::Event::Disconnected => {
                                disconnects.fetch_add(1, Ordering::AcqRel);
                                outages.failed(&server, &"connection lost");
                            }
                            async_nats::Event::Connected => {
                                outages.recovered(&server);
                            }
                            async_nats::Event::SlowConsumer(sid) => {
                                dropped.fetch_add(1, Ordering::Relaxed);
                                tracing::warn!(%server, sid, "slow consumer: the NATS client dropped a message for a subscription whose channel was full")
                            }
                            async_nats::Event::ServerError(err) => {
                                outages.error(&format_args!("{server}: server error: {err}"));
                                tracing::warn!(%server, error = %err, "NATS server error")
                            }
                            async_nats::Event::ClientError(err) => {
                                outages.error(&format_args!("{server}: {err}"));
                                tracing::debug!(%server, error = %err, "NATS client error")
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
        let servers = server_addrs(&options.server)?;
        let client = match tokio::time::timeout(limit, connect.connect(servers)).await {
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
                outages,
                shutdown: CancellationToken::new(),
                tasks: TaskTracker::new(),
                subjects: publisher::Subjects::new(),
            }),
        })
    }

    /// Connects to a `nats://` or `jetstream://` URL (see [`NatsOptions::from_url`]); a
    /// seed list is written `nats://a:4222,b:4223`.
    pub async fn connect_url(url: &str) -> Result<Self> {
        let parsed = broker_core::registry::parse_url(url)?;
        NatsBroker::connect(NatsOptions::from_url(&parsed)?).await
    }
}

/// The pause before reconnect attempt `attempt`: none for the first, then doubling from
/// 2 ms up to 4 s (async-nats's default, kept while its callback counts the attempts).
fn reconnect_delay(attempt: usize) -> Duration {
    if attempt <= 1 {
        return Duration::ZERO;
    }
    let exponent = u32::try_from(attempt - 1).unwrap_or(u32::MAX);
    Duration::from_millis(2_u64.saturating_pow(exponent)).min(Duration::from_secs(4))
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

/// The seed list in `servers` (`nats://a:4222,nats://b:4222`, or `host:port` entries):
/// connecting succeeds while any of them is up.
fn server_addrs(servers: &str) -> Result<Vec<async_nats::ServerAddr>> {
    let addrs: Vec<async_nats::ServerAddr> = servers
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse().map_err(|e| {
                Error::with_source(
                    ErrorKind::InvalidUrl,
                    format!("invalid NATS server address `{}`", redact_url(s)),
                    e,
                )
            })
        })
        .collect::<Result<_>>()?;
    if addrs.is_empty() {
        return Err(Error::new(
            ErrorKind::InvalidUrl,
            "no NATS server address given",
        ));
    }
    Ok(addrs)
}

#[cfg(test)]
mod version_tests {
    use super::*;

    #[test]
    fn reconnect_delays_double_up_to_four_seconds() {
        assert_eq!(reconnect_delay(1), Duration::ZERO);
        assert_eq!(reconnect_delay(4), Duration::from_millis(8));
        assert_eq!(reconnect_delay(12), Duration::from_millis(2048));
        assert_eq!(reconnect_delay(13), Duration::from_secs(4));
        assert_eq!(reconnect_delay(usize::MAX), Duration::from_secs(4));
    }

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
