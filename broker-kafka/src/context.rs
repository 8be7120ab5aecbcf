//! The rdkafka client context: librdkafka's logs and errors go to `tracing`, and a
//! broker outage is logged once when it starts and once when it ends
//! ([`OutageLog`]), not once per reconnect attempt.

use std::collections::HashMap;
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use broker_core::backend::OutageLog;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use serde::Deserialize;

/// How often librdkafka reports its brokers' states, from which the end of an outage is
/// seen (the statistics are read only while an outage is in progress).
pub(crate) const STATS_INTERVAL_MS: &str = "1000";

/// The outages of this process's Kafka clients, by broker address: the producer, the
/// admin client and every consumer reach the same brokers, so an outage is logged once,
/// not once per client.
static OUTAGES: LazyLock<OutageLog> = LazyLock::new(|| OutageLog::new("kafka"));

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
    // A failed or lost broker connection: the error callback reports it too.
    if facility == "FAIL" {
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
    match error.rdkafka_error_code() {
        Some(RDKafkaErrorCode::BrokerTransportFailure) => match broker_address(reason) {
            Some(server) => {
                OUTAGES.failed(server, &reason);
            }
            None => tracing::warn!(target: "librdkafka", error = %error, "{reason}"),
        },
        // Follows the per-broker failures above, which said it already.
        Some(RDKafkaErrorCode::AllBrokersDown) => {
            tracing::debug!(target: "librdkafka", error = %error, "{reason}")
        }
        _ => tracing::warn!(target: "librdkafka", error = %error, "{reason}"),
    }
}

/// The address (`host:port`) of the broker a transport error names: librdkafka starts
/// its reason with the broker's name, `host:port/id` or `host:port/bootstrap`, after a
/// role such as `GroupCoordinator: ` for the logical coordinator connection.
fn broker_address(reason: &str) -> Option<&str> {
    reason
        .split(": ")
        .map(|part| match part.split_once('#') {
            // `Connect to ipv4#host:port failed`
            Some((_, address)) => address.split(' ').next().unwrap_or(address),
            None => part.split('/').next().unwrap_or(part),
        })
        .find(|name| {
            name.rsplit_once(':').is_some_and(|(host, port)| {
                !host.is_empty() && !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit())
            })
        })
}

/// The part of librdkafka's statistics that says which brokers are up.
#[derive(Deserialize)]
struct Stats {
    #[serde(default)]
    brokers: HashMap<String, BrokerStats>,
}

#[derive(Deserialize)]
struct BrokerStats {
    nodename: String,
    state: String,
}

/// Ends the outage of each broker the statistics show up again. A client connects only
/// to the brokers it needs, so a broker back from an outage may stay unused for long;
/// one that is not up in the statistics is probed with a TCP connection instead, at most
/// once per statistics interval.
pub(crate) fn stats(json: &[u8]) {
    if !OUTAGES.any_down() {
        return;
    }
    match serde_json::from_slice::<Stats>(json) {
        Ok(stats) => {
            for broker in stats.brokers.values().filter(|b| b.state == "UP") {
                OUTAGES.recovered(&broker.nodename);
            }
        }
        Err(err) => tracing::debug!(target: "librdkafka", error = %err, "unreadable statistics"),
    }
    for server in OUTAGES.down() {
        probe(server);
    }
}

/// Tries, on a thread of its own, to open a TCP connection to `server`, and ends its
/// outage when that works; does nothing when `server` was probed less than a statistics
/// interval ago.
fn probe(server: String) {
    static PROBED: LazyLock<Mutex<HashMap<String, Instant>>> = LazyLock::new(Mutex::default);
    let interval = Duration::from_millis(STATS_INTERVAL_MS.parse().unwrap_or(1000));
    {
        let mut probed = PROBED
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if probed
            .get(&server)
            .is_some_and(|at| at.elapsed() < interval)
        {
            return;
        }
        probed.insert(server.clone(), Instant::now());
    }
    let spawned = std::thread::Builder::new()
        .name("kafka-probe".to_owned())
        .spawn(move || {
            let answers = server
                .to_socket_addrs()
                .into_iter()
                .flatten()
                .any(|addr| TcpStream::connect_timeout(&addr, interval).is_ok());
            if answers {
                OUTAGES.recovered(&server);
            }
        });
    if let Err(err) = spawned {
        tracing::debug!(error = %err, "cannot start a broker probe");
    }
}

impl ClientContext for LogContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        log(level, facility, message);
    }

    fn error(&self, err: KafkaError, reason: &str) {
        error(err, reason);
    }

    fn stats_raw(&self, json: &[u8]) {
        stats(json);
    }
}

/// For the client that reads a subscription's lag (it joins no group, so it has no
/// rebalances to handle).
impl rdkafka::consumer::ConsumerContext for LogContext {}

/// The broker outages of this process's Kafka clients: which brokers are unreachable
/// now, and how many failures and outages there were. Each outage is logged once when it
/// starts (WARN) and once when it ends (INFO); the attempts in between are only counted.
pub fn outages() -> &'static OutageLog {
    &OUTAGES
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_broker_address_is_read_from_librdkafkas_reason() {
        for reason in [
            "127.0.0.1:29093/2: Connect to ipv4#127.0.0.1:29093 failed: Connection refused (after 0ms in state CONNECT)",
            "127.0.0.1:29093/bootstrap: Connect to ipv4#127.0.0.1:29093 failed: Connection refused",
            "GroupCoordinator: 127.0.0.1:29093/2: Disconnected (after 5012ms in state UP)",
            "GroupCoordinator/2: Connect to ipv4#127.0.0.1:29093 failed: Connection refused",
        ] {
            assert_eq!(broker_address(reason), Some("127.0.0.1:29093"), "{reason}");
        }
        assert_eq!(broker_address("3/3 brokers are down"), None);
    }

    #[test]
    fn a_broker_that_answers_again_ends_its_outage_without_a_client_using_it() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
        let server = listener.local_addr().expect("address").to_string();
        OUTAGES.failed(&server, &"refused");
        let ended = (0..50).any(|_| {
            stats(br#"{"brokers":{}}"#);
            std::thread::sleep(Duration::from_millis(100));
            !OUTAGES.down().contains(&server)
        });
        assert!(ended, "the probe did not end the outage of {server}");
    }

    #[test]
    fn statistics_end_the_outage_of_a_broker_that_is_up() {
        OUTAGES.failed("10.9.9.9:1", &"refused");
        stats(br#"{"brokers":{"10.9.9.9:1/3":{"nodename":"10.9.9.9:1","state":"CONNECT"}}}"#);
        assert!(OUTAGES.down().contains(&"10.9.9.9:1".to_owned()));
        stats(br#"{"brokers":{"10.9.9.9:1/3":{"nodename":"10.9.9.9:1","state":"UP"}}}"#);
        assert!(!OUTAGES.down().contains(&"10.9.9.9:1".to_owned()));
    }
}
