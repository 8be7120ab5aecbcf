//! Request/reply over publish and subscribe.

use std::time::{Duration, Instant};

use super::{must, unique_group};
use crate::headers::names;
use crate::testkit::Kit;
use crate::{
    BoxError, BrokerExt, ErrorKind, Event, HandlerOptions, Message, Requester, SubscribeOptions,
};

/// A responder answers three requests; each reply carries the answer and names the
/// request it answers. A second requester's requests, sent at the same time, get their
/// own replies (requesters may share one inbox topic).
pub async fn request_gets_a_reply(kit: Kit) {
    let broker = kit.connect().await;
    let topic = kit.topic("request");
    let responder = broker.clone();
    let mut options = SubscribeOptions::new();
    if kit.features.queue_groups {
        options = options.queue(unique_group("responders"));
    }
    let handle = must(
        broker
            .subscribe_with(
                &topic,
                options,
                HandlerOptions::new(),
                move |event: Event| {
                    let responder = responder.clone();
                    async move {
                        let text =
                            String::from_utf8_lossy(event.message().payload()).to_uppercase();
                        responder.reply(event.message(), Message::new(text)).await?;
                        Ok::<(), BoxError>(())
                    }
                },
            )
            .await,
        "subscribe the responder",
    );
    let requester = must(Requester::new(broker.clone()).await, "requester");
    let other = must(Requester::new(broker.clone()).await, "second requester");
    let others = {
        let topic = topic.clone();
        let timeout = kit.features.timeout;
        tokio::spawn(async move {
            let mut replies = Vec::new();
            for word in ["other-1", "other-2", "other-3"] {
                let reply = other.request(&topic, Message::new(word), timeout).await;
                replies.push((word, reply.map(|r| r.payload().clone())));
            }
            replies
        })
    };
    for word in ["ping", "list", "submit"] {
        let request = Message::new(word);
        let id = request.id().clone();
        let reply = must(
            requester
                .request(&topic, request, kit.features.timeout)
                .await,
            format!("request `{word}`"),
        );
        assert_eq!(
            reply.payload().as_ref(),
            word.to_uppercase().as_bytes(),
            "request: the reply"
        );
        assert_eq!(
            reply.headers().get(names::IN_REPLY_TO),
            Some(id.as_str()),
            "request: the reply names its request"
        );
    }
    let others = match others.await {
        Ok(replies) => replies,
        Err(err) => panic!("request: the second requester's task failed: {err}"),
    };
    for (word, reply) in others {
        let reply = must(reply, format!("second requester: `{word}`"));
        assert_eq!(
            reply.as_ref(),
            word.to_uppercase().as_bytes(),
            "request: the second requester's reply"
        );
    }
    drop(requester);
    must(handle.shutdown().await, "shutdown");
    must(broker.close().await, "close");
}

/// A request nobody answers fails, within a little more than its timeout, with `Timeout`
/// (or `NoResponders`, where the broker knows at once).
pub async fn request_without_responder_times_out(kit: Kit) {
    let broker = kit.connect().await;
    let topic = kit.topic("no_responder");
    let requester = must(Requester::new(broker.clone()).await, "requester");
    let timeout = Duration::from_millis(500);
    let started = Instant::now();
    match requester
        .request(&topic, Message::new("anyone?"), timeout)
        .await
    {
        Ok(reply) => panic!("no responder: a reply arrived: {reply:?}"),
        Err(err) => {
            assert!(
                matches!(err.kind(), ErrorKind::Timeout | ErrorKind::NoResponders),
                "no responder: expected a timeout, got {err}"
            );
            if err.kind() == ErrorKind::Timeout {
                assert!(
                    started.elapsed() >= timeout,
                    "no responder: timed out early"
                );
            }
        }
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed < timeout + kit.features.timeout,
        "no responder: the request took {elapsed:?}"
    );
    drop(requester);
    must(broker.close().await, "close");
}
