//! The conformance kit on the example plugin, reached only through `connect(URL)`.

use broker_core::testkit::Kit;

async fn kit() -> Kit {
    broker_loopback::link();
    Kit::from_unique_url("loopback://kit").await
}

broker_core::conformance_suite!(kit);
