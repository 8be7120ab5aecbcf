//! Shared by the examples: logs on stderr, traces to an OTLP collector when one is
//! configured, Prometheus metrics behind `GET /metrics`, and [`http::serve`] to serve a
//! router with a graceful stop.
//!
//! ```no_run
//! # async fn demo(router: axum::Router) -> anyhow::Result<()> {
//! // Logs, plus OTLP traces when OTEL_EXPORTER_OTLP_ENDPOINT is set.
//! let telemetry = example_telemetry::Telemetry::init("order-notification", "info")?;
//! // The process's Prometheus recorder, and `GET /metrics` next to the service's routes.
//! let metrics = example_telemetry::install_metrics()?;
//! let app = example_telemetry::with_metrics(router, metrics);
//! // … serve `app` …
//! telemetry.shutdown();
//! # Ok(()) }
//! ```
//!
//! - [`Telemetry::init`] installs a `fmt` subscriber filtered by `RUST_LOG`. When
//!   `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, it
//!   adds a `tracing-opentelemetry` layer exporting spans in OTLP http/protobuf (for
//!   example `http://127.0.0.1:4318`; `/v1/traces` is appended). Unset, there is no
//!   OpenTelemetry layer at all. Publishes made inside a span then carry its W3C
//!   `traceparent`, and handlers continue the trace (`broker::observe`).
//! - [`install_metrics`] installs the process's Prometheus recorder for the `metrics`
//!   facade (once; later calls return the same handle) and [`metrics_router`] renders it
//!   in the Prometheus text format.
#![forbid(unsafe_code)]

pub mod http;

use std::sync::OnceLock;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusBuilder;
pub use metrics_exporter_prometheus::PrometheusHandle;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// The environment variable naming the OTLP collector (a base URL such as
/// `http://127.0.0.1:4318`). Unset or empty: no traces are exported.
pub const OTLP_ENDPOINT_ENV: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";

/// The signal-specific variant of [`OTLP_ENDPOINT_ENV`], used verbatim (include
/// `/v1/traces`).
pub const OTLP_TRACES_ENDPOINT_ENV: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";

/// The content type of the Prometheus text format.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// How often the metrics recorder drains its histograms when nobody scrapes.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// The process's logging and tracing, as [`Telemetry::init`] set them up. Call
/// [`shutdown`](Telemetry::shutdown) before exiting so the last spans are exported.
#[derive(Debug)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

/// The OTLP endpoint configured in the environment, if any: the traces-specific variable
/// first, then the general one.
pub fn otlp_endpoint() -> Option<String> {
    [OTLP_TRACES_ENDPOINT_ENV, OTLP_ENDPOINT_ENV]
        .iter()
        .filter_map(|name| std::env::var(name).ok())
        .map(|value| value.trim().to_owned())
        .find(|value| !value.is_empty())
}

impl Telemetry {
    /// Installs the global `tracing` subscriber: logs on stderr filtered by `RUST_LOG`
    /// (`default_level` when unset) and, when an OTLP endpoint is configured
    /// ([`otlp_endpoint`]), spans of level INFO and above exported there under the
    /// service name `service` (`OTEL_SERVICE_NAME` wins when set).
    ///
    /// # Errors
    ///
    /// The OTLP exporter cannot be built, or a global subscriber is already installed.
    pub fn init(service: &str, default_level: &str) -> anyhow::Result<Telemetry> {
        let filter =
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
        let logs = tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_filter(filter);
        let provider = match otlp_endpoint() {
            Some(_) => Some(tracer_provider(service)?),
            None => None,
        };
        let traces = provider.as_ref().map(|provider| {
            tracing_opentelemetry::layer()
                .with_tracer(provider.tracer(service.to_owned()))
                .with_filter(LevelFilter::INFO)
        });
        tracing_subscriber::registry()
            .with(logs)
            .with(traces)
            .try_init()
            .context("cannot install the tracing subscriber")?;
        if let Some(endpoint) = otlp_endpoint() {
            tracing::info!(%endpoint, "exporting traces over OTLP (http/protobuf)");
        }
        Ok(Telemetry { provider })
    }

    /// Whether spans are exported over OTLP.
    pub fn exports_traces(&self) -> bool {
        self.provider.is_some()
    }

    /// Exports the spans still buffered and stops the exporter. Failures are logged, not
    /// returned: a collector that went away must not fail the service's exit.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(err) = provider.shutdown()
        {
            tracing::warn!(error = %err, "cannot flush the last spans to the OTLP collector");
        }
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        self.stop();
    }
}

fn tracer_provider(service: &str) -> anyhow::Result<SdkTracerProvider> {
    // The endpoint, timeout and headers come from the OTEL_EXPORTER_OTLP_* variables.
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()
        .context("cannot build the OTLP span exporter")?;
    let mut resource = Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name(service.to_owned());
    }
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build())
}

/// Installs the process's Prometheus recorder as the global `metrics` recorder and
/// returns a handle rendering it. Later calls return the same recorder's handle, so
/// every server and test in one process shares it. A background thread drains its
/// histograms every few seconds.
///
/// # Errors
///
/// Another `metrics` recorder is already installed in this process.
pub fn install_metrics() -> anyhow::Result<PrometheusHandle> {
    static RECORDER: OnceLock<Result<PrometheusHandle, String>> = OnceLock::new();
    let installed = RECORDER.get_or_init(|| {
        let handle = PrometheusBuilder::new()
            .install_recorder()
            .map_err(|err| err.to_string())?;
        let upkeep = handle.clone();
        std::thread::Builder::new()
            .name("metrics-upkeep".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(UPKEEP_EVERY);
                    upkeep.run_upkeep();
                }
            })
            .map_err(|err| format!("cannot start the metrics upkeep thread: {err}"))?;
        Ok(handle)
    });
    installed
        .clone()
        .map_err(|err| anyhow::anyhow!("cannot install the Prometheus recorder: {err}"))
}

/// `GET /metrics`: what `handle` recorded, in the Prometheus text format.
pub fn metrics_router(handle: PrometheusHandle) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let handle = handle.clone();
            async move {
                (
                    [(header::CONTENT_TYPE, PROMETHEUS_CONTENT_TYPE)],
                    handle.render(),
                )
                    .into_response()
            }
        }),
    )
}

/// `router` with [`metrics_router`]'s `GET /metrics` added.
pub fn with_metrics(router: Router, handle: PrometheusHandle) -> Router {
    router.merge(metrics_router(handle))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_recorder_is_installed_once_and_shared() {
        let first = install_metrics().expect("install");
        let second = install_metrics().expect("the same recorder");
        metrics::counter!("example_telemetry_test_total", "case" => "shared").increment(2);
        for handle in [&first, &second] {
            let text = handle.render();
            assert!(
                text.contains(r#"example_telemetry_test_total{case="shared"} 2"#),
                "{text}"
            );
        }
    }
}
