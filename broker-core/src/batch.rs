//! Publishing many messages in one call: [`Broker::publish_batch`] and what it reports
//! when part of a batch was not stored.
//!
//! A batch is not atomic. Each message has its own outcome: `Ok(())` means every
//! message was stored as far as the backend's guarantees say, and a [`BatchError`]
//! lists, by index in the batch, each message that was not, with the typed [`Error`]
//! saying why; every index it does not list was stored. Nothing is left unreported.
//!
//! What fails where:
//!
//! - **A problem of one message** (too large, a header the backend cannot carry, a
//!   tombstone it cannot store) fails that message alone, with the same
//!   [`ErrorKind`] a single [`publish`](Broker::publish) would give
//!   (`PayloadTooLarge`, `InvalidHeader`, `Unsupported`); the other messages are
//!   published.
//! - **A problem of the whole call** (an invalid topic, a closed broker) fails every
//!   message with the same kind (`InvalidSubject`, `Closed`), and nothing is published.
//! - **A broker failure** (no ack in time, a lost connection) fails the messages it hit.
//!
//! Messages are published in batch order; the project's GUARANTEES.md says, per backend,
//! what order a batch keeps and what its success means.
//!
//! ```
//! # async fn demo(broker: std::sync::Arc<dyn broker_core::Broker>) -> broker_core::Result<()> {
//! use broker_core::Message;
//!
//! let batch: Vec<Message> = (0..100)
//!     .map(|n| Message::new(format!("{{\"n\":{n}}}")).with_key(format!("user-{}", n % 7)))
//!     .collect();
//! if let Err(err) = broker.publish_batch("user.updated", batch).await {
//!     for failure in err.failures() {
//!         eprintln!("message {} failed: {}", failure.index(), failure.error());
//!     }
//!     eprintln!("stored: {:?}", err.stored().collect::<Vec<_>>());
//! }
//! # Ok(()) }
//! ```

use std::fmt;
use std::future::Future;

mod consume;

pub(crate) use consume::EventError;
pub use consume::{Batch, BatchHandler, BatchOptions, EventFailures};

use crate::{Broker, Error, ErrorKind, Message, Result};

/// One message of a batch that was not stored: its index in the batch and why.
#[derive(Debug)]
pub struct BatchFailure {
    index: usize,
    error: Error,
}

impl BatchFailure {
    /// Message `index` of the batch failed with `error`.
    pub fn new(index: usize, error: Error) -> Self {
        BatchFailure { index, error }
    }

    /// The message's index in the batch given to `publish_batch`.
    pub fn index(&self) -> usize {
        self.index
    }

    /// Why it was not stored.
    pub fn error(&self) -> &Error {
        &self.error
    }

    /// The error, taken out.
    pub fn into_error(self) -> Error {
        self.error
    }
}

/// A batch that was not stored whole: which messages failed, by index, and why. Every
/// index of the batch not listed in [`failures`](BatchError::failures) was stored.
///
/// Turned into an [`Error`] (with `?`), it keeps the kind of its first failure and
/// becomes that error's source.
#[derive(Debug)]
pub struct BatchError {
    batch_len: usize,
    /// Sorted by index, one per index, never empty.
    failures: Vec<BatchFailure>,
}

impl BatchError {
    /// `Ok` when `failures` is empty, else the error of a batch of `batch_len` messages
    /// of which `failures` were not stored (in any order; one per index).
    pub fn check(batch_len: usize, mut failures: Vec<BatchFailure>) -> Result<(), BatchError> {
        if failures.is_empty() {
            return Ok(());
        }
        failures.sort_by_key(|f| f.index);
        failures.dedup_by_key(|f| f.index);
        Err(BatchError {
            batch_len,
            failures,
        })
    }

    /// Every message of a batch of `batch_len` failed, for the one reason `error` (an
    /// invalid topic, a closed broker). The first failure keeps `error` itself; the
    /// others get an error of the same kind whose message includes `error`'s causes.
    pub fn whole(batch_len: usize, error: Error) -> Self {
        let shared = same_cause(&error);
        let mut failures = Vec::with_capacity(batch_len);
        failures.push(BatchFailure::new(0, error));
        failures.extend((1..batch_len).map(|index| BatchFailure::new(index, same_cause(&shared))));
        failures.truncate(batch_len.max(1));
        BatchError {
            batch_len,
            failures,
        }
    }

    /// How many messages the batch had.
    pub fn batch_len(&self) -> usize {
        self.batch_len
    }

    /// The messages that were not stored, by increasing index.
    pub fn failures(&self) -> &[BatchFailure] {
        &self.failures
    }

    /// Why message `index` was not stored, or `None` when it was.
    pub fn failure(&self, index: usize) -> Option<&Error> {
        self.failures
            .binary_search_by_key(&index, |f| f.index)
            .ok()
            .map(|at| &self.failures[at].error)
    }

    /// The indexes of the messages that were stored, increasing.
    pub fn stored(&self) -> impl Iterator<Item = usize> + '_ {
        let mut failed = self.failures.iter().map(|f| f.index).peekable();
        (0..self.batch_len).filter(move |&index| {
            while failed.next_if(|&f| f < index).is_some() {}
            failed.next_if_eq(&index).is_none()
        })
    }

    /// The kind of the first failure.
    pub fn kind(&self) -> ErrorKind {
        self.failures
            .first()
            .map_or(ErrorKind::Publish, |f| f.error.kind())
    }

    /// The failures, taken out (by increasing index).
    pub fn into_failures(self) -> Vec<BatchFailure> {
        self.failures
    }
}

impl fmt::Display for BatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} of {} messages of the batch were not stored",
            self.failures.len(),
            self.batch_len
        )?;
        if let Some(first) = self.failures.first() {
            write!(f, "; message {}: {}", first.index, first.error)?;
        }
        Ok(())
    }
}

impl std::error::Error for BatchError {}

impl From<BatchError> for Error {
    fn from(err: BatchError) -> Self {
        Error::with_source(err.kind(), "publishing a batch failed", err)
    }
}

/// An error of `error`'s kind with its message and causes, for another message that
/// failed for the same reason.
fn same_cause(error: &Error) -> Error {
    let mut message = error.message().to_owned();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    Error::new(error.kind(), message)
}

/// Whether a publish failing with `kind` says that every later publish of the same call
/// fails the same way: the topic is invalid, or the broker is closed.
pub(crate) fn fails_the_rest(kind: ErrorKind) -> bool {
    matches!(kind, ErrorKind::InvalidSubject | ErrorKind::Closed)
}

/// The default [`Broker::publish_batch`]: publishes the messages one after another,
/// each awaited before the next. Once one fails for a reason that fails them all (an
/// invalid topic, a closed broker), the rest fail with it without being tried.
pub async fn publish_one_by_one<B: Broker + ?Sized>(
    broker: &B,
    topic: &str,
    messages: Vec<Message>,
) -> Result<(), BatchError> {
    let batch_len = messages.len();
    let mut failures = Vec::new();
    let mut messages = messages.into_iter().enumerate();
    while let Some((index, message)) = messages.next() {
        if let Err(error) = broker.publish(topic, message).await {
            if fails_the_rest(error.kind()) {
                let shared = same_cause(&error);
                failures.push(BatchFailure::new(index, error));
                failures.extend(
                    messages.map(|(index, _)| BatchFailure::new(index, same_cause(&shared))),
                );
                break;
            }
            failures.push(BatchFailure::new(index, error));
        }
    }
    BatchError::check(batch_len, failures)
}

/// For decorators that change each message before handing the batch on: runs `prepare`
/// on each message, publishes those it accepted with `inner`'s `publish_batch`, and
/// reports the failures of both steps at the indexes of the batch given.
pub async fn publish_prepared<B, F>(
    inner: &B,
    topic: &str,
    messages: Vec<Message>,
    mut prepare: F,
) -> Result<(), BatchError>
where
    B: Broker + ?Sized,
    F: FnMut(Message) -> Result<Message> + Send,
{
    let batch_len = messages.len();
    let mut failures = Vec::new();
    let mut ready = Vec::with_capacity(batch_len);
    let mut ready_index = Vec::with_capacity(batch_len);
    for (index, message) in messages.into_iter().enumerate() {
        match prepare(message) {
            Ok(message) => {
                ready.push(message);
                ready_index.push(index);
            }
            Err(error) => failures.push(BatchFailure::new(index, error)),
        }
    }
    if ready.is_empty() {
        return BatchError::check(batch_len, failures);
    }
    if let Err(err) = inner.publish_batch(topic, ready).await {
        for failure in err.into_failures() {
            let index = ready_index.get(failure.index).copied();
            // An inner broker reporting an index past its batch names no message of ours.
            if let Some(index) = index {
                failures.push(BatchFailure::new(index, failure.error));
            }
        }
    }
    BatchError::check(batch_len, failures)
}

/// For a backend with a batch path of its own: an empty batch is `Ok` at once; any
/// other goes to `publish`, which answers `Err(error)` when the whole call fails before
/// a message is sent (a closed broker, an invalid topic: every message fails with
/// `error`), or else the messages that failed, which become the batch's outcome.
pub async fn publish_with<F, Fut>(messages: Vec<Message>, publish: F) -> Result<(), BatchError>
where
    F: FnOnce(Vec<Message>) -> Fut,
    Fut: Future<Output = Result<Vec<BatchFailure>>>,
{
    let batch_len = messages.len();
    if batch_len == 0 {
        return Ok(());
    }
    match publish(messages).await {
        Ok(failures) => BatchError::check(batch_len, failures),
        Err(error) => Err(BatchError::whole(batch_len, error)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(index: usize) -> BatchFailure {
        BatchFailure::new(index, Error::new(ErrorKind::PayloadTooLarge, "big"))
    }

    #[test]
    fn an_error_lists_failures_by_index_and_the_rest_as_stored() {
        assert!(BatchError::check(3, Vec::new()).is_ok());
        let err =
            BatchError::check(6, vec![failure(4), failure(1), failure(4)]).expect_err("two failed");
        let indexes: Vec<usize> = err.failures().iter().map(BatchFailure::index).collect();
        assert_eq!(indexes, [1, 4]);
        assert_eq!(err.stored().collect::<Vec<_>>(), [0, 2, 3, 5]);
        assert!(err.failure(4).is_some() && err.failure(0).is_none());
        assert_eq!(err.kind(), ErrorKind::PayloadTooLarge);
        assert_eq!(
            err.to_string(),
            "2 of 6 messages of the batch were not stored; message 1: payload too large: big"
        );
        let err: Error = err.into();
        assert_eq!(err.kind(), ErrorKind::PayloadTooLarge);
    }

    #[test]
    fn a_whole_batch_failure_names_every_index_with_one_kind() {
        let cause = std::io::Error::other("socket gone");
        let err = BatchError::whole(
            3,
            Error::with_source(ErrorKind::Closed, "the broker is closed", cause),
        );
        assert_eq!(err.failures().len(), 3);
        assert_eq!(err.stored().count(), 0);
        for failure in err.failures() {
            assert_eq!(failure.error().kind(), ErrorKind::Closed);
        }
        assert_eq!(
            err.failures()[2].error().message(),
            "the broker is closed: socket gone"
        );
    }

    #[tokio::test]
    async fn publish_with_skips_an_empty_batch_and_reports_what_it_is_given() {
        let untouched = publish_with(Vec::new(), |_| async {
            panic!("an empty batch is not handed on");
        });
        assert!(untouched.await.is_ok());
        let three = || vec![Message::new("a"), Message::new("b"), Message::new("c")];
        assert!(
            publish_with(three(), |_| async { Ok(Vec::new()) })
                .await
                .is_ok()
        );
        let one = publish_with(three(), |_| async { Ok(vec![failure(2)]) })
            .await
            .expect_err("one failed");
        assert_eq!(one.stored().collect::<Vec<_>>(), [0, 1]);
        let whole = publish_with(three(), |_| async { Err(Error::closed("the broker")) })
            .await
            .expect_err("all failed");
        assert_eq!((whole.batch_len(), whole.failures().len()), (3, 3));
        assert_eq!(whole.kind(), ErrorKind::Closed);
    }
}
