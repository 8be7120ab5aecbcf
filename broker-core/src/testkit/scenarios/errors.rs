//! Bad input and failing handlers: typed errors, retries, dead letters, nothing lost.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{
    assert_fails, collect, must, numbered, publish, subscribe_with, unique_group, wait_until,
};
use crate::codec::Json;
use crate::handler::HandlerError;
use crate::headers::names;
use crate::middleware::{DeadLetterLayer, RetryLayer};
use crate::testkit::Kit;
use crate::typed::{TypedEvent, TypedPublisher, typed_handler};
use crate::{
    BoxError, BrokerExt, ErrorKind, Event, HandlerExt, HandlerOptions, Message, MessageId,
    SubscribeOptions,
};

/// Calls per message id, shared between a handler and the scenario.
type Calls = Arc<Mutex<HashMap<MessageId, u32>>>;

fn record(calls: &Calls, id: &MessageId) -> u32 {
    let Ok(mut calls) = calls.lock() else {
        panic!("the call log is poisoned")
    };
    let count = calls.entry(id.clone()).or_default();
    *count += 1;
    *count
}

fn calls_of(calls: &Calls, id: &MessageId) -> u32 {
    calls
        .lock()
        .map(|c| c.get(id).copied().unwrap_or(0))
        .unwrap_or(0)
}

/// Malformed topics and patterns are refused with `InvalidSubject`, on publish and on
/// subscribe.
pub async fn invalid_subjects_are_rejected(kit: Kit) {
    let broker = kit.connect().await;
    for topic in [
        "",
        "a..b",
        ".a",
        "a.",
        "a b",
        "a.*",
        "a.>",
        "a\tb",
        "tab.\u{0}",
    ] {
        assert_fails(
            broker.publish(topic, Message::new("x")).await,
            ErrorKind::InvalidSubject,
            format!("invalid subjects: publish to {topic:?}"),
        );
    }
    for pattern in ["", "a..b", "a.>.b", ">.a", "a b", "a.b*", "a.>x"] {
        assert_fails(
            broker.subscribe(pattern, SubscribeOptions::new()).await,
            ErrorKind::InvalidSubject,
            format!("invalid subjects: subscribe to {pattern:?}"),
        );
    }
    must(broker.close().await, "close");
}

/// A handler fails for 3 "poison" messages and succeeds for 5 others. With one in-process
/// retry and a dead-letter topic after 3 attempts, the good ones are handled, and each
/// poison message lands on the dead-letter topic once, with its id, payload and headers
/// kept, plus the error, the attempt count and the original topic. On a backend that
/// cannot redeliver, the dead letter is written after the first attempt.
pub async fn handler_errors_retry_then_dead_letter(kit: Kit) {
    let broker = kit.connect().await;
    let topic = kit.topic("dead_letter");
    let dlq_topic = kit.topic("dead_letter_dlq");
    let dead = collect(&broker, &dlq_topic, SubscribeOptions::new()).await;

    let calls: Calls = Arc::default();
    let log = calls.clone();
    let handler = (move |event: Event| {
        let log = log.clone();
        async move {
            record(&log, event.message().id());
            if event.message().headers().get("poison").is_some() {
                return Err::<(), BoxError>(Box::new(HandlerError("poisoned message".into())));
            }
            Ok(())
        }
    })
    .with(RetryLayer::new(1))
    .with(DeadLetterLayer::new(broker.clone(), dlq_topic.clone()).max_attempts(3));
    let options = HandlerOptions::new().retry_after(Duration::from_millis(50));
    let handle = subscribe_with(&broker, &topic, options, handler).await;

    let mut good = Vec::new();
    let mut poison = Vec::new();
    for seq in 0..8 {
        let message = if seq % 3 == 1 {
            let m = numbered(seq)
                .with_header("poison", "yes")
                .with_key("poison-key");
            poison.push(m.clone());
            m
        } else {
            good.push(numbered(seq));
            good[good.len() - 1].clone()
        };
        publish(&broker, &topic, message).await;
    }
    let letters = dead
        .wait_for(poison.len(), kit.features.timeout, "dead letters")
        .await;
    let all_good = wait_until(kit.features.timeout, || {
        good.iter().all(|m| calls_of(&calls, m.id()) >= 1)
    })
    .await;
    assert!(all_good, "dead letters: not every good message was handled");

    let redelivers = broker.capabilities().redelivery;
    let attempts = if redelivers { 3 } else { 1 };
    for original in &poison {
        let letter = letters
            .iter()
            .find(|r| r.message.id() == original.id())
            .unwrap_or_else(|| panic!("dead letters: {} is missing", original.id()));
        let h = letter.message.headers();
        assert_eq!(
            letter.message.payload(),
            original.payload(),
            "dead letters: payload"
        );
        assert_eq!(letter.message.key(), original.key(), "dead letters: key");
        for (name, value) in original.headers().iter() {
            assert_eq!(
                h.get_value(name),
                Some(value),
                "dead letters: header `{name}` kept"
            );
        }
        let error = h.get(names::DEAD_LETTER_ERROR).unwrap_or_default();
        assert!(
            error.contains("poisoned message"),
            "dead letters: the error header says {error:?}"
        );
        assert_eq!(
            h.get(names::DEAD_LETTER_ATTEMPTS),
            Some(attempts.to_string().as_str()),
            "dead letters: the attempt count"
        );
        assert_eq!(
            h.get(names::DEAD_LETTER_TOPIC),
            Some(topic.as_str()),
            "dead letters: topic"
        );
        assert_eq!(
            calls_of(&calls, original.id()),
            2 * attempts,
            "dead letters: handler calls for {} (1 retry per attempt, {attempts} attempts)",
            original.id()
        );
    }
    must(handle.shutdown().await, "shutdown");
    must(broker.close().await, "close");
}

/// A handler that panics on the first attempt of one message does not take the
/// subscription down: the 10 messages after it are handled, and on a redelivering backend
/// the panicking message comes back and is handled too.
pub async fn handler_panic_is_survived(kit: Kit) {
    let broker = kit.connect().await;
    let topic = kit.topic("panic");
    let calls: Calls = Arc::default();
    let log = calls.clone();
    let handler = move |event: Event| {
        let log = log.clone();
        async move {
            let n = record(&log, event.message().id());
            if event.message().headers().get("explode").is_some() && n == 1 {
                panic!("the handler exploded");
            }
            Ok::<(), BoxError>(())
        }
    };
    let options = HandlerOptions::new().retry_after(Duration::from_millis(20));
    let handle = subscribe_with(&broker, &topic, options, handler).await;
    let bomb = Message::new("boom").with_header("explode", "yes");
    publish(&broker, &topic, bomb.clone()).await;
    let after = super::publish_numbered(&broker, &topic, 0..10).await;

    let survived = wait_until(kit.features.timeout, || {
        after.iter().all(|m| calls_of(&calls, m.id()) >= 1)
    })
    .await;
    assert!(survived, "panic: messages after the panic were not handled");
    if broker.capabilities().redelivery {
        let retried = wait_until(kit.features.timeout, || calls_of(&calls, bomb.id()) >= 2).await;
        assert!(
            retried,
            "panic: the message whose handler panicked was not redelivered"
        );
    }
    assert!(!handle.is_finished(), "panic: the subscriber stopped");
    must(handle.shutdown().await, "shutdown");
    must(broker.close().await, "close");
}

/// An order, as the typed layer of the scenario below sees it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Order {
    id: u64,
    item: String,
}

/// A typed JSON handler gets one well-formed order and one payload that is not JSON: the
/// order is handled, and the bad payload goes to the dead-letter topic with a codec error.
pub async fn undecodable_payload_goes_to_dead_letter(kit: Kit) {
    let broker = kit.connect().await;
    let topic = kit.topic("undecodable");
    let dlq_topic = kit.topic("undecodable_dlq");
    let dead = collect(&broker, &dlq_topic, SubscribeOptions::new()).await;

    let (tx, mut handled) = tokio::sync::mpsc::unbounded_channel();
    let handler = typed_handler(Json, move |event: TypedEvent<Order>| {
        let tx = tx.clone();
        async move {
            let _ = tx.send(event.value);
            Ok::<(), BoxError>(())
        }
    })
    .with(DeadLetterLayer::new(broker.clone(), dlq_topic.clone()).max_attempts(2));
    let handle = subscribe_with(&broker, &topic, HandlerOptions::new(), handler).await;

    let garbage =
        Message::new(&b"\xff{not json"[..]).with_header(names::CONTENT_TYPE, "application/json");
    publish(&broker, &topic, garbage.clone()).await;
    let order = Order {
        id: 7,
        item: "book".into(),
    };
    let publisher = must(
        TypedPublisher::new(broker.clone(), topic.clone(), Json),
        "typed publisher",
    );
    must(publisher.publish(&order).await, "typed publish");

    match tokio::time::timeout(kit.features.timeout, handled.recv()).await {
        Ok(Some(got)) => assert_eq!(got, order, "undecodable: the good order"),
        _ => panic!("undecodable: the good order was not handled"),
    }
    let letters = dead
        .wait_for(1, kit.features.timeout, "undecodable: the dead letter")
        .await;
    let letter = &letters[0].message;
    assert_eq!(
        letter.id(),
        garbage.id(),
        "undecodable: the dead letter's id"
    );
    assert_eq!(
        letter.payload(),
        garbage.payload(),
        "undecodable: the payload is kept as sent"
    );
    let error = letter
        .headers()
        .get(names::DEAD_LETTER_ERROR)
        .unwrap_or_default();
    assert!(
        error.to_lowercase().contains("decode") || error.to_lowercase().contains("json"),
        "undecodable: the dead letter's error says {error:?}"
    );
    assert_eq!(
        letter.headers().get(names::DEAD_LETTER_ATTEMPTS),
        Some("1"),
        "undecodable: dead-lettered at the first delivery, never redelivered"
    );
    must(handle.shutdown().await, "shutdown");
    must(broker.close().await, "close");
}

/// A handler with 4 concurrent workers, each event taking 20 ms, is shut down halfway
/// through 40 messages. Every event whose handler started finished and was settled
/// before `shutdown` returned; where the backend persists a queue group's messages, a
/// new member then handles the rest, so all 40 are handled.
pub async fn graceful_shutdown_loses_nothing(kit: Kit) {
    const N: usize = 40;
    let broker = kit.connect().await;
    let topic = kit.topic("shutdown");
    let persisted = kit.features.persistence && kit.features.queue_groups;
    let options = if persisted {
        SubscribeOptions::new().queue(unique_group("shutdown"))
    } else {
        SubscribeOptions::new()
    };

    let started: Calls = Arc::default();
    let finished: Calls = Arc::default();
    let handler = {
        let (started, finished) = (started.clone(), finished.clone());
        move |event: Event| {
            let (started, finished) = (started.clone(), finished.clone());
            async move {
                record(&started, event.message().id());
                tokio::time::sleep(Duration::from_millis(20)).await;
                record(&finished, event.message().id());
                Ok::<(), BoxError>(())
            }
        }
    };
    let handle = must(
        broker
            .subscribe_with(
                &topic,
                options.clone(),
                HandlerOptions::new().concurrency(4),
                handler.clone(),
            )
            .await,
        "subscribe_with",
    );
    let sent = super::publish_numbered(&broker, &topic, 0..N).await;
    let count = |calls: &Calls| calls.lock().map(|c| c.len()).unwrap_or(0);
    let halfway = wait_until(kit.features.timeout, || count(&finished) >= N / 2).await;
    assert!(
        halfway,
        "shutdown: half the messages were not handled in time"
    );
    must(handle.shutdown().await, "shutdown");

    let (started_now, finished_now) = (count(&started), count(&finished));
    assert_eq!(
        started_now, finished_now,
        "shutdown: {started_now} handlers started but only {finished_now} finished"
    );

    if persisted {
        let next = must(
            broker
                .subscribe_with(
                    &topic,
                    options,
                    HandlerOptions::new().concurrency(4),
                    handler,
                )
                .await,
            "subscribe_with (the next member)",
        );
        let all = wait_until(kit.features.timeout, || {
            sent.iter().all(|m| calls_of(&finished, m.id()) >= 1)
        })
        .await;
        let handled = sent
            .iter()
            .filter(|m| calls_of(&finished, m.id()) >= 1)
            .count();
        assert!(
            all,
            "shutdown: {handled} of {N} messages were handled in the end"
        );
        must(next.shutdown().await, "shutdown");
    }
    must(broker.close().await, "close");
}

/// With the default handler options, poison cannot loop hot:
/// - a message whose handler always fails comes back with a growing backoff: at most 4
///   deliveries in its first 4 s (500 ms, then 1 s, then 2 s between them), where an
///   immediate redelivery makes thousands;
/// - a payload that cannot be decoded (a go-micro JSON envelope where an order is
///   expected) is a permanent failure: delivered once, acked, never again;
/// - with `max_attempts(2)`, a failing message is given up on after its second delivery.
pub async fn poison_messages_never_loop_hot(kit: Kit) {
    const WINDOW: Duration = Duration::from_secs(4);
    let broker = kit.connect().await;
    let redelivers = broker.capabilities().redelivery;
    let calls: Calls = Arc::default();
    let handler = {
        let calls = calls.clone();
        move |event: Event| {
            let calls = calls.clone();
            async move {
                record(&calls, event.message().id());
                if event.message().payload().as_ref() == b"always fails" {
                    return Err(BoxError::from(HandlerError(
                        "this message always fails".into(),
                    )));
                }
                crate::typed::decode_event::<Order, _>(&Json, &event)?;
                Ok(())
            }
        }
    };

    let topic = kit.topic("poison_defaults");
    let defaults = subscribe_with(&broker, &topic, HandlerOptions::new(), handler.clone()).await;
    let started = tokio::time::Instant::now();
    let poison = Message::new("always fails");
    let envelope = Message::new(
        r#"{"Header":{"Micro-From":"gomicro-peer","Micro-Topic":"orders"},"Body":"eyJpZCI6MSwiaXRlbSI6ImJvb2sifQ=="}"#,
    );
    let good = Message::new(r#"{"id":1,"item":"book"}"#);
    for message in [&poison, &envelope, &good] {
        publish(&broker, &topic, message.clone()).await;
    }
    let arrived = wait_until(kit.features.timeout, || {
        [&poison, &envelope, &good]
            .iter()
            .all(|m| calls_of(&calls, m.id()) >= 1)
    })
    .await;
    assert!(arrived, "poison: the three messages were not all handled");
    // The window is what is measured: how often the poison came back within it.
    tokio::time::sleep_until(started + WINDOW).await;
    let poison_calls = calls_of(&calls, poison.id());
    if redelivers {
        assert!(
            (2..=4).contains(&poison_calls),
            "poison: {poison_calls} deliveries of an always-failing message in {WINDOW:?} (default backoff allows 2 to 4)"
        );
    } else {
        assert_eq!(poison_calls, 1, "poison: delivered once without redelivery");
    }
    assert_eq!(
        calls_of(&calls, envelope.id()),
        1,
        "poison: an undecodable payload is never redelivered"
    );
    assert_eq!(
        calls_of(&calls, good.id()),
        1,
        "poison: the good message once"
    );
    must(defaults.shutdown().await, "shutdown");

    if redelivers {
        let topic = kit.topic("poison_bounded");
        let options = HandlerOptions::new()
            .retry_after(Duration::from_millis(50))
            .max_attempts(Some(2));
        let bounded = subscribe_with(&broker, &topic, options, handler).await;
        let poison = Message::new("always fails");
        publish(&broker, &topic, poison.clone()).await;
        let twice = wait_until(kit.features.timeout, || calls_of(&calls, poison.id()) >= 2).await;
        assert!(twice, "poison: the bounded message was not delivered twice");
        // Given up on (acked) after the second delivery: it does not come back.
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(
            calls_of(&calls, poison.id()),
            2,
            "poison: delivered again after max_attempts"
        );
        must(bounded.shutdown().await, "shutdown");
    }
    must(broker.close().await, "close");
}
