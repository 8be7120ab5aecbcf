//! Credentials against private nats-servers that require a user and a password, or a
//! token (`scripts/nats.sh` with `NATS_AUTH_USER`/`NATS_AUTH_PASSWORD` or
//! `NATS_AUTH_TOKEN`), each on its own port and stopped at the end. Secrets never show
//! in `Debug`, `Display`, errors or logs.

mod common;

use broker_core::testkit::{captured_text, expect_error, log_capture, publish, shown_error};
use broker_core::{Broker, Error, ErrorKind, Message};
use broker_nats::{NatsBroker, NatsOptions};

/// Panics when `secret` appears in any of `shown`.
fn assert_hidden(secret: &str, shown: &[String]) {
    broker_core::testkit::assert_hidden(&[secret], shown);
}

/// Connecting to `url` fails with an Auth error (`what` says why it must); returns it.
async fn refused(url: &str, what: &str) -> Error {
    expect_error(NatsBroker::connect_url(url).await, &[ErrorKind::Auth], what)
}

/// Everything a caller may print of a broker.
fn shown_broker(broker: &NatsBroker) -> Vec<String> {
    vec![
        format!("{broker:?}"),
        format!("{:?}", broker.options()),
        format!("{:?}", broker.options().auth),
        format!("{:#?}", broker.options()),
        broker_core::registry::redact_url(&broker.options().server),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_and_password_from_url_and_builder() {
    const PASSWORD: &str = "s3cr3t-pw";
    let server = common::Server::start(
        14231,
        &[
            ("NATS_AUTH_USER", "alice"),
            ("NATS_AUTH_PASSWORD", PASSWORD),
        ],
    )
    .await;
    let port = server.port;

    // From the URL's userinfo.
    let url = format!("nats://alice:{PASSWORD}@127.0.0.1:{port}");
    let broker = NatsBroker::connect_url(&url)
        .await
        .expect("right credentials");
    assert_hidden(PASSWORD, &shown_broker(&broker));
    assert_hidden(PASSWORD, &[broker_core::registry::redact_url(&url)]);
    publish(&broker, "auth.ok", Message::new("x")).await;
    broker.close().await.expect("close");

    // From the query, through the registry.
    broker_nats::link();
    let broker = broker_core::connect(&format!(
        "jetstream://127.0.0.1:{port}?user=alice&password={PASSWORD}"
    ))
    .await
    .expect("right credentials from the query");
    assert_hidden(PASSWORD, &[format!("{broker:?}")]);
    broker.close().await.expect("close");

    // From the builder, and from a server address that carries them.
    let broker = NatsBroker::connect(
        NatsOptions::new(format!("nats://127.0.0.1:{port}")).user_and_password("alice", PASSWORD),
    )
    .await
    .expect("right credentials");
    assert_hidden(PASSWORD, &shown_broker(&broker));
    broker.close().await.expect("close");
    let broker = NatsBroker::connect(NatsOptions::new(url.clone()))
        .await
        .expect("credentials in the server address");
    assert_hidden(PASSWORD, &shown_broker(&broker));
    broker.close().await.expect("close");

    // Wrong password: an Auth error that shows no secret.
    let err = refused(
        &format!("nats://alice:wrong-pw@127.0.0.1:{port}"),
        "wrong password",
    )
    .await;
    assert_hidden("wrong-pw", &shown_error(&err));
    let err = expect_error(
        NatsBroker::connect(
            NatsOptions::new(format!("nats://127.0.0.1:{port}"))
                .jetstream()
                .user_and_password("alice", "wrong-pw2"),
        )
        .await,
        &[ErrorKind::Auth],
        "wrong password (JetStream)",
    );
    assert_hidden("wrong-pw2", &shown_error(&err));

    // Wrong user.
    let err = refused(
        &format!("nats://mallory:{PASSWORD}@127.0.0.1:{port}"),
        "wrong user",
    )
    .await;
    assert_hidden(PASSWORD, &shown_error(&err));

    // No credentials at all.
    refused(&format!("nats://127.0.0.1:{port}"), "anonymous").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_from_url_and_builder() {
    const TOKEN: &str = "t0k3n-s3cr3t";
    let server = common::Server::start(14232, &[("NATS_AUTH_TOKEN", TOKEN)]).await;
    let port = server.port;

    for url in [
        format!("nats://{TOKEN}@127.0.0.1:{port}"),
        format!("nats://127.0.0.1:{port}?token={TOKEN}"),
        format!("jetstream://127.0.0.1:{port}?token={TOKEN}&max_age_secs=60"),
    ] {
        let broker = NatsBroker::connect_url(&url)
            .await
            .unwrap_or_else(|e| panic!("right token: {}", e.display_chain()));
        assert_hidden(TOKEN, &shown_broker(&broker));
        assert_hidden(TOKEN, &[broker_core::registry::redact_url(&url)]);
        publish(&broker, "auth.token", Message::new("x")).await;
        broker.close().await.expect("close");
    }
    let broker =
        NatsBroker::connect(NatsOptions::new(format!("nats://127.0.0.1:{port}")).token(TOKEN))
            .await
            .expect("right token from the builder");
    assert_hidden(TOKEN, &shown_broker(&broker));
    broker.close().await.expect("close");

    // A wrong token, and none.
    for url in [
        format!("nats://wr0ng-t0ken@127.0.0.1:{port}"),
        format!("nats://127.0.0.1:{port}?token=wr0ng-t0ken"),
        format!("jetstream://127.0.0.1:{port}?token=wr0ng-t0ken"),
    ] {
        let err = refused(&url, "wrong token").await;
        assert_hidden("wr0ng-t0ken", &shown_error(&err));
    }
    refused(&format!("nats://127.0.0.1:{port}"), "no token").await;
    // A user and password where a token is wanted.
    let err = refused(
        &format!("nats://alice:{TOKEN}x@127.0.0.1:{port}"),
        "user and password on a token server",
    )
    .await;
    assert_hidden(TOKEN, &shown_error(&err));
}

/// Runs on one thread, so the thread-local log subscriber sees the client's tasks too.
#[tokio::test(flavor = "current_thread")]
async fn secrets_stay_out_of_logs() {
    const PASSWORD: &str = "l0g-s3cr3t-pw";
    const CREDS_SECRET: &str = "SUAMLOGSECRETSEEDNOTREAL";
    let server = common::Server::start(
        14233,
        &[("NATS_AUTH_USER", "bob"), ("NATS_AUTH_PASSWORD", PASSWORD)],
    )
    .await;
    let port = server.port;
    let (subscriber, logs) = log_capture();
    let _default = tracing::subscriber::set_default(subscriber.finish());
    // Other tests of this binary run on other threads without a subscriber: callsites
    // they reached first may have cached "never"; count this subscriber in again.
    tracing::callsite::rebuild_interest_cache();

    let mut shown = Vec::new();
    let broker = NatsBroker::connect_url(&format!(
        "jetstream://bob:{PASSWORD}@127.0.0.1:{port}?max_age_secs=60"
    ))
    .await
    .expect("right credentials");
    publish(&broker, "auth.logs", Message::new("x")).await;
    shown.extend(shown_broker(&broker));
    broker.close().await.expect("close");

    for url in [
        format!("nats://bob:{PASSWORD}x@127.0.0.1:{port}"),
        format!("nats://127.0.0.1:{port}?user=bob&password={PASSWORD}x"),
    ] {
        let err = refused(&url, "wrong password").await;
        shown.extend(shown_error(&err));
    }

    // A malformed URL and a bad option value carrying secrets.
    for url in [
        format!("nats://bob:{PASSWORD}@[::1"),
        format!("nats://bob:{PASSWORD}@127.0.0.1:{port}?password={PASSWORD}&nope=1"),
        format!("nats://127.0.0.1:{port}?token={PASSWORD}&connect_timeout_ms=soon"),
    ] {
        let err = NatsBroker::connect_url(&url).await.expect_err("bad URL");
        shown.extend(shown_error(&err));
    }

    // A .creds file: its path may show, its contents never.
    let dir = std::env::temp_dir().join(format!("broker-nats-creds-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let creds = dir.join("user.creds");
    std::fs::write(
        &creds,
        format!(
            "-----BEGIN NATS USER JWT-----\nnot.a.jwt\n------END NATS USER JWT------\n\n-----BEGIN USER NKEY SEED-----\n{CREDS_SECRET}\n------END USER NKEY SEED------\n"
        ),
    )
    .expect("write creds");
    let options = NatsOptions::new(format!("nats://127.0.0.1:{port}")).credentials_file(&creds);
    shown.push(format!("{options:?}"));
    let err = expect_error(
        NatsBroker::connect(options).await,
        &[ErrorKind::InvalidConfig, ErrorKind::Auth],
        "a creds file that is not valid",
    );
    shown.extend(shown_error(&err));
    let _ = std::fs::remove_dir_all(&dir);

    drop(_default);
    let logs = captured_text(&logs);
    // The capture works: it holds the client's own lines. Which of them it holds can vary:
    // other tests' threads race this one over tracing's global interest cache.
    assert!(
        logs.contains("async_nats"),
        "the log capture saw nothing: {logs}"
    );
    shown.push(logs);
    assert_hidden(PASSWORD, &shown);
    assert_hidden(CREDS_SECRET, &shown);
}
