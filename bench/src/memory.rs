//! The in-memory backend against plain tokio channels.
//!
//! Raw side: one subscriber is a bounded `tokio::sync::mpsc` channel with the framework's
//! buffer size; a queue group is one such channel per member, filled in turn; fan-out
//! is a `tokio::sync::broadcast` channel large enough to hold a whole run (broadcast never
//! waits for slow receivers; a receiver that lags fails the run).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use anyhow::{Context as _, anyhow, bail};
use broker::memory::{MemoryBroker, MemoryOptions};
use bytes::Bytes;
use tokio::sync::{broadcast, mpsc};

use crate::framework::Framework;
use crate::side::{MsgSpec, Side, Sub, Subscribers};

/// A message on the raw channels: the same shared headers and payload the framework's
/// `Message` carries.
#[derive(Debug, Clone)]
pub(crate) struct RawMsg {
    headers: Option<Arc<Vec<(String, String)>>>,
    payload: Bytes,
}

#[derive(Clone)]
enum Route {
    One(mpsc::Sender<RawMsg>),
    Group(Vec<mpsc::Sender<RawMsg>>),
    Fan(broadcast::Sender<RawMsg>),
}

/// Plain tokio channels, wired per topic by `subscribe`.
pub(crate) struct RawMemory {
    routes: Mutex<HashMap<String, Route>>,
    buffer: usize,
    fan_capacity: usize,
}

impl RawMemory {
    /// Channels of `buffer` messages (the framework's per-subscriber buffer); broadcast
    /// channels of `fan_capacity`.
    pub(crate) fn new(buffer: usize, fan_capacity: usize) -> Self {
        RawMemory {
            routes: Mutex::new(HashMap::new()),
            buffer,
            fan_capacity: fan_capacity.max(16),
        }
    }

    fn route(&self, topic: &str) -> anyhow::Result<Option<Route>> {
        let routes = self
            .routes
            .lock()
            .map_err(|_| anyhow!("raw memory routes poisoned"))?;
        Ok(routes.get(topic).cloned())
    }
}

fn raw_msg(spec: &MsgSpec) -> RawMsg {
    RawMsg {
        headers: spec.has_headers().then(|| spec.headers.clone()),
        payload: spec.payload.clone(),
    }
}

impl Side for RawMemory {
    type Sub = RawMemorySub;

    async fn publish_many(&self, topic: &str, n: u64, spec: &MsgSpec) -> anyhow::Result<()> {
        let closed = || anyhow!("raw channel for `{topic}` closed");
        match self.route(topic)? {
            None => {}
            Some(Route::One(tx)) => {
                for _ in 0..n {
                    tx.send(raw_msg(spec)).await.map_err(|_| closed())?;
                }
            }
            Some(Route::Group(txs)) => {
                let mut next = 0;
                for _ in 0..n {
                    txs[next].send(raw_msg(spec)).await.map_err(|_| closed())?;
                    next = (next + 1) % txs.len();
                }
            }
            Some(Route::Fan(tx)) => {
                for _ in 0..n {
                    tx.send(raw_msg(spec)).map_err(|_| closed())?;
                }
            }
        }
        Ok(())
    }

    async fn publish_one(&self, topic: &str, spec: &MsgSpec) -> anyhow::Result<()> {
        self.publish_many(topic, 1, spec).await
    }

    async fn subscribe(&self, topic: &str, who: Subscribers<'_>) -> anyhow::Result<Vec<Self::Sub>> {
        let Subscribers { group, members } = who;
        let mut routes = self
            .routes
            .lock()
            .map_err(|_| anyhow!("raw memory routes poisoned"))?;
        if routes.contains_key(topic) {
            bail!("raw memory: `{topic}` already has subscribers");
        }
        let (route, subs) = if group.is_none() && members > 1 {
            let (tx, _) = broadcast::channel(self.fan_capacity);
            let subs = (0..members)
                .map(|_| RawMemorySub::Fan(tx.subscribe()))
                .collect();
            (Route::Fan(tx), subs)
        } else {
            let (txs, subs): (Vec<_>, Vec<_>) = (0..members.max(1))
                .map(|_| {
                    let (tx, rx) = mpsc::channel(self.buffer);
                    (tx, RawMemorySub::One(rx))
                })
                .unzip();
            let route = if group.is_some() {
                Route::Group(txs)
            } else {
                Route::One(txs.into_iter().next().context("one sender")?)
            };
            (route, subs)
        };
        routes.insert(topic.to_owned(), route);
        Ok(subs)
    }

    fn publish_needs_sink(&self) -> bool {
        true
    }

    fn cleanup(&self, topic: &str) {
        if let Ok(mut routes) = self.routes.lock() {
            routes.remove(topic);
        }
    }
}

/// A raw receiver.
pub(crate) enum RawMemorySub {
    /// An mpsc receiver.
    One(mpsc::Receiver<RawMsg>),
    /// A broadcast receiver.
    Fan(broadcast::Receiver<RawMsg>),
}

impl Sub for RawMemorySub {
    async fn recv(&mut self) -> anyhow::Result<Option<usize>> {
        let msg = match self {
            RawMemorySub::One(rx) => rx.recv().await,
            RawMemorySub::Fan(rx) => match rx.recv().await {
                Ok(msg) => Some(msg),
                Err(broadcast::error::RecvError::Closed) => None,
                Err(broadcast::error::RecvError::Lagged(lost)) => {
                    bail!("broadcast receiver lagged: {lost} messages lost")
                }
            },
        };
        Ok(msg.map(|m| {
            debug_assert!(m.headers.as_ref().is_none_or(|h| h.len() == 3));
            m.payload.len()
        }))
    }
}

/// The framework's memory broker, with the default options (a buffer of 1024 per
/// subscriber, publish waits while it is full).
pub(crate) fn framework() -> (Framework, usize) {
    let options = MemoryOptions::default();
    let buffer = options.buffer;
    let broker = MemoryBroker::with_options(options);
    (Framework::new(Arc::new(broker)), buffer)
}
