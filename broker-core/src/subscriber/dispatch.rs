//! Taking deliveries from a subscription and starting a handler for each: at most
//! `concurrency` at once, on whichever slot is free, one after another per key; and, at
//! a shutdown's deadline, cancelling what still runs.

use std::collections::{HashMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use tokio::task::{JoinError, JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::ShutdownReport;
use super::settle::{Outcome, Policy, deliver, nack_unhandled};
use crate::{Delivery, Handler, Subscription};

/// How many deliveries of one key may wait for the handler running that key. When a key
/// has this many waiting, nothing more is taken from the subscription until its handler
/// moves on to the next one.
pub(super) const MAX_WAITING_PER_KEY: usize = 32;

/// What keeps deliveries in order: the partition they came from (Kafka) and their key.
type OrderKey = (Option<i32>, Bytes);

/// The deliveries of one key run in arrival order, so they must not overlap: the key of a
/// delivery, or `None` when it may run at any time on any slot (it has no key).
fn order_key(delivery: &Delivery) -> Option<OrderKey> {
    let key = delivery.message().key_bytes()?;
    Some((delivery.partition(), key.clone()))
}

/// How a subscriber is stopped: `stop` ends the taking of deliveries (the ones taken
/// are still handled), `cancel` (at a shutdown's deadline) cancels the handlers running
/// and nacks what they and the waiting deliveries hold.
pub(super) struct Stops {
    pub(super) stop: CancellationToken,
    pub(super) cancel: CancellationToken,
}

/// The handlers running for one subscription, and the keyed deliveries waiting for them.
struct Dispatcher {
    handler: Arc<dyn Handler>,
    policy: Arc<Policy>,
    concurrency: usize,
    /// Cancels the running handlers (see [`Stops`]).
    cancel: CancellationToken,
    /// One task per delivery being handled; each returns the key it held and what became
    /// of the delivery.
    running: JoinSet<(Option<OrderKey>, Outcome)>,
    /// The keys a handler is running for, with their deliveries waiting, in arrival order.
    /// Every key here holds a running task, so there are at most `concurrency` of them.
    busy: HashMap<OrderKey, VecDeque<Delivery>>,
    /// A key with [`MAX_WAITING_PER_KEY`] deliveries waiting.
    full: Option<OrderKey>,
    /// Whether the shutdown began: from then on, what becomes of each delivery counts in
    /// the report.
    stopping: bool,
    report: ShutdownReport,
}

impl Dispatcher {
    /// Whether a delivery taken now can be placed: a slot is free and no key's queue is
    /// full.
    fn has_room(&self) -> bool {
        self.running.len() < self.concurrency && self.full.is_none()
    }

    /// Starts `delivery` on a free slot, or queues it behind its key's running handler.
    fn dispatch(&mut self, delivery: Delivery) {
        let Some(key) = order_key(&delivery) else {
            return self.start(None, delivery);
        };
        if let Some(waiting) = self.busy.get_mut(&key) {
            waiting.push_back(delivery);
            if waiting.len() >= MAX_WAITING_PER_KEY {
                self.full = Some(key);
            }
            return;
        }
        self.busy.insert(key.clone(), VecDeque::new());
        self.start(Some(key), delivery);
    }

    fn start(&mut self, key: Option<OrderKey>, delivery: Delivery) {
        let handler = self.handler.clone();
        let policy = self.policy.clone();
        let cancel = self.cancel.clone();
        let task = async move {
            // `deliver` catches the handler's panics; this catches any other, so that the
            // key's next delivery still runs.
            let handled = AssertUnwindSafe(deliver(delivery, &*handler, &policy, &cancel))
                .catch_unwind()
                .await;
            let outcome = handled.unwrap_or_else(|_| {
                tracing::error!("handling a delivery panicked outside the handler");
                Outcome::Handled
            });
            (key, outcome)
        };
        self.running.spawn(task.in_current_span());
    }

    /// The shutdown's deadline passed: the running handlers see `cancel` and nack their
    /// deliveries; the deliveries waiting for their key are nacked unhandled.
    fn cancel_all(&mut self) {
        self.full = None;
        let waiting: Vec<Delivery> = self.busy.values_mut().flat_map(|q| q.drain(..)).collect();
        for delivery in waiting {
            self.nack_unhandled(delivery);
        }
    }

    /// Nacks `delivery` without handling it, on a slot of its own.
    fn nack_unhandled(&mut self, delivery: Delivery) {
        let policy = self.policy.clone();
        let task = async move { (None, nack_unhandled(delivery, &policy).await) };
        self.running.spawn(task.in_current_span());
    }

    /// A handler task ended: its key's next delivery, if one waits, takes the slot.
    fn finished(&mut self, done: Result<(Option<OrderKey>, Outcome), JoinError>) {
        let key = match done {
            Ok((key, outcome)) => {
                if self.stopping {
                    match outcome {
                        Outcome::Handled => self.report.finished += 1,
                        Outcome::Cancelled => self.report.cancelled += 1,
                    }
                }
                match key {
                    Some(key) => key,
                    None => return,
                }
            }
            Err(err) => {
                // Only a runtime shutting down cancels the tasks (panics are caught).
                tracing::error!(error = %err, "a handler task stopped unexpectedly");
                return;
            }
        };
        if self.cancel.is_cancelled() {
            // Past the deadline nothing starts (`cancel_all` emptied the queues already).
            for delivery in self.busy.remove(&key).into_iter().flatten() {
                self.nack_unhandled(delivery);
            }
            return;
        }
        let next = self.busy.get_mut(&key).and_then(VecDeque::pop_front);
        if self.full.as_ref() == Some(&key) {
            self.full = None;
        }
        match next {
            Some(delivery) => self.start(Some(key), delivery),
            None => {
                self.busy.remove(&key);
            }
        }
    }
}

/// Handles the deliveries of `subscription` until `stops.stop` is cancelled or the
/// subscription ends, then finishes every delivery taken (those running and those
/// waiting for their key), or nacks what is left of them once `stops.cancel` is
/// cancelled, before it returns and unsubscribes.
pub(super) async fn run(
    mut subscription: Subscription,
    handler: Arc<dyn Handler>,
    policy: Policy,
    concurrency: usize,
    stops: Stops,
) -> ShutdownReport {
    let Stops { stop, cancel } = stops;
    let mut dispatcher = Dispatcher {
        handler,
        policy: Arc::new(policy),
        concurrency: concurrency.max(1),
        cancel: cancel.clone(),
        running: JoinSet::new(),
        busy: HashMap::new(),
        full: None,
        stopping: false,
        report: ShutdownReport::default(),
    };
    let mut taking = true;
    let mut cancelling = false;
    loop {
        let take = taking && dispatcher.has_room();
        let running = !dispatcher.running.is_empty();
        tokio::select! {
            biased;
            // First, so that what ends after the shutdown began counts in its report.
            _ = stop.cancelled(), if taking => {
                taking = false;
                dispatcher.stopping = true;
            }
            // Before any handler's end: a key's next delivery must not start once the
            // deadline passed.
            _ = cancel.cancelled(), if running && !cancelling => {
                cancelling = true;
                dispatcher.cancel_all();
            }
            Some(done) = dispatcher.running.join_next() => dispatcher.finished(done),
            item = subscription.next(), if take => match item {
                Some(Ok(delivery)) => dispatcher.dispatch(delivery),
                Some(Err(err)) => {
                    tracing::warn!(error = %err.display_chain(), "subscription error");
                }
                None => taking = false,
            },
            // Nothing running, nothing to take: every delivery taken is settled.
            else => break,
        }
    }
    drop(subscription);
    dispatcher.report
}
