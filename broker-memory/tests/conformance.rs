//! broker-memory against the conformance kit. Each scenario gets its own named bus, so
//! scenarios that close their broker do not disturb the others, and every handle a
//! scenario connects shares that bus.

use std::time::Duration;

use broker_core::testkit::{Features, Kit};

async fn kit() -> Kit {
    broker_memory::link();
    let url = format!("memory://kit-{}", uuid::Uuid::now_v7().simple());
    let features = Features::new("memory")
        .queue_groups()
        .ordering()
        .redelivery()
        .timeout(Duration::from_secs(10));
    Kit::new(features, move || {
        let url = url.clone();
        async move { broker_core::connect(&url).await }
    })
}

broker_core::conformance_suite!(kit);
