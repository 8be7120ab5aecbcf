//! The rdkafka client context: librdkafka's logs and errors go to `tracing`.

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;

/// Forwards librdkafka's log lines and client errors to `tracing`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct LogContext;

pub(crate) fn log(level: RDKafkaLogLevel, facility: &str, message: &str) {
    // Pass-through properties go to every client; librdkafka warns when a client of
    // another role ignores one (a consumer property on the producer, ...).
    if facility == "CONFWARN" {
        tracing::debug!(target: "librdkafka", facility, "{message}");
        return;
    }
    match level {
        RDKafkaLogLevel::Emerg
        | RDKafkaLogLevel::Alert
        | RDKafkaLogLevel::Critical
        | RDKafkaLogLevel::Error => tracing::error!(target: "librdkafka", facility, "{message}"),
        RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", facility, "{message}"),
        RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
            tracing::info!(target: "librdkafka", facility, "{message}")
        }
        RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", facility, "{message}"),
    }
}

pub(crate) fn error(error: KafkaError, reason: &str) {
    tracing::warn!(target: "librdkafka", error = %error, "{reason}");
}

impl ClientContext for LogContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        log(level, facility, message);
    }

    fn error(&self, err: KafkaError, reason: &str) {
        error(err, reason);
    }
}
