//! Shared by the three service examples (`order-notification`, `user-email`,
//! `event-bus`), so that each of them holds only its own services:
//!
//! - [`asyncapi`]: `GET /asyncapi.json`, the example's AsyncAPI document;
//! - [`plugin`]: the broker backends compiled in, and how an example connects (observed,
//!   for correlation ids, traces and metrics);
//! - [`run`]: what each binary does around its services: logs and metrics, the broker
//!   from `--broker-url`/`BROKER_URL`, serving HTTP with `GET /metrics` and
//!   `GET /health` until ctrl-c, stopping subscribers within `--shutdown-timeout`,
//!   closing;
//! - [`health`]: `GET /health` (the broker connected, every subscriber running) and
//!   stopping the subscribers within a deadline;
//! - [`service`]: the subscribing services' options, and how an instance subscribes
//!   (in its queue group, observed);
//! - [`demo`]: what the `demo` commands print and wait for;
//! - [`testing`] (feature `testing`, for `[dev-dependencies]`): the end-to-end tests'
//!   backends, fixture, metrics and per-backend test modules.
#![forbid(unsafe_code)]

pub mod asyncapi;
pub mod demo;
pub mod health;
pub mod plugin;
pub mod run;
pub mod service;
#[cfg(feature = "testing")]
pub mod testing;
