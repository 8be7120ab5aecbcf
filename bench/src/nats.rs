//! The nats backend against its raw client (not measured yet).

use anyhow::bail;

use crate::scenario::{Plan, Row};

/// Runs the plan on nats.
pub(crate) async fn run(_plan: &Plan, _rows: &mut Vec<Row>) -> anyhow::Result<()> {
    bail!("not measured yet: the nats comparison is not written")
}
