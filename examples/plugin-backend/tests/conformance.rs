//! The conformance kit on the example plugin, reached only through `connect(URL)`.

use broker_core::testkit::Kit;

async fn kit() -> Kit {
    broker_loopback::link();
    let url = format!("loopback://kit-{}", uuid::Uuid::now_v7().simple());
    Kit::from_backend(None, move || {
        let url = url.clone();
        async move { broker_core::connect(&url).await }
    })
    .await
}

broker_core::conformance_suite!(kit);
