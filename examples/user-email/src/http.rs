//! Serving a router on a socket, with a graceful stop: the examples' shared server.

pub use example_telemetry::http::{Server, serve};
