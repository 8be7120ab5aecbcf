//! The conformance kit on JetStream (`jetstream://`). Needs a server with JetStream:
//! `scripts/nats.sh start`. The restart scenario starts and restarts its own server on
//! port 14223.

mod common;

use broker_core::testkit::Kit;

/// Streams made by the kit keep messages for an hour; deliveries left unacked come back
/// after 10 s.
const QUERY: &str = "?max_age_secs=3600&ack_wait_ms=10000";

async fn kit() -> Kit {
    common::jetstream_kit(QUERY, 14223)
}

broker_core::conformance_suite!(kit);
