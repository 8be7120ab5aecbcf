use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::{self, BoxStream};
use tokio::sync::{Barrier, Notify, mpsc};

use super::dispatch::MAX_WAITING_PER_KEY;
use super::*;
use crate::delivery::{Acknowledger, settled};
use crate::{BoxError, Delivery, Event, Message, SubscribeOptions};

/// Batch handlers.
mod batches;
/// Shutting down within a deadline.
mod shutdown;

/// Long enough for anything to happen on a busy machine; only a failing test waits it out.
const PATIENCE: Duration = Duration::from_secs(10);

/// Counts the acks and nacks of the deliveries it settles.
#[derive(Default)]
struct Settled {
    acks: AtomicUsize,
    nacks: AtomicUsize,
}

struct Acker(Arc<Settled>);

impl Acknowledger for Acker {
    fn ack(self: Box<Self>) -> BoxFuture<'static, Result<()>> {
        self.0.acks.fetch_add(1, SeqCst);
        settled()
    }

    fn nack(self: Box<Self>, _: Redelivery) -> BoxFuture<'static, Result<()>> {
        self.0.nacks.fetch_add(1, SeqCst);
        settled()
    }
}

/// Message `seq` (its payload), with `key` when given.
fn message(seq: usize, key: Option<String>) -> Message {
    let message = Message::new(seq.to_string());
    match key {
        Some(key) => message.with_key(key),
        None => message,
    }
}

fn seq_of(event: &Event) -> usize {
    String::from_utf8_lossy(event.message().payload())
        .parse()
        .unwrap_or(usize::MAX)
}

/// A subscription handing out `messages` then waiting forever (as a live one does), and
/// the count of deliveries taken from it.
fn subscription(
    messages: Vec<Message>,
    settled: &Arc<Settled>,
) -> (Subscription, Arc<AtomicUsize>) {
    let taken = Arc::new(AtomicUsize::new(0));
    let counter = taken.clone();
    let settled = settled.clone();
    let deliveries: BoxStream<'static, Result<Delivery>> = stream::iter(messages)
        .map(move |m| {
            counter.fetch_add(1, SeqCst);
            Ok(Delivery::new(m, "t", Box::new(Acker(settled.clone()))))
        })
        .chain(stream::pending())
        .boxed();
    let options = SubscribeOptions::new().max_in_flight(10_000);
    (Subscription::new("t", &options, deliveries), taken)
}

/// How many handlers run at once, and the most that ever did.
#[derive(Default)]
struct Overlap {
    now: AtomicUsize,
    most: AtomicUsize,
}

impl Overlap {
    fn enter(&self) {
        let now = self.now.fetch_add(1, SeqCst) + 1;
        self.most.fetch_max(now, SeqCst);
    }

    fn leave(&self) {
        self.now.fetch_sub(1, SeqCst);
    }
}

/// What a [`holding_first`] handler reports: the seq of each event as its handler begins
/// and as it ends, and how many ran at once.
struct Holding {
    /// Lets message 0's handler finish.
    release: Arc<Notify>,
    overlap: Arc<Overlap>,
    started: mpsc::UnboundedReceiver<usize>,
    done: mpsc::UnboundedReceiver<usize>,
}

/// A handler that holds message 0 until [`Holding::release`] is notified and lets every
/// other message through.
fn holding_first() -> (impl Handler, Holding) {
    let release = Arc::new(Notify::new());
    let overlap = Arc::new(Overlap::default());
    let (started_tx, started) = mpsc::unbounded_channel();
    let (done_tx, done) = mpsc::unbounded_channel();
    let handler = {
        let (release, overlap) = (release.clone(), overlap.clone());
        move |event: Event| {
            let (release, overlap) = (release.clone(), overlap.clone());
            let (started_tx, done_tx) = (started_tx.clone(), done_tx.clone());
            async move {
                let seq = seq_of(&event);
                overlap.enter();
                let _ = started_tx.send(seq);
                if seq == 0 {
                    release.notified().await;
                }
                overlap.leave();
                let _ = done_tx.send(seq);
                Ok::<_, BoxError>(())
            }
        }
    };
    let holding = Holding {
        release,
        overlap,
        started,
        done,
    };
    (handler, holding)
}

/// Receives `n` items from `done`, failing after [`PATIENCE`].
async fn receive<T>(done: &mut mpsc::UnboundedReceiver<T>, n: usize, what: &str) -> Vec<T> {
    let mut items = Vec::with_capacity(n);
    while items.len() < n {
        match tokio::time::timeout(PATIENCE, done.recv()).await {
            Ok(Some(item)) => items.push(item),
            _ => panic!("{what}: {} of {n} arrived", items.len()),
        }
    }
    items
}

/// Yields until `taken` reaches `n` or [`PATIENCE`] passes; returns how many were taken.
async fn taken_by_then(taken: &AtomicUsize, n: usize) -> usize {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while taken.load(SeqCst) < n && tokio::time::Instant::now() < deadline {
        tokio::task::yield_now().await;
    }
    taken.load(SeqCst)
}

/// Runs `handler` on `subscription`, at most `concurrency` events at once.
fn start(
    subscription: Subscription,
    handler: impl Handler,
    concurrency: usize,
) -> SubscriberHandle {
    spawn(
        subscription,
        Arc::new(handler),
        HandlerOptions::new().concurrency(concurrency),
    )
}

/// Begins `shutdown`, then calls `release` (so that what the handlers wait for happens
/// after the shutdown has begun), and returns what the shutdown returns, failing after
/// [`PATIENCE`].
async fn shut_down_then_release<T: Send + 'static>(
    shutdown: impl Future<Output = Result<T>> + Send + 'static,
    release: impl FnOnce(),
) -> T {
    let shutdown = tokio::spawn(shutdown);
    release();
    tokio::time::timeout(PATIENCE, shutdown)
        .await
        .expect("shutdown in time")
        .expect("the shutdown task")
        .expect("shutdown")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_handler_leaves_the_other_slots_working() {
    const OTHERS: usize = 200;
    let settled = Arc::new(Settled::default());
    let (subscription, _) =
        subscription((0..=OTHERS).map(|i| message(i, None)).collect(), &settled);
    let (handler, mut holding) = holding_first();
    let handle = start(subscription, handler, 4);

    let handled = receive(&mut holding.done, OTHERS, "while one handler is blocked").await;
    assert!(!handled.contains(&0), "the blocked handler finished early");
    assert!(
        holding.overlap.most.load(SeqCst) <= 4,
        "more than 4 handlers ran at once"
    );

    holding.release.notify_one();
    assert_eq!(
        receive(&mut holding.done, 1, "the released handler").await,
        [0]
    );
    tokio::time::timeout(PATIENCE, handle.shutdown())
        .await
        .expect("shutdown in time")
        .expect("shutdown");
    assert_eq!(settled.acks.load(SeqCst), OTHERS + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_key_keeps_its_order_while_keys_overlap() {
    const KEYS: usize = 64;
    const N: usize = 640;
    let settled = Arc::new(Settled::default());
    let messages = (0..N)
        .map(|i| message(i, Some(format!("k{}", i % KEYS))))
        .collect();
    let (subscription, _) = subscription(messages, &settled);
    let active = Arc::new(Mutex::new(HashSet::new()));
    let both = Arc::new(Barrier::new(2));
    let overlap = Arc::new(Overlap::default());
    let (done_tx, mut done) = mpsc::unbounded_channel();
    let handler = {
        let (active, both, overlap) = (active.clone(), both.clone(), overlap.clone());
        move |event: Event| {
            let (active, both, overlap) = (active.clone(), both.clone(), overlap.clone());
            let done_tx = done_tx.clone();
            async move {
                let seq = seq_of(&event);
                let key = seq % KEYS;
                let alone = active.lock().map(|mut a| a.insert(key)).unwrap_or(false);
                overlap.enter();
                // The first two keys meet: they can only if they run at the same time.
                let met = seq >= 2 || tokio::time::timeout(PATIENCE, both.wait()).await.is_ok();
                tokio::task::yield_now().await;
                overlap.leave();
                if let Ok(mut a) = active.lock() {
                    a.remove(&key);
                }
                let _ = done_tx.send((seq, alone, met));
                Ok::<_, BoxError>(())
            }
        }
    };
    let handle = start(subscription, handler, 8);

    let handled = receive(&mut done, N, "keyed messages").await;
    let mut order: HashMap<usize, Vec<usize>> = HashMap::new();
    for (seq, alone, met) in handled {
        assert!(
            alone,
            "message {seq} ran while another of its key was running"
        );
        assert!(met, "the first two keys never ran at the same time");
        order.entry(seq % KEYS).or_default().push(seq);
    }
    for (key, seqs) in order {
        let expected: Vec<usize> = (0..N / KEYS).map(|i| i * KEYS + key).collect();
        assert_eq!(seqs, expected, "key {key} out of order");
    }
    let most = overlap.most.load(SeqCst);
    assert!((2..=8).contains(&most), "{most} handlers at once");
    handle.shutdown().await.expect("shutdown");
    assert_eq!(settled.acks.load(SeqCst), N);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_one_keeps_arrival_order() {
    const N: usize = 100;
    let settled = Arc::new(Settled::default());
    let messages = (0..N)
        .map(|i| message(i, (i % 3 == 0).then(|| format!("k{}", i % 5))))
        .collect();
    let (subscription, _) = subscription(messages, &settled);
    let (done_tx, mut done) = mpsc::unbounded_channel();
    let handler = move |event: Event| {
        let _ = done_tx.send(seq_of(&event));
        async { Ok::<_, BoxError>(()) }
    };
    let handle = start(subscription, handler, 1);
    let handled = receive(&mut done, N, "in order").await;
    assert_eq!(handled, (0..N).collect::<Vec<_>>());
    handle.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_handles_what_waits_for_its_key() {
    const N: usize = 10;
    let settled = Arc::new(Settled::default());
    let messages = (0..N).map(|i| message(i, Some("a".into()))).collect();
    let (subscription, taken) = subscription(messages, &settled);
    let (handler, mut holding) = holding_first();
    let handle = start(subscription, handler, 2);
    receive(&mut holding.started, 1, "the first handler").await;
    // All taken: the first runs, the other nine wait for it (their key's handler).
    assert_eq!(taken_by_then(&taken, N).await, N, "every delivery taken");

    shut_down_then_release(handle.shutdown(), || holding.release.notify_one()).await;
    assert_eq!(
        settled.acks.load(SeqCst),
        N,
        "every delivery taken is handled"
    );
    let handled: Vec<usize> = std::iter::from_fn(|| holding.done.try_recv().ok()).collect();
    assert_eq!(handled, (0..N).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_busy_key_holds_a_bounded_queue() {
    const N: usize = 100;
    let settled = Arc::new(Settled::default());
    let messages = (0..N).map(|i| message(i, Some("hot".into()))).collect();
    let (subscription, taken) = subscription(messages, &settled);
    let (handler, mut holding) = holding_first();
    let handle = start(subscription, handler, 4);
    let bound = 1 + MAX_WAITING_PER_KEY;
    taken_by_then(&taken, bound).await;
    // Nothing more is taken while the key's queue is full.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        taken.load(SeqCst),
        bound,
        "taken while the key's queue is full"
    );

    holding.release.notify_one();
    let handled = receive(&mut holding.done, N, "once released").await;
    assert_eq!(handled, (0..N).collect::<Vec<_>>());
    handle.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_is_nacked_and_its_key_moves_on() {
    let settled = Arc::new(Settled::default());
    let messages = (0..3).map(|i| message(i, Some("a".into()))).collect();
    let (subscription, _) = subscription(messages, &settled);
    let (done_tx, mut done) = mpsc::unbounded_channel();
    let handler = move |event: Event| {
        let done_tx = done_tx.clone();
        async move {
            let seq = seq_of(&event);
            let _ = done_tx.send(seq);
            assert_ne!(seq, 0, "the handler panics on message 0");
            Ok::<_, BoxError>(())
        }
    };
    let handle = start(subscription, handler, 4);
    assert_eq!(receive(&mut done, 3, "after a panic").await, [0, 1, 2]);
    handle.shutdown().await.expect("shutdown");
    assert_eq!(settled.acks.load(SeqCst), 2);
    assert_eq!(settled.nacks.load(SeqCst), 1);
}
