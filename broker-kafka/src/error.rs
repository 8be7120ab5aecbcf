//! Mapping rdkafka errors to the framework's error kinds, and subject checks.

use broker_core::subject::{Pattern, validate_topic};
use broker_core::{Error, ErrorKind, Result};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// The error kind for a failed publish.
pub(crate) fn publish_kind(err: &KafkaError) -> ErrorKind {
    match err.rdkafka_error_code() {
        Some(RDKafkaErrorCode::MessageSizeTooLarge | RDKafkaErrorCode::InvalidMessageSize) => {
            ErrorKind::PayloadTooLarge
        }
        Some(RDKafkaErrorCode::MessageTimedOut | RDKafkaErrorCode::RequestTimedOut) => {
            ErrorKind::Timeout
        }
        Some(
            RDKafkaErrorCode::SaslAuthenticationFailed
            | RDKafkaErrorCode::Authentication
            | RDKafkaErrorCode::TopicAuthorizationFailed
            | RDKafkaErrorCode::ClusterAuthorizationFailed,
        ) => ErrorKind::Auth,
        Some(RDKafkaErrorCode::AllBrokersDown | RDKafkaErrorCode::BrokerTransportFailure) => {
            ErrorKind::Connect
        }
        _ => ErrorKind::Publish,
    }
}

/// An error of `kind` caused by `err`.
pub(crate) fn kafka(kind: ErrorKind, what: impl Into<String>, err: KafkaError) -> Error {
    Error::with_source(kind, what, err)
}

/// An error for a bad client configuration.
pub(crate) fn config(what: &str, err: KafkaError) -> Error {
    Error::with_source(
        ErrorKind::InvalidConfig,
        format!("invalid Kafka configuration for the {what}"),
        err,
    )
}

fn check_charset(subject: &str, allow_wildcards: bool) -> Result<()> {
    let bad = subject.chars().find(|&c| {
        !(c.is_ascii_alphanumeric()
            || matches!(c, '.' | '_' | '-')
            || (allow_wildcards && matches!(c, '*' | '>')))
    });
    match bad {
        Some(c) => Err(Error::new(
            ErrorKind::InvalidSubject,
            format!(
                "`{subject}`: Kafka topic names may only contain ASCII letters, digits, `.`, `_` and `-`, not {c:?}"
            ),
        )),
        None => Ok(()),
    }
}

/// Checks a topic to publish to: broker-core's subject rules, then Kafka's charset.
pub(crate) fn check_topic(topic: &str) -> Result<()> {
    validate_topic(topic)?;
    check_charset(topic, false)
}

/// Parses a subscribe pattern: broker-core's rules, then Kafka's charset.
pub(crate) fn check_pattern(pattern: &str) -> Result<Pattern> {
    let parsed = Pattern::parse(pattern)?;
    check_charset(pattern, true)?;
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_charset_is_enforced() {
        for good in ["a.b-c_D9", "orders.created"] {
            check_topic(good).expect(good);
        }
        for bad in ["a/b", "a:b", "é.x", "a+b", "a.*"] {
            let err = check_topic(bad).expect_err(bad);
            assert_eq!(err.kind(), ErrorKind::InvalidSubject, "{bad}");
        }
        check_pattern("orders.*.x").expect("wildcards");
        check_pattern("orders.>").expect("tail wildcard");
        assert_eq!(
            check_pattern("orders/*").expect_err("slash").kind(),
            ErrorKind::InvalidSubject
        );
    }
}
