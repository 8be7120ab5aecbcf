//! Credentials and TLS against a private Kafka broker with a SASL_SSL listener
//! (SCRAM-SHA-256 over TLS, the server certificate from `scripts/certs.sh`), started by
//! `scripts/kafka.sh` with `KAFKA_SASL_SSL_PORT` on its own ports: 19192 (PLAINTEXT),
//! 19193 (SASL_SSL), 19194 (controller). The tests of this file share it; the last one
//! to finish stops it. Secrets never show in `Debug`, errors or logs.
//!
//! Needs java 17+, openssl and Maven (for the first install); without them the tests fail
//! saying so.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use broker_core::{Broker, Error, ErrorKind, Message, SubscribeOptions};
use broker_kafka::{KafkaBroker, KafkaOptions};
use futures::StreamExt;

use common::{run, topic};

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
    let output = Command::new("bash")
        .arg(&path)
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", path.display()));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "scripts/{name} {} failed ({}); it needs java 17+, openssl and (for the first install) Maven:\n{stderr}",
        args.join(" "),
        output.status
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The directory of `scripts/certs.sh`'s files.
fn certs() -> PathBuf {
    let out = script("certs.sh", &["generate"], &[]);
    let dir = out
        .lines()
        .filter_map(|l| l.strip_prefix("CERTS_DIR="))
        .next_back()
        .unwrap_or_else(|| panic!("scripts/certs.sh printed no CERTS_DIR: {out}"));
    PathBuf::from(dir)
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
    for text in shown {
        for secret in std::iter::once(PASSWORD).chain(WRONG_PASSWORDS) {
            assert!(!text.contains(secret), "a secret is shown: {text}");
        }
    }
}

/// Everything a caller may print of an error.
fn shown_error(err: &Error) -> Vec<String> {
    vec![err.to_string(), err.display_chain(), format!("{err:?}")]
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
    let topic = topic(&format!("sasl.{what}"));
    let mut plain = broker
        .subscribe(&topic, SubscribeOptions::new())
        .await
        .unwrap_or_else(|e| panic!("subscribe over SASL_SSL ({what}): {}", e.display_chain()));
    let mut group = broker
        .subscribe(
            &topic,
            SubscribeOptions::new().queue(format!("{}-group", topic.replace('.', "-"))),
        )
        .await
        .unwrap_or_else(|e| {
            panic!(
                "queue subscribe over SASL_SSL ({what}): {}",
                e.display_chain()
            )
        });
    broker
        .publish(&topic, Message::new(what.to_owned()).with_id(what))
        .await
        .unwrap_or_else(|e| panic!("publish over SASL_SSL ({what}): {}", e.display_chain()));
    for sub in [&mut plain, &mut group] {
        let delivery = match tokio::time::timeout(Duration::from_secs(30), sub.next()).await {
            Ok(Some(Ok(delivery))) => delivery,
            other => panic!("no delivery over SASL_SSL ({what}): {other:?}"),
        };
        assert_eq!(delivery.message().id().as_str(), what);
        assert_eq!(delivery.message().payload().as_ref(), what.as_bytes());
        delivery.ack().await.expect("ack");
    }
}

/// Connects, expecting a failure within the connect timeout plus a margin.
async fn refused(
    connect: impl std::future::Future<Output = broker_core::Result<KafkaBroker>>,
    what: &str,
) -> Error {
    let started = Instant::now();
    let outcome = tokio::time::timeout(CONNECT_TIMEOUT * 3, connect)
        .await
        .unwrap_or_else(|_| panic!("{what}: connect hangs"));
    let elapsed = started.elapsed();
    let err = match outcome {
        Ok(broker) => panic!("{what}: connected, but it must fail: {broker:?}"),
        Err(err) => err,
    };
    assert!(
        elapsed < CONNECT_TIMEOUT + MARGIN,
        "{what}: failing took {elapsed:?}"
    );
    eprintln!(
        "{what}: {:?}: {} after {elapsed:?}",
        err.kind(),
        err.display_chain()
    );
    assert_hidden(&shown_error(&err));
    err
}

#[test]
fn sasl_ssl_round_trips_with_the_right_password_and_ca() {
    let server = Server::start();
    run(async {
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
        let topic = topic("sasl.url");
        let mut sub = broker
            .subscribe(&topic, SubscribeOptions::new())
            .await
            .expect("subscribe");
        broker
            .publish(&topic, Message::new("url").with_id("url"))
            .await
            .expect("publish");
        match tokio::time::timeout(Duration::from_secs(30), sub.next()).await {
            Ok(Some(Ok(delivery))) => {
                assert_eq!(delivery.message().id().as_str(), "url");
                delivery.ack().await.expect("ack");
            }
            other => panic!("no delivery from the URL's broker: {other:?}"),
        }
        broker.close().await.expect("close");
    });
}

#[test]
fn a_wrong_password_is_an_auth_error_in_bounded_time() {
    let server = Server::start();
    run(async {
        let err = refused(
            KafkaBroker::connect(server.options(WRONG_PASSWORDS[0], &server.ca())),
            "wrong password (builder)",
        )
        .await;
        assert_eq!(err.kind(), ErrorKind::Auth, "{}", err.display_chain());

        let err = refused(
            KafkaBroker::connect_url(&server.url(WRONG_PASSWORDS[1], &server.ca())),
            "wrong password (URL)",
        )
        .await;
        assert_eq!(err.kind(), ErrorKind::Auth, "{}", err.display_chain());

        let err = refused(
            KafkaBroker::connect(
                server
                    .options(PASSWORD, &server.ca())
                    .set("sasl.username", "mallory"),
            ),
            "unknown user",
        )
        .await;
        assert_eq!(err.kind(), ErrorKind::Auth, "{}", err.display_chain());
    });
}

#[test]
fn a_wrong_ca_is_a_connect_error_naming_the_certificate() {
    let server = Server::start();
    run(async {
        // A CA that did not sign the server's certificate.
        let err = refused(
            KafkaBroker::connect(server.options(PASSWORD, &server.other_ca())),
            "wrong CA",
        )
        .await;
        assert_eq!(err.kind(), ErrorKind::Connect, "{}", err.display_chain());
        let chain = err.display_chain().to_lowercase();
        assert!(
            chain.contains("certificate") || chain.contains("ssl"),
            "the error does not say that TLS failed: {}",
            err.display_chain()
        );

        // A CA file that does not exist: the client cannot even be configured.
        let missing = server.certs.join("no-such-ca.pem").display().to_string();
        let err = refused(
            KafkaBroker::connect(server.options(PASSWORD, &missing)),
            "missing CA file",
        )
        .await;
        assert!(
            matches!(err.kind(), ErrorKind::InvalidConfig | ErrorKind::Connect),
            "{}",
            err.display_chain()
        );

        // Plaintext against the SASL_SSL port: refused too, not a hang.
        let err = refused(
            KafkaBroker::connect(
                KafkaOptions::new()
                    .brokers([format!("127.0.0.1:{SASL_SSL_PORT}")])
                    .subscribe_timeout(CONNECT_TIMEOUT),
            ),
            "PLAINTEXT on the SASL_SSL port",
        )
        .await;
        assert!(
            matches!(err.kind(), ErrorKind::Connect | ErrorKind::Auth),
            "{}",
            err.display_chain()
        );
    });
}

/// A `MakeWriter` that appends every log line to a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// The process-wide log capture. librdkafka logs from its own threads, so the
/// subscriber is global (and also bridges the `log` crate, which sets librdkafka's log
/// level to debug for every client made afterwards).
fn logs() -> &'static Captured {
    static LOGS: OnceLock<Captured> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Captured::default();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(logs.clone())
            .with_ansi(false)
            .try_init()
            .expect("the only global log subscriber of this test binary");
        logs
    })
}

#[test]
fn secrets_stay_out_of_debug_errors_and_logs() {
    let server = Server::start();
    let mut shown = Vec::new();
    run(async {
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
        )
        .await;
        assert_eq!(err.kind(), ErrorKind::Auth, "{}", err.display_chain());
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
    });
    let logs = String::from_utf8_lossy(&logs().0.lock().unwrap_or_else(PoisonError::into_inner))
        .into_owned();
    assert!(
        logs.contains(&format!("127.0.0.1:{SASL_SSL_PORT}")) && logs.contains("SASL"),
        "the log capture saw no SASL_SSL connection: {logs}"
    );
    shown.push(logs);
    assert_hidden(&shown);
}
