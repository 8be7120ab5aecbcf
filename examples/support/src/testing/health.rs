//! `GET /health` read, and a private nats-server a test may stop and start again.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::WAIT;

/// `GET <url>`: the status code and the JSON body.
pub async fn health(client: &reqwest::Client, url: &str) -> (u16, serde_json::Value) {
    super::get_json(client, url).await
}

/// Asks `GET <url>` every 50 ms until it answers `status`, at most `within`; returns the
/// body, or fails the test with the last answer.
pub async fn health_until(
    client: &reqwest::Client,
    url: &str,
    status: u16,
    within: Duration,
) -> serde_json::Value {
    let answer = super::poll_until(
        within,
        async || health(client, url).await,
        |answer| answer.0 == status,
    )
    .await;
    answer.map(|(_, body)| body).unwrap_or_else(|(last, body)| {
        panic!("GET {url} did not answer {status} within {within:?}; last: {last} {body}")
    })
}

/// Where `scripts/nats.sh install` puts nats-server: `NATS_SERVER_BIN` when set (as
/// `scripts/test` exports it), else the cache (`$BROKER_CACHE_DIR`, by default
/// `~/.cache/broker-rs`, then `bin/nats-server`). `None` when it is not there and the
/// test may skip; a missing binary fails the test when `REQUIRE_BROKERS` or `CI` is set.
pub fn nats_server_binary() -> Option<PathBuf> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let binary = match var("NATS_SERVER_BIN") {
        Some(path) => PathBuf::from(path),
        None => {
            let cache = var("BROKER_CACHE_DIR").map(PathBuf::from).or_else(|| {
                let base = var("XDG_CACHE_HOME")
                    .map(PathBuf::from)
                    .or_else(|| var("HOME").map(|home| PathBuf::from(home).join(".cache")))?;
                Some(base.join("broker-rs"))
            });
            cache?.join("bin/nats-server")
        }
    };
    if binary.is_file() {
        return Some(binary);
    }
    super::skip_or_fail(&format!(
        "no nats-server at {}: install it with `scripts/nats.sh install` (or set NATS_SERVER_BIN)",
        binary.display()
    ));
    None
}

/// A nats-server of the test's own (core NATS, no JetStream) on a free port of
/// 127.0.0.1, killed when dropped.
#[derive(Debug)]
pub struct NatsServer {
    binary: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl NatsServer {
    /// Starts `binary` on a free port and waits until it answers.
    pub async fn start(binary: PathBuf) -> NatsServer {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map(|addr| addr.port())
            .expect("a free port");
        let mut server = NatsServer {
            binary,
            port,
            child: None,
        };
        server.restart().await;
        server
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills the server and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on its port, and waits until it answers.
    pub async fn restart(&mut self) {
        self.stop();
        let child = Command::new(&self.binary)
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", self.binary.display()));
        self.child = Some(child);
        let addr = ("127.0.0.1", self.port);
        let answered = super::poll_until(
            WAIT,
            async || tokio::net::TcpStream::connect(addr).await.is_ok(),
            |connected| *connected,
        )
        .await;
        assert!(
            answered.is_ok(),
            "nats-server on port {} did not answer within {WAIT:?}",
            self.port
        );
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}
