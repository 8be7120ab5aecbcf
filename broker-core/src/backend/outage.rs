//! Connection outages, logged once each: a WARN when a server stops answering, an INFO
//! when it answers again, and every failed attempt in between counted, not logged; and
//! the [`Health`] they add up to.

use std::collections::HashMap;
use std::fmt::Display;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::health::Health;

/// Tracks which servers of a client are unreachable, so that an outage makes two log
/// lines whatever the number of reconnect attempts.
///
/// A backend calls [`failed`](Self::failed) for each failed connection attempt (or lost
/// connection) and [`recovered`](Self::recovered) when a connection to that server
/// works again. The first failure of an outage logs a WARN, the recovery an INFO with
/// the outage's length and attempts; with the `metrics` feature, every failure counts in
/// `broker_connection_failures_total` and every outage in `broker_outages_total`
/// (label `backend`), and the gauge `broker_connected` is 0 while a server is down.
/// [`health`](Self::health) says whether any server is down, since when, and the last
/// error (a backend may add errors of its own with [`error`](Self::error)).
#[derive(Debug)]
pub struct OutageLog {
    backend: &'static str,
    down: Mutex<HashMap<String, Outage>>,
    failures: AtomicU64,
    outages: AtomicU64,
    state: Mutex<State>,
}

/// What [`OutageLog::health`] reports besides the servers down.
#[derive(Debug)]
struct State {
    /// The last error, described.
    last_error: Option<String>,
    /// When the log last went from no server down to one down, or back.
    since: Instant,
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
            state: Mutex::new(State {
                last_error: None,
                since: Instant::now(),
            }),
        }
    }

    /// Records `reason` as the last error, without starting an outage (an error the
    /// server or the client reported on a connection that works).
    pub fn error(&self, reason: &dyn Display) {
        self.state().last_error = Some(reason.to_string());
    }

    /// Whether no server is down, since when, and the last error seen.
    pub fn health(&self) -> Health {
        let connected = !self.any_down();
        let state = self.state();
        Health {
            connected,
            last_error: state.last_error.clone(),
            since: Some(state.since),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A connection to `server` failed or was lost. Returns `true` when this starts an
    /// outage (and so logged the WARN).
    pub fn failed(&self, server: &str, reason: &dyn Display) -> bool {
        self.failures.fetch_add(1, Ordering::Relaxed);
        #[cfg(feature = "metrics")]
        metrics::counter!(crate::observe::metric_names::CONNECTION_FAILURES, "backend" => self.backend)
            .increment(1);
        self.error(&format_args!("{server}: {reason}"));
        let mut down = self
            .down
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(outage) = down.get_mut(server) {
            outage.attempts += 1;
            tracing::debug!(backend = self.backend, %server, %reason, attempts = outage.attempts, "still unreachable");
            return false;
        }
        let first = down.is_empty();
        down.insert(
            server.to_owned(),
            Outage {
                since: Instant::now(),
                attempts: 1,
            },
        );
        drop(down);
        if first {
            self.state().since = Instant::now();
            #[cfg(feature = "metrics")]
            crate::health::record(self.backend, false);
        }
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
        let mut down = self
            .down
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let outage = down.remove(server)?;
        let all_up = down.is_empty();
        drop(down);
        if all_up {
            self.state().since = Instant::now();
            #[cfg(feature = "metrics")]
            crate::health::record(self.backend, true);
        }
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
        assert_eq!(
            (log.health().connected, log.health().last_error),
            (true, None)
        );
        assert!(log.failed("a:1", &"refused"));
        let down = log.health();
        assert!(!down.connected);
        assert_eq!(down.last_error.as_deref(), Some("a:1: refused"));
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
        assert!(!log.health().connected, "b:2 is still down");
        assert!(log.recovered("b:2").is_some());
        assert!(!log.any_down());
        let up = log.health();
        assert!(up.connected);
        assert!(
            up.since >= down.since,
            "the state changed since the outage began"
        );
        assert_eq!(
            up.last_error.as_deref(),
            Some("b:2: refused"),
            "the last error outlives the outage"
        );

        assert!(
            log.failed("a:1", &"refused"),
            "a new failure starts a new outage"
        );
        assert_eq!(log.outages(), 3);
    }
}
