//! NATS backend (in progress).
