//! Test support for metrics: the process's Prometheus recorder, `GET /metrics` parsed,
//! and turns that keep the tests of one backend from counting each other's publishes.
//!
//! The `metrics` facade records into one global recorder, so every test of a process
//! shares it. Deliveries and acks are labelled by subscription pattern, which is unique
//! per test; `broker_messages_published_total` only by backend. A test that counts
//! publishes therefore runs [`Turn::Alone`] on its backend and compares the counter before
//! and after; the other tests on that backend take a [`Turn::Shared`] one.

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};

use broker::observe::metric_names as names;
use example_telemetry::PrometheusHandle;
use tokio::sync::{OwnedRwLockReadGuard, OwnedRwLockWriteGuard, RwLock};

use super::{Backend, WAIT};

/// The process's Prometheus recorder (installed by the first caller).
pub fn recorder() -> PrometheusHandle {
    example_telemetry::install_metrics().expect("the Prometheus recorder")
}

/// One lock per backend: shared by the tests that do not count publishes, exclusive for
/// one that does.
static TURNS: LazyLock<[Arc<RwLock<()>>; 4]> = LazyLock::new(Default::default);

fn turns(backend: Backend) -> Arc<RwLock<()>> {
    let index = match backend {
        Backend::Memory => 0,
        Backend::Nats => 1,
        Backend::JetStream => 2,
        Backend::Kafka => 3,
    };
    TURNS[index].clone()
}

/// A test's turn on its backend, held for as long as the test runs.
#[derive(Debug)]
pub enum Turn {
    /// Alongside the other tests that do not count publishes.
    Shared(OwnedRwLockReadGuard<()>),
    /// Alone on the backend: no other test publishes there meanwhile.
    Alone(OwnedRwLockWriteGuard<()>),
}

impl Turn {
    /// Waits for a shared turn on `backend`.
    pub async fn shared(backend: Backend) -> Turn {
        Turn::Shared(turns(backend).read_owned().await)
    }

    /// Waits until no other test runs on `backend`.
    pub async fn alone(backend: Backend) -> Turn {
        Turn::Alone(turns(backend).write_owned().await)
    }
}

/// One sample of the Prometheus text format.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The metric name.
    pub name: String,
    /// The labels.
    pub labels: BTreeMap<String, String>,
    /// The value.
    pub value: f64,
}

/// The samples of a Prometheus text exposition; comments and blank lines are skipped.
pub fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| parse_line(line).unwrap_or_else(|| panic!("not a sample: {line:?}")))
        .collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let (name, labels, rest) = match line.find('{') {
        Some(open) => {
            let (labels, rest) = parse_labels(&line[open + 1..])?;
            (&line[..open], labels, rest)
        }
        None => {
            let (name, rest) = line.split_once(' ')?;
            (name, BTreeMap::new(), rest)
        }
    };
    // A timestamp may follow the value.
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        other => other.parse().ok()?,
    };
    Some(Sample {
        name: name.trim().to_owned(),
        labels,
        value,
    })
}

/// `name="value",…}` and what follows the closing brace.
fn parse_labels(text: &str) -> Option<(BTreeMap<String, String>, &str)> {
    let mut labels = BTreeMap::new();
    let mut rest = text;
    loop {
        rest = rest.trim_start_matches([',', ' ']);
        if let Some(after) = rest.strip_prefix('}') {
            return Some((labels, after));
        }
        let (name, after) = rest.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                (_, c) => value.push(c),
            }
        };
        labels.insert(name.trim().to_owned(), value);
        rest = &after[end + 1..];
    }
}

/// The sum of the samples called `name` whose labels include all of `labels` (0 when
/// there is none).
pub fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            labels
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .sum()
}

/// The publishes counted in `samples` on `backend`.
pub fn published(samples: &[Sample], backend: &str) -> f64 {
    value(samples, names::PUBLISHED, &[("backend", backend)])
}

/// Asserts that the subscription `pattern` on `backend` had `expected` deliveries, all
/// acked, none nacked.
pub fn assert_handled(samples: &[Sample], backend: &str, pattern: &str, expected: f64) {
    let labels = [("backend", backend), ("pattern", pattern)];
    for (name, count) in [
        (names::DELIVERED, expected),
        (names::ACKED, expected),
        (names::NACKED, 0.0),
    ] {
        assert_eq!(value(samples, name, &labels), count, "{name} {labels:?}");
    }
}

/// The deliveries the recorder counts now on the subscription `pattern` of `backend`.
pub fn delivered_now(backend: &str, pattern: &str) -> f64 {
    value(
        &parse(&recorder().render()),
        names::DELIVERED,
        &[("backend", backend), ("pattern", pattern)],
    )
}

/// `GET url` (a `/metrics` route), parsed.
pub async fn scrape(client: &reqwest::Client, url: &str) -> Vec<Sample> {
    let response = super::get(client, url).await;
    assert_eq!(response.status().as_u16(), 200, "GET {url}");
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        content_type.starts_with("text/plain"),
        "GET {url}: content type {content_type:?}"
    );
    parse(&response.text().await.expect("the metrics text"))
}

/// Scrapes `url` until `done` holds for its samples, at most [`WAIT`]; returns the
/// samples that satisfied it.
pub async fn scrape_until(
    client: &reqwest::Client,
    url: &str,
    done: impl Fn(&[Sample]) -> bool,
) -> Vec<Sample> {
    super::poll_until(
        WAIT,
        async || scrape(client, url).await,
        |samples| done(samples),
    )
    .await
    .unwrap_or_else(|last| {
        panic!(
            "the metrics at {url} did not reach the expected counts within {WAIT:?}: {:#?}",
            last.iter()
                .filter(|s| s.name.starts_with("broker_"))
                .collect::<Vec<_>>()
        )
    })
}

#[test]
fn parses_the_text_format() {
    let samples = parse(
        "# TYPE broker_messages_delivered_total counter\n\
         broker_messages_delivered_total{backend=\"nats\",pattern=\"a.\\\"b\\\"\"} 3\n\
         up 1 1700000000\n",
    );
    assert_eq!(samples.len(), 2, "{samples:?}");
    assert_eq!(
        value(
            &samples,
            "broker_messages_delivered_total",
            &[("backend", "nats"), ("pattern", "a.\"b\"")]
        ),
        3.0
    );
    assert_eq!(value(&samples, "up", &[]), 1.0);
    assert_eq!(value(&samples, "up", &[("backend", "x")]), 0.0);
}
