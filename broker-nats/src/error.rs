//! Mapping async-nats errors onto broker-core's [`Error`] and [`ErrorKind`].

use async_nats::ConnectErrorKind;
use async_nats::client::{PublishErrorKind, RequestErrorKind};
use broker_core::{Error, ErrorKind};

/// A connect error: refused credentials are [`ErrorKind::Auth`], a timeout
/// [`ErrorKind::Timeout`], anything else [`ErrorKind::Connect`].
pub(crate) fn connect(server: &str, err: async_nats::ConnectError) -> Error {
    let kind = match err.kind() {
        ConnectErrorKind::AuthorizationViolation | ConnectErrorKind::Authentication => {
            ErrorKind::Auth
        }
        ConnectErrorKind::TimedOut => ErrorKind::Timeout,
        ConnectErrorKind::ServerParse => ErrorKind::InvalidUrl,
        _ => ErrorKind::Connect,
    };
    Error::with_source(kind, format!("cannot connect to NATS at {server}"), err)
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
