//! Running a handler over a subscription, with bounded concurrency and graceful shutdown.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::batch::{BatchHandler, BatchOptions};
use crate::delivery::Redelivery;
use crate::lag::{self, Lag};
use crate::{Error, ErrorKind, Handler, Result, Subscription};

mod batches;
mod dispatch;
mod settle;
#[cfg(test)]
mod tests;

/// How [`BrokerExt::subscribe_with`](crate::BrokerExt::subscribe_with) runs its handler.
///
/// The defaults cannot loop hot on a message that always fails:
/// - a handler error (or panic) nacks with an exponential backoff: the message comes back
///   after 500 ms, then 1 s, 2 s, … up to 30 s between attempts;
/// - a message that cannot be read (an error of kind [`Codec`](ErrorKind::Codec) from the
///   handler, as a typed handler returns for an undecodable payload) is a permanent
///   failure: it is never redelivered;
/// - after 10 failed attempts a message is given up on.
///
/// A message given up on goes to the dead-letter topic when the handler has a
/// [`DeadLetterLayer`](crate::middleware::DeadLetterLayer) (which sends unreadable
/// messages there at once); without one, it is acked with an ERROR log line and counted
/// in `broker_messages_dropped_total` (feature `metrics`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HandlerOptions {
    /// How many events are handled at once; see [`concurrency`](HandlerOptions::concurrency).
    pub concurrency: usize,
    /// When a failed event comes back.
    pub backoff: Backoff,
    /// After how many failed deliveries a message is given up on; `None`: never (on
    /// backends that count deliveries: every one but core NATS, which does not redeliver).
    pub max_attempts: Option<u32>,
}

impl Default for HandlerOptions {
    fn default() -> Self {
        HandlerOptions {
            concurrency: 1,
            backoff: Backoff::default(),
            max_attempts: Some(DEFAULT_MAX_ATTEMPTS),
        }
    }
}

/// How many failed deliveries a handler allows a message by default.
const DEFAULT_MAX_ATTEMPTS: u32 = 10;

impl HandlerOptions {
    /// One event at a time, failures redelivered with the default backoff, at most 10
    /// deliveries.
    pub fn new() -> Self {
        HandlerOptions::default()
    }

    /// Handles up to `n` events at once (at least 1), each on whichever of the `n` slots
    /// is free: a slow handler holds only its own slot.
    ///
    /// - Events with a key are handled one after another per key (on Kafka: per key
    ///   within a partition), in the order they arrived; events with different keys run at
    ///   the same time, also within one Kafka partition.
    /// - Events without a key keep no order among themselves when `n > 1`; with `n = 1`
    ///   every event is handled in arrival order.
    /// - On Kafka, acking out of order within a partition is safe: offsets are committed
    ///   only up to the first event not yet acked.
    ///
    /// At most `n` handlers run, and at most 32 events of one key wait for that key's
    /// handler (when a key has 32 waiting, no more are taken until it moves on); the
    /// subscription's [`max_in_flight`](crate::SubscribeOptions::max_in_flight) bounds all
    /// events taken and not yet settled.
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// Failed events come back after `delay`, every time.
    pub fn retry_after(mut self, delay: Duration) -> Self {
        self.backoff = Backoff::fixed(delay);
        self
    }

    /// Failed events come back after `backoff`.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Gives up on a message after `attempts` failed deliveries (at least 1); `None`
    /// never gives up.
    pub fn max_attempts(mut self, attempts: Option<u32>) -> Self {
        self.max_attempts = attempts.map(|n| n.max(1));
        self
    }
}

/// When a failed message comes back: `initial` after the first failure, doubling with
/// each further one, never more than `max`.
///
/// ```
/// use std::time::Duration;
/// use broker_core::delivery::Redelivery;
/// use broker_core::options::Backoff;
///
/// let backoff = Backoff::exponential(Duration::from_millis(100), Duration::from_millis(350));
/// let waits: Vec<_> = (1..=4).map(|attempt| backoff.after_attempt(attempt)).collect();
/// let ms = |n| Redelivery::After(Duration::from_millis(n));
/// assert_eq!(waits, [ms(100), ms(200), ms(350), ms(350)]);
/// assert_eq!(Backoff::fixed(Duration::ZERO).after_attempt(3), Redelivery::Now);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
}

impl Default for Backoff {
    /// 500 ms, doubling up to 30 s.
    fn default() -> Self {
        Backoff::exponential(Duration::from_millis(500), Duration::from_secs(30))
    }
}

impl Backoff {
    /// `initial`, doubling with each failure up to `max`.
    pub fn exponential(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max: max.max(initial),
        }
    }

    /// The same `delay` after every failure (zero: at once).
    pub fn fixed(delay: Duration) -> Self {
        Backoff {
            initial: delay,
            max: delay,
        }
    }

    /// When a message that failed on its `attempt`th delivery (1 for the first) comes back.
    pub fn after_attempt(&self, attempt: u32) -> Redelivery {
        let doublings = attempt.saturating_sub(1).min(31);
        let delay = self
            .initial
            .checked_mul(1 << doublings)
            .map_or(self.max, |d| d.min(self.max));
        if delay.is_zero() {
            Redelivery::Now
        } else {
            Redelivery::After(delay)
        }
    }
}

/// A handler running over a subscription. [`shutdown`](SubscriberHandle::shutdown) stops it
/// gracefully, [`shutdown_within`](SubscriberHandle::shutdown_within) within a deadline;
/// dropping the handle leaves it running until the broker closes.
#[derive(Debug)]
pub struct SubscriberHandle {
    pattern: String,
    stop: CancellationToken,
    cancel: CancellationToken,
    task: JoinHandle<ShutdownReport>,
    lag: lag::Attached,
}

/// What became of the deliveries a subscriber held when it was shut down (see
/// [`SubscriberHandle::shutdown_within`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// Deliveries handled to the end, and settled, after the shutdown began: those
    /// running and those waiting for their key's handler.
    pub finished: usize,
    /// Deliveries nacked unhandled at the deadline: handlers still running then (their
    /// futures dropped) and the deliveries waiting behind them. They come back on
    /// backends that redeliver.
    pub cancelled: usize,
}

impl SubscriberHandle {
    /// The pattern the handler is subscribed to.
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// Whether the handler has stopped (after a shutdown, or because the broker closed).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// How far the subscription is behind; see [`lag`](crate::lag) for what each
    /// backend counts.
    pub async fn lag(&self) -> Result<Lag> {
        self.lag.lag().await
    }

    /// Stops taking new messages, waits for the events being handled to finish and their
    /// acks or nacks to be settled, then unsubscribes. Nothing taken is lost. It waits as
    /// long as the handlers run; [`shutdown_within`](Self::shutdown_within) bounds that.
    pub async fn shutdown(self) -> Result<()> {
        self.stop.cancel();
        joined(self.task.await).map(drop)
    }

    /// Stops taking new messages at once (when called, not when first polled) and waits
    /// up to `deadline`, counted from the call, for the events being handled to finish,
    /// as [`shutdown`](Self::shutdown) does. Then it cancels the handlers still running
    /// (their futures are dropped) and nacks their deliveries and those waiting behind
    /// them, so that backends that redeliver (see
    /// [`Capabilities::redelivery`](crate::backend::Capabilities::redelivery)) deliver them
    /// again, to another member of the queue group or to the next subscriber.
    ///
    /// It returns once the nacks are settled and the subscription is closed, saying how
    /// many deliveries finished and how many were cancelled; each cancelled one is logged
    /// (WARN) and counted in `broker_handlers_cancelled_total` (feature `metrics`). To
    /// stop several subscribers within one deadline, call this on each, then await them.
    ///
    /// ```
    /// # async fn demo(handle: broker_core::SubscriberHandle) -> broker_core::Result<()> {
    /// use std::time::Duration;
    ///
    /// let report = handle.shutdown_within(Duration::from_secs(30)).await?;
    /// println!("{} finished, {} cancelled", report.finished, report.cancelled);
    /// # Ok(()) }
    /// ```
    pub fn shutdown_within(
        self,
        deadline: Duration,
    ) -> impl Future<Output = Result<ShutdownReport>> + Send + 'static {
        let SubscriberHandle {
            stop,
            cancel,
            mut task,
            ..
        } = self;
        stop.cancel();
        let until = tokio::time::Instant::now().checked_add(deadline);
        async move {
            let Some(until) = until else {
                // A deadline past the end of time: no deadline.
                return joined(task.await);
            };
            match tokio::time::timeout_at(until, &mut task).await {
                Ok(done) => joined(done),
                Err(_) => {
                    cancel.cancel();
                    joined(task.await)
                }
            }
        }
    }
}

/// The subscriber task's report, or why it has none.
fn joined(
    done: std::result::Result<ShutdownReport, tokio::task::JoinError>,
) -> Result<ShutdownReport> {
    done.map_err(|e| Error::with_source(ErrorKind::Handler, "the subscriber task failed", e))
}

pub(crate) fn spawn(
    subscription: Subscription,
    handler: Arc<dyn Handler>,
    options: HandlerOptions,
) -> SubscriberHandle {
    let policy = |pattern: String| settle::Policy {
        pattern,
        backoff: options.backoff,
        max_attempts: options.max_attempts,
    };
    spawn_runner(subscription, |subscription, stops| {
        let policy = policy(subscription.pattern().to_owned());
        dispatch::run(subscription, handler, policy, options.concurrency, stops)
    })
}

pub(crate) fn spawn_batches(
    subscription: Subscription,
    handler: Arc<dyn BatchHandler>,
    options: BatchOptions,
) -> SubscriberHandle {
    spawn_runner(subscription, |subscription, stops| {
        let shared = batches::Shared {
            handler,
            policy: settle::Policy {
                pattern: subscription.pattern().to_owned(),
                backoff: options.backoff,
                max_attempts: options.max_attempts,
            },
            dead_letter: options.dead_letter,
        };
        let gather = batches::Gather {
            max_events: options.max_events.max(1),
            max_wait: options.max_wait,
        };
        batches::run(subscription, shared, gather, stops)
    })
}

/// Spawns the task `runner` makes of the subscription, in a span naming its pattern,
/// and returns its handle.
fn spawn_runner<R>(
    subscription: Subscription,
    runner: impl FnOnce(Subscription, dispatch::Stops) -> R,
) -> SubscriberHandle
where
    R: Future<Output = ShutdownReport> + Send + 'static,
{
    let stop = CancellationToken::new();
    let cancel = CancellationToken::new();
    let pattern = subscription.pattern().to_owned();
    let lag = subscription.lag_source();
    let span = tracing::info_span!("subscriber", pattern = %pattern);
    let run = runner(
        subscription,
        dispatch::Stops {
            stop: stop.clone(),
            cancel: cancel.clone(),
        },
    );
    let task = tokio::spawn(run.instrument(span));
    SubscriberHandle {
        pattern,
        stop,
        cancel,
        task,
        lag,
    }
}
