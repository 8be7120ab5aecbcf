//! Shared by the examples' end-to-end tests: which broker to run on, and how to reach
//! it. A real broker that is not running fails the test with the command that starts it.
//! [`metrics`] reads `GET /metrics`.

pub mod metrics;

use std::sync::Arc;
use std::time::Duration;

use broker::Broker;

/// How long any single wait in a test may take.
pub const WAIT: Duration = Duration::from_secs(60);

/// The broker a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A private in-process bus.
    Memory,
    /// Core NATS at `NATS_URL`.
    Nats,
    /// JetStream at `NATS_URL`.
    JetStream,
    /// Kafka at `KAFKA_BROKERS`.
    Kafka,
}

impl Backend {
    /// The broker URL for this backend, from the environment.
    pub fn url(self) -> String {
        match self {
            Backend::Memory => format!("memory://{}", unique("bus")),
            Backend::Nats => nats_url(),
            Backend::JetStream => {
                let url = nats_url();
                let rest = url.split_once("://").map_or(url.as_str(), |(_, rest)| rest);
                format!("jetstream://{rest}")
            }
            Backend::Kafka => format!("kafka://{}", kafka_brokers()),
        }
    }

    /// How to start this backend's server, for failure messages.
    pub fn how_to_start(self) -> &'static str {
        match self {
            Backend::Memory => "nothing to start: memory:// is in-process",
            Backend::Nats | Backend::JetStream => {
                "start it with `scripts/nats.sh start` (or point NATS_URL at a running server)"
            }
            Backend::Kafka => {
                "start it with `scripts/kafka.sh start` (or point KAFKA_BROKERS at a running broker)"
            }
        }
    }

    /// Connects to this backend. A server that does not answer fails the test, saying
    /// how to start it.
    pub async fn connect(self) -> Arc<dyn Broker> {
        let url = self.url();
        if self != Backend::Memory {
            let addr = first_address(&url);
            match tokio::time::timeout(
                Duration::from_secs(5),
                tokio::net::TcpStream::connect(&addr),
            )
            .await
            {
                Ok(Ok(_)) => {}
                Ok(Err(err)) => panic!(
                    "{self:?} is not reachable at {addr} ({err}); {}",
                    self.how_to_start()
                ),
                Err(_) => panic!(
                    "{self:?} did not accept a connection at {addr} within 5s; {}",
                    self.how_to_start()
                ),
            }
        }
        match tokio::time::timeout(WAIT, broker::connect(&url)).await {
            Ok(Ok(broker)) => broker,
            Ok(Err(err)) => panic!(
                "cannot connect to {url}: {}; {}",
                err.display_chain(),
                self.how_to_start()
            ),
            Err(_) => panic!(
                "connecting to {url} took more than {WAIT:?}; {}",
                self.how_to_start()
            ),
        }
    }
}

/// A name no other test (or earlier run) uses: `<what>-<uuid>`.
pub fn unique(what: &str) -> String {
    format!("{what}-{}", uuid::Uuid::now_v7().simple())
}

fn nats_url() -> String {
    std::env::var("NATS_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| "nats://127.0.0.1:4222".to_owned())
}

fn kafka_brokers() -> String {
    std::env::var("KAFKA_BROKERS")
        .ok()
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| "127.0.0.1:9092".to_owned())
}

/// `host:port` of the first server a broker URL names.
fn first_address(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let hosts = rest.split(['/', '?']).next().unwrap_or(rest);
    let first = hosts.split(',').next().unwrap_or(hosts);
    let first = first.rsplit_once('@').map_or(first, |(_, host)| host);
    first.to_owned()
}
