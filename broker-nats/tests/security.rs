//! TLS against private nats-servers (`scripts/nats.sh` with `NATS_TLS=on|verify`, the
//! certificates from `scripts/certs.sh`), each on its own port and stopped at the end.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use broker_core::{Broker, Error, ErrorKind, Message, SubscribeOptions};
use broker_nats::{NatsBroker, NatsOptions};
use futures::StreamExt;

/// The connect timeout the failing cases use, and how much longer they may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const MARGIN: Duration = Duration::from_millis(1500);

fn path(dir: &Path, file: &str) -> String {
    dir.join(file).display().to_string()
}

/// Publishes one message on `broker` and receives it on the same connection.
async fn round_trip(broker: &NatsBroker, what: &str) {
    let topic = format!("tls.{what}.{}", uuid::Uuid::now_v7().simple());
    let mut sub = broker
        .subscribe(&topic, SubscribeOptions::new())
        .await
        .expect("subscribe over TLS");
    broker
        .publish(&topic, Message::new(what.to_owned()).with_id(what))
        .await
        .expect("publish over TLS");
    let delivery = match tokio::time::timeout(Duration::from_secs(15), sub.next()).await {
        Ok(Some(Ok(delivery))) => delivery,
        other => panic!("no delivery over TLS ({what}): {other:?}"),
    };
    assert_eq!(delivery.message().id().as_str(), what);
    assert_eq!(delivery.message().payload().as_ref(), what.as_bytes());
    delivery.ack().await.expect("ack");
}

/// Connects with `options`, expecting a failure of kind Connect or Auth within the
/// connect timeout plus a margin.
async fn refused(options: NatsOptions, what: &str) -> Error {
    let started = Instant::now();
    let outcome = NatsBroker::connect(options.connection_timeout(CONNECT_TIMEOUT)).await;
    let elapsed = started.elapsed();
    let err = match outcome {
        Ok(broker) => panic!("{what}: connected, but it must fail: {broker:?}"),
        Err(err) => err,
    };
    assert!(
        matches!(err.kind(), ErrorKind::Connect | ErrorKind::Auth),
        "{what}: {} ({:?})",
        err.display_chain(),
        err.kind()
    );
    assert!(
        elapsed < CONNECT_TIMEOUT + MARGIN,
        "{what}: failing took {elapsed:?}"
    );
    eprintln!("{what}: {} after {elapsed:?}", err.display_chain());
    err
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_works_with_the_ca_and_fails_clearly_without_it() {
    let certs = common::certs();
    let server = common::Server::start(14240, &[("NATS_TLS", "on")]).await;
    let ca = path(&certs, "ca.pem");

    // The CA from the URL: core NATS.
    let broker = NatsBroker::connect_url(&server.url(&format!("?tls_ca={ca}")))
        .await
        .unwrap_or_else(|e| panic!("TLS with the CA: {}", e.display_chain()));
    round_trip(&broker, "core").await;
    broker.close().await.expect("close");

    // The CA from the builder: JetStream.
    let broker = NatsBroker::connect(
        NatsOptions::new(server.url(""))
            .jetstream()
            .max_age(Duration::from_secs(3600))
            .tls_ca_file(&ca),
    )
    .await
    .unwrap_or_else(|e| panic!("TLS with the CA (JetStream): {}", e.display_chain()));
    round_trip(&broker, "jetstream").await;
    broker.close().await.expect("close");

    // No CA: the server's certificate is not trusted (the system roots do not know it),
    // whether TLS is required by the client or only announced by the server.
    let err = refused(
        NatsOptions::new(server.url("")).require_tls(true),
        "TLS without the CA",
    )
    .await;
    assert!(err.to_string().contains("TLS"), "{}", err.display_chain());
    refused(
        NatsOptions::new(server.url("")),
        "TLS announced by the server, no CA",
    )
    .await;

    // A CA that did not sign the server's certificate.
    let err = refused(
        NatsOptions::new(server.url("")).tls_ca_file(path(&certs, "other-ca.pem")),
        "TLS with the wrong CA",
    )
    .await;
    assert_eq!(err.kind(), ErrorKind::Connect, "{}", err.display_chain());

    // The same through the registry, with the URL.
    broker_nats::link();
    let err = match broker_core::connect(&format!(
        "{}&connect_timeout_ms=3000",
        server.url(&format!("?tls_ca={}", path(&certs, "other-ca.pem")))
    ))
    .await
    {
        Ok(_) => panic!("connected with the wrong CA"),
        Err(err) => err,
    };
    assert_eq!(err.kind(), ErrorKind::Connect, "{}", err.display_chain());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_needs_the_client_certificate() {
    let certs = common::certs();
    let server = common::Server::start(14241, &[("NATS_TLS", "verify")]).await;
    let ca = path(&certs, "ca.pem");
    let cert = path(&certs, "client.pem");
    let key = path(&certs, "client-key.pem");

    // The right client certificate, from the URL.
    let broker = NatsBroker::connect_url(
        &server.url(&format!("?tls_ca={ca}&tls_cert={cert}&tls_key={key}")),
    )
    .await
    .unwrap_or_else(|e| {
        panic!(
            "mutual TLS with the client certificate: {}",
            e.display_chain()
        )
    });
    round_trip(&broker, "mtls").await;
    broker.close().await.expect("close");

    // From the builder, JetStream.
    let broker = NatsBroker::connect(
        NatsOptions::new(server.url(""))
            .jetstream()
            .max_age(Duration::from_secs(3600))
            .tls_ca_file(&ca)
            .tls_client_cert(&cert, &key),
    )
    .await
    .unwrap_or_else(|e| panic!("mutual TLS (JetStream): {}", e.display_chain()));
    round_trip(&broker, "mtls-js").await;
    broker.close().await.expect("close");

    // No client certificate: refused by the server.
    refused(
        NatsOptions::new(server.url("")).tls_ca_file(&ca),
        "mutual TLS without a client certificate",
    )
    .await;
    refused(
        NatsOptions::new(server.url(""))
            .jetstream()
            .tls_ca_file(&ca),
        "mutual TLS without a client certificate (JetStream)",
    )
    .await;

    // A client certificate the server's CA did not sign (the unrelated test CA's own).
    refused(
        NatsOptions::new(server.url(""))
            .tls_ca_file(&ca)
            .tls_client_cert(
                path(&certs, "other-ca.pem"),
                path(&certs, "other-ca-key.pem"),
            ),
        "mutual TLS with a certificate of another CA",
    )
    .await;

    // A key file that is missing is a clear error too, not a hang.
    let err = NatsBroker::connect(
        NatsOptions::new(server.url(""))
            .tls_ca_file(&ca)
            .tls_client_cert(&cert, path(&certs, "no-such-key.pem"))
            .connection_timeout(CONNECT_TIMEOUT),
    )
    .await
    .expect_err("a missing key file");
    assert!(
        matches!(err.kind(), ErrorKind::Connect | ErrorKind::InvalidConfig),
        "{}",
        err.display_chain()
    );
}
