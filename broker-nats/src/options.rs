//! Options of the NATS backend and their builder. Reading them from a URL is in
//! `nats_url`.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use broker_core::registry::redact_url;
use broker_core::{Error, ErrorKind, Result};
use url::Url;

use crate::percent;

/// The URL scheme of core NATS.
pub const SCHEME: &str = "nats";

/// The URL scheme of JetStream.
pub const JETSTREAM_SCHEME: &str = "jetstream";

/// Which NATS delivery model a broker uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Mode {
    /// Core NATS (`nats://`): at-most-once, nothing stored.
    #[default]
    Core,
    /// JetStream (`jetstream://`): stored in streams, at-least-once, explicit acks.
    JetStream,
}

/// How the client authenticates. `Debug` never shows a secret.
#[derive(Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Auth {
    /// No credentials.
    #[default]
    None,
    /// A token (`?token=…`, or `nats://TOKEN@host`).
    Token(String),
    /// A user and a password (`nats://user:password@host`, or `?user=…&password=…`).
    UserPassword {
        /// The user name.
        user: String,
        /// The password.
        password: String,
    },
    /// A `.creds` file holding a JWT and an NKey seed (`?creds=/path`).
    CredentialsFile(PathBuf),
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::None => f.write_str("None"),
            Auth::Token(_) => f.write_str("Token(***)"),
            Auth::UserPassword { user, .. } => f
                .debug_struct("UserPassword")
                .field("user", user)
                .field("password", &"***")
                .finish(),
            Auth::CredentialsFile(path) => f.debug_tuple("CredentialsFile").field(path).finish(),
        }
    }
}

/// TLS settings. TLS is used when the server asks for it, when
/// [`required`](Tls::required) is set, or when any file is given.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Tls {
    /// Require TLS even if the server does not announce it (`?tls=on`).
    pub required: bool,
    /// A PEM file of CA certificates to trust (`?tls_ca=/path`).
    pub ca_file: Option<PathBuf>,
    /// The client certificate, PEM (`?tls_cert=/path`), for mutual TLS.
    pub cert_file: Option<PathBuf>,
    /// The client key, PEM (`?tls_key=/path`), for mutual TLS.
    pub key_file: Option<PathBuf>,
}

/// The storage of the streams the broker creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Storage {
    /// On disk: survives a server restart. The default.
    #[default]
    File,
    /// In memory: lost when the server restarts.
    Memory,
}

/// JetStream settings (`jetstream://` only).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct JetStreamOptions {
    /// One stream for every topic (`?stream=NAME`). Unset, each first token of a topic has
    /// its own stream, named [`stream_prefix`](Self::stream_prefix)`_<token>`.
    pub stream: Option<String>,
    /// The subjects of [`stream`](Self::stream) when the broker creates it
    /// (`?stream_subjects=a.>,b.>`; default `>` is not allowed, so they must be given).
    pub stream_subjects: Vec<String>,
    /// The prefix of per-token stream names (`?stream_prefix=`; default `BROKER`).
    pub stream_prefix: String,
    /// Create missing streams (`?create_streams=on|off`; default on). Off, a stream that
    /// captures the topic must exist.
    pub create_streams: bool,
    /// How many times a message is delivered at most (`?max_deliver=N`; default
    /// unlimited). After that the server stops redelivering it.
    pub max_deliver: Option<i64>,
    /// How long a delivery may stay unacked before the server redelivers it
    /// (`?ack_wait_ms=`; default 30 s).
    pub ack_wait: Duration,
    /// How many deliveries a consumer may have unacked (`?max_ack_pending=N`; default the
    /// server's, 1000).
    pub max_ack_pending: Option<i64>,
    /// Replicas of created streams (`?replicas=N`; default 1).
    pub replicas: usize,
    /// Storage of created streams (`?storage=file|memory`; default file).
    pub storage: Storage,
    /// How long created streams keep messages (`?max_age_secs=N`; default forever).
    pub max_age: Option<Duration>,
    /// The duplicate-detection window of created streams (`?duplicate_window_ms=`; default
    /// 2 min).
    pub duplicate_window: Duration,
    /// How long `publish` keeps retrying an unacknowledged publish, for example while the
    /// connection is re-established (`?publish_timeout_ms=`; default 30 s).
    pub publish_timeout: Duration,
    /// How many messages one pull request asks for (`?pull_batch=N`; default 64, and never
    /// more than the subscription's `max_in_flight`).
    pub pull_batch: usize,
    /// How long one pull request waits on the server (`?pull_expires_ms=`; default 2 s).
    pub pull_expires: Duration,
    /// After how long without a subscriber the server removes an ephemeral consumer left
    /// behind by a crashed process (`?ephemeral_inactive_ms=`; default 60 s).
    pub ephemeral_inactive: Duration,
    /// Whether `ack()` waits for the server to confirm the ack (`?confirm_acks=on|off`;
    /// default on). On, an ack that does not reach the server is an error the caller
    /// sees, at the cost of one round trip per ack; an `Ok` means the consumer's leader
    /// stored the ack (on a replicated consumer, a quorum of its replicas), so the
    /// message is not redelivered, also across a failover (see "Running on a cluster" in
    /// the crate docs). Off, `ack()` resolves once the ack is
    /// handed to the connection, like the raw client's `ack()`: several times the
    /// throughput for a reader that acks one delivery at a time, and still
    /// at-least-once, since an ack that is lost only means the message comes back after
    /// `ack_wait`. Nacks are never confirmed.
    pub confirm_acks: bool,
}

impl Default for JetStreamOptions {
    fn default() -> Self {
        JetStreamOptions {
            stream: None,
            stream_subjects: Vec::new(),
            stream_prefix: "BROKER".to_owned(),
            create_streams: true,
            max_deliver: None,
            ack_wait: Duration::from_secs(30),
            max_ack_pending: None,
            replicas: 1,
            storage: Storage::File,
            max_age: None,
            duplicate_window: Duration::from_secs(120),
            publish_timeout: Duration::from_secs(30),
            pull_batch: 64,
            pull_expires: Duration::from_secs(2),
            ephemeral_inactive: Duration::from_secs(60),
            confirm_acks: true,
        }
    }
}

/// Options of a [`NatsBroker`](crate::NatsBroker): a consuming builder, or the URL query.
///
/// `Debug` shows no secret: passwords and tokens are `***`.
///
/// ```
/// use std::time::Duration;
/// use broker_nats::{Mode, NatsOptions};
///
/// let options = NatsOptions::new("nats://127.0.0.1:4222")
///     .jetstream()
///     .name("billing")
///     .user_and_password("alice", "s3cret")
///     .ack_wait(Duration::from_secs(10))
///     .max_deliver(5);
/// assert_eq!(options.mode, Mode::JetStream);
/// assert!(!format!("{options:?}").contains("s3cret"));
///
/// let url = url::Url::parse("jetstream://bob:pw@127.0.0.1:4222?name=svc&max_deliver=3").unwrap();
/// let options = NatsOptions::from_url(&url)?;
/// assert_eq!(options.jetstream.max_deliver, Some(3));
/// # Ok::<(), broker_core::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NatsOptions {
    /// The server address, `nats://host:port` (no credentials), or a comma-separated seed
    /// list of them: connecting succeeds while any one is up.
    pub server: String,
    /// Core NATS or JetStream.
    pub mode: Mode,
    /// The connection name the server shows (`?name=`).
    pub name: Option<String>,
    /// How long connecting may take (`?connect_timeout_ms=`; default 5 s).
    pub connection_timeout: Duration,
    /// How long requests and JetStream API calls may take (`?request_timeout_ms=`; default
    /// 10 s).
    pub request_timeout: Duration,
    /// Credentials.
    pub auth: Auth,
    /// TLS.
    pub tls: Tls,
    /// Messages a core NATS subscription buffers for a reader that has not taken them
    /// yet (`?subscription_capacity=N`; default 65 536). Messages arriving while the
    /// buffer is full are dropped and reported (see
    /// [`NatsBroker::dropped_messages`](crate::NatsBroker::dropped_messages)).
    pub subscription_capacity: Option<usize>,
    /// Whether core NATS publishes carry the message id (`?message_ids=on|off`; default
    /// on; `nats://` only). Off, a publish whose message has no user headers and no key
    /// goes out as a plain `PUB` without a header block, which async-nats sends and
    /// parses several times faster; the receiver then sees an id generated on receipt,
    /// not the publisher's. Requests (messages with a `reply-to`) keep their id, which
    /// the reply refers to. JetStream publishes always carry it: de-duplication needs
    /// it.
    pub message_ids: bool,
    /// JetStream settings.
    pub jetstream: JetStreamOptions,
}

impl fmt::Debug for NatsOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsOptions")
            .field("server", &redact_url(&self.server))
            .field("mode", &self.mode)
            .field("name", &self.name)
            .field("connection_timeout", &self.connection_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("auth", &self.auth)
            .field("tls", &self.tls)
            .field("subscription_capacity", &self.subscription_capacity)
            .field("message_ids", &self.message_ids)
            .field("jetstream", &self.jetstream)
            .finish()
    }
}

impl NatsOptions {
    /// Core NATS options for the server at `server` (`nats://host:port` or `host:port`),
    /// with the defaults. Credentials in `server` (`nats://user:password@host`,
    /// `nats://token@host`) are moved to [`auth`](Self::auth), so `server` never holds a
    /// secret.
    pub fn new(server: impl Into<String>) -> Self {
        let (server, auth) = split_credentials(server.into());
        NatsOptions {
            server,
            mode: Mode::Core,
            name: None,
            connection_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            auth,
            tls: Tls::default(),
            subscription_capacity: None,
            message_ids: true,
            jetstream: JetStreamOptions::default(),
        }
    }

    /// Sets whether core NATS publishes carry the message id (default on). See
    /// [`message_ids`](Self::message_ids).
    ///
    /// ```
    /// let options = broker_nats::NatsOptions::new("nats://127.0.0.1:4222").message_ids(false);
    /// assert!(!options.message_ids);
    /// ```
    pub fn message_ids(mut self, send: bool) -> Self {
        self.message_ids = send;
        self
    }

    /// Switches to JetStream.
    pub fn jetstream(mut self) -> Self {
        self.mode = Mode::JetStream;
        self
    }

    /// Sets the mode.
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// Sets the connection name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Sets the connect timeout.
    pub fn connection_timeout(mut self, timeout: Duration) -> Self {
        self.connection_timeout = timeout;
        self
    }

    /// Sets the request and JetStream API timeout.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Authenticates with a token.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.auth = Auth::Token(token.into());
        self
    }

    /// Authenticates with a user and a password.
    pub fn user_and_password(
        mut self,
        user: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        self.auth = Auth::UserPassword {
            user: user.into(),
            password: password.into(),
        };
        self
    }

    /// Authenticates with a `.creds` file.
    pub fn credentials_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.auth = Auth::CredentialsFile(path.into());
        self
    }

    /// Requires TLS.
    pub fn require_tls(mut self, required: bool) -> Self {
        self.tls.required = required;
        self
    }

    /// Trusts the CA certificates in the PEM file `path`.
    pub fn tls_ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.tls.ca_file = Some(path.into());
        self
    }

    /// Presents the client certificate `cert` with its key `key` (PEM files).
    pub fn tls_client_cert(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.tls.cert_file = Some(cert.into());
        self.tls.key_file = Some(key.into());
        self
    }

    /// Sets how many messages a core subscription buffers for a slow reader (see
    /// [`subscription_capacity`](Self::subscription_capacity)).
    pub fn subscription_capacity(mut self, capacity: usize) -> Self {
        self.subscription_capacity = Some(capacity.max(1));
        self
    }

    /// Puts every topic in the one stream `name` (JetStream).
    pub fn stream(mut self, name: impl Into<String>) -> Self {
        self.jetstream.stream = Some(name.into());
        self
    }

    /// Sets the subjects of the single stream, when the broker creates it (JetStream).
    pub fn stream_subjects<I, S>(mut self, subjects: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.jetstream.stream_subjects = subjects.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the prefix of per-token stream names (JetStream).
    pub fn stream_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.jetstream.stream_prefix = prefix.into();
        self
    }

    /// Whether missing streams are created (JetStream).
    pub fn create_streams(mut self, create: bool) -> Self {
        self.jetstream.create_streams = create;
        self
    }

    /// Sets the maximum number of deliveries of a message (JetStream).
    pub fn max_deliver(mut self, max: i64) -> Self {
        self.jetstream.max_deliver = Some(max);
        self
    }

    /// Sets how long a delivery may stay unacked (JetStream).
    pub fn ack_wait(mut self, wait: Duration) -> Self {
        self.jetstream.ack_wait = wait;
        self
    }

    /// Sets whether `ack()` waits for the server's confirmation (JetStream; default
    /// on). See [`JetStreamOptions::confirm_acks`].
    pub fn confirm_acks(mut self, confirm: bool) -> Self {
        self.jetstream.confirm_acks = confirm;
        self
    }

    /// Sets how many deliveries a consumer may have unacked (JetStream).
    pub fn max_ack_pending(mut self, max: i64) -> Self {
        self.jetstream.max_ack_pending = Some(max);
        self
    }

    /// Sets the replicas of created streams (JetStream).
    pub fn replicas(mut self, replicas: usize) -> Self {
        self.jetstream.replicas = replicas.max(1);
        self
    }

    /// Sets the storage of created streams (JetStream).
    pub fn storage(mut self, storage: Storage) -> Self {
        self.jetstream.storage = storage;
        self
    }

    /// Sets how long created streams keep messages (JetStream).
    pub fn max_age(mut self, age: Duration) -> Self {
        self.jetstream.max_age = Some(age);
        self
    }

    /// Sets how long `publish` retries an unacknowledged publish (JetStream).
    pub fn publish_timeout(mut self, timeout: Duration) -> Self {
        self.jetstream.publish_timeout = timeout;
        self
    }

    /// Sets how long one pull request waits on the server (JetStream).
    pub fn pull_expires(mut self, expires: Duration) -> Self {
        self.jetstream.pull_expires = expires;
        self
    }

    /// Checks combinations the server would reject later.
    pub(crate) fn validate(&self) -> Result<()> {
        if self.tls.cert_file.is_some() != self.tls.key_file.is_some() {
            return Err(Error::new(
                ErrorKind::InvalidConfig,
                "a TLS client certificate needs its key, and a key its certificate",
            ));
        }
        let js = &self.jetstream;
        if self.mode == Mode::JetStream && !self.message_ids {
            return Err(Error::new(
                ErrorKind::InvalidConfig,
                "`message_ids` off applies to core NATS only: JetStream publishes always carry the id, which de-duplication needs",
            ));
        }
        if self.mode == Mode::JetStream {
            if let Some(stream) = &js.stream {
                crate::jetstream::check_stream_name(stream)?;
                if js.create_streams && js.stream_subjects.is_empty() {
                    return Err(Error::new(
                        ErrorKind::InvalidConfig,
                        format!(
                            "stream `{stream}` may be created on demand, so its subjects are needed: set `stream_subjects` (or `create_streams=off`)"
                        ),
                    ));
                }
            } else {
                crate::jetstream::check_stream_name(&js.stream_prefix)?;
            }
            if js.max_deliver == Some(0) {
                return Err(Error::new(
                    ErrorKind::InvalidConfig,
                    "`max_deliver` must be at least 1",
                ));
            }
        }
        Ok(())
    }
}

/// `server` without its userinfo, and the credentials that userinfo held.
fn split_credentials(server: String) -> (String, Auth) {
    let Ok(mut url) = Url::parse(&server) else {
        return (server, Auth::None);
    };
    let user = percent::decode_text(url.username());
    let password = url.password().map(percent::decode_text);
    let auth = match (user.is_empty(), password) {
        (true, None) => return (server, Auth::None),
        (false, None) => Auth::Token(user),
        (_, Some(password)) => Auth::UserPassword { user, password },
    };
    if url.set_username("").is_err() || url.set_password(None).is_err() {
        return (redact_url(&server), auth);
    }
    (url.to_string(), auth)
}
