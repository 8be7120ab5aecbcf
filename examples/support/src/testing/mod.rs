//! Shared by the examples' end-to-end tests: which broker to run on and how to reach it
//! (a real broker that is not running fails the test with the command that starts it),
//! a test's [`Harness`] (its broker, subscribers and HTTP server, stopped together),
//! [`backend_tests!`](crate::backend_tests) to run each test on every backend compiled
//! in, [`metrics`], `GET /metrics` read, [`asyncapi`], a document checked by the
//! AsyncAPI project's parser, and [`health`], `GET /health` read and a nats-server a test
//! may stop and start.

pub mod asyncapi;
pub mod health;
pub mod metrics;

use std::fmt::Debug;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use broker::{Broker, SubscriberHandle};
use example_telemetry::PrometheusHandle;
use example_telemetry::http::Server;
use tokio::sync::mpsc::UnboundedReceiver;

use metrics::{Sample, Turn};

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

/// What an end-to-end test runs on: its [`Turn`] on the backend, an observed broker
/// (correlation ids, trace context, metrics, as the binaries connect), an HTTP client,
/// and the subscribers and the server the test starts, all stopped by [`Harness::stop`].
///
/// A test's fixture holds one and derefs to it
/// ([`harness_fixture!`](crate::harness_fixture)), so that `fixture.broker`,
/// `fixture.client`, `fixture.url("/metrics")` and `fixture.subscribe(…)` read as its
/// own.
#[derive(Debug)]
pub struct Harness {
    /// The backend.
    pub backend: Backend,
    /// The observed broker.
    pub broker: Arc<dyn Broker>,
    /// A client for the server.
    pub client: reqwest::Client,
    recorder: PrometheusHandle,
    server: Option<Server>,
    handles: Mutex<Vec<SubscriberHandle>>,
    _turn: Turn,
}

impl Harness {
    /// On `backend`, alongside the other tests that do not count publishes.
    pub async fn shared(backend: Backend) -> Harness {
        Harness::start(Turn::shared(backend).await, backend).await
    }

    /// Alone on `backend`, so that the publish counter is this test's own.
    pub async fn alone(backend: Backend) -> Harness {
        Harness::start(Turn::alone(backend).await, backend).await
    }

    async fn start(turn: Turn, backend: Backend) -> Harness {
        // The recorder first: the metrics layer resolves its handles when it is built.
        let recorder = metrics::recorder();
        let broker = broker::observe::observed(backend.connect().await);
        Harness {
            backend,
            broker,
            client: reqwest::Client::new(),
            recorder,
            server: None,
            handles: Mutex::default(),
            _turn: turn,
        }
    }

    /// The backend's name, as the metrics label it.
    pub fn backend_name(&self) -> &'static str {
        self.broker.capabilities().backend
    }

    /// Serves `router` on a free port of 127.0.0.1, with `GET /metrics` next to its routes
    /// as the binaries serve it.
    pub async fn serve(&mut self, router: Router) {
        let app = example_telemetry::with_metrics(router, self.recorder.clone());
        let server = example_telemetry::http::serve("127.0.0.1:0", app)
            .await
            .expect("bind a free port");
        self.server = Some(server);
    }

    /// `http://<server><path>`.
    pub fn url(&self, path: &str) -> String {
        self.server.as_ref().expect("serve first").url(path)
    }

    /// Awaits `step` (named `what` in failures) for at most [`WAIT`].
    pub async fn within<T>(&self, what: &str, step: impl Future<Output = broker::Result<T>>) -> T {
        let backend = self.backend;
        tokio::time::timeout(WAIT, step)
            .await
            .unwrap_or_else(|_| panic!("{what} took more than {WAIT:?} on {backend:?}"))
            .unwrap_or_else(|e| panic!("{what} on {backend:?}: {}", e.display_chain()))
    }

    /// Awaits `subscribing` (an example's `run_*`) and keeps the subscriber for
    /// [`stop`](Harness::stop).
    pub async fn subscribe(
        &self,
        subscribing: impl Future<Output = broker::Result<SubscriberHandle>>,
    ) {
        let handle = self.within("subscribing", subscribing).await;
        self.handles
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(handle);
    }

    /// Stops the subscribers (each finishing what it holds), then the server, and closes
    /// the broker.
    pub async fn stop(self) {
        let handles = self.handles.into_inner();
        for handle in handles.unwrap_or_else(PoisonError::into_inner) {
            tokio::time::timeout(WAIT, handle.shutdown())
                .await
                .expect("shutdown in time")
                .expect("shutdown");
        }
        if let Some(server) = self.server {
            server.shutdown().await.expect("stop the server");
        }
        let _ = tokio::time::timeout(WAIT, self.broker.close()).await;
    }

    /// `GET /metrics`, parsed.
    pub async fn scrape(&self) -> Vec<Sample> {
        metrics::scrape(&self.client, &self.url("/metrics")).await
    }

    /// The publishes counted on this backend so far.
    pub async fn published(&self) -> f64 {
        metrics::published(&self.scrape().await, self.backend_name())
    }

    /// Scrapes `GET /metrics` until `expected` acks are counted on each of the
    /// subscription `patterns`. Acks are counted once the backend confirms them, after the
    /// handler returned.
    pub async fn scrape_until_acked(&self, patterns: &[&str], expected: f64) -> Vec<Sample> {
        let backend = self.backend_name();
        metrics::scrape_until(&self.client, &self.url("/metrics"), |samples| {
            patterns.iter().all(|pattern| {
                metrics::value(
                    samples,
                    broker::observe::metric_names::ACKED,
                    &[("backend", backend), ("pattern", pattern)],
                ) >= expected
            })
        })
        .await
    }
}

/// Receives from `rx` until `done` holds for all received, at most [`WAIT`], and returns
/// all of it; fails the test on `backend` if it does not come to hold.
pub async fn collect<T: Debug>(
    backend: Backend,
    rx: &mut UnboundedReceiver<T>,
    done: impl Fn(&[T]) -> bool,
) -> Vec<T> {
    let mut seen = Vec::new();
    let outcome = tokio::time::timeout(WAIT, async {
        while !done(&seen) {
            match rx.recv().await {
                Some(item) => seen.push(item),
                None => break,
            }
        }
    })
    .await;
    assert!(
        outcome.is_ok() && done(&seen),
        "on {backend:?}, not everything arrived within {WAIT:?}; got {seen:?}"
    );
    seen
}

/// For each test named, an `async fn name(backend: Backend)` of the calling module, a
/// `#[tokio::test]` in a module per backend: `memory`, and with the calling crate's
/// features `nats` (`nats` and `jetstream`) and `kafka` (`kafka`).
///
/// ```text
/// example_support::backend_tests!(welcome_mail_is_sent, audit_sees_deletes);
/// ```
#[macro_export]
macro_rules! backend_tests {
    ($($test:ident),+ $(,)?) => {
        $crate::backend_tests!(@module memory, Memory, $($test),+);
        #[cfg(feature = "nats")]
        $crate::backend_tests!(@module nats, Nats, $($test),+);
        #[cfg(feature = "nats")]
        $crate::backend_tests!(@module jetstream, JetStream, $($test),+);
        #[cfg(feature = "kafka")]
        $crate::backend_tests!(@module kafka, Kafka, $($test),+);
    };
    (@module $module:ident, $backend:ident, $($test:ident),+) => {
        mod $module {
            $(
                #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test($crate::testing::Backend::$backend).await;
                }
            )+
        }
    };
}

/// Asks `probe` every 50 ms until its answer satisfies `done`, at most `within`; returns
/// that answer, or else the last one (the default when none came in time).
pub async fn poll_until<T: Default>(
    within: Duration,
    mut probe: impl AsyncFnMut() -> T,
    done: impl Fn(&T) -> bool,
) -> Result<T, T> {
    let mut last = T::default();
    let reached = tokio::time::timeout(within, async {
        loop {
            last = probe().await;
            if done(&last) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    match reached {
        Ok(()) => Ok(last),
        Err(_) => Err(last),
    }
}

/// `GET <url>`, answered within [`WAIT`].
pub async fn get(client: &reqwest::Client, url: &str) -> reqwest::Response {
    client
        .get(url)
        .timeout(WAIT)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
}

/// `GET <url>`: the status code and the JSON body.
pub async fn get_json(client: &reqwest::Client, url: &str) -> (u16, serde_json::Value) {
    let response = get(client, url).await;
    let status = response.status().as_u16();
    let body = response
        .bytes()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: reading the body: {e}"));
    let json = serde_json::from_slice(&body).unwrap_or_else(|e| {
        panic!(
            "GET {url}: the body is not JSON ({e}): {}",
            String::from_utf8_lossy(&body)
        )
    });
    (status, json)
}

/// Whether a test fails, rather than skips, when something it needs is missing:
/// `REQUIRE_BROKERS` or `CI` is set (and neither empty nor `0`).
pub fn required() -> bool {
    ["REQUIRE_BROKERS", "CI"]
        .iter()
        .any(|var| std::env::var_os(var).is_some_and(|v| !v.is_empty() && v != "0"))
}

/// Something a test needs is missing (`why`, saying how to get it): fails the test when
/// [`required`], else notes on stderr that it is skipped.
pub fn skip_or_fail(why: &str) {
    assert!(
        !required(),
        "{why} (REQUIRE_BROKERS or CI is set, so this test fails instead of skipping)"
    );
    eprintln!("SKIPPED: {why}");
}

/// Makes a test's fixture, a struct with its [`Harness`] in the field `harness`, deref to
/// that harness.
///
/// ```text
/// struct Shop { harness: Harness, topics: Topics }
/// example_support::harness_fixture!(Shop);
/// ```
#[macro_export]
macro_rules! harness_fixture {
    ($fixture:ty) => {
        impl ::std::ops::Deref for $fixture {
            type Target = $crate::testing::Harness;
            fn deref(&self) -> &$crate::testing::Harness {
                &self.harness
            }
        }
    };
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
