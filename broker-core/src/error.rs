//! The one error type of the framework, with a kind a caller can match on.

use std::fmt;

/// A boxed error, as returned by handlers and kept as the source of an [`Error`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A `Result` whose error is the framework's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, for a caller to match on.
///
/// New kinds may be added, so a `match` needs a wildcard arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The broker could not be reached, or the connection was lost.
    Connect,
    /// The server refused the credentials.
    Auth,
    /// A publish failed or was not acknowledged by the broker.
    Publish,
    /// A subscription could not be created, or failed while running.
    Subscribe,
    /// An ack or nack could not be delivered to the broker.
    Ack,
    /// A payload could not be encoded or decoded.
    Codec,
    /// An operation did not finish in time.
    Timeout,
    /// The broker (or the subscription) has been closed.
    Closed,
    /// A broker URL could not be parsed.
    InvalidUrl,
    /// An option or a combination of options is not valid.
    InvalidConfig,
    /// No backend compiled into this binary owns the URL's scheme.
    UnknownScheme,
    /// A topic or pattern is not a valid dotted subject.
    InvalidSubject,
    /// A header name or value cannot be carried by the backend.
    InvalidHeader,
    /// The message is larger than the backend accepts.
    PayloadTooLarge,
    /// A message handler failed or panicked.
    Handler,
    /// A request got no reply because nobody listens on its topic.
    NoResponders,
    /// The backend does not support the requested feature.
    Unsupported,
}

impl ErrorKind {
    /// A short, stable, lower-case name for the kind (used in logs and metrics).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::Auth => "auth",
            ErrorKind::Publish => "publish",
            ErrorKind::Subscribe => "subscribe",
            ErrorKind::Ack => "ack",
            ErrorKind::Codec => "codec",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Closed => "closed",
            ErrorKind::InvalidUrl => "invalid url",
            ErrorKind::InvalidConfig => "invalid config",
            ErrorKind::UnknownScheme => "unknown scheme",
            ErrorKind::InvalidSubject => "invalid subject",
            ErrorKind::InvalidHeader => "invalid header",
            ErrorKind::PayloadTooLarge => "payload too large",
            ErrorKind::Handler => "handler",
            ErrorKind::NoResponders => "no responders",
            ErrorKind::Unsupported => "unsupported",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The framework's error: a [`kind`](Error::kind), a message, and the underlying cause as
/// its [`source`](std::error::Error::source).
///
/// ```
/// use broker_core::{Error, ErrorKind};
///
/// let err = Error::new(ErrorKind::InvalidSubject, "empty token in `a..b`");
/// assert_eq!(err.kind(), ErrorKind::InvalidSubject);
/// assert_eq!(err.to_string(), "invalid subject: empty token in `a..b`");
/// ```
#[derive(Debug, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct Error {
    kind: ErrorKind,
    message: String,
    #[source]
    source: Option<BoxError>,
}

impl Error {
    /// An error of `kind` described by `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// An error of `kind` described by `message`, caused by `source`.
    pub fn with_source(
        kind: ErrorKind,
        message: impl Into<String>,
        source: impl Into<BoxError>,
    ) -> Self {
        Error {
            kind,
            message: message.into(),
            source: Some(source.into()),
        }
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The description, without the kind.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The error with the cause chain appended, `: `-separated, for one-line logs.
    pub fn display_chain(&self) -> String {
        let mut out = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            out.push_str(": ");
            out.push_str(&cause.to_string());
            source = cause.source();
        }
        out
    }

    /// Whether a handler's `err` says the message cannot be read (an [`Error`] of kind
    /// [`ErrorKind::Codec`]): a permanent failure that redelivering would repeat.
    pub(crate) fn is_unreadable(err: &BoxError) -> bool {
        err.downcast_ref::<Error>()
            .is_some_and(|e| e.kind() == ErrorKind::Codec)
    }

    /// A [`ErrorKind::Closed`] error for `what` (a broker, a subscription…).
    pub fn closed(what: &str) -> Self {
        Error::new(ErrorKind::Closed, format!("{what} is closed"))
    }
}
