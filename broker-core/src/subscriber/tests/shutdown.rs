//! Shutting a subscriber down within a deadline: what finishes in time is handled, the
//! rest is cancelled and nacked.

use super::*;

/// Sets a flag when dropped: proof that a cancelled handler's future was dropped.
#[cfg(feature = "testkit")]
struct DropFlag(Arc<std::sync::atomic::AtomicBool>);

#[cfg(feature = "testkit")]
impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, SeqCst);
    }
}

/// Message 0 (key `a`) blocks forever, message 1 waits behind it for its key, message 2
/// (no key) finishes once the shutdown has begun: a shutdown within a short deadline
/// reports 1 finished and 2 cancelled, nacks both cancelled deliveries (acks none of
/// them), and drops the blocked handler's future.
#[cfg(feature = "testkit")]
async fn shutdown_within_cancels_what_outlives_the_deadline() {
    let settled = Arc::new(Settled::default());
    let messages = vec![
        message(0, Some("a".into())),
        message(1, Some("a".into())),
        message(2, None),
    ];
    let (subscription, taken) = subscription(messages, &settled);
    let (started_tx, mut started) = mpsc::unbounded_channel();
    let release = CancellationToken::new();
    let dropped = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let handler = {
        let (release, dropped) = (release.clone(), dropped.clone());
        move |event: Event| {
            let (release, dropped, started_tx) =
                (release.clone(), dropped.clone(), started_tx.clone());
            async move {
                let seq = seq_of(&event);
                let _ = started_tx.send(seq);
                if seq == 0 {
                    let _flag = DropFlag(dropped);
                    std::future::pending::<()>().await;
                }
                release.cancelled().await;
                Ok::<_, BoxError>(())
            }
        }
    };
    let handle = start(subscription, handler, 2);
    let mut running = receive(&mut started, 2, "the first two handlers").await;
    running.sort_unstable();
    assert_eq!(running, [0, 2]);
    assert!(
        crate::testkit::wait_until(PATIENCE, || taken.load(SeqCst) == 3).await,
        "every delivery taken"
    );

    let deadline = Duration::from_millis(300);
    let began = tokio::time::Instant::now();
    let report =
        shut_down_then_release(handle.shutdown_within(deadline), || release.cancel()).await;
    assert!(began.elapsed() >= deadline, "returned before the deadline");
    assert_eq!(
        report,
        ShutdownReport {
            finished: 1,
            cancelled: 2
        }
    );
    assert!(
        dropped.load(SeqCst),
        "the blocked handler's future was dropped"
    );
    assert_eq!(settled.acks.load(SeqCst), 1, "only message 2 is acked");
    assert_eq!(settled.nacks.load(SeqCst), 2, "messages 0 and 1 are nacked");
    assert!(started.try_recv().is_err(), "message 1 was never handled");
}

#[cfg(feature = "testkit")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_within_cancels_on_a_multi_threaded_runtime() {
    shutdown_within_cancels_what_outlives_the_deadline().await;
}

/// Each cancelled delivery counts in `broker_handlers_cancelled_total`, labelled by the
/// subscription's pattern. The runtime runs on this thread alone, inside a recorder of
/// this test's own.
#[cfg(feature = "testkit")]
#[test]
fn cancelled_handlers_are_counted_and_reported() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        runtime.block_on(shutdown_within_cancels_what_outlives_the_deadline());
    });
    let cancelled: u64 = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter(|(key, ..)| key.key().name() == crate::observe::metric_names::CANCELLED)
        .filter(|(key, ..)| {
            key.key()
                .labels()
                .any(|l| l.key() == "pattern" && l.value() == "t")
        })
        .map(|(.., value)| match value {
            DebugValue::Counter(n) => n,
            _ => 0,
        })
        .sum();
    assert_eq!(cancelled, 2);
}

/// Handlers that finish within the deadline are not cancelled: the report counts them
/// finished, and each is acked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_within_waits_for_handlers_that_finish_in_time() {
    let settled = Arc::new(Settled::default());
    let (subscription, _) = subscription((0..2).map(|i| message(i, None)).collect(), &settled);
    let (started_tx, mut started) = mpsc::unbounded_channel();
    let release = CancellationToken::new();
    let handler = {
        let release = release.clone();
        move |event: Event| {
            let (release, started_tx) = (release.clone(), started_tx.clone());
            async move {
                let _ = started_tx.send(seq_of(&event));
                release.cancelled().await;
                Ok::<_, BoxError>(())
            }
        }
    };
    let handle = start(subscription, handler, 2);
    receive(&mut started, 2, "both handlers").await;
    let report =
        shut_down_then_release(handle.shutdown_within(PATIENCE), || release.cancel()).await;
    assert_eq!(
        report,
        ShutdownReport {
            finished: 2,
            cancelled: 0
        }
    );
    assert_eq!(settled.acks.load(SeqCst), 2);
    assert_eq!(settled.nacks.load(SeqCst), 0);
}
