//! A queue: the buffer behind one plain subscriber, or shared by a queue group's members.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use broker_core::Message;
use broker_core::subject::Pattern;

/// One message waiting in a queue.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) topic: Arc<str>,
    pub(crate) message: Message,
    pub(crate) attempt: u32,
}

/// The buffer of a plain subscriber, or of a queue group (shared by its members, who pull
/// from it in turn).
#[derive(Debug)]
pub(crate) struct Queue {
    pub(crate) id: u64,
    pub(crate) pattern: Pattern,
    pub(crate) group: Option<String>,
    pub(crate) tx: async_channel::Sender<Entry>,
    pub(crate) rx: async_channel::Receiver<Entry>,
    members: AtomicUsize,
}

impl Queue {
    pub(crate) fn new(id: u64, pattern: Pattern, group: Option<String>, buffer: usize) -> Self {
        let (tx, rx) = async_channel::bounded(buffer);
        Queue {
            id,
            pattern,
            group,
            tx,
            rx,
            members: AtomicUsize::new(0),
        }
    }

    pub(crate) fn join(&self) {
        self.members.fetch_add(1, Ordering::AcqRel);
    }

    /// Returns whether this was the last member.
    pub(crate) fn leave(&self) -> bool {
        self.members.fetch_sub(1, Ordering::AcqRel) == 1
    }

    pub(crate) fn members(&self) -> usize {
        self.members.load(Ordering::Acquire)
    }
}
