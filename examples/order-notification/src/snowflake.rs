//! Unique, time-ordered order ids, in the layout of Twitter's snowflake ids.
//!
//! An id is a positive `i64`: 41 bits of milliseconds since [`EPOCH_MS`], 10 bits of
//! node id and 12 bits of sequence within the millisecond. Ids from one generator
//! always increase: when the clock steps back, or when 4096 ids were taken within one
//! millisecond, the generator keeps counting from its last millisecond instead of waiting.

use std::fmt;
use std::sync::{Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

/// The start of id time: 2024-01-01T00:00:00Z, in milliseconds since the Unix epoch.
pub const EPOCH_MS: u64 = 1_704_067_200_000;

/// The largest node id (10 bits).
pub const MAX_NODE: u16 = (1 << NODE_BITS) - 1;

const NODE_BITS: u32 = 10;
const SEQUENCE_BITS: u32 = 12;
const MAX_SEQUENCE: u16 = (1 << SEQUENCE_BITS) - 1;

/// A node id above [`MAX_NODE`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidNode(pub u16);

impl fmt::Display for InvalidNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "node id {} is out of range 0..={MAX_NODE}", self.0)
    }
}

impl std::error::Error for InvalidNode {}

/// Generates snowflake ids for one node. Give every process that creates orders its own
/// node id.
#[derive(Debug)]
pub struct Snowflake {
    node: u16,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    millis: u64,
    sequence: u16,
}

impl Snowflake {
    /// A generator for `node` (0..=[`MAX_NODE`]).
    pub fn new(node: u16) -> Result<Self, InvalidNode> {
        if node > MAX_NODE {
            return Err(InvalidNode(node));
        }
        Ok(Snowflake {
            node,
            state: Mutex::default(),
        })
    }

    /// The node id.
    pub fn node(&self) -> u16 {
        self.node
    }

    /// The next id.
    pub fn next_id(&self) -> i64 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .saturating_sub(EPOCH_MS);
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if now > state.millis {
            state.millis = now;
            state.sequence = 0;
        } else if state.sequence < MAX_SEQUENCE {
            state.sequence += 1;
        } else {
            // Clock behind, or the millisecond is used up: borrow the next millisecond.
            state.millis += 1;
            state.sequence = 0;
        }
        let millis = state.millis & ((1 << 41) - 1);
        let id = (millis << (NODE_BITS + SEQUENCE_BITS))
            | (u64::from(self.node) << SEQUENCE_BITS)
            | u64::from(state.sequence);
        // 41 + 10 + 12 = 63 bits: always a positive i64.
        i64::try_from(id).unwrap_or(i64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_increase_and_carry_the_node() {
        let ids = Snowflake::new(7).expect("node 7");
        let mut last = 0;
        for _ in 0..10_000 {
            let id = ids.next_id();
            assert!(id > last, "{id} after {last}");
            assert_eq!((id >> SEQUENCE_BITS) & i64::from(MAX_NODE), 7);
            last = id;
        }
    }

    #[test]
    fn node_ids_are_bounded() {
        assert_eq!(
            Snowflake::new(1024).expect_err("too big"),
            InvalidNode(1024)
        );
        assert!(Snowflake::new(MAX_NODE).is_ok());
    }

    #[test]
    fn two_nodes_never_collide() {
        let a = Snowflake::new(1).expect("node 1");
        let b = Snowflake::new(2).expect("node 2");
        let from_a: std::collections::HashSet<_> = (0..1000).map(|_| a.next_id()).collect();
        assert!((0..1000).all(|_| !from_a.contains(&b.next_id())));
    }
}
