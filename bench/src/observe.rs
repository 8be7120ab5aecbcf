//! What the observability layers cost: the memory backend bare, against the same backend
//! wrapped by `broker::observe::observed` (correlation ids; the W3C trace context of the
//! current span written into every message, with an OpenTelemetry tracer installed;
//! metrics recorded into a Prometheus recorder). Memory is the backend where the layers'
//! own cost is least hidden by network time, so it bounds their cost on the others.

use std::sync::{Arc, OnceLock};

use anyhow::anyhow;
use broker::memory::MemoryBroker;
use broker::observe::observed;
use opentelemetry::trace::TracerProvider as _;
use tracing::Instrument;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt;

use crate::framework::Framework;
use crate::scenario::{self, NoPrepare, Plan, Row, Topics};

/// Installs, once, a Prometheus metrics recorder and a `tracing` subscriber whose
/// OpenTelemetry layer records spans at INFO and above (so the backends' own trace-level
/// spans stay off on both sides) and exports nowhere.
fn install() -> anyhow::Result<()> {
    static INSTALLED: OnceLock<Result<(), String>> = OnceLock::new();
    INSTALLED
        .get_or_init(|| {
            metrics_exporter_prometheus::PrometheusBuilder::new()
                .install_recorder()
                .map_err(|e| format!("installing the Prometheus recorder: {e}"))?;
            let tracer = opentelemetry_sdk::trace::SdkTracerProvider::builder()
                .build()
                .tracer("broker-bench");
            let subscriber = tracing_subscriber::registry().with(
                tracing_opentelemetry::layer()
                    .with_tracer(tracer)
                    .with_filter(tracing_subscriber::filter::LevelFilter::INFO),
            );
            tracing::subscriber::set_global_default(subscriber)
                .map_err(|e| format!("installing the tracing subscriber: {e}"))
        })
        .clone()
        .map_err(|e| anyhow!(e))
}

/// Runs every scenario with the bare memory backend as the baseline and the observed
/// one as the framework's side: first with nothing installed (no metrics recorder, no
/// `tracing` subscriber: what the layers cost a service that does not use them), then
/// with both installed, inside one span (so every publish carries its context). A
/// process can install a recorder only once, so the first comparison only runs when
/// nothing was installed before.
pub(crate) async fn run(plan: &Plan, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    static UNINSTALLED_RUN: std::sync::atomic::AtomicBool =
        std::sync::atomic::AtomicBool::new(false);
    if !UNINSTALLED_RUN.swap(true, std::sync::atomic::Ordering::SeqCst) {
        compare_once("memory + observe, nothing installed", plan, rows).await?;
    }
    install()?;
    let span = tracing::info_span!("broker_bench_observe");
    compare_once("memory + observe", plan, rows)
        .instrument(span)
        .await
}

/// One comparison of the bare and the observed memory backend, labelled `name`.
async fn compare_once(name: &str, plan: &Plan, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let bare = Framework::new(Arc::new(MemoryBroker::new()));
    let layered = Framework::new(observed(Arc::new(MemoryBroker::new())));
    scenario::compare(
        name,
        "the same memory backend without layers",
        &bare,
        &layered,
        &NoPrepare,
        &Topics::new("bench-observe"),
        plan,
        rows,
    )
    .await?;
    bare.broker().close().await?;
    layered.broker().close().await?;
    Ok(())
}
