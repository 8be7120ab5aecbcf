use std::sync::Mutex;

use super::*;

#[test]
fn settled_is_ok_and_allocates_nothing() {
    let done = settled();
    // The boxed future is zero-sized: `Box::pin` did not allocate.
    assert_eq!(std::mem::size_of_val(&*done), 0);
    assert!(futures::executor::block_on(done).is_ok());
}

/// Records what each nack hands back.
#[derive(Default)]
struct Recorded(Mutex<Vec<(String, String, u32, Redelivery)>>);

impl Requeue for Recorded {
    fn requeue(&self, nacked: Nacked, redelivery: Redelivery) -> BoxFuture<'static, Result<()>> {
        let payload = String::from_utf8_lossy(nacked.message.payload()).into_owned();
        if let Ok(mut seen) = self.0.lock() {
            seen.push((
                payload,
                nacked.topic.to_string(),
                nacked.attempt,
                redelivery,
            ));
        }
        Box::pin(futures::future::ready(Ok(())))
    }
}

fn seen(recorded: &Recorded) -> Vec<(String, String, u32, Redelivery)> {
    recorded.0.lock().map(|s| s.clone()).unwrap_or_default()
}

fn delivery(recorded: &Arc<Recorded>, mode: AckMode) -> Delivery {
    let mut delivery = Delivery::requeued(Message::new("m"), "t.x", 2, recorded.clone() as Arc<_>);
    delivery.attach(mode, None);
    delivery
}

/// Counts acks and nacks; an ack waits for `gate` when there is one.
struct Counting {
    acks: Arc<std::sync::atomic::AtomicUsize>,
    nacks: Arc<std::sync::atomic::AtomicUsize>,
    gate: Option<tokio::sync::oneshot::Receiver<()>>,
}

impl Acknowledger for Counting {
    fn ack(self: Box<Self>) -> BoxFuture<'static, Result<()>> {
        let Counting { acks, gate, .. } = *self;
        Box::pin(async move {
            if let Some(gate) = gate {
                let _ = gate.await;
            }
            acks.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(())
        })
    }

    fn nack(self: Box<Self>, _: Redelivery) -> BoxFuture<'static, Result<()>> {
        self.nacks.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        settled()
    }
}

type Counters = (
    Arc<std::sync::atomic::AtomicUsize>,
    Arc<std::sync::atomic::AtomicUsize>,
);

fn counted(counters: &Counters, gate: Option<tokio::sync::oneshot::Receiver<()>>) -> Delivery {
    let acker = Counting {
        acks: counters.0.clone(),
        nacks: counters.1.clone(),
        gate,
    };
    let mut delivery = Delivery::new(Message::new("m"), "t.x", Box::new(acker));
    delivery.attach(AckMode::Manual, None);
    delivery
}

fn counts(counters: &Counters) -> (usize, usize) {
    use std::sync::atomic::Ordering::SeqCst;
    (counters.0.load(SeqCst), counters.1.load(SeqCst))
}

#[tokio::test]
async fn an_ack_is_sent_when_awaited_or_when_dropped_unawaited() {
    let counters = Counters::default();
    counted(&counters, None).ack().await.expect("ack");
    assert_eq!(counts(&counters), (1, 0), "an awaited ack");
    drop(counted(&counters, None).ack());
    assert_eq!(
        counts(&counters),
        (2, 0),
        "an ack dropped before it was polled"
    );
    drop(counted(&counters, None));
    assert_eq!(
        counts(&counters),
        (2, 1),
        "a manual-ack delivery dropped unsettled is nacked"
    );
}

#[tokio::test]
async fn the_in_flight_permit_comes_back_when_the_ack_completes() {
    use futures::StreamExt;

    let counters = Counters::default();
    let (open, gate) = tokio::sync::oneshot::channel();
    let deliveries = futures::stream::iter([
        Ok(counted(&counters, Some(gate))),
        Ok(counted(&counters, None)),
    ]);
    let options = crate::SubscribeOptions::new().max_in_flight(1);
    let mut subscription = crate::Subscription::new("t.x", &options, deliveries);

    let first = subscription.next().await.expect("a first delivery");
    let mut ack = first.expect("no error").ack();
    assert!(
        futures::poll!(&mut ack).is_pending(),
        "the ack waits for its gate"
    );
    assert!(
        futures::poll!(subscription.next()).is_pending(),
        "the second delivery waits while the first ack is under way"
    );
    open.send(()).expect("the ack is waiting");
    ack.await.expect("ack");
    let second = tokio::time::timeout(Duration::from_secs(5), subscription.next())
        .await
        .expect("the second delivery once the first ack completed");
    assert!(matches!(second, Some(Ok(_))));
    assert_eq!(counts(&counters), (1, 0));
}

#[tokio::test]
async fn a_requeued_delivery_hands_its_message_back_on_nack_only() {
    let recorded = Arc::new(Recorded::default());
    delivery(&recorded, AckMode::Manual)
        .ack()
        .await
        .expect("ack");
    drop(delivery(&recorded, AckMode::Auto));
    assert!(seen(&recorded).is_empty(), "acks hand nothing back");

    let delay = Duration::from_millis(5);
    delivery(&recorded, AckMode::Manual)
        .nack_after(delay)
        .await
        .expect("nack");
    drop(delivery(&recorded, AckMode::Manual));
    let (message, _info, settle) = delivery(&recorded, AckMode::Manual).into_parts();
    assert_eq!(
        message.payload().as_ref(),
        b"m",
        "the handler gets the message"
    );
    settle.nack(Redelivery::Now).await.expect("nack");
    drop(delivery(&recorded, AckMode::Manual).into_parts());

    let expected = |redelivery| ("m".to_owned(), "t.x".to_owned(), 2, redelivery);
    assert_eq!(
        seen(&recorded),
        vec![
            expected(Redelivery::After(delay)),
            expected(Redelivery::Now),
            expected(Redelivery::Now),
            expected(Redelivery::Now),
        ],
        "a nack, a manual drop, a settle nack and a settle drop each hand the message back"
    );
}
