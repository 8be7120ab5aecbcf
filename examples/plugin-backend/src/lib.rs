//! An example backend plugin, written as an author outside this workspace would write
//! one: `loopback://NAME` is an in-process bus shared by every handle connected with the
//! same name. It delivers at most once (nothing is kept for a subscriber that is not
//! there), keeps each publisher's order, and has no queue groups and no redelivery; it
//! passes the conformance kit for what it claims (`tests/conformance.rs`).
//!
//! The steps, each a few lines below: implement [`Broker`] with
//! [`async_trait`](macro@async_trait), declare [`Capabilities`], turn each message into a [`Delivery`]
//! settled by an [`Acknowledger`], wrap the stream in [`Subscription::new`], and register
//! the scheme with [`broker_core::register_backend!`].
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use broker_core::backend::{
    self, Acknowledger, Capabilities, OrderingGuarantee, async_trait, settled,
};
use broker_core::delivery::Redelivery;
use broker_core::subject::{Pattern, validate_topic};
use broker_core::{
    Broker, Delivery, Error, ErrorKind, Message, Result, SubscribeOptions, Subscription,
};
use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::sync::mpsc;

/// The URL scheme this crate registers.
pub const SCHEME: &str = "loopback";

broker_core::register_backend!(SCHEME, |url| connect(url).boxed());

/// Keeps this crate linked, and so its scheme registered, in a binary that names nothing
/// else of it (as a Go service imports a broker plugin with `_`).
pub fn link() {}

/// Messages a subscriber may have waiting before a publish to it waits.
const BUFFER: usize = 1024;

/// One subscription's inbox on the bus.
struct Inbox {
    pattern: Pattern,
    tx: mpsc::Sender<(Arc<str>, Message)>,
}

/// The bus that handles with one name share.
#[derive(Default)]
struct Bus {
    inboxes: Mutex<HashMap<u64, Inbox>>,
    next_id: AtomicU64,
}

/// The buses by name; a bus lives while a handle holds it.
fn bus(name: &str) -> Arc<Bus> {
    static BUSES: OnceLock<Mutex<HashMap<String, Weak<Bus>>>> = OnceLock::new();
    let mut buses = BUSES
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(bus) = buses.get(name).and_then(Weak::upgrade) {
        return bus;
    }
    let bus = Arc::new(Bus::default());
    buses.insert(name.to_owned(), Arc::downgrade(&bus));
    bus
}

async fn connect(url: url::Url) -> Result<Arc<dyn Broker>> {
    if url.query().is_some() {
        return Err(Error::new(
            ErrorKind::InvalidUrl,
            "loopback:// takes no options",
        ));
    }
    let name = format!("{}{}", url.host_str().unwrap_or_default(), url.path());
    Ok(Arc::new(LoopbackBroker {
        bus: bus(&name),
        mine: Mutex::default(),
        closed: AtomicBool::new(false),
    }))
}

/// A handle on a loopback bus.
pub struct LoopbackBroker {
    bus: Arc<Bus>,
    /// The inboxes this handle opened, removed from the bus at `close`.
    mine: Mutex<Vec<u64>>,
    closed: AtomicBool,
}

impl std::fmt::Debug for LoopbackBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoopbackBroker").finish_non_exhaustive()
    }
}

impl LoopbackBroker {
    fn check_open(&self) -> Result<()> {
        backend::check_open(&self.closed, "the loopback broker")
    }
}

#[async_trait]
impl Broker for LoopbackBroker {
    async fn publish(&self, topic: &str, message: Message) -> Result<()> {
        self.check_open()?;
        validate_topic(topic)?;
        let topic: Arc<str> = Arc::from(topic);
        let targets: Vec<_> = {
            let inboxes = self.bus.inboxes.lock().unwrap_or_else(|e| e.into_inner());
            inboxes
                .values()
                .filter(|i| i.pattern.matches(&topic))
                .map(|i| i.tx.clone())
                .collect()
        };
        for tx in targets {
            // A subscriber that is gone misses the message: at most once.
            let _ = tx.send((topic.clone(), message.clone())).await;
        }
        Ok(())
    }

    async fn subscribe(&self, pattern: &str, options: SubscribeOptions) -> Result<Subscription> {
        self.check_open()?;
        if options.queue.is_some() {
            return Err(Error::new(
                ErrorKind::Unsupported,
                "loopback:// has no queue groups",
            ));
        }
        let parsed = Pattern::parse(pattern)?;
        let (tx, rx) = mpsc::channel(BUFFER);
        let id = self.bus.next_id.fetch_add(1, Ordering::Relaxed);
        self.bus
            .inboxes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                id,
                Inbox {
                    pattern: parsed,
                    tx,
                },
            );
        self.mine.lock().unwrap_or_else(|e| e.into_inner()).push(id);
        let leave = Leave {
            bus: Arc::downgrade(&self.bus),
            id,
        };
        let deliveries = futures::stream::unfold((rx, leave), |(mut rx, leave)| async move {
            let (topic, message) = rx.recv().await?;
            let delivery = Delivery::new(message, topic, Box::new(Forget)).with_attempt(1);
            Some((Ok(delivery), (rx, leave)))
        });
        Ok(Subscription::new(pattern, &options, deliveries))
    }

    async fn close(&self) -> Result<()> {
        self.closed.store(true, Ordering::Release);
        let mine = std::mem::take(&mut *self.mine.lock().unwrap_or_else(|e| e.into_inner()));
        let mut inboxes = self.bus.inboxes.lock().unwrap_or_else(|e| e.into_inner());
        for id in mine {
            // Dropping the sender ends that subscription's stream.
            inboxes.remove(&id);
        }
        Ok(())
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::new(SCHEME).ordering(OrderingGuarantee::PerPublisher)
    }
}

/// Takes a subscription's inbox off the bus when its stream is dropped.
struct Leave {
    bus: Weak<Bus>,
    id: u64,
}

impl Drop for Leave {
    fn drop(&mut self) {
        if let Some(bus) = self.bus.upgrade() {
            bus.inboxes
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&self.id);
        }
    }
}

/// At most once: a delivery has nothing to settle.
struct Forget;

impl Acknowledger for Forget {
    fn ack(self: Box<Self>) -> BoxFuture<'static, Result<()>> {
        settled()
    }

    fn nack(self: Box<Self>, _: Redelivery) -> BoxFuture<'static, Result<()>> {
        settled()
    }

    fn ack_is_noop(&self) -> bool {
        true
    }
}
