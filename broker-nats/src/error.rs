//! Mapping async-nats errors onto broker-core's [`Error`] and [`ErrorKind`].

use async_nats::ConnectErrorKind;
use async_nats::client::{PublishErrorKind, RequestErrorKind};
use broker_core::{Error, ErrorKind};

/// A connect error: refused credentials are [`ErrorKind::Auth`], a timeout
/// [`ErrorKind::Timeout`], anything else (no server, a failed TLS handshake)
/// [`ErrorKind::Connect`].
pub(crate) fn connect(server: &str, err: async_nats::ConnectError) -> Error {
    let (kind, hint) = match err.kind() {
        ConnectErrorKind::AuthorizationViolation => {
            (ErrorKind::Auth, ": the server refused the credentials")
        }
        ConnectErrorKind::Authentication => (
            ErrorKind::Auth,
            ": authenticating failed (check the credentials or the .creds file)",
        ),
        ConnectErrorKind::TimedOut => (ErrorKind::Timeout, ": no answer in time"),
        ConnectErrorKind::ServerParse => (ErrorKind::InvalidUrl, ": bad server address"),
        ConnectErrorKind::Tls => (
            ErrorKind::Connect,
            ": the TLS handshake failed (does `tls_ca` hold the CA of the server's certificate, and does the server accept the client certificate `tls_cert`/`tls_key`?)",
        ),
        ConnectErrorKind::Io => (ErrorKind::Connect, io_hint(&err)),
        _ => (ErrorKind::Connect, ""),
    };
    Error::with_source(
        kind,
        format!("cannot connect to NATS at {server}{hint}"),
        err,
    )
}

/// What an I/O failure while connecting most likely means, from the `io::Error` in the
/// cause chain (rustls reports a failed handshake as `InvalidData`).
fn io_hint(err: &async_nats::ConnectError) -> &'static str {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(err);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            return match io.kind() {
                std::io::ErrorKind::ConnectionRefused => {
                    ": connection refused (is the server running, on that port?)"
                }
                std::io::ErrorKind::InvalidData => {
                    ": the TLS handshake failed (does `tls_ca` hold the CA of the server's certificate, and does the server accept the client certificate `tls_cert`/`tls_key`?)"
                }
                std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied => {
                    ": a TLS file cannot be read"
                }
                std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::ConnectionAborted
                | std::io::ErrorKind::UnexpectedEof
                | std::io::ErrorKind::BrokenPipe => {
                    ": the server closed the connection (with TLS: does it require a client certificate?)"
                }
                _ => ": the connection failed",
            };
        }
        source = cause.source();
    }
    ": the connection failed"
}

/// Why a core NATS subscription yields an error item: messages for it were dropped
/// because the reader fell behind and the subscription's buffer was full. It is the
/// [`source`](std::error::Error::source) of an [`ErrorKind::Subscribe`] error; the
/// subscription goes on.
///
/// ```
/// # fn show(err: &broker_core::Error) {
/// use broker_nats::SlowConsumer;
///
/// if let Some(slow) = std::error::Error::source(err).and_then(|s| s.downcast_ref::<SlowConsumer>()) {
///     eprintln!("{} messages to {} were dropped", slow.dropped, slow.pattern);
/// }
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SlowConsumer {
    /// The pattern of the subscription.
    pub pattern: String,
    /// How many messages were dropped since the previous report.
    pub dropped: u64,
    /// The subscription's buffer, in messages (`subscription_capacity`).
    pub capacity: usize,
}

impl std::fmt::Display for SlowConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "slow consumer: {} message(s) to `{}` dropped because the subscription's buffer of {} was full",
            self.dropped, self.pattern, self.capacity
        )
    }
}

impl std::error::Error for SlowConsumer {}

/// The error item a core subscription yields after the connection was lost `times` times:
/// core NATS keeps nothing for a client that is away, so messages may have been lost.
pub(crate) fn connection_lost(pattern: &str, times: u64) -> Error {
    Error::new(
        ErrorKind::Connect,
        format!(
            "the NATS connection was lost ({times} time(s)) since the last delivery to `{pattern}`; core NATS messages published meanwhile may be lost"
        ),
    )
}

/// The error item a core subscription yields after `slow.dropped` messages were dropped.
pub(crate) fn slow_consumer(slow: SlowConsumer) -> Error {
    Error::with_source(
        ErrorKind::Subscribe,
        format!(
            "{} message(s) to `{}` were dropped: the subscriber reads too slowly",
            slow.dropped, slow.pattern
        ),
        slow,
    )
}

/// A core publish error.
pub(crate) fn publish(topic: &str, err: async_nats::PublishError) -> Error {
    let kind = match err.kind() {
        PublishErrorKind::MaxPayloadExceeded => ErrorKind::PayloadTooLarge,
        PublishErrorKind::InvalidSubject => ErrorKind::InvalidSubject,
        PublishErrorKind::Send => ErrorKind::Closed,
    };
    Error::with_source(kind, format!("publishing to `{topic}` failed"), err)
}

/// A core request error: no responders and timeouts have their own kinds.
pub(crate) fn request(topic: &str, err: async_nats::RequestError) -> Error {
    let (kind, what) = match err.kind() {
        RequestErrorKind::NoResponders => (ErrorKind::NoResponders, "nobody listens"),
        RequestErrorKind::TimedOut => (ErrorKind::Timeout, "no reply in time"),
        RequestErrorKind::InvalidSubject => (ErrorKind::InvalidSubject, "invalid subject"),
        RequestErrorKind::MaxPayloadExceeded => (ErrorKind::PayloadTooLarge, "too large"),
        RequestErrorKind::Other => (ErrorKind::Publish, "request failed"),
    };
    Error::with_source(kind, format!("request to `{topic}`: {what}"), err)
}

/// A subscribe error.
pub(crate) fn subscribe(pattern: &str, err: impl Into<broker_core::BoxError>) -> Error {
    Error::with_source(
        ErrorKind::Subscribe,
        format!("subscribing to `{pattern}` failed"),
        err,
    )
}

/// An ack or nack that did not reach the server.
pub(crate) fn ack(what: &str, err: impl Into<broker_core::BoxError>) -> Error {
    Error::with_source(ErrorKind::Ack, format!("{what} failed"), err)
}
