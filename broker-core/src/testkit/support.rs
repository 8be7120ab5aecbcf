//! Helpers for the backends' own integration tests (and the kit's scenarios): bounded
//! waits, unique topics, connecting with a hint, publishing and receiving with
//! messages that say what was expected, log capture and certificates.

use std::fmt;
use std::future::Future;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;

use crate::lag::Lag;
use crate::{Broker, Delivery, Message, Result, SubscribeOptions, Subscription};

/// Which messages of a batch failed, and how: each failure's index and error kind.
pub fn failures_of(err: &crate::batch::BatchError) -> Vec<(usize, crate::ErrorKind)> {
    err.failures()
        .iter()
        .map(|f| (f.index(), f.error().kind()))
        .collect()
}

/// Polls `condition` every 10 ms until it holds or `timeout` passes; returns whether it
/// held. The caller asserts, with a message saying what was expected. For the kit's
/// scenarios and the backends' own tests alike.
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

/// Asks `lag` (a subscription's or a handler's `lag()`) every 20 ms until it reports
/// `expected` messages or `timeout` passes, and returns the last answer for the caller
/// to assert on.
pub async fn wait_for_lag<F, Fut>(timeout: Duration, expected: u64, mut lag: F) -> Result<Lag>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Lag>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let answer = lag().await;
        let done = matches!(&answer, Ok(lag) if lag.total == expected);
        if done || tokio::time::Instant::now() >= deadline {
            return answer;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A handler that takes a permit of `gate` for each event before it acks it: paused
/// while `gate` has no permits, it handles one more event per permit added.
pub fn gated_handler(gate: &Arc<tokio::sync::Semaphore>) -> impl crate::Handler {
    let gate = gate.clone();
    move |_event: crate::Event| {
        let gate = gate.clone();
        async move {
            gate.acquire().await?.forget();
            Ok::<(), crate::BoxError>(())
        }
    }
}

/// A topic no other test uses: `test.<name>.<unique>`.
pub fn unique_topic(name: &str) -> String {
    format!("test.{name}.{}", uuid::Uuid::now_v7().simple())
}

/// The broker `outcome` holds, or a panic saying that `address` could not be reached and
/// how to start the broker there (`start_hint`, e.g. `scripts/nats.sh start`). For the
/// backends' own tests, which fail (never skip) when their broker is missing.
pub fn connected<B>(outcome: Result<B>, address: &str, start_hint: &str) -> B {
    match outcome {
        Ok(broker) => broker,
        Err(err) => panic!(
            "cannot connect to {address}: {}\n  is the broker running? start it with: {start_hint}",
            err.display_chain()
        ),
    }
}

/// Subscribes `broker` to `pattern`, or panics saying why it could not.
pub async fn subscribe<B: Broker + ?Sized>(
    broker: &B,
    pattern: &str,
    options: SubscribeOptions,
) -> Subscription {
    match broker.subscribe(pattern, options).await {
        Ok(subscription) => subscription,
        Err(err) => panic!("subscribe to {pattern}: {}", err.display_chain()),
    }
}

/// Publishes `message` to `topic`, or panics saying why it could not.
pub async fn publish<B: Broker + ?Sized>(broker: &B, topic: &str, message: Message) {
    let id = message.id().clone();
    if let Err(err) = broker.publish(topic, message).await {
        panic!("publish {id} to {topic}: {}", err.display_chain());
    }
}

/// Publishes `messages` to `topic` one after the other, each taken by the broker before
/// the next is sent; panics on the first that fails.
pub async fn publish_all<B: Broker + ?Sized>(
    broker: &B,
    topic: &str,
    messages: impl IntoIterator<Item = Message>,
) {
    for message in messages {
        publish(broker, topic, message).await;
    }
}

/// Asserts that `broker`, closed, refuses both to publish to `topic` and to subscribe to
/// it, with [`ErrorKind::Closed`](crate::ErrorKind::Closed).
pub async fn assert_refuses_work_after_close<B: Broker + ?Sized>(broker: &B, topic: &str) {
    let published = broker.publish(topic, Message::new("after close")).await;
    assert_closed(published, "a publish after close");
    let subscribed = broker.subscribe(topic, SubscribeOptions::new()).await;
    assert_closed(subscribed, "a subscribe after close");
}

/// Asserts that `what` failed with [`ErrorKind::Closed`](crate::ErrorKind::Closed).
fn assert_closed<T>(outcome: Result<T>, what: &str) {
    let Err(err) = outcome else {
        panic!("{what} succeeded");
    };
    assert_eq!(
        err.kind(),
        crate::ErrorKind::Closed,
        "{what}: {}",
        err.display_chain()
    );
}

/// The next item of `sub` within `within`: `None` when nothing came in time or the
/// subscription ended.
pub async fn try_next_delivery(
    sub: &mut Subscription,
    within: Duration,
) -> Option<Result<Delivery>> {
    tokio::time::timeout(within, sub.next())
        .await
        .ok()
        .flatten()
}

/// The next delivery of `sub`, waiting at most `timeout`; panics, saying what came
/// instead (nothing in time, the end of the stream, an error item), when there is none.
pub async fn next_delivery(sub: &mut Subscription, timeout: Duration) -> Delivery {
    expect_delivery(sub, timeout, "expected a delivery").await
}

/// [`next_delivery`], with `what` (which delivery is expected, and where) leading the
/// panic message.
pub async fn expect_delivery(
    sub: &mut Subscription,
    timeout: Duration,
    what: impl fmt::Display,
) -> Delivery {
    match tokio::time::timeout(timeout, sub.next()).await {
        Ok(Some(Ok(delivery))) => delivery,
        Ok(Some(Err(err))) => panic!("{what}: an error item: {}", err.display_chain()),
        Ok(None) => panic!("{what}: the subscription ended"),
        Err(_) => panic!("{what}: nothing arrived within {timeout:?}"),
    }
}

/// Publishes to `topic` a message whose payload and id are both `what`, and expects it on
/// each of `subs` within `timeout` (acking it); `over` (such as `TLS`) says, in a panic,
/// which way it went.
pub async fn round_trip_through<B: Broker + ?Sized>(
    broker: &B,
    topic: &str,
    subs: &mut [Subscription],
    what: &str,
    timeout: Duration,
    over: &str,
) {
    publish(broker, topic, Message::new(what.to_owned()).with_id(what)).await;
    for sub in subs {
        let delivery =
            expect_delivery(sub, timeout, format!("a delivery over {over} ({what})")).await;
        assert_eq!(delivery.message().id().as_str(), what);
        assert_eq!(delivery.message().payload().as_ref(), what.as_bytes());
        if let Err(err) = delivery.ack().await {
            panic!("ack over {over} ({what}): {}", err.display_chain());
        }
    }
}

/// The next item of `sub` within `timeout` must be the end of the stream; panics, with
/// `what`, when a delivery or an error comes instead, or nothing in time.
pub async fn assert_stream_ends(sub: &mut Subscription, timeout: Duration, what: &str) {
    let end = tokio::time::timeout(timeout, sub.next())
        .await
        .unwrap_or_else(|_| panic!("{what}: the stream did not end within {timeout:?}"));
    assert!(end.is_none(), "{what}: {end:?}");
}

/// The error `outcome` holds, which must be of one of `kinds`; panics, with `what`, when
/// `outcome` is `Ok` or the error of another kind.
pub fn expect_error<T: fmt::Debug>(
    outcome: Result<T>,
    kinds: &[crate::ErrorKind],
    what: &str,
) -> crate::Error {
    let err = outcome.expect_err(what);
    assert!(
        kinds.contains(&err.kind()),
        "{what}: an error of kind {:?}, not one of {kinds:?}: {}",
        err.kind(),
        err.display_chain()
    );
    err
}

/// Awaits `connect`, which must fail within `limit` (one that takes twice as long is cut
/// short as a hang) with an error of one of `kinds`; prints that error and returns it.
pub async fn connect_fails<B: fmt::Debug>(
    connect: impl Future<Output = Result<B>>,
    limit: Duration,
    kinds: &[crate::ErrorKind],
    what: &str,
) -> crate::Error {
    let started = tokio::time::Instant::now();
    let outcome = tokio::time::timeout(limit * 2, connect)
        .await
        .unwrap_or_else(|_| panic!("{what}: connect hangs"));
    let elapsed = started.elapsed();
    let err = expect_error(outcome, kinds, what);
    assert!(elapsed < limit, "{what}: failing took {elapsed:?}");
    eprintln!(
        "{what}: {:?}: {} after {elapsed:?}",
        err.kind(),
        err.display_chain()
    );
    err
}

/// Runs `command` (a script, a server's control program) on a blocking thread and returns
/// its output; an error of kind [`Connect`](crate::ErrorKind::Connect), with what it wrote
/// to stderr, when it cannot run or does not succeed. `what` names it in the error.
pub async fn run_command(
    mut command: std::process::Command,
    what: impl fmt::Display,
) -> Result<std::process::Output> {
    use crate::{Error, ErrorKind};

    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .map_err(|e| Error::with_source(ErrorKind::Connect, format!("{what}: task failed"), e))?
        .map_err(|e| Error::with_source(ErrorKind::Connect, format!("cannot run {what}"), e))?;
    if output.status.success() {
        Ok(output)
    } else {
        Err(Error::new(
            ErrorKind::Connect,
            format!("{what} failed: {}", String::from_utf8_lossy(&output.stderr)),
        ))
    }
}

/// Everything a caller may print of an error: its `Display`, its chain and its `Debug`.
pub fn shown_error(err: &crate::Error) -> Vec<String> {
    vec![err.to_string(), err.display_chain(), format!("{err:?}")]
}

/// Panics when any of `secrets` appears in any of `shown`.
pub fn assert_hidden(secrets: &[&str], shown: &[String]) {
    for text in shown {
        for secret in secrets {
            assert!(!text.contains(secret), "a secret is shown: {text}");
        }
    }
}

/// The subscriber builder [`log_capture`] returns.
pub type LogCaptureBuilder = tracing_subscriber::fmt::SubscriberBuilder<
    tracing_subscriber::fmt::format::DefaultFields,
    tracing_subscriber::fmt::format::Format,
    tracing_subscriber::filter::LevelFilter,
    tracing_subscriber::fmt::writer::BoxMakeWriter,
>;

/// A log subscriber (every level, no colours) writing into the returned buffer: install
/// it with `.try_init()` (process-wide) or `.finish()` and `set_default` (one thread),
/// then read what was logged with [`captured_text`].
pub fn log_capture() -> (LogCaptureBuilder, Arc<std::sync::Mutex<Vec<u8>>>) {
    let buffer: Arc<std::sync::Mutex<Vec<u8>>> = Arc::default();
    let writer = {
        let buffer = buffer.clone();
        tracing_subscriber::fmt::writer::BoxMakeWriter::new(move || CapturedWriter(buffer.clone()))
    };
    let builder = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(writer)
        .with_ansi(false);
    (builder, buffer)
}

/// What a [`log_capture`] buffer holds, as text.
pub fn captured_text(buffer: &std::sync::Mutex<Vec<u8>>) -> String {
    let bytes = buffer
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The writer behind [`log_capture`]: appends to the shared buffer.
struct CapturedWriter(Arc<std::sync::Mutex<Vec<u8>>>);

impl Write for CapturedWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Runs `command` to completion and returns what it printed to stdout; panics, with what
/// it printed, when it cannot run or does not succeed. `what` names it (and may say what
/// it needs) in the panic.
pub fn stdout_of(command: &mut std::process::Command, what: &str) -> String {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}\n{stdout}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// The directory of the test certificates that `certs_sh` (the project's
/// `scripts/certs.sh`: ca.pem, server.pem, client.pem, client-key.pem, other-ca.pem…)
/// makes on first use; panics saying what it needs when it fails.
pub fn test_certs(certs_sh: &std::path::Path) -> std::path::PathBuf {
    let what = format!(
        "{}, which needs openssl (apt-get install openssl),",
        certs_sh.display()
    );
    let stdout = stdout_of(
        std::process::Command::new("bash")
            .arg(certs_sh)
            .arg("generate"),
        &what,
    );
    let dir = stdout
        .lines()
        .filter_map(|line| line.strip_prefix("CERTS_DIR="))
        .next_back()
        .unwrap_or_else(|| panic!("{} printed no CERTS_DIR=…: {stdout}", certs_sh.display()));
    std::path::PathBuf::from(dir)
}
