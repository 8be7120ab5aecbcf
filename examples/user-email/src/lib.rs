//! Run: `cargo run -p user-email -- demo` (memory://, all services in one process).
//!
//! User created → welcome mail, after the go-micro tutorial's user and email services:
//!
//! - the **user service** ([`user`]) serves `POST /users`
//!   (`{"name":"Ada","email":"ada@example.com"}`) and `DELETE /users/{id}` with axum, and
//!   publishes `user.created` / `user.deleted` in JSON, with the user id in the `user-id`
//!   header;
//! - the **email service** ([`email`]) subscribes to `user.created` in the queue group
//!   `email` and "sends" (logs) a welcome mail: one mail per user, however many
//!   instances run;
//! - the **audit log** ([`audit`]) subscribes to the wildcard `user.>` in a group of its
//!   own: it sees `user.created` too (fan-out) and `user.deleted`, which the email
//!   service does not.
//!
//! [`asyncapi::document`] describes the three, as the user service serves it at
//! `GET /asyncapi.json`.
//!
//! `BROKER_URL` picks the transport (default `memory://`); the cargo features `nats` and
//! `kafka` compile those backends in (see [`example_support::plugin`]). On NATS or Kafka
//! each service can run in its own process (`users`, `email`, `audit`); `all` and `demo`
//! run them in one.
//!
//! The services are library functions, used by the binary and the tests alike:
//! [`router`], [`run_email`] and [`run_audit`].
#![forbid(unsafe_code)]

pub mod asyncapi;
pub mod audit;
pub mod email;
pub mod event;
pub mod user;

pub use audit::{AuditEntry, AuditOptions, audit_options, run_audit};
pub use email::{EmailOptions, WelcomeMail, email_options, run_email};
pub use event::{Topics, USER_ID_HEADER, UserCreated, UserDeleted};
pub use user::{NewUser, User, UserError, UserService, router};
