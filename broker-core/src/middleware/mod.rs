//! Handler middleware: each a [`Layer`](crate::handler::Layer) in its own file. They compose with
//! [`HandlerExt::with`](crate::HandlerExt::with); a sound order, innermost first, is
//! recover → timeout → retry → dead letter:
//!
//! ```
//! # fn demo(broker: std::sync::Arc<dyn broker_core::Broker>) {
//! use std::time::Duration;
//! use broker_core::{BoxError, Event, HandlerExt};
//! use broker_core::middleware::{DeadLetterLayer, RecoverLayer, RetryLayer, TimeoutLayer};
//!
//! let handler = (|_event: Event| async { Ok::<_, BoxError>(()) })
//!     .with(RecoverLayer::new())
//!     .with(TimeoutLayer::new(Duration::from_secs(10)))
//!     .with(RetryLayer::new(3))
//!     .with(DeadLetterLayer::new(broker, "notification.dead").max_attempts(5));
//! # let _ = handler; }
//! ```
//!
//! Retry tries again in-process, at once and with backoff, within one delivery. Dead
//! letter counts *deliveries*: while the backend can still redeliver and the attempt is
//! below the limit, a failure is passed on (the message is nacked and comes back);
//! after the last attempt, or on a backend that cannot redeliver, the message goes to the
//! dead-letter topic and is acked. So a message is tried at most
//! `retries + 1` times per delivery and `max_attempts` deliveries, and never lost.

mod dead_letter;
mod recover;
mod retry;
mod timeout;

pub use dead_letter::{DeadLetter, DeadLetterLayer};
pub use recover::{Recover, RecoverLayer};
pub use retry::{Retry, RetryLayer};
pub use timeout::{Timeout, TimeoutLayer};

/// What the middleware's tests share.
#[cfg(test)]
mod test_support {
    use std::fmt;
    use std::time::Duration;

    /// How long any one call may take before it is a failure (a hang, not a slow machine).
    pub(super) const BOUND: Duration = Duration::from_secs(5);

    /// An error type of the tests' own, to tell it apart after passing through a layer.
    #[derive(Debug)]
    pub(super) struct Marker(pub(super) u32);

    impl fmt::Display for Marker {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "marker {}", self.0)
        }
    }

    impl std::error::Error for Marker {}
}
