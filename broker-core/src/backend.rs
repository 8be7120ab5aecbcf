//! Writing a backend: what a backend author needs and a service does not.
//!
//! A backend is a crate of its own that depends on `broker-core` alone.
//! `examples/plugin-backend` (`broker-loopback`, `loopback://`) is a complete one in
//! about 200 lines, written with nothing but this public API; it passes the conformance
//! kit through [`connect`](crate::connect). The steps:
//!
//! 1. **Implement [`Broker`](crate::Broker)** with the [`async_trait`](macro@async_trait) attribute
//!    re-exported here (so backends and the trait agree on its version): `publish`,
//!    `subscribe`, `close` and [`capabilities`](crate::Broker::capabilities). Check
//!    topics with [`validate_topic`](crate::subject::validate_topic) and patterns with
//!    [`Pattern::parse`](crate::subject::Pattern::parse) (dotted subjects, `*` for one
//!    token, `>` for the rest, on every backend); after `close`, `publish` and
//!    `subscribe` fail with [`Error::closed`](crate::Error::closed) and open
//!    subscriptions end. What the broker cannot carry is a typed error at `publish`
//!    (`Unsupported`, `InvalidHeader`, `PayloadTooLarge`), never a silent change: keys and
//!    header values are bytes, null header values and tombstones exist.
//! 2. **Declare [`Capabilities`]**: delivery guarantee, ordering, persistence, redelivery,
//!    queue groups, the largest message. Users read them, the handler runner and the
//!    middleware act on them, and the conformance kit tests exactly what they claim.
//! 3. **Hand out deliveries**: each received message becomes a
//!    [`Delivery`](crate::Delivery) built with [`Delivery::new`](crate::Delivery::new) and
//!    an [`Acknowledger`] that settles it on the broker (or, for an in-process backend,
//!    [`Delivery::requeued`](crate::Delivery::requeued) and a [`Requeue`]). Give the
//!    attempt where the broker counts deliveries
//!    ([`with_attempt`](crate::Delivery::with_attempt)), the partition where there is one,
//!    and a [`with_defect`](crate::Delivery::with_defect) for a message that could not be
//!    read whole. [`settled`] is the future of an ack or nack with nothing left to do.
//! 4. **Wrap the stream** of deliveries in
//!    [`Subscription::new`](crate::Subscription::new): it applies the subscriber's ack mode
//!    (auto or manual) and in-flight bound, so the backend does not. Where the backend
//!    can tell how far the subscriber is behind, attach a [`LagSource`] with
//!    [`with_lag`](crate::Subscription::with_lag); without one, `lag()` answers
//!    `Unsupported`.
//! 5. **Register the scheme** with [`register_backend!`](crate::register_backend), and
//!    offer a `link()` function: a binary that names nothing of the crate would not link
//!    it, and its registration with it (the `broker` crate calls each backend's `link` for
//!    the features it enables).
//!
//! Test it with the conformance kit (feature `testkit`): one `tests/conformance.rs` with
//! [`Kit::from_backend`](crate::testkit::Kit::from_backend) and
//! [`conformance_suite!`](crate::conformance_suite); the kit derives what to test from
//! the capabilities, and skips, by name, what the backend does not claim.

mod outage;

pub use async_trait::async_trait;
pub use outage::OutageLog;

pub use crate::broker::{Capabilities, DeliveryGuarantee, OrderingGuarantee};
pub use crate::delivery::{Acknowledger, Nacked, Requeue, settled};
pub use crate::lag::LagSource;

use std::sync::atomic::{AtomicBool, Ordering};

use crate::{Error, Result};

/// `Ok` while `closed` is unset, else [`Error::closed`] naming `broker` ("the Kafka
/// broker"): the check each `publish` and `subscribe` makes once `close` has set the flag.
pub fn check_open(closed: &AtomicBool, broker: &str) -> Result<()> {
    if closed.load(Ordering::Acquire) {
        Err(Error::closed(broker))
    } else {
        Ok(())
    }
}
