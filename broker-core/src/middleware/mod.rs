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
