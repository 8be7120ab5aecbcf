//! Credentials and TLS against a private Kafka broker with a SASL_SSL listener
//! (SCRAM-SHA-256 over TLS, the server certificate from `scripts/certs.sh`), started by
//! `scripts/kafka.sh` with `KAFKA_SASL_SSL_PORT` on its own ports: 19192 (PLAINTEXT),
//! 19193 (SASL_SSL), 19194 (controller). The tests of this file share it; the last one
//! to finish stops it. Secrets never show in `Debug`, errors or logs.
//!
//! Needs java 17+, openssl and Maven (for the first install); without them the tests fail
//! saying so.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use broker_core::testkit::{
    captured_text, connect_fails, log_capture, round_trip_through, shown_error, stdout_of,
    subscribe, test_certs, unique_topic,
};
use broker_core::{Broker, Error, ErrorKind, SubscribeOptions};
use broker_kafka::{KafkaBroker, KafkaOptions};

const PLAINTEXT_PORT: u16 = 19192;
const SASL_SSL_PORT: u16 = 19193;
const CONTROLLER_PORT: u16 = 19194;
const USER: &str = "alice";
const PASSWORD: &str = "Scram-s3cret-pw";
/// Every wrong password the tests send: none may show anywhere either.
const WRONG_PASSWORDS: [&str; 3] = ["wr0ng-pw-builder", "wr0ng-pw-url", "wr0ng-pw-logs"];
/// How long a connect waits for the cluster's metadata in the failing cases
/// (`subscribe_timeout`), and how much longer failing may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(6);
const MARGIN: Duration = Duration::from_secs(4);

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the crate sits in the workspace")
        .to_path_buf()
}

/// Runs a project script with `env`; panics with its output when it fails.
fn script(name: &str, args: &[&str], env: &[(&str, String)]) -> String {
    let path = repo_root().join("scripts").join(name);
    let what = format!(
        "scripts/{name} {}, which needs java 17+, openssl and (for the first install) Maven,",
        args.join(" ")
    );
    stdout_of(
        Command::new("bash")
            .arg(&path)
            .args(args)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str()))),
        &what,
    )
}

/// The directory of `scripts/certs.sh`'s files.
fn certs() -> PathBuf {
    test_certs(&repo_root().join("scripts/certs.sh"))
}

fn kafka_env() -> Vec<(&'static str, String)> {
    vec![
        ("KAFKA_PORT", PLAINTEXT_PORT.to_string()),
        ("KAFKA_CONTROLLER_PORT", CONTROLLER_PORT.to_string()),
        ("KAFKA_SASL_SSL_PORT", SASL_SSL_PORT.to_string()),
        ("KAFKA_SASL_USER", USER.to_owned()),
        ("KAFKA_SASL_PASSWORD", PASSWORD.to_owned()),
        ("KAFKA_SASL_MECHANISM", "SCRAM-SHA-256".to_owned()),
    ]
}

/// How many tests use the broker right now.
static USERS: Mutex<usize> = Mutex::new(0);

/// A test's hold on the SASL_SSL broker: the first starts it, the last stops it on drop.
struct Server {
    certs: PathBuf,
}

impl Server {
    fn start() -> Server {
        // Logs are captured from the start, so that every client sees the log level.
        logs();
        let certs = certs();
        let mut users = USERS.lock().unwrap_or_else(PoisonError::into_inner);
        let out = script("kafka.sh", &["start"], &kafka_env());
        assert!(
            out.contains(&format!("KAFKA_SASL_SSL_BROKERS=127.0.0.1:{SASL_SSL_PORT}")),
            "scripts/kafka.sh start did not report the SASL_SSL listener: {out}"
        );
        *users += 1;
        Server { certs }
    }

    fn ca(&self) -> String {
        self.certs.join("ca.pem").display().to_string()
    }

    fn other_ca(&self) -> String {
        self.certs.join("other-ca.pem").display().to_string()
    }

    /// Options for the SASL_SSL listener with `password` and the CA file `ca`.
    fn options(&self, password: &str, ca: &str) -> KafkaOptions {
        KafkaOptions::new()
            .brokers([format!("127.0.0.1:{SASL_SSL_PORT}")])
            .set("security.protocol", "SASL_SSL")
            .set("sasl.mechanisms", "SCRAM-SHA-256")
            .set("sasl.username", USER)
            .set("sasl.password", password)
            .set("ssl.ca.location", ca)
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "500")
            .subscribe_timeout(CONNECT_TIMEOUT)
            .publish_timeout(Duration::from_secs(15))
    }

    /// The same as a URL: credentials in the user-info, the rest in the query.
    fn url(&self, password: &str, ca: &str) -> String {
        format!(
            "kafka://{USER}:{password}@127.0.0.1:{SASL_SSL_PORT}?security.protocol=SASL_SSL&sasl.mechanisms=SCRAM-SHA-256&ssl.ca.location={ca}&subscribe_timeout_ms={}&session.timeout.ms=6000&heartbeat.interval.ms=500",
            CONNECT_TIMEOUT.as_millis()
        )
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let mut users = USERS.lock().unwrap_or_else(PoisonError::into_inner);
        *users -= 1;
        if *users == 0 {
            let path = repo_root().join("scripts/kafka.sh");
            match Command::new("bash")
                .arg(&path)
                .arg("stop")
                .envs(kafka_env())
                .output()
            {
                Ok(out) if out.status.success() => {}
                Ok(out) => eprintln!(
                    "scripts/kafka.sh stop failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                ),
                Err(e) => eprintln!("cannot run scripts/kafka.sh stop: {e}"),
            }
        }
    }
}

/// Panics when any secret appears in any of `shown`.
fn assert_hidden(shown: &[String]) {
    let [wrong_0, wrong_1, wrong_2] = WRONG_PASSWORDS;
    broker_core::testkit::assert_hidden(&[PASSWORD, wrong_0, wrong_1, wrong_2], shown);
}

/// Everything a caller may print of a broker.
fn shown_broker(broker: &KafkaBroker) -> Vec<String> {
    vec![
        format!("{broker:?}"),
        format!("{broker:#?}"),
        format!("{:?}", broker.options()),
        format!("{:#?}", broker.options()),
    ]
}

/// Publishes one message and receives it over the SASL_SSL listener, with a plain
/// subscriber and a queue group.
async fn round_trip(broker: &KafkaBroker, what: &str) {
    let topic = unique_topic(&format!("sasl.{what}"));
    let group = SubscribeOptions::new().queue(format!("{}-group", topic.replace('.', "-")));
    let mut subs = [
        subscribe(broker, &topic, SubscribeOptions::new()).await,
        subscribe(broker, &topic, group).await,
    ];
    let wait = Duration::from_secs(30);
    round_trip_through(broker, &topic, &mut subs, what, wait, "SASL_SSL").await;
}

/// Connects, expecting a failure of one of `kinds` within the connect timeout plus a
/// margin, with no secret shown.
async fn refused(
    connect: impl std::future::Future<Output = broker_core::Result<KafkaBroker>>,
    what: &str,
    kinds: &[ErrorKind],
) -> Error {
    let err = connect_fails(connect, CONNECT_TIMEOUT + MARGIN, kinds, what).await;
    assert_hidden(&shown_error(&err));
    err
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_ssl_round_trips_with_the_right_password_and_ca() {
    let server = Server::start();
    // From the builder.
    let broker = KafkaBroker::connect(server.options(PASSWORD, &server.ca()))
        .await
        .unwrap_or_else(|e| panic!("SASL_SSL with the right password: {}", e.display_chain()));
    assert_hidden(&shown_broker(&broker));
    round_trip(&broker, "builder").await;
    broker.close().await.expect("close");

    // From the URL, through the registry.
    broker_kafka::link();
    let url = server.url(PASSWORD, &server.ca());
    assert_hidden(&[broker_core::registry::redact_url(&url)]);
    let broker = broker_core::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("SASL_SSL from the URL: {}", e.display_chain()));
    assert_hidden(&[format!("{broker:?}")]);
    let topic = unique_topic("sasl.url");
    let sub = subscribe(&*broker, &topic, SubscribeOptions::new()).await;
    let wait = Duration::from_secs(30);
    round_trip_through(
        &*broker,
        &topic,
        &mut [sub],
        "url",
        wait,
        "SASL_SSL from the URL",
    )
    .await;
    broker.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_an_auth_error_in_bounded_time() {
    let server = Server::start();
    refused(
        KafkaBroker::connect(server.options(WRONG_PASSWORDS[0], &server.ca())),
        "wrong password (builder)",
        &[ErrorKind::Auth],
    )
    .await;

    refused(
        KafkaBroker::connect_url(&server.url(WRONG_PASSWORDS[1], &server.ca())),
        "wrong password (URL)",
        &[ErrorKind::Auth],
    )
    .await;

    refused(
        KafkaBroker::connect(
            server
                .options(PASSWORD, &server.ca())
                .set("sasl.username", "mallory"),
        ),
        "unknown user",
        &[ErrorKind::Auth],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_ca_is_a_connect_error_naming_the_certificate() {
    let server = Server::start();
    // A CA that did not sign the server's certificate.
    let err = refused(
        KafkaBroker::connect(server.options(PASSWORD, &server.other_ca())),
        "wrong CA",
        &[ErrorKind::Connect],
    )
    .await;
    let chain = err.display_chain().to_lowercase();
    assert!(
        chain.contains("certificate") || chain.contains("ssl"),
        "the error does not say that TLS failed: {}",
        err.display_chain()
    );

    // A CA file that does not exist: the client cannot even be configured.
    let missing = server.certs.join("no-such-ca.pem").display().to_string();
    refused(
        KafkaBroker::connect(server.options(PASSWORD, &missing)),
        "missing CA file",
        &[ErrorKind::InvalidConfig, ErrorKind::Connect],
    )
    .await;

    // Plaintext against the SASL_SSL port: refused too, not a hang.
    refused(
        KafkaBroker::connect(
            KafkaOptions::new()
                .brokers([format!("127.0.0.1:{SASL_SSL_PORT}")])
                .subscribe_timeout(CONNECT_TIMEOUT),
        ),
        "PLAINTEXT on the SASL_SSL port",
        &[ErrorKind::Connect, ErrorKind::Auth],
    )
    .await;
}

/// The process-wide log capture. librdkafka logs from its own threads, so the
/// subscriber is global (and also bridges the `log` crate, which sets librdkafka's log
/// level to debug for every client made afterwards).
fn logs() -> &'static Mutex<Vec<u8>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let (subscriber, logs) = log_capture();
        subscriber
            .try_init()
            .expect("the only global log subscriber of this test binary");
        logs
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_stay_out_of_debug_errors_and_logs() {
    let server = Server::start();
    let mut shown = Vec::new();
    // librdkafka's own debug output of security, broker and configuration.
    let options = server
        .options(PASSWORD, &server.ca())
        .set("debug", "security,broker,conf");
    shown.push(format!("{options:?}"));
    let broker = KafkaBroker::connect(options)
        .await
        .unwrap_or_else(|e| panic!("SASL_SSL with the right password: {}", e.display_chain()));
    round_trip(&broker, "logs").await;
    shown.extend(shown_broker(&broker));
    broker.close().await.expect("close");

    // (With librdkafka's `debug` on, the connection check sees no client error, so a
    // wrong password is only a `Connect` error after the timeout.)
    let err = refused(
        KafkaBroker::connect(server.options(WRONG_PASSWORDS[2], &server.ca())),
        "wrong password, logged",
        &[ErrorKind::Auth],
    )
    .await;
    shown.extend(shown_error(&err));

    // A URL with a bad option, carrying the password.
    let err = KafkaBroker::connect_url(&format!(
        "{}&nope=1&sasl.password={PASSWORD}",
        server.url(PASSWORD, &server.ca())
    ))
    .await
    .expect_err("an unknown option");
    assert_eq!(err.kind(), ErrorKind::InvalidConfig);
    shown.extend(shown_error(&err));
    let logs = captured_text(logs());
    assert!(
        logs.contains(&format!("127.0.0.1:{SASL_SSL_PORT}")) && logs.contains("SASL"),
        "the log capture saw no SASL_SSL connection: {logs}"
    );
    shown.push(logs);
    assert_hidden(&shown);
}
