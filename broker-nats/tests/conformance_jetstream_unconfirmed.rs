//! The conformance kit on JetStream with `confirm_acks=off`: acks are sent without
//! waiting for the server's confirmation, and every guarantee the kit checks still holds.
//! Needs a server with JetStream: `scripts/nats.sh start`. The restart scenario starts and
//! restarts its own server on port 14252.

mod common;

use broker_core::testkit::Kit;

/// Streams made by the kit keep messages for an hour; deliveries left unacked come back
/// after 10 s.
const QUERY: &str = "?max_age_secs=3600&ack_wait_ms=10000&confirm_acks=off";

async fn kit() -> Kit {
    common::jetstream_kit(QUERY, 14252)
}

broker_core::conformance_suite!(kit);
