//! Observability layers over a real backend: trace context, correlation ids, metrics.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use opentelemetry::trace::{TraceContextExt, TraceId};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::{collect, must, subscribe_with, wait_until};
use crate::observe::{MetricsBroker, MetricsLayer, ObserveLayer, metric_names, observed};
use crate::testkit::Kit;
use crate::{BoxError, ErrorKind, Event, HandlerExt, HandlerOptions, Message, SubscribeOptions};

/// The process-wide metrics recorder the scenarios read.
fn snapshotter() -> &'static Snapshotter {
    static SNAPSHOTTER: OnceLock<Snapshotter> = OnceLock::new();
    SNAPSHOTTER.get_or_init(|| {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        if let Err(err) = metrics::set_global_recorder(recorder) {
            panic!("metrics: another recorder is installed: {err}");
        }
        snapshotter
    })
}

/// Held by a scenario for as long as it reads the recorder: a snapshot drains the
/// counters, so two scenarios reading at once would take each other's counts.
static RECORDER_TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A message published inside a span reaches the handler, through the broker and its
/// headers only, in a span of the same trace.
pub async fn trace_context_crosses_the_broker(kit: Kit) {
    let broker = observed(kit.connect().await);
    let topic = kit.topic("trace");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let handler = (move |event: Event| {
        let tx = tx.clone();
        async move {
            let trace = tracing::Span::current()
                .context()
                .span()
                .span_context()
                .trace_id();
            let _ = tx.send((
                trace,
                event
                    .message()
                    .headers()
                    .get("traceparent")
                    .map(str::to_owned),
            ));
            Ok::<(), BoxError>(())
        }
    })
    .with(ObserveLayer::new(broker.capabilities().backend, &topic));
    let handle = subscribe_with(&broker, &topic, HandlerOptions::new(), handler).await;

    let span = tracing::info_span!("place_order");
    let sent_trace = span.context().span().span_context().trace_id();
    assert_ne!(
        sent_trace,
        TraceId::INVALID,
        "trace: the test tracer made no trace id"
    );
    must(
        broker
            .publish(&topic, Message::new("order"))
            .instrument(span)
            .await,
        "publish inside a span",
    );
    let (handled_trace, traceparent) =
        match tokio::time::timeout(kit.features.timeout, rx.recv()).await {
            Ok(Some(got)) => got,
            _ => panic!("trace: the message was not handled"),
        };
    let traceparent =
        traceparent.unwrap_or_else(|| panic!("trace: no `traceparent` header arrived"));
    assert!(
        traceparent.contains(&sent_trace.to_string()),
        "trace: `traceparent` {traceparent} does not carry trace {sent_trace}"
    );
    assert_eq!(
        handled_trace, sent_trace,
        "trace: the handler's span is in another trace"
    );
    must(handle.shutdown().await, "shutdown");
    must(broker.close().await, "close");
}

/// A handler publishes a follow-up, whose handler publishes another: both follow-ups
/// carry the first message's id as their correlation id.
pub async fn correlation_id_reaches_the_second_hop(kit: Kit) {
    let broker = observed(kit.connect().await);
    let base = kit.topic("correlation");
    let (first, second, third) = (
        format!("{base}.placed"),
        format!("{base}.paid"),
        format!("{base}.shipped"),
    );
    let end = collect(&broker, &third, SubscribeOptions::new()).await;

    let mut handles = Vec::new();
    for (from, to) in [(&second, &third), (&first, &second)] {
        let bus = broker.clone();
        let to = to.clone();
        let handler = (move |_event: Event| {
            let (bus, to) = (bus.clone(), to.clone());
            async move {
                bus.publish(&to, Message::new("follow-up")).await?;
                Ok::<(), BoxError>(())
            }
        })
        .with(ObserveLayer::new(broker.capabilities().backend, from));
        handles.push(subscribe_with(&broker, from, HandlerOptions::new(), handler).await);
    }
    let cause = Message::new("order placed");
    must(
        broker.publish(&first, cause.clone()).await,
        "publish the cause",
    );
    let received = end
        .wait_for(1, kit.features.timeout, "correlation: the second hop")
        .await;
    assert_eq!(
        received[0]
            .message
            .headers()
            .get(crate::headers::names::CORRELATION_ID),
        Some(cause.id().as_str()),
        "correlation: the second hop's correlation id"
    );
    for handle in handles {
        must(handle.shutdown().await, "shutdown");
    }
    must(broker.close().await, "close");
}

/// Through the metrics decorator and layer, 10 messages handled (5 published one by one,
/// 5 in one batch) give 10 deliveries and 10 acks for the subscription's pattern, at
/// least 10 publishes for the backend, a handler duration each, and no handler left in
/// flight.
pub async fn metrics_count_what_happened(kit: Kit) {
    let _turn = RECORDER_TURN.lock().await;
    let snapshotter = snapshotter();
    let broker: Arc<dyn crate::Broker> = Arc::new(MetricsBroker::new(kit.connect().await));
    let backend = broker.capabilities().backend;
    let topic = kit.topic("metrics");
    let handler =
        (|_event: Event| async { Ok::<(), BoxError>(()) }).with(MetricsLayer::new(backend, &topic));
    let handle = subscribe_with(&broker, &topic, HandlerOptions::new(), handler).await;
    super::publish_numbered(&broker, &topic, 0..5).await;
    // A batch counts each of its messages.
    let batch = (5..10).map(super::numbered).collect();
    must(
        broker
            .publish_batch(&topic, batch)
            .await
            .map_err(Into::into),
        "publish_batch",
    );

    // Each snapshot drains counters and histogram samples, so they are summed across
    // snapshots; a gauge is read as its latest value.
    let seen: Arc<Mutex<HashMap<String, f64>>> = Arc::default();
    let durations = Arc::new(Mutex::new(0usize));
    let read = || {
        let Ok(mut seen) = seen.lock() else { return };
        for (key, _, _, value) in snapshotter.snapshot().into_vec() {
            let key = key.key();
            let labels: HashMap<&str, &str> = key.labels().map(|l| (l.key(), l.value())).collect();
            if labels.get("backend") != Some(&backend) {
                continue;
            }
            let ours = labels.get("pattern").is_none_or(|p| *p == topic);
            if !ours {
                continue;
            }
            match value {
                DebugValue::Counter(n) => {
                    *seen.entry(key.name().to_owned()).or_default() += n as f64;
                }
                DebugValue::Gauge(g) => {
                    seen.insert(key.name().to_owned(), g.into_inner());
                }
                DebugValue::Histogram(samples) => {
                    if key.name() == metric_names::HANDLER_DURATION
                        && let Ok(mut d) = durations.lock()
                    {
                        *d += samples.len();
                    }
                }
            }
        }
    };
    let value = |name: &str| {
        seen.lock()
            .ok()
            .and_then(|s| s.get(name).copied())
            .unwrap_or(0.0)
    };
    let done = wait_until(kit.features.timeout, || {
        read();
        value(metric_names::ACKED) >= 10.0
    })
    .await;
    assert!(
        done,
        "metrics: {} acks counted, expected 10; recorded: {:?}",
        value(metric_names::ACKED),
        snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .map(|(k, _, _, v)| format!("{:?}={v:?}", k.key()))
            .collect::<Vec<_>>()
    );
    must(handle.shutdown().await, "shutdown");
    read();
    assert_eq!(
        value(metric_names::DELIVERED),
        10.0,
        "metrics: deliveries for the pattern"
    );
    assert_eq!(
        value(metric_names::ACKED),
        10.0,
        "metrics: acks for the pattern"
    );
    assert_eq!(
        value(metric_names::NACKED),
        0.0,
        "metrics: nacks for the pattern"
    );
    assert!(
        value(metric_names::PUBLISHED) >= 10.0,
        "metrics: publishes for the backend"
    );
    assert_eq!(
        value(metric_names::IN_FLIGHT),
        0.0,
        "metrics: handlers still in flight"
    );
    let durations = durations.lock().map(|d| *d).unwrap_or(0);
    assert_eq!(durations, 10, "metrics: handler durations recorded");
    must(broker.close().await, "close");
}

/// Through the metrics decorator, the consumer-lag gauge of a subscription that reads
/// nothing rises to the 5 messages published to it, and falls to 0 once the
/// subscription is dropped. Skipped where the backend does not report lag.
pub async fn metrics_sample_consumer_lag(kit: Kit) {
    let _turn = RECORDER_TURN.lock().await;
    let snapshotter = snapshotter();
    let broker: Arc<dyn crate::Broker> =
        Arc::new(MetricsBroker::new(kit.connect().await).lag_interval(Duration::from_millis(20)));
    let backend = broker.capabilities().backend;
    let topic = kit.topic("lag");
    let sub = super::subscribe(&broker, &topic, SubscribeOptions::new()).await;
    if let Err(err) = sub.lag().await {
        assert_eq!(err.kind(), ErrorKind::Unsupported, "lag: {err}");
        kit.skip("metrics_sample_consumer_lag", "consumer lag");
        return must(broker.close().await, "close");
    }
    let gauge = || {
        snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .find_map(|(key, _, _, value)| {
                let key = key.key();
                let ours = key.name() == metric_names::CONSUMER_LAG
                    && key
                        .labels()
                        .any(|l| l.key() == "pattern" && l.value() == topic)
                    && key
                        .labels()
                        .any(|l| l.key() == "backend" && l.value() == backend);
                match value {
                    DebugValue::Gauge(g) if ours => Some(g.into_inner()),
                    _ => None,
                }
            })
    };
    super::publish_numbered(&broker, &topic, 0..5).await;
    let mut last = None;
    let rose = wait_until(kit.features.timeout, || {
        last = gauge();
        last == Some(5.0)
    })
    .await;
    assert!(rose, "metrics: the lag gauge is {last:?}, expected 5");
    drop(sub);
    let fell = wait_until(kit.features.timeout, || {
        last = gauge();
        last == Some(0.0)
    })
    .await;
    assert!(
        fell,
        "metrics: the lag gauge is {last:?} after the subscription ended"
    );
    must(broker.close().await, "close");
}
