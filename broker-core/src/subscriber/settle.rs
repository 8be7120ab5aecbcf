//! What becomes of one event: the handler's outcome turned into an ack or a nack, or, at
//! a shutdown's deadline, the handler cancelled and the event nacked.

use futures::FutureExt;
use std::panic::AssertUnwindSafe;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::Backoff;
use crate::batch::EventError;
use crate::delivery::Redelivery;
use crate::delivery::Settle;
use crate::handler::panic_message;
use crate::{Delivery, Event, Handler, MessageId};

/// What became of one delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    /// The handler ran to the end; the delivery was settled as its result says.
    Handled,
    /// Cancelled at a shutdown's deadline (or never started): nacked unhandled.
    Cancelled,
}

/// What the runner does with a failed event.
#[derive(Debug)]
pub(super) struct Policy {
    pub(super) pattern: String,
    pub(super) backoff: Backoff,
    pub(super) max_attempts: Option<u32>,
}

/// Handles `delivery` with `handler` and settles it as `policy` says, in a span naming
/// the message; when `cancel` fires first, drops the handler's future and nacks.
pub(super) async fn deliver(
    delivery: Delivery,
    handler: &dyn Handler,
    policy: &Policy,
    cancel: &CancellationToken,
) -> Outcome {
    let span = tracing::debug_span!(
        "deliver",
        topic = %delivery.topic(),
        message_id = %delivery.message().id(),
        attempt = delivery.attempt().unwrap_or(1),
    );
    handle(delivery, handler, policy, cancel)
        .instrument(span)
        .await
}

/// Nacks `delivery`, which waited for its key's handler when the shutdown's deadline
/// passed, without handling it.
pub(super) async fn nack_unhandled(delivery: Delivery, policy: &Policy) -> Outcome {
    let id = delivery.message().id().clone();
    cancelled(&id, policy);
    if let Err(err) = delivery.nack_with(Redelivery::Now).await {
        tracing::warn!(error = %err.display_chain(), "nacking a cancelled delivery failed");
    }
    Outcome::Cancelled
}

/// Nacks the delivery `settle` settles, whose handler was cancelled at a shutdown's
/// deadline, for redelivery at once; logs and counts it.
pub(super) async fn nack_cancelled(settle: Settle, id: &MessageId, policy: &Policy) {
    cancelled(id, policy);
    if let Err(err) = settle.nack(Redelivery::Now).await {
        tracing::warn!(error = %err.display_chain(), "nacking a cancelled delivery failed");
    }
}

/// Logs and counts a delivery cancelled at a shutdown's deadline.
fn cancelled(id: &MessageId, policy: &Policy) {
    tracing::warn!(message_id = %id, pattern = %policy.pattern, "shutdown deadline passed; cancelling the handler and nacking the message");
    #[cfg(feature = "metrics")]
    metrics::counter!(crate::observe::metric_names::CANCELLED, "pattern" => policy.pattern.clone())
        .increment(1);
}

async fn handle(
    delivery: Delivery,
    handler: &dyn Handler,
    policy: &Policy,
    cancel: &CancellationToken,
) -> Outcome {
    let (message, info, settle) = delivery.into_parts();
    let attempt = info.attempt.unwrap_or(1);
    let event = Event::from_delivery(message, info);
    let id = event.message().id().clone();
    let call = AssertUnwindSafe(handler.call(event))
        .catch_unwind()
        .instrument(tracing::debug_span!("handle"));
    let outcome = tokio::select! {
        biased;
        outcome = call => outcome,
        () = cancel.cancelled() => {
            nack_cancelled(settle, &id, policy).await;
            return Outcome::Cancelled;
        }
    };
    let failure = match outcome {
        Ok(Ok(())) => None,
        Ok(Err(err)) => Some(EventError::of(&err)),
        Err(panic) => Some(EventError {
            text: format!("handler panicked: {}", panic_message(&*panic)),
            unreadable: false,
        }),
    };
    settle_handled(settle, failure, attempt, &id, policy).await;
    Outcome::Handled
}

/// Settles an event whose handler ran to the end: acks it when it succeeded; when it
/// failed, nacks it with the backoff, or gives up on it (acks, logs, counts) when it
/// cannot be read or failed its last allowed attempt.
pub(super) async fn settle_handled(
    settle: Settle,
    failure: Option<EventError>,
    attempt: u32,
    id: &MessageId,
    policy: &Policy,
) {
    let settled = match failure {
        None => settle.ack().await,
        Some(EventError {
            text: error,
            unreadable: true,
        }) => {
            tracing::error!(%error, message_id = %id, pattern = %policy.pattern, "message cannot be read; dropping it (acked), as no dead-letter layer took it");
            #[cfg(feature = "metrics")]
            crate::observe::count_dropped(&policy.pattern, "unreadable");
            settle.ack().await
        }
        Some(EventError { text: error, .. })
            if policy.max_attempts.is_some_and(|max| attempt >= max) =>
        {
            tracing::error!(%error, message_id = %id, attempt, pattern = %policy.pattern, "handler failed on the last allowed attempt; dropping the message (acked), as no dead-letter layer took it");
            #[cfg(feature = "metrics")]
            crate::observe::count_dropped(&policy.pattern, "attempts");
            settle.ack().await
        }
        Some(EventError { text: error, .. }) => {
            let redelivery = policy.backoff.after_attempt(attempt);
            tracing::warn!(%error, attempt, ?redelivery, "handler failed; nacking");
            settle.nack(redelivery).await
        }
    };
    if let Err(err) = settled {
        tracing::warn!(error = %err.display_chain(), "settling a delivery failed");
    }
}
