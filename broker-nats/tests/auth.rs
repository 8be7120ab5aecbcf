//! Credentials against a private nats-server that requires a user and a password
//! (`scripts/nats.sh` with `NATS_AUTH_USER`/`NATS_AUTH_PASSWORD`, on its own port).

mod common;

use broker_core::{Broker, ErrorKind, Message};
use broker_nats::{NatsBroker, NatsOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_and_password_from_url_and_builder() {
    const PORT: u16 = 14231;
    const PASSWORD: &str = "s3cr3t-pw";
    common::nats_sh_with(
        "start",
        PORT,
        &[
            ("NATS_AUTH_USER", "alice"),
            ("NATS_AUTH_PASSWORD", PASSWORD),
        ],
    )
    .await
    .expect("start a private nats-server with auth");

    // From the URL's userinfo.
    let broker = NatsBroker::connect_url(&format!("nats://alice:{PASSWORD}@127.0.0.1:{PORT}"))
        .await
        .expect("right credentials");
    assert!(!format!("{broker:?}").contains(PASSWORD), "{broker:?}");
    broker
        .publish("auth.ok", Message::new("x"))
        .await
        .expect("publish");
    broker.close().await.expect("close");

    // From the builder.
    let broker = NatsBroker::connect(
        NatsOptions::new(format!("nats://127.0.0.1:{PORT}")).user_and_password("alice", PASSWORD),
    )
    .await
    .expect("right credentials");
    broker.close().await.expect("close");

    // Wrong password: an Auth error that shows no secret.
    let err = NatsBroker::connect_url(&format!("nats://alice:wrong-pw@127.0.0.1:{PORT}"))
        .await
        .expect_err("wrong password");
    assert_eq!(err.kind(), ErrorKind::Auth, "{}", err.display_chain());
    assert!(
        !err.display_chain().contains("wrong-pw"),
        "{}",
        err.display_chain()
    );

    // No credentials at all.
    let err = NatsBroker::connect_url(&format!("nats://127.0.0.1:{PORT}"))
        .await
        .expect_err("anonymous");
    assert_eq!(err.kind(), ErrorKind::Auth, "{}", err.display_chain());

    common::nats_sh("stop", PORT)
        .await
        .expect("stop the private server");
}
