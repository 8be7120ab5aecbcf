//! broker-memory against the conformance kit. Each scenario gets its own named bus, so
//! scenarios that close their broker do not disturb the others, and every handle a
//! scenario connects shares that bus.

use std::time::Duration;

use broker_core::testkit::Kit;

async fn kit() -> Kit {
    broker_memory::link();
    Kit::from_unique_url("memory://kit")
        .await
        .with_features(|f| f.timeout(Duration::from_secs(10)))
}

broker_core::conformance_suite!(kit);
