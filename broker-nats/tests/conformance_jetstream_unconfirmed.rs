//! The conformance kit on JetStream with `confirm_acks=off`: acks are sent without
//! waiting for the server's confirmation, and every guarantee the kit checks still holds.
//! Needs a server with JetStream: `scripts/nats.sh start`. The restart scenario starts and
//! restarts its own server on port 14252.

mod common;

use std::sync::Arc;

use broker_core::Broker;
use broker_core::testkit::{Features, Kit};
use broker_nats::NatsBroker;

const RESTART_PORT: u16 = 14252;

/// As the confirmed kit: streams keep messages for an hour; deliveries left unacked come
/// back after 10 s.
const QUERY: &str = "?max_age_secs=3600&ack_wait_ms=10000&confirm_acks=off";

async fn kit() -> Kit {
    let features = Features::new("jetstream")
        .queue_groups()
        .persistence()
        .ordering()
        .redelivery()
        .at_least_once()
        .restart(
            || async {
                common::nats_sh("start", RESTART_PORT).await?;
                let url = format!("jetstream://127.0.0.1:{RESTART_PORT}{QUERY}");
                Ok(Arc::new(NatsBroker::connect_url(&url).await?) as Arc<dyn Broker>)
            },
            || common::nats_sh("restart", RESTART_PORT),
        )
        .start_hint(common::START_HINT);
    Kit::new(features, || async {
        Ok(
            Arc::new(NatsBroker::connect_url(&common::jetstream_url(QUERY)).await?)
                as Arc<dyn Broker>,
        )
    })
}

broker_core::conformance_suite!(kit);
