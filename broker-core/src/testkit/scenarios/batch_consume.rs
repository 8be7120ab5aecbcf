//! Batch consume: events gathered into bounded batches, each event settled on its own.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{collect, must, numbered, seq_of, wait_until};
use crate::batch::{Batch, BatchOptions, EventFailures};
use crate::headers::names;
use crate::middleware::DeadLetterLayer;
use crate::options::Backoff;
use crate::testkit::Kit;
use crate::{BrokerExt, Message, SubscribeOptions};

/// Messages published.
const N: usize = 120;
/// The most events in a batch.
const MAX_EVENTS: usize = 50;
/// Fails on its first attempt only.
const FAILS_ONCE: usize = 7;
/// Fails on every attempt: goes to the dead-letter topic.
const POISON: usize = 11;

/// Each batch the handler got: the `(seq, attempt)` of its events.
type Batches = Arc<Mutex<Vec<Vec<(usize, u32)>>>>;

/// 120 messages published in one batch reach a batch handler (at most 50 events a batch,
/// 200 ms to gather) in batches of more than one event; every message is handled. The
/// handler fails message 7 on its first attempt and message 11 on every attempt, by
/// index: on backends that redeliver, 7 comes back as attempt 2
/// and 11 goes to the dead-letter topic after the dead-letter layer's 2 attempts; on the
/// others, 11 and 7 go there at once. The dead letter is the message as it arrived.
pub async fn batches_gather_and_settle_together(kit: Kit) {
    let broker = kit.connect().await;
    let topic = kit.topic("batches");
    let dlq_topic = kit.topic("batches_dlq");
    let dead = collect(&broker, &dlq_topic, SubscribeOptions::new()).await;

    let batches: Batches = Arc::default();
    let handler = {
        let batches = batches.clone();
        move |batch: Batch| {
            let got: Vec<(usize, u32)> = batch
                .iter()
                .map(|event| (seq_of(event.message()), event.attempt()))
                .collect();
            let mut failures: Option<EventFailures> = None;
            for (index, &(seq, attempt)) in got.iter().enumerate() {
                if seq == POISON || (seq == FAILS_ONCE && attempt == 1) {
                    let error = format!("message {seq} fails");
                    failures = Some(match failures {
                        None => EventFailures::event(index, error),
                        Some(failures) => failures.and(index, error),
                    });
                }
            }
            if let Ok(mut batches) = batches.lock() {
                batches.push(got);
            }
            async move { failures.map_or(Ok(()), Err) }
        }
    };
    let options = BatchOptions::new()
        .max_events(MAX_EVENTS)
        .max_wait(Duration::from_millis(200))
        .backoff(Backoff::fixed(Duration::from_millis(50)))
        .dead_letter(DeadLetterLayer::new(broker.clone(), dlq_topic.clone()).max_attempts(2));
    let handle = must(
        broker
            .subscribe_batches(&topic, SubscribeOptions::new(), options, handler)
            .await,
        "subscribe_batches",
    );

    let sent: Vec<Message> = (0..N).map(numbered).collect();
    let poison = sent[POISON].clone();
    if let Err(err) = broker.publish_batch(&topic, sent).await {
        panic!("batch consume: publish_batch failed: {err}");
    }
    let redelivers = broker.capabilities().redelivery;
    let handled = |batches: &Batches| -> HashMap<usize, Vec<u32>> {
        let mut handled: HashMap<usize, Vec<u32>> = HashMap::new();
        if let Ok(batches) = batches.lock() {
            for &(seq, attempt) in batches.iter().flatten() {
                handled.entry(seq).or_default().push(attempt);
            }
        }
        handled
    };
    let everything = wait_until(kit.features.timeout, || {
        let handled = handled(&batches);
        let again = handled.get(&FAILS_ONCE).map_or(0, Vec::len) >= 2;
        handled.len() == N && (again || !redelivers)
    })
    .await;
    // Without redelivery, the message failing once has no second attempt: it is a dead
    // letter too.
    let expected_letters = if redelivers { 1 } else { 2 };
    let letters = dead
        .wait_for(expected_letters, kit.features.timeout, "dead letters")
        .await;
    must(handle.shutdown().await, "shutdown");

    let handled = handled(&batches);
    assert!(
        everything,
        "batch consume: {} of {N} messages handled (message {FAILS_ONCE} {} times)",
        handled.len(),
        handled.get(&FAILS_ONCE).map_or(0, Vec::len),
    );
    let sizes: Vec<usize> = batches
        .lock()
        .map(|b| b.iter().map(Vec::len).collect())
        .unwrap_or_default();
    assert!(
        sizes.iter().all(|&size| (1..=MAX_EVENTS).contains(&size)),
        "batch consume: a batch outside 1..={MAX_EVENTS} events: {sizes:?}"
    );
    assert!(
        sizes.iter().any(|&size| size > 1),
        "batch consume: every batch held one event: {sizes:?}"
    );
    if redelivers {
        let attempts = &handled[&FAILS_ONCE];
        assert!(
            attempts.starts_with(&[1, 2]),
            "batch consume: message {FAILS_ONCE} was handled at attempts {attempts:?}"
        );
    }

    let letter = letters
        .iter()
        .map(|received| &received.message)
        .find(|letter| letter.id() == poison.id())
        .unwrap_or_else(|| panic!("batch consume: message {POISON} is not a dead letter"));
    assert_eq!(
        letter.payload(),
        poison.payload(),
        "batch consume: dead letter payload"
    );
    let attempts = letter.headers().get(names::DEAD_LETTER_ATTEMPTS);
    if redelivers {
        assert_eq!(
            attempts,
            Some("2"),
            "batch consume: dead-lettered at attempt 2"
        );
    }
    let error = letter
        .headers()
        .get(names::DEAD_LETTER_ERROR)
        .unwrap_or_default();
    assert!(
        error.contains("message 11 fails"),
        "batch consume: the dead letter's error is {error:?}"
    );
    must(broker.close().await, "close");
}
