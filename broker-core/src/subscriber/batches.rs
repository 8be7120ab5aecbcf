//! Running a [`BatchHandler`]: gathering deliveries into batches (up to `max_events`, or
//! what arrived within `max_wait` of the first), handling one batch at a time while the
//! next is gathered, and settling each batch's events together.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::future::{OptionFuture, join_all};
use futures::{FutureExt, StreamExt};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::ShutdownReport;
use super::dispatch::Stops;
use super::settle::{Policy, nack_cancelled, nack_unhandled, settle_handled};
use crate::batch::{Batch, BatchHandler, EventError};
use crate::delivery::Settle;
use crate::handler::panic_message;
use crate::middleware::DeadLetterLayer;
use crate::{Delivery, Event, MessageId, Subscription};

/// What a batch runner shares with each batch it handles.
pub(super) struct Shared {
    pub(super) handler: Arc<dyn BatchHandler>,
    pub(super) policy: Policy,
    pub(super) dead_letter: Option<DeadLetterLayer>,
}

/// When a batch is handed over: at `max_events`, or `max_wait` after its first event.
#[derive(Debug, Clone, Copy)]
pub(super) struct Gather {
    pub(super) max_events: usize,
    pub(super) max_wait: Duration,
}

/// What became of a batch's deliveries.
#[derive(Debug, Clone, Copy, Default)]
struct Settled {
    handled: usize,
    cancelled: usize,
}

/// Handles the deliveries of `subscription` in batches until `stops.stop` is cancelled or
/// the subscription ends; then handles what was gathered, or, once `stops.cancel` is
/// cancelled, nacks it (and the batch being handled) unhandled.
pub(super) async fn run(
    mut subscription: Subscription,
    shared: Shared,
    gather: Gather,
    stops: Stops,
) -> ShutdownReport {
    let Stops { stop, cancel } = stops;
    let shared = Arc::new(shared);
    let mut report = ShutdownReport::default();
    let mut gathered: Vec<Delivery> = Vec::with_capacity(gather.max_events);
    let mut running: Option<JoinHandle<Settled>> = None;
    // Armed when a batch's first delivery arrives; `waited` says it went off.
    let deadline = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(deadline);
    let mut armed = false;
    let mut waited = false;
    let mut taking = true;
    let mut stopping = false;
    let mut cancelling = false;
    loop {
        let full = gathered.len() >= gather.max_events;
        let due = full || waited || (!taking && !gathered.is_empty());
        if running.is_none() && due && !gathered.is_empty() && !cancelling {
            let batch = std::mem::replace(&mut gathered, Vec::with_capacity(gather.max_events));
            armed = false;
            waited = false;
            let task = handle(batch, shared.clone(), cancel.clone());
            running = Some(tokio::spawn(task.in_current_span()));
            continue;
        }
        tokio::select! {
            biased;
            _ = stop.cancelled(), if taking => {
                taking = false;
                stopping = true;
            }
            _ = cancel.cancelled(), if !cancelling && (running.is_some() || !gathered.is_empty()) => {
                cancelling = true;
                taking = false;
                stopping = true;
                // The gathered batch never starts; the running one sees `cancel` itself.
                let unhandled = std::mem::take(&mut gathered);
                armed = false;
                report.cancelled += nack_all_unhandled(unhandled, &shared.policy).await;
            }
            Some(done) = OptionFuture::from(running.as_mut()), if running.is_some() => {
                running = None;
                match done {
                    Ok(settled) if stopping => {
                        report.finished += settled.handled;
                        report.cancelled += settled.cancelled;
                    }
                    Ok(_) => {}
                    Err(err) => tracing::error!(error = %err, "a batch handler task stopped unexpectedly"),
                }
            }
            () = &mut deadline, if armed && !waited => waited = true,
            item = subscription.next(), if taking && !full => match item {
                Some(Ok(delivery)) => {
                    if gathered.is_empty() {
                        deadline.as_mut().reset(tokio::time::Instant::now() + gather.max_wait);
                        armed = true;
                    }
                    gathered.push(delivery);
                    // What has arrived already joins the batch without a turn of the loop.
                    taking = take_ready(&mut subscription, &mut gathered, gather.max_events);
                }
                Some(Err(err)) => {
                    tracing::warn!(error = %err.display_chain(), "subscription error");
                }
                None => taking = false,
            },
            else => break,
        }
    }
    drop(subscription);
    report
}

/// Moves the deliveries `subscription` has ready into `gathered`, up to `max`; returns
/// false when the subscription ended.
fn take_ready(subscription: &mut Subscription, gathered: &mut Vec<Delivery>, max: usize) -> bool {
    while gathered.len() < max {
        match subscription.next().now_or_never() {
            Some(Some(Ok(delivery))) => gathered.push(delivery),
            Some(Some(Err(err))) => {
                // Back to the loop: a stream of errors must not spin here.
                tracing::warn!(error = %err.display_chain(), "subscription error");
                break;
            }
            Some(None) => return false,
            None => break,
        }
    }
    true
}

/// One event of a batch, waiting to be settled.
struct Pending {
    settle: Settle,
    attempt: u32,
    id: MessageId,
}

/// Handles one batch and settles its events; when `cancel` fires first, drops the
/// handler's future and nacks them all.
async fn handle(
    deliveries: Vec<Delivery>,
    shared: Arc<Shared>,
    cancel: CancellationToken,
) -> Settled {
    let span = tracing::debug_span!("batch", size = deliveries.len());
    async move {
        let mut pending = Vec::with_capacity(deliveries.len());
        let mut events = Vec::with_capacity(deliveries.len());
        let mut unreadable = Vec::new();
        for delivery in deliveries {
            let (message, info, settle) = delivery.into_parts();
            let event = Event::from_delivery(message, info);
            let waiting = Pending {
                settle,
                attempt: event.attempt(),
                id: event.message().id().clone(),
            };
            // With a dead-letter layer, what cannot be read goes there without the handler
            // seeing it, as with single events.
            if shared.dead_letter.is_some() && event.defect().is_some() {
                unreadable.push((waiting, event));
            } else {
                pending.push(waiting);
                events.push(event);
            }
        }
        let diverted = join_all(unreadable.into_iter().map(|(waiting, event)| {
            let failure = event.defect().map(|defect| EventError {
                text: defect.message().to_owned(),
                unreadable: true,
            });
            settle_one(waiting, failure, Some(event), &shared)
        }));
        let handled = diverted.await.len();
        if events.is_empty() {
            return Settled {
                handled,
                cancelled: 0,
            };
        }
        let count = events.len();
        // Kept for the dead-letter topic, which gets the message as it arrived.
        let kept = shared.dead_letter.as_ref().map(|_| events.clone());
        let call = AssertUnwindSafe(shared.handler.call(Batch::new(events))).catch_unwind();
        let outcome = tokio::select! {
            biased;
            outcome = call => outcome,
            () = cancel.cancelled() => {
                let policy = &shared.policy;
                let cancelled = join_all(pending.into_iter().map(|waiting| async move {
                    nack_cancelled(waiting.settle, &waiting.id, policy).await;
                })).await.len();
                return Settled { handled, cancelled };
            }
        };
        let failures: Vec<Option<EventError>> = match outcome {
            Ok(Ok(())) => (0..count).map(|_| None).collect(),
            Ok(Err(failures)) => failures.per_event(count),
            Err(panic) => {
                let text = format!("batch handler panicked: {}", panic_message(&*panic));
                (0..count)
                    .map(|_| {
                        Some(EventError {
                            text: text.clone(),
                            unreadable: false,
                        })
                    })
                    .collect()
            }
        };
        let mut kept = kept.map(Vec::into_iter);
        let settling = pending.into_iter().zip(failures).map(|(waiting, failure)| {
            let event = kept.as_mut().and_then(Iterator::next);
            settle_one(waiting, failure, event, &shared)
        });
        let settled = settle_all(settling).await;
        Settled {
            handled: handled + settled,
            cancelled: 0,
        }
    }
    .instrument(span)
    .await
}

/// Runs the settling futures `settling` to the end, at the same time; returns how many.
/// Most settle at once (an ack that only records an offset): each is polled once first,
/// and only those still waiting (an ack the server confirms) are joined.
async fn settle_all<F: Future<Output = ()>>(settling: impl Iterator<Item = F>) -> usize {
    let mut count = 0;
    let mut waiting = Vec::new();
    for mut settle in settling.map(Box::pin) {
        count += 1;
        if settle.as_mut().now_or_never().is_none() {
            waiting.push(settle);
        }
    }
    join_all(waiting).await;
    count
}

/// Settles one event of a batch: to the dead-letter topic when there is one and it
/// takes the failure, else as a failed single event is settled.
async fn settle_one(
    waiting: Pending,
    failure: Option<EventError>,
    event: Option<Event>,
    shared: &Shared,
) {
    let Pending {
        settle,
        attempt,
        id,
    } = waiting;
    if let (Some(error), Some(layer), Some(event)) = (&failure, &shared.dead_letter, &event)
        && layer.takes(attempt, error.unreadable)
        && layer.send(event, &error.text).await.is_ok()
    {
        if let Err(err) = settle.ack().await {
            tracing::warn!(error = %err.display_chain(), "acking a dead-lettered delivery failed");
        }
        return;
    }
    settle_handled(settle, failure, attempt, &id, &shared.policy).await;
}

/// Nacks every delivery of `deliveries` unhandled (at a shutdown's deadline); returns
/// how many.
async fn nack_all_unhandled(deliveries: Vec<Delivery>, policy: &Policy) -> usize {
    let nacks = deliveries
        .into_iter()
        .map(|delivery| nack_unhandled(delivery, policy));
    join_all(nacks).await.len()
}
