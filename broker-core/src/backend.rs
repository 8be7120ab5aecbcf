//! What a backend author needs and a service does not: how deliveries are settled, what
//! a backend declares it guarantees, and the `async_trait` attribute the [`Broker`]
//! trait is implemented with.
//!
//! A backend implements [`Broker`](crate::Broker) (with [`async_trait`]), builds each
//! [`Delivery`](crate::Delivery) with [`Delivery::new`](crate::Delivery::new) and an
//! [`Acknowledger`] (or [`Delivery::requeued`](crate::Delivery::requeued) and a
//! [`Requeue`]), wraps its stream of deliveries in
//! [`Subscription::new`](crate::Subscription::new), and registers its URL scheme with
//! [`register_backend!`](crate::register_backend). The conformance kit (feature `testkit`)
//! checks it.

pub use async_trait::async_trait;

pub use crate::broker::{Capabilities, DeliveryGuarantee, OrderingGuarantee};
pub use crate::delivery::{Acknowledger, Requeue, settled};
