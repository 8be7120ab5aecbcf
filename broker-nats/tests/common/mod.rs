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
