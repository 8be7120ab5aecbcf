//! Consuming in batches: a [`BatchHandler`] gets up to `max_events` events, or what
//! arrived within `max_wait` of the first, and settles them together.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;

use crate::middleware::DeadLetterLayer;
use crate::options::Backoff;
use crate::{BoxError, Event};

/// The events a [`BatchHandler`] gets, in arrival order (one subscription's order: on
/// Kafka, each partition's events in offset order).
#[derive(Debug, Clone)]
pub struct Batch {
    events: Vec<Event>,
}

impl Batch {
    /// A batch of `events` (for testing handlers; the runner builds the real ones).
    pub fn new(events: Vec<Event>) -> Self {
        Batch { events }
    }

    /// The events, in arrival order; an event's index here is the one
    /// [`EventFailures`] names.
    pub fn events(&self) -> &[Event] {
        &self.events
    }

    /// The events, taken out.
    pub fn into_events(self) -> Vec<Event> {
        self.events
    }

    /// How many events there are (at least 1 in a batch from the runner).
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// The events, by reference.
    pub fn iter(&self) -> std::slice::Iter<'_, Event> {
        self.events.iter()
    }
}

impl<'a> IntoIterator for &'a Batch {
    type Item = &'a Event;
    type IntoIter = std::slice::Iter<'a, Event>;
    fn into_iter(self) -> Self::IntoIter {
        self.events.iter()
    }
}

impl IntoIterator for Batch {
    type Item = Event;
    type IntoIter = std::vec::IntoIter<Event>;
    fn into_iter(self) -> Self::IntoIter {
        self.events.into_iter()
    }
}

/// Which events of a [`Batch`] failed, and why: all of them, or some by index.
///
/// Any error converts into "all failed", so `?` works in a batch handler; name single
/// events with [`event`](EventFailures::event) and [`and`](EventFailures::and). The
/// events not named are acked. A failed event is settled as a failed single event is
/// (see [`BatchOptions`]): nacked with the backoff, or given up on after `max_attempts`.
///
/// It is deliberately not an `Error` itself (so that every error converts into it).
pub struct EventFailures {
    failed: Failed,
}

enum Failed {
    All(BoxError),
    Some(Vec<(usize, BoxError)>),
}

impl EventFailures {
    /// Every event of the batch failed with `error`.
    pub fn all(error: impl Into<BoxError>) -> Self {
        EventFailures {
            failed: Failed::All(error.into()),
        }
    }

    /// Event `index` of the batch failed with `error`; the others succeeded (add more
    /// with [`and`](Self::and)).
    pub fn event(index: usize, error: impl Into<BoxError>) -> Self {
        EventFailures {
            failed: Failed::Some(vec![(index, error.into())]),
        }
    }

    /// Event `index` failed too, with `error`. After [`all`](Self::all) this changes
    /// nothing.
    pub fn and(mut self, index: usize, error: impl Into<BoxError>) -> Self {
        if let Failed::Some(failed) = &mut self.failed {
            failed.push((index, error.into()));
        }
        self
    }

    /// Splits into one outcome per event of a batch of `len` events: `None` for an event
    /// that succeeded. An index past the batch is ignored (with a WARN log line); the
    /// first error given for an index counts.
    pub(crate) fn per_event(self, len: usize) -> Vec<Option<EventError>> {
        match self.failed {
            Failed::All(error) => {
                let text = error.to_string();
                let unreadable = crate::Error::is_unreadable(&error);
                (0..len)
                    .map(|_| {
                        Some(EventError {
                            text: text.clone(),
                            unreadable,
                        })
                    })
                    .collect()
            }
            Failed::Some(failed) => {
                let mut outcomes: Vec<Option<EventError>> = (0..len).map(|_| None).collect();
                for (index, error) in failed {
                    match outcomes.get_mut(index) {
                        Some(slot @ None) => *slot = Some(EventError::of(&error)),
                        Some(Some(_)) => {}
                        None => tracing::warn!(
                            index,
                            len,
                            "a batch handler named a failed event past the batch's end; ignored"
                        ),
                    }
                }
                outcomes
            }
        }
    }
}

/// Why one event failed, as the settling needs it.
#[derive(Debug, Clone)]
pub(crate) struct EventError {
    pub(crate) text: String,
    /// Of kind [`Codec`](crate::ErrorKind::Codec): redelivering cannot help.
    pub(crate) unreadable: bool,
}

impl EventError {
    pub(crate) fn of(error: &BoxError) -> Self {
        EventError {
            text: error.to_string(),
            unreadable: crate::Error::is_unreadable(error),
        }
    }
}

impl<E: Into<BoxError>> From<E> for EventFailures {
    fn from(error: E) -> Self {
        EventFailures::all(error)
    }
}

impl fmt::Debug for EventFailures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.failed {
            Failed::All(error) => f.debug_tuple("All").field(error).finish(),
            Failed::Some(failed) => f.debug_tuple("Events").field(failed).finish(),
        }
    }
}

impl fmt::Display for EventFailures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.failed {
            Failed::All(error) => write!(f, "every event of the batch failed: {error}"),
            Failed::Some(failed) => {
                write!(f, "{} event(s) of the batch failed", failed.len())?;
                if let Some((index, error)) = failed.first() {
                    write!(f, ", first #{index}: {error}")?;
                }
                Ok(())
            }
        }
    }
}

/// Handles a batch of events. `Ok` acks them all; an [`EventFailures`] says which
/// failed (all of them, for any other error, or a panic).
///
/// Any `Fn(Batch) -> impl Future<Output = Result<(), E>>` with `E` an error or an
/// [`EventFailures`] is a batch handler:
///
/// ```
/// use broker_core::BoxError;
/// use broker_core::batch::{Batch, BatchHandler, EventFailures};
///
/// fn assert_batch_handler(_: impl BatchHandler) {}
/// // Stores the batch in one go: a failure fails every event.
/// assert_batch_handler(|batch: Batch| async move {
///     println!("{} events", batch.len());
///     Ok::<_, BoxError>(())
/// });
/// // Fails the events it cannot use, acks the rest.
/// assert_batch_handler(|batch: Batch| async move {
///     let mut failures: Option<EventFailures> = None;
///     for (i, event) in batch.iter().enumerate() {
///         if event.message().payload().is_empty() {
///             failures = Some(match failures {
///                 None => EventFailures::event(i, "empty payload"),
///                 Some(f) => f.and(i, "empty payload"),
///             });
///         }
///     }
///     failures.map_or(Ok(()), Err)
/// });
/// ```
pub trait BatchHandler: Send + Sync + 'static {
    /// Handles one batch.
    fn call(&self, batch: Batch) -> BoxFuture<'static, Result<(), EventFailures>>;
}

impl<F, Fut, E> BatchHandler for F
where
    F: Fn(Batch) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: Into<EventFailures> + 'static,
{
    fn call(&self, batch: Batch) -> BoxFuture<'static, Result<(), EventFailures>> {
        (self)(batch).map(|r| r.map_err(Into::into)).boxed()
    }
}

/// How [`BrokerExt::subscribe_batches`](crate::BrokerExt::subscribe_batches) gathers and
/// settles batches.
///
/// A batch is handed over when it holds `max_events` events, or `max_wait` after its
/// first event arrived, whichever comes first (default: 100 events, 10 ms). Batches are
/// handled one at a time, in arrival order; the next batch is gathered while one is
/// handled, so the handler does not wait for it when events are queued. Failed events
/// are settled as [`HandlerOptions`](crate::HandlerOptions) settles failed single
/// events (the same backoff, `max_attempts` and unreadable-message rules, same
/// defaults); with a [`dead_letter`](Self::dead_letter) layer, an event that fails at
/// the layer's last attempt (or cannot be read) goes to its dead-letter topic instead.
///
/// Every event of a batch is unsettled until the handler returns, so
/// [`max_in_flight`](crate::SubscribeOptions::max_in_flight) (default 256) should be at
/// least twice `max_events` for the next batch to fill meanwhile.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct BatchOptions {
    /// The most events in one batch.
    pub max_events: usize,
    /// How long a batch waits for more events after its first.
    pub max_wait: Duration,
    /// When a failed event comes back.
    pub backoff: Backoff,
    /// After how many failed deliveries an event is given up on; `None`: never.
    pub max_attempts: Option<u32>,
    /// Where events that keep failing go.
    pub dead_letter: Option<DeadLetterLayer>,
}

impl Default for BatchOptions {
    fn default() -> Self {
        let single = crate::HandlerOptions::default();
        BatchOptions {
            max_events: 100,
            max_wait: Duration::from_millis(10),
            backoff: single.backoff,
            max_attempts: single.max_attempts,
            dead_letter: None,
        }
    }
}

impl BatchOptions {
    /// Batches of up to 100 events, gathered for at most 10 ms; the single-event
    /// handler's failure defaults.
    pub fn new() -> Self {
        BatchOptions::default()
    }

    /// At most `n` events per batch (at least 1).
    pub fn max_events(mut self, n: usize) -> Self {
        self.max_events = n.max(1);
        self
    }

    /// A batch waits at most `wait` for more events after its first.
    pub fn max_wait(mut self, wait: Duration) -> Self {
        self.max_wait = wait;
        self
    }

    /// Failed events come back after `backoff`.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Gives up on an event after `attempts` failed deliveries (at least 1); `None`
    /// never gives up.
    pub fn max_attempts(mut self, attempts: Option<u32>) -> Self {
        self.max_attempts = attempts.map(|n| n.max(1));
        self
    }

    /// Events that fail at `layer`'s last attempt, or that cannot be read, are published
    /// to its dead-letter topic (and acked) as the layer does for single events; if that
    /// publish fails, the event is nacked instead.
    pub fn dead_letter(mut self, layer: DeadLetterLayer) -> Self {
        self.dead_letter = Some(layer);
        self
    }
}
