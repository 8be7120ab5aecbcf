//! Shared test helpers: where the server is, and how to start and restart private ones.
#![allow(dead_code, unreachable_pub)]

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use broker_core::{Error, ErrorKind, Result};

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

/// The conformance kit on JetStream: the shared server with `query` appended to its URL,
/// and a private server on `restart_port` that the restart scenario starts and restarts.
pub fn jetstream_kit(query: &'static str, restart_port: u16) -> broker_core::testkit::Kit {
    use std::sync::Arc;

    use broker_core::Broker;
    use broker_core::testkit::{Features, Kit};
    use broker_nats::NatsBroker;

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

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/nats.sh")
}

/// Runs `scripts/nats.sh <command>` for the private server on `port`.
pub async fn nats_sh(command: &'static str, port: u16) -> Result<()> {
    nats_sh_with(command, port, &[]).await
}

/// Runs `scripts/nats.sh <command>` for the private server on `port`, with extra
/// environment variables (such as `NATS_AUTH_USER`).
pub async fn nats_sh_with(command: &'static str, port: u16, env: &[(&str, &str)]) -> Result<()> {
    let script = script();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("bash")
            .arg(&script)
            .arg(command)
            .env("NATS_PORT", port.to_string())
            .env_remove("NATS_STATE_DIR")
            .envs(env)
            .output()
    })
    .await
    .map_err(|e| Error::with_source(ErrorKind::Connect, "nats.sh task failed", e))?
    .map_err(|e| Error::with_source(ErrorKind::Connect, "cannot run scripts/nats.sh", e))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(Error::new(
            ErrorKind::Connect,
            format!(
                "scripts/nats.sh {command} (NATS_PORT={port}) failed: {}",
                String::from_utf8_lossy(&output.stderr)
            ),
        ))
    }
}

/// Polls `condition` every 10 ms until it holds or `timeout` passes.
pub async fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
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
        let status = Command::new("bash")
            .arg(script())
            .arg("stop")
            .env("NATS_PORT", self.port.to_string())
            .env_remove("NATS_STATE_DIR")
            .output();
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
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/certs.sh");
    let output = Command::new("bash")
        .arg(&script)
        .arg("generate")
        .output()
        .expect("cannot run scripts/certs.sh");
    assert!(
        output.status.success(),
        "scripts/certs.sh failed (it needs openssl: apt-get install openssl): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    let dir = line
        .strip_prefix("CERTS_DIR=")
        .unwrap_or_else(|| panic!("scripts/certs.sh printed `{line}`, not CERTS_DIR=…"));
    PathBuf::from(dir)
}
