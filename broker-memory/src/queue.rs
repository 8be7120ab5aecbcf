//! A queue: what one plain subscriber, or one queue group, receives. Each member has its
//! own buffer; a queue group hands messages to its members in turn (round-robin), and a
//! plain subscription is a queue with one member.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use broker_core::Message;
use broker_core::subject::Pattern;

/// One message waiting in a buffer.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    /// The topic it was published to; `None` when that is the queue's own pattern (a
    /// pattern without wildcards matches only itself). Each member then fills in its own
    /// copy of the text, so that publisher and subscriber do not share a reference count
    /// per message.
    pub(crate) topic: Option<Arc<str>>,
    pub(crate) message: Message,
    pub(crate) attempt: u32,
}

/// One member's buffer (its receiving end is the member's subscription).
#[derive(Debug)]
struct Member {
    id: u64,
    tx: mpsc::Sender<Entry>,
}

/// Where [`Queue::offer`] put an entry, or why it could not.
pub(crate) enum Offer {
    /// In a member's buffer.
    Accepted,
    /// Every member's buffer is full: wait on this one (the member whose turn it is).
    Full(Entry, mpsc::Sender<Entry>),
    /// The queue has no members (left, or closed).
    Gone,
}

/// The members of a plain subscription (one) or of a queue group.
#[derive(Debug)]
pub(crate) struct Queue {
    pub(crate) id: u64,
    pub(crate) pattern: Pattern,
    /// The pattern has no wildcards: it matches one topic, its own text, and entries
    /// for it carry no topic (see [`Entry::topic`]).
    pub(crate) literal: bool,
    pub(crate) group: Option<String>,
    buffer: usize,
    members: Mutex<Vec<Member>>,
    next_member: AtomicU64,
    turn: AtomicUsize,
    /// Cancelled by [`close`](Queue::close): whoever waits for room gives up, so that
    /// the last senders go and the members' streams end once drained.
    closed: CancellationToken,
}

impl Queue {
    pub(crate) fn new(id: u64, pattern: Pattern, group: Option<String>, buffer: usize) -> Self {
        Queue {
            id,
            literal: !pattern.has_wildcards(),
            pattern,
            group,
            buffer: buffer.max(1),
            members: Mutex::new(Vec::new()),
            next_member: AtomicU64::new(0),
            turn: AtomicUsize::new(0),
            closed: CancellationToken::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Member>> {
        // A poisoned lock only means a panic elsewhere while holding it; the member list
        // itself is always consistent, so go on with it.
        self.members
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// How many entries a member takes from its channel at most in one go: a 32nd of the
    /// buffer, between 1 and 32. Taking several at once gives their room back to the
    /// publishers in one step instead of one per message.
    pub(crate) fn read_ahead(&self) -> usize {
        (self.buffer / 32).clamp(1, 32)
    }

    /// Adds a member; returns its id and the receiving end of its buffer.
    pub(crate) fn join(&self) -> (u64, mpsc::Receiver<Entry>) {
        let (tx, rx) = mpsc::channel(self.buffer);
        let id = self.next_member.fetch_add(1, Ordering::Relaxed);
        self.lock().push(Member { id, tx });
        (id, rx)
    }

    /// How many entries wait in member `id`'s buffer; `None` once it left.
    pub(crate) fn buffered(&self, id: u64) -> Option<usize> {
        let members = self.lock();
        let member = members.iter().find(|m| m.id == id)?;
        Some(member.tx.max_capacity() - member.tx.capacity())
    }

    /// Removes member `id`, so that no new message is offered to it; the caller then
    /// closes and drains its buffer. Returns whether the queue is now empty.
    pub(crate) fn leave(&self, id: u64) -> bool {
        let mut members = self.lock();
        if let Some(index) = members.iter().position(|m| m.id == id) {
            members.remove(index);
        }
        members.is_empty()
    }

    /// Ends every member's buffer: the members are removed (their senders dropped) and
    /// whoever waits for room gives up, so their streams end once drained.
    pub(crate) fn close(&self) {
        self.closed.cancel();
        self.lock().clear();
    }

    /// Sends `entry` on `tx` once it has room. `Err` hands the entry back when that
    /// buffer is gone (its member left) or the queue was closed meanwhile.
    pub(crate) async fn send_when_room(
        &self,
        tx: &mpsc::Sender<Entry>,
        entry: Entry,
    ) -> std::result::Result<(), Option<Entry>> {
        let permit = tokio::select! {
            biased;
            () = self.closed.cancelled() => return Err(None),
            permit = tx.reserve() => permit,
        };
        match permit {
            Ok(permit) => {
                permit.send(entry);
                Ok(())
            }
            Err(_) => Err(Some(entry)),
        }
    }

    pub(crate) fn members(&self) -> usize {
        self.lock().len()
    }

    /// Offers `entry` to the member whose turn it is, or to the next one with room.
    #[inline(always)]
    pub(crate) fn offer(&self, entry: Entry) -> Offer {
        let members = self.lock();
        let n = members.len();
        match &members[..] {
            [] => return Offer::Gone,
            // A plain subscriber: one member, no turn to take.
            [only] => {
                return match only.tx.try_send(entry) {
                    Ok(()) => Offer::Accepted,
                    Err(full_or_gone) => Offer::Full(full_or_gone.into_inner(), only.tx.clone()),
                };
            }
            _ => {}
        }
        let start = self.turn.fetch_add(1, Ordering::Relaxed) % n;
        let mut entry = entry;
        for i in 0..n {
            match members[(start + i) % n].tx.try_send(entry) {
                Ok(()) => return Offer::Accepted,
                Err(full_or_gone) => entry = full_or_gone.into_inner(),
            }
        }
        Offer::Full(entry, members[start].tx.clone())
    }
}

impl Queue {
    /// Puts `entry` back for the members (a nack, or a leaving member's buffer), waiting
    /// for room as long as it takes: the caller is a background task, never a publisher.
    pub(crate) async fn requeue(&self, entry: Entry) {
        let mut entry = entry;
        loop {
            match self.offer(entry) {
                Offer::Accepted => return,
                Offer::Gone => {
                    tracing::debug!(pattern = %self.pattern, "message not redelivered: no subscriber is left");
                    return;
                }
                Offer::Full(back, tx) => match self.send_when_room(&tx, back).await {
                    Ok(()) => return,
                    Err(Some(back)) => entry = back,
                    Err(None) => {
                        tracing::debug!(pattern = %self.pattern, "message not redelivered: the broker was closed");
                        return;
                    }
                },
            }
        }
    }
}
