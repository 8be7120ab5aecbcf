//! Connection outages, logged once each: a WARN when a server stops answering, an INFO
//! when it answers again, and every failed attempt in between counted, not logged.

use std::collections::HashMap;
use std::fmt::Display;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Tracks which servers of a client are unreachable, so that an outage makes two log
/// lines whatever the number of reconnect attempts.
///
/// A backend calls [`failed`](Self::failed) for each failed connection attempt (or lost
/// connection) and [`recovered`](Self::recovered) when a connection to that server
/// works again. The first failure of an outage logs a WARN, the recovery an INFO with
/// the outage's length and attempts; with the `metrics` feature, every failure counts in
/// `broker_connection_failures_total` and every outage in `broker_outages_total`
/// (label `backend`).
#[derive(Debug)]
pub struct OutageLog {
    backend: &'static str,
    down: Mutex<HashMap<String, Outage>>,
    failures: AtomicU64,
    outages: AtomicU64,
}

#[derive(Debug)]
struct Outage {
    since: Instant,
    attempts: u64,
}

impl OutageLog {
    /// An outage log for a client of `backend` (its capabilities' name).
    pub fn new(backend: &'static str) -> Self {
        Self {
            backend,
            down: Mutex::new(HashMap::new()),
            failures: AtomicU64::new(0),
            outages: AtomicU64::new(0),
        }
    }

    /// A connection to `server` failed or was lost. Returns `true` when this starts an
    /// outage (and so logged the WARN).
    pub fn failed(&self, server: &str, reason: &dyn Display) -> bool {
        self.failures.fetch_add(1, Ordering::Relaxed);
        #[cfg(feature = "metrics")]
        metrics::counter!(crate::observe::metric_names::CONNECTION_FAILURES, "backend" => self.backend)
            .increment(1);
        let mut down = self
            .down
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(outage) = down.get_mut(server) {
            outage.attempts += 1;
            tracing::debug!(backend = self.backend, %server, %reason, attempts = outage.attempts, "still unreachable");
            return false;
        }
        down.insert(
            server.to_owned(),
            Outage {
                since: Instant::now(),
                attempts: 1,
            },
        );
        drop(down);
        self.outages.fetch_add(1, Ordering::Relaxed);
        #[cfg(feature = "metrics")]
        metrics::counter!(crate::observe::metric_names::OUTAGES, "backend" => self.backend)
            .increment(1);
        tracing::warn!(backend = self.backend, %server, %reason, "server unreachable; reconnecting in the background");
        true
    }

    /// A connection to `server` works. Returns the length of the outage this ends, if one
    /// was in progress (and so logged the INFO).
    pub fn recovered(&self, server: &str) -> Option<Duration> {
        let outage = self
            .down
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(server)?;
        let lasted = outage.since.elapsed();
        tracing::info!(
            backend = self.backend,
            %server,
            after = ?lasted,
            failed_attempts = outage.attempts,
            "server reachable again"
        );
        Some(lasted)
    }

    /// Whether any server is in an outage.
    pub fn any_down(&self) -> bool {
        !self
            .down
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .is_empty()
    }

    /// The servers in an outage now, sorted.
    pub fn down(&self) -> Vec<String> {
        let mut servers: Vec<String> = self
            .down
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .keys()
            .cloned()
            .collect();
        servers.sort();
        servers
    }

    /// Failed attempts since this log was made.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Outages started since this log was made.
    pub fn outages(&self) -> u64 {
        self.outages.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_is_one_start_and_one_end_whatever_the_attempts() {
        let log = OutageLog::new("test");
        assert!(log.failed("a:1", &"refused"));
        for _ in 0..50 {
            assert!(!log.failed("a:1", &"refused"));
        }
        assert!(
            log.failed("b:2", &"refused"),
            "another server has an outage of its own"
        );
        assert_eq!(log.down(), ["a:1", "b:2"]);
        assert_eq!((log.failures(), log.outages()), (52, 2));

        assert!(log.recovered("a:1").is_some());
        assert!(log.recovered("a:1").is_none(), "an outage ends once");
        assert!(log.any_down());
        assert!(log.recovered("b:2").is_some());
        assert!(!log.any_down());

        assert!(
            log.failed("a:1", &"refused"),
            "a new failure starts a new outage"
        );
        assert_eq!(log.outages(), 3);
    }
}
