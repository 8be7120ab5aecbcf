//! The conformance kit on core NATS (`nats://`). Needs a server: `scripts/nats.sh start`.
//! The restart scenario starts and restarts its own server on port 14222.

mod common;

use std::sync::Arc;

use broker_core::Broker;
use broker_core::testkit::Kit;
use broker_nats::NatsBroker;

const RESTART_PORT: u16 = 14222;

async fn kit() -> Kit {
    Kit::from_backend(Some(common::START_HINT), || async {
        Ok(Arc::new(NatsBroker::connect_url(&common::nats_url()).await?) as Arc<dyn Broker>)
    })
    .await
    .with_features(|f| {
        f.restart(
            || async {
                common::nats_sh("start", RESTART_PORT).await?;
                let url = format!("nats://127.0.0.1:{RESTART_PORT}");
                Ok(Arc::new(NatsBroker::connect_url(&url).await?) as Arc<dyn Broker>)
            },
            || common::nats_sh("restart", RESTART_PORT),
        )
    })
}

broker_core::conformance_suite!(kit);
