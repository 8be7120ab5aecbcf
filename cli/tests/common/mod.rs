//! Running the built `broker` binary: where the test brokers are, a subscriber child
//! that says when it is live, and bounded waits.
#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use broker_core::testkit::broker_address;

/// How to start the brokers the tests use.
pub const START_HINT: &str = "start them with scripts/nats.sh start and scripts/kafka.sh start \
     (NATS_URL and KAFKA_BROKERS say where they are when not on 127.0.0.1)";

/// The longest a test waits for a child: a shared CI machine may be slow.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// The core NATS URL of the test server (`NATS_URL`, default 127.0.0.1:4222).
pub fn nats_url() -> String {
    broker_address("NATS_URL", "nats://127.0.0.1:4222")
}

/// The same server as a `jetstream://` URL.
pub fn jetstream_url() -> String {
    let url = nats_url();
    let rest = url.split_once("://").map_or(url.as_str(), |(_, rest)| rest);
    format!("jetstream://{rest}")
}

/// The Kafka test broker (`KAFKA_BROKERS`, default 127.0.0.1:9092) as a `kafka://` URL.
pub fn kafka_url() -> String {
    format!(
        "kafka://{}",
        broker_address("KAFKA_BROKERS", "127.0.0.1:9092")
    )
}

/// The binary, on `url`, with no `BROKER_URL` of the environment in the way.
pub fn broker(url: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_broker"));
    command.env_remove("BROKER_URL").arg("--url").arg(url);
    command
}

/// Runs `command` to its end (at most [`PATIENCE`]) with `stdin` as its input.
pub fn run(command: &mut Command, stdin: &[u8]) -> Output {
    let mut child = spawn(command, Stdio::piped());
    if let Some(mut input) = child.stdin.take() {
        std::io::Write::write_all(&mut input, stdin).expect("write stdin");
    }
    let stdout = reader(child.stdout.take());
    let stderr = reader(child.stderr.take());
    let status = wait(&mut child, PATIENCE);
    Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}

/// Runs `command` and asserts it succeeded, saying what it printed otherwise.
pub fn run_ok(command: &mut Command, stdin: &[u8]) -> Output {
    let output = run(command, stdin);
    assert!(
        output.status.success(),
        "{command:?} failed ({}): {}\n  are the brokers running? {START_HINT}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// A `broker sub` (or `reply`) child, started and live.
pub struct Listener {
    child: Child,
    stdout: Option<thread::JoinHandle<Vec<u8>>>,
    stderr: mpsc::Receiver<String>,
    stderr_seen: Vec<String>,
}

impl Listener {
    /// Starts `command` and waits (at most [`PATIENCE`]) for its `subscribed to PATTERN`
    /// line on stderr.
    pub fn start(command: &mut Command, pattern: &str) -> Listener {
        let mut child = spawn(command, Stdio::null());
        let stdout = Some(reader(child.stdout.take()));
        let (lines, stderr) = mpsc::channel();
        let pipe = child.stderr.take().expect("stderr is piped");
        thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        let mut listener = Listener {
            child,
            stdout,
            stderr,
            stderr_seen: Vec::new(),
        };
        let expected = format!("subscribed to {pattern}");
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match listener.stderr.recv_timeout(left) {
                Ok(line) if line == expected => return listener,
                Ok(line) => listener.stderr_seen.push(line),
                Err(why) => {
                    let _ = listener.child.kill();
                    let _ = listener.child.wait();
                    let when = match why {
                        mpsc::RecvTimeoutError::Timeout => "within the patience",
                        mpsc::RecvTimeoutError::Disconnected => "before it ended",
                    };
                    panic!(
                        "{command:?} did not print `{expected}` {when}; stderr: {:?}\n  are the brokers running? {START_HINT}",
                        listener.stderr_seen
                    );
                }
            }
        }
    }

    /// Waits (at most [`PATIENCE`]) for the child to end: its status, stdout and the rest
    /// of its stderr.
    pub fn finish(mut self) -> (ExitStatus, String, String) {
        let status = wait(&mut self.child, PATIENCE);
        let stdout = self
            .stdout
            .take()
            .and_then(|thread| thread.join().ok())
            .unwrap_or_default();
        let mut stderr = std::mem::take(&mut self.stderr_seen);
        stderr.extend(self.stderr.try_iter());
        (
            status,
            String::from_utf8_lossy(&stdout).into_owned(),
            stderr.join("\n"),
        )
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        // Only a child a failed test leaves behind is still running.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Reads all of `pipe` on a thread.
fn reader(pipe: Option<impl Read + Send + 'static>) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut bytes);
        }
        bytes
    })
}

/// Starts `command` with `stdin`, its stdout and stderr piped.
fn spawn(command: &mut Command, stdin: Stdio) -> Child {
    command
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the broker binary")
}

/// The child's exit status, waiting at most `patience`; kills it and panics after that.
fn wait(child: &mut Child, patience: Duration) -> ExitStatus {
    let deadline = Instant::now() + patience;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status,
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the broker binary did not end within {patience:?}");
            }
            Err(e) => panic!("wait for the broker binary: {e}"),
        }
    }
}
