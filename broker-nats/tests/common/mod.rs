//! Shared test helpers: where the server is, how to connect to it and name topics on it, and
//! how to start and restart private ones.
#![allow(dead_code, unreachable_pub)]

use std::path::PathBuf;
use std::process::Command;

use broker_core::testkit::{connected, publish_all, run_command, test_certs, unique_topic};
use broker_core::{Broker, Message, Result};
use broker_nats::NatsBroker;

/// How to start the server the tests use.
pub const START_HINT: &str = "scripts/nats.sh start (then export NATS_URL=nats://127.0.0.1:4222)";

/// The core NATS URL of the shared test server (`NATS_URL`, default 127.0.0.1:4222).
pub fn nats_url() -> String {
    broker_core::testkit::broker_address("NATS_URL", "nats://127.0.0.1:4222")
}

/// The same server as a `jetstream://` URL, with `query` appended.
pub fn jetstream_url(query: &str) -> String {
    let url = nats_url();
    let rest = url.split_once("://").map_or(url.as_str(), |(_, rest)| rest);
    format!("jetstream://{rest}{query}")
}

/// The shared server's core NATS URL with the URL options `query` (`a=1&b=2`) added.
pub fn nats_url_with(query: &str) -> String {
    let mut url = nats_url();
    if !query.is_empty() {
        url.push(if url.contains('?') { '&' } else { '?' });
        url.push_str(query);
    }
    url
}

/// Connects to `url`, or panics saying how to start the server.
pub async fn connect(url: &str) -> NatsBroker {
    connected(NatsBroker::connect_url(url).await, url, START_HINT)
}

/// Publishes, one after the other, a message `x` with the id `<prefix><i>` for each `i`
/// of `ids`.
pub async fn publish_ids(
    broker: &NatsBroker,
    topic: &str,
    prefix: &str,
    ids: std::ops::Range<usize>,
) {
    let messages = ids.map(|i| Message::new("x").with_id(format!("{prefix}{i}")));
    publish_all(broker, topic, messages).await;
}

/// Deletes the JetStream stream `stream` a test made, then closes `broker`.
pub async fn delete_stream_and_close(broker: &NatsBroker, stream: &str) {
    async_nats::jetstream::new(broker.client().clone())
        .delete_stream(stream)
        .await
        .unwrap_or_else(|e| panic!("clean up the stream {stream}: {e}"));
    broker.close().await.expect("close");
}

/// A listener on a free local port, and the port: where a test plays a server itself.
pub async fn local_listener() -> (tokio::net::TcpListener, u16) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("address").port();
    (listener, port)
}

/// A name no other test uses, `<prefix><unique>`: a first subject token (so a stream of
/// its own on JetStream) or a queue group.
pub fn unique_token(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::now_v7().simple())
}

/// A core NATS topic no other test uses: `nats-test.<name>.<unique>`.
pub fn core_topic(name: &str) -> String {
    format!("nats-{}", unique_topic(name))
}

/// A JetStream topic no other test uses: `js-test.<name>.<unique>`, all in the stream
/// [`JS_TEST_STREAM`] on the shared server.
pub fn js_topic(name: &str) -> String {
    format!("js-{}", unique_topic(name))
}

/// The stream that holds the [`js_topic`]s.
pub const JS_TEST_STREAM: &str = "BROKER_js-test";

/// The conformance kit on JetStream: the shared server with `query` appended to its URL,
/// and a private server on `restart_port` that the restart scenario starts and restarts.
pub fn jetstream_kit(query: &'static str, restart_port: u16) -> broker_core::testkit::Kit {
    use std::sync::Arc;

    use broker_core::Broker;
    use broker_core::testkit::{Features, Kit};

    let features = Features::new("jetstream")
        .queue_groups()
        .persistence()
        .ordering()
        .redelivery()
        .at_least_once()
        .restart(
            move || async move {
                nats_sh("start", restart_port).await?;
                let url = format!("jetstream://127.0.0.1:{restart_port}{query}");
                Ok(Arc::new(NatsBroker::connect_url(&url).await?) as Arc<dyn Broker>)
            },
            move || nats_sh("restart", restart_port),
        )
        .start_hint(START_HINT);
    Kit::new(features, move || async move {
        Ok(Arc::new(NatsBroker::connect_url(&jetstream_url(query)).await?) as Arc<dyn Broker>)
    })
}

fn script_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/nats.sh")
}

/// Runs `scripts/nats.sh <command>` for the private server on `port`.
pub async fn nats_sh(command: &'static str, port: u16) -> Result<()> {
    nats_sh_with(command, port, &[]).await
}

/// Runs `scripts/nats.sh <command>` for the private server on `port`, with extra
/// environment variables (such as `NATS_AUTH_USER`).
pub async fn nats_sh_with(command: &'static str, port: u16, env: &[(&str, &str)]) -> Result<()> {
    let mut script = nats_sh_command(command, port);
    script.envs(env.iter().copied());
    run_command(
        script,
        format!("scripts/nats.sh {command} (NATS_PORT={port})"),
    )
    .await
    .map(drop)
}

/// `bash scripts/nats.sh <command>` for the private server on `port`.
fn nats_sh_command(command: &str, port: u16) -> Command {
    let mut script = Command::new("bash");
    script
        .arg(script_path())
        .arg(command)
        .env("NATS_PORT", port.to_string())
        .env_remove("NATS_STATE_DIR");
    script
}

/// A private nats-server on its own port, started by `scripts/nats.sh` and stopped
/// (`scripts/nats.sh stop`) when this is dropped, also when the test fails.
#[derive(Debug)]
pub struct Server {
    pub port: u16,
}

impl Server {
    /// Starts a private server on `port` with extra environment for `scripts/nats.sh`
    /// (`NATS_AUTH_*`, `NATS_TLS`…). Panics with what to install when it cannot.
    pub async fn start(port: u16, env: &[(&str, &str)]) -> Server {
        let server = Server { port };
        if let Err(err) = nats_sh_with("start", port, env).await {
            panic!(
                "cannot start a private nats-server on port {port}: {}\n  scripts/nats.sh needs nats-server (it builds one with Go, or installs Debian's package) and, for TLS, openssl",
                err.display_chain()
            );
        }
        server
    }

    /// `nats://127.0.0.1:<port>` with `query` appended.
    pub fn url(&self, query: &str) -> String {
        format!("nats://127.0.0.1:{}{query}", self.port)
    }

    /// `jetstream://127.0.0.1:<port>` with `query` appended.
    pub fn jetstream_url(&self, query: &str) -> String {
        format!("jetstream://127.0.0.1:{}{query}", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let status = nats_sh_command("stop", self.port).output();
        match status {
            Ok(out) if out.status.success() => {}
            Ok(out) => eprintln!(
                "scripts/nats.sh stop (NATS_PORT={}) failed: {}",
                self.port,
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(err) => eprintln!("cannot run scripts/nats.sh stop: {err}"),
        }
    }
}

/// The directory of the test certificates (`scripts/certs.sh`: ca.pem, server.pem,
/// client.pem, client-key.pem, other-ca.pem…), made on first use.
pub fn certs() -> PathBuf {
    test_certs(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/certs.sh"))
}

/// Starts this test binary again to run only `test`, with the environment variable
/// `env.0` set to `env.1` (which tells the test it is the second process), its stdout
/// piped: the process a test kills.
pub fn spawn_test_process(
    test: &str,
    env: (&str, String),
    stderr: std::process::Stdio,
) -> std::process::Child {
    let exe = std::env::current_exe().expect("the test binary");
    Command::new(exe)
        .args(["--exact", test, "--nocapture"])
        .env(env.0, env.1)
        .stdout(std::process::Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("start the test's second process")
}
