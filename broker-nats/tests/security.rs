//! TLS against private nats-servers (`scripts/nats.sh` with `NATS_TLS=on|verify`, the
//! certificates from `scripts/certs.sh`), each on its own port and stopped at the end.

mod common;

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use broker_core::testkit::{
    connect_fails, expect_error, round_trip_through, subscribe, unique_topic,
};
use broker_core::{Broker, Error, ErrorKind, SubscribeOptions};
use broker_nats::{NatsBroker, NatsOptions};

/// The connect timeout the failing cases use, and how much longer they may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const MARGIN: Duration = Duration::from_millis(1500);

fn path(dir: &Path, file: &str) -> String {
    dir.join(file).display().to_string()
}

/// Connects with `connect` (`how` says with what, in a panic), publishes one message and
/// receives it on the same connection (`what` is its payload and id), and closes.
async fn round_trip(
    connect: impl Future<Output = broker_core::Result<NatsBroker>>,
    how: &str,
    what: &str,
) {
    let broker = connect
        .await
        .unwrap_or_else(|e| panic!("{how}: {}", e.display_chain()));
    let topic = unique_topic(&format!("tls.{what}"));
    let sub = subscribe(&broker, &topic, SubscribeOptions::new()).await;
    round_trip_through(
        &broker,
        &topic,
        &mut [sub],
        what,
        Duration::from_secs(15),
        "TLS",
    )
    .await;
    broker.close().await.expect("close");
}

/// JetStream on `server`, trusting the CA file `ca`.
fn jetstream_options(server: &common::Server, ca: &str) -> NatsOptions {
    NatsOptions::new(server.url(""))
        .jetstream()
        .max_age(Duration::from_secs(3600))
        .tls_ca_file(ca)
}

/// Connects with `options`, expecting a failure of kind Connect or Auth within the
/// connect timeout plus a margin.
async fn refused(options: NatsOptions, what: &str) -> Error {
    connect_fails(
        NatsBroker::connect(options.connection_timeout(CONNECT_TIMEOUT)),
        CONNECT_TIMEOUT + MARGIN,
        &[ErrorKind::Connect, ErrorKind::Auth],
        what,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_works_with_the_ca_and_fails_clearly_without_it() {
    let certs = common::certs();
    let server = common::Server::start(14240, &[("NATS_TLS", "on")]).await;
    let ca = path(&certs, "ca.pem");

    // The CA from the URL: core NATS.
    round_trip(
        NatsBroker::connect_url(&server.url(&format!("?tls_ca={ca}"))),
        "TLS with the CA",
        "core",
    )
    .await;

    // The CA from the builder: JetStream.
    round_trip(
        NatsBroker::connect(jetstream_options(&server, &ca)),
        "TLS with the CA (JetStream)",
        "jetstream",
    )
    .await;

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
    let url = format!(
        "{}&connect_timeout_ms=3000",
        server.url(&format!("?tls_ca={}", path(&certs, "other-ca.pem")))
    );
    expect_error(
        broker_core::connect(&url).await,
        &[ErrorKind::Connect],
        "connected with the wrong CA",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_needs_the_client_certificate() {
    let certs = common::certs();
    let server = common::Server::start(14241, &[("NATS_TLS", "verify")]).await;
    let ca = path(&certs, "ca.pem");
    let cert = path(&certs, "client.pem");
    let key = path(&certs, "client-key.pem");

    // The right client certificate, from the URL.
    round_trip(
        NatsBroker::connect_url(
            &server.url(&format!("?tls_ca={ca}&tls_cert={cert}&tls_key={key}")),
        ),
        "mutual TLS with the client certificate",
        "mtls",
    )
    .await;

    // From the builder, JetStream.
    round_trip(
        NatsBroker::connect(jetstream_options(&server, &ca).tls_client_cert(&cert, &key)),
        "mutual TLS (JetStream)",
        "mtls-js",
    )
    .await;

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
    expect_error(
        NatsBroker::connect(
            NatsOptions::new(server.url(""))
                .tls_ca_file(&ca)
                .tls_client_cert(&cert, path(&certs, "no-such-key.pem"))
                .connection_timeout(CONNECT_TIMEOUT),
        )
        .await,
        &[ErrorKind::Connect, ErrorKind::InvalidConfig],
        "a missing key file",
    );
}
