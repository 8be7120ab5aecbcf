//! Batch handlers: how batches are gathered, and how their events are settled.

use super::*;
use crate::batch::{Batch, BatchOptions, EventFailures};

/// Runs `handler` in batches on `subscription`, and sends the seqs of each batch it gets
/// to the returned receiver; `fail` decides the handler's result from the batch.
fn start_batches(
    subscription: Subscription,
    options: BatchOptions,
    fail: impl Fn(&Batch) -> Option<EventFailures> + Send + Sync + 'static,
) -> (SubscriberHandle, mpsc::UnboundedReceiver<Vec<usize>>) {
    let (batches_tx, batches) = mpsc::unbounded_channel();
    let fail = Arc::new(fail);
    let handler = move |batch: Batch| {
        let seqs = batch.iter().map(seq_of).collect();
        let failed = fail(&batch);
        let _ = batches_tx.send(seqs);
        async move { failed.map_or(Ok(()), Err) }
    };
    (
        spawn_batches(subscription, Arc::new(handler), options),
        batches,
    )
}

fn numbered(n: usize) -> Vec<Message> {
    (0..n).map(|seq| message(seq, None)).collect()
}

/// A gathered batch is handed over when full: 250 events waiting make batches of 100,
/// 100 and (after the wait) 50, in arrival order, and every event is acked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_batches_are_handed_over_in_order() {
    let settled = Arc::new(Settled::default());
    let (subscription, _) = subscription(numbered(250), &settled);
    let options = BatchOptions::new()
        .max_events(100)
        .max_wait(Duration::from_millis(50));
    let (handle, mut batches) = start_batches(subscription, options, |_| None);
    let got = receive(&mut batches, 3, "batches").await;
    let sizes: Vec<usize> = got.iter().map(Vec::len).collect();
    assert_eq!(sizes, [100, 100, 50]);
    assert_eq!(got.concat(), (0..250).collect::<Vec<_>>());
    handle.shutdown().await.expect("shutdown");
    assert_eq!(settled.acks.load(SeqCst), 250);
    assert_eq!(settled.nacks.load(SeqCst), 0);
}

/// A batch that does not fill is handed over `max_wait` after its first event, not
/// before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_that_does_not_fill_waits_max_wait() {
    let settled = Arc::new(Settled::default());
    let (subscription, _) = subscription(numbered(3), &settled);
    let wait = Duration::from_millis(200);
    let began = tokio::time::Instant::now();
    let options = BatchOptions::new().max_events(100).max_wait(wait);
    let (handle, mut batches) = start_batches(subscription, options, |_| None);
    let got = receive(&mut batches, 1, "the batch").await;
    assert!(
        began.elapsed() >= wait,
        "handed over after {:?}",
        began.elapsed()
    );
    assert_eq!(got, [vec![0, 1, 2]]);
    handle.shutdown().await.expect("shutdown");
    assert_eq!(settled.acks.load(SeqCst), 3);
}

/// Failing single events nacks those alone and acks the rest; an index past the batch
/// is ignored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_events_alone_are_nacked() {
    let settled = Arc::new(Settled::default());
    let (subscription, _) = subscription(numbered(10), &settled);
    let options = BatchOptions::new().max_events(10);
    let (handle, mut batches) = start_batches(subscription, options, |_| {
        Some(
            EventFailures::event(2, "bad")
                .and(7, "worse")
                .and(99, "past the end"),
        )
    });
    receive(&mut batches, 1, "the batch").await;
    handle.shutdown().await.expect("shutdown");
    assert_eq!(settled.acks.load(SeqCst), 8);
    assert_eq!(settled.nacks.load(SeqCst), 2);
}

/// Any error, and a panic, fail every event of the batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_or_a_panic_fails_the_whole_batch() {
    let settled = Arc::new(Settled::default());
    let (subscription, _) = subscription(numbered(5), &settled);
    let options = BatchOptions::new().max_events(5);
    let (handle, mut batches) = start_batches(subscription, options, |_| {
        Some(EventFailures::from(std::io::Error::other("database down")))
    });
    receive(&mut batches, 1, "the batch").await;
    handle.shutdown().await.expect("shutdown");
    assert_eq!(settled.nacks.load(SeqCst), 5);
    assert_eq!(settled.acks.load(SeqCst), 0);

    let settled = Arc::new(Settled::default());
    let (panicking, _) = super::subscription(numbered(4), &settled);
    let options = BatchOptions::new().max_events(4);
    let (called_tx, mut called) = mpsc::unbounded_channel();
    let handler = move |batch: Batch| {
        let _ = called_tx.send(batch.len());
        async move {
            if true {
                panic!("the batch handler panics");
            }
            Ok::<_, BoxError>(())
        }
    };
    let handle = spawn_batches(panicking, Arc::new(handler), options);
    assert_eq!(receive(&mut called, 1, "the batch").await, [4]);
    assert!(
        !handle.is_finished(),
        "the subscriber lives on after a panic"
    );
    // The shutdown waits for the running batch to be settled.
    handle.shutdown().await.expect("shutdown");
    assert_eq!(settled.nacks.load(SeqCst), 4, "a panic nacks every event");
}

/// An event that fails on its last allowed attempt is given up on (acked), the others of
/// its batch that fail are nacked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_attempt_gives_up_on_its_event_alone() {
    let settled = Arc::new(Settled::default());
    let attempts = [1, 3, 1];
    let deliveries: BoxStream<'static, Result<Delivery>> = {
        let settled = settled.clone();
        stream::iter(attempts.into_iter().enumerate())
            .map(move |(seq, attempt)| {
                let acker = Box::new(Acker(settled.clone()));
                Ok(Delivery::new(message(seq, None), "t", acker).with_attempt(attempt))
            })
            .chain(stream::pending())
            .boxed()
    };
    let subscription = Subscription::new("t", &SubscribeOptions::new(), deliveries);
    let options = BatchOptions::new().max_events(3).max_attempts(Some(3));
    let (handle, mut batches) = start_batches(subscription, options, |_| {
        Some(EventFailures::all("always fails"))
    });
    receive(&mut batches, 1, "the batch").await;
    handle.shutdown().await.expect("shutdown");
    assert_eq!(
        settled.acks.load(SeqCst),
        1,
        "attempt 3 of 3 is given up on"
    );
    assert_eq!(settled.nacks.load(SeqCst), 2);
}

/// A shutdown hands the events gathered so far to the handler at once (it does not
/// wait out `max_wait`), settles them, and reports them finished.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_handles_the_gathered_batch() {
    let settled = Arc::new(Settled::default());
    let (subscription, taken) = subscription(numbered(6), &settled);
    let options = BatchOptions::new()
        .max_events(100)
        .max_wait(Duration::from_secs(3600));
    let (handle, mut batches) = start_batches(subscription, options, |_| None);
    assert_eq!(taken_by_then(&taken, 6).await, 6);
    let report = tokio::time::timeout(PATIENCE, handle.shutdown_within(PATIENCE))
        .await
        .expect("shutdown in time")
        .expect("shutdown");
    assert_eq!(
        receive(&mut batches, 1, "the batch").await,
        [vec![0, 1, 2, 3, 4, 5]]
    );
    assert_eq!(report.finished, 6);
    assert_eq!(report.cancelled, 0);
    assert_eq!(settled.acks.load(SeqCst), 6);
}

/// At a shutdown's deadline, the batch being handled is cancelled and nacked, and the
/// batch gathered behind it is nacked unhandled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deadline_cancels_the_running_batch_and_nacks_the_next() {
    let settled = Arc::new(Settled::default());
    let (subscription, taken) = subscription(numbered(5), &settled);
    let (started_tx, mut started) = mpsc::unbounded_channel();
    let handler = move |batch: Batch| {
        let _ = started_tx.send(batch.len());
        std::future::pending::<std::result::Result<(), BoxError>>()
    };
    // A long wait to gather: the deadline must not wait it out.
    let options = BatchOptions::new()
        .max_events(2)
        .max_wait(Duration::from_secs(3600));
    let handle = spawn_batches(subscription, Arc::new(handler), options);
    assert_eq!(receive(&mut started, 1, "the first batch").await, [2]);
    assert_eq!(
        taken_by_then(&taken, 4).await,
        4,
        "the next batch is gathered meanwhile"
    );
    let report = tokio::time::timeout(PATIENCE, handle.shutdown_within(Duration::from_millis(50)))
        .await
        .expect("shutdown in time")
        .expect("shutdown");
    // A full gathered batch stops the taking: the fifth event stays in the subscription.
    assert_eq!(report.cancelled, 4, "{report:?}");
    assert_eq!(report.finished, 0);
    assert_eq!(settled.nacks.load(SeqCst), report.cancelled);
    assert_eq!(settled.acks.load(SeqCst), 0);
}
