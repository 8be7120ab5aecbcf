//! An in-process broker on tokio, and the default backend (`memory://`).
//!
//! It needs no server, so it is the transport for tests, single-process services and
//! examples. It is not a stand-in for a real broker: nothing outlives the process.
//!
//! What it guarantees (at-least-once while the subscriber lives, order per publisher,
//! round-robin queue groups, bounded backpressure) is in the `memory://` column of the
//! project's GUARANTEES.md, each cell with its test.
//!
//! `publish` places the message in every buffer with room when it is called; the future
//! it returns resolves at once, or waits for room in the buffers that were full. A
//! future dropped before it resolves places nothing more. A subscription's `lag()` is
//! what waits in its buffer ([`broker_core::lag`]).
//!
//! URLs: `memory://` is the process-wide default bus, `memory://NAME` a named one; both
//! take `?buffer=N&publish_timeout_ms=N&overflow=wait|drop&max_message_bytes=N`. Each
//! `connect` to the same name returns the same bus until it is closed.
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

mod broker;
mod options;
mod queue;
mod subscriber;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use broker_core::{Broker, Result};
use futures::FutureExt;

pub use broker::MemoryBroker;
pub use options::{MemoryOptions, Overflow};

/// The URL scheme this crate registers.
pub const SCHEME: &str = "memory";

broker_core::register_backend!(SCHEME, |url| connect_url(url).boxed());

fn buses() -> &'static Mutex<HashMap<String, MemoryBroker>> {
    static BUSES: OnceLock<Mutex<HashMap<String, MemoryBroker>>> = OnceLock::new();
    BUSES.get_or_init(Mutex::default)
}

/// Connects to the bus a `memory://[NAME][?options]` URL names, creating it on first use.
/// Options given for a bus that already exists must match its options.
pub async fn connect_url(url: url::Url) -> Result<Arc<dyn Broker>> {
    let options = MemoryOptions::from_url(&url)?;
    let name = url.host_str().unwrap_or_default().to_owned();
    let mut map = buses().lock().map_err(|_| {
        broker_core::Error::new(
            broker_core::ErrorKind::Closed,
            "memory bus registry poisoned",
        )
    })?;
    map.retain(|_, bus| !bus.is_closed());
    let bus = map
        .entry(name)
        .or_insert_with(|| MemoryBroker::with_options(options.clone()))
        .clone();
    if url.query().is_some() && bus.options() != &options {
        return Err(broker_core::Error::new(
            broker_core::ErrorKind::InvalidConfig,
            "this memory bus already exists with other options",
        ));
    }
    Ok(Arc::new(bus))
}

/// Names this crate so the linker keeps it, and with it the `memory://` registration.
/// Called by the `broker` crate; a binary depending on this crate alone should call it
/// (or `use broker_memory as _;`) once.
pub fn link() {}
