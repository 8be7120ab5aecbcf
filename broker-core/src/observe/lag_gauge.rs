//! Sampling a subscription's consumer lag into a gauge while the subscription lives.

use std::time::Duration;

use metrics::Gauge;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::ErrorKind;
use crate::lag::Attached;

/// Sets `gauge` to the lag `source` reports, at once and then every `every` (never when
/// `every` is zero), until the returned guard is dropped; then sets it to 0, so that a
/// subscription that ended leaves no backlog behind in the metrics. A backend that does not report lag leaves
/// the gauge alone; a failed sample is logged at DEBUG and the gauge keeps its value.
pub(super) fn sample(source: Attached, gauge: Gauge, every: Duration) -> Option<DropGuard> {
    if !source.is_some() || every.is_zero() {
        return None;
    }
    let stop = CancellationToken::new();
    let guard = stop.clone().drop_guard();
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let lag = tokio::select! {
                biased;
                () = stop.cancelled() => break,
                lag = async {
                    ticks.tick().await;
                    source.lag().await
                } => lag,
            };
            match lag {
                // A gauge is an f64: exact up to 2^53 messages.
                Ok(lag) => gauge.set(lag.total as f64),
                Err(err) if err.kind() == ErrorKind::Unsupported => return,
                Err(err) => {
                    tracing::debug!(error = %err.display_chain(), "cannot sample the consumer lag")
                }
            }
        }
        gauge.set(0.0);
    });
    Some(guard)
}
