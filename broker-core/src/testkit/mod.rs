//! The conformance kit: the scenarios every backend must pass, in the spirit of
//! Watermill's universal pub/sub tests.
//!
//! A backend runs it from its own `tests/` with one macro call, passing a [`Kit`]: how to
//! connect, and a [`Features`] value saying what the backend guarantees. Each scenario
//! becomes its own `#[test]`, uses its own unique topics (so scenarios run in parallel),
//! and is skipped, by name and visibly on stderr, when the backend does not claim what it
//! needs.
//!
//! ```ignore
//! // broker-memory/tests/conformance.rs
//! use broker_core::testkit::Kit;
//!
//! async fn kit() -> Kit {
//!     broker_memory::link();
//!     // A bus of its own for each scenario; the features come from the backend's own
//!     // capabilities.
//!     Kit::from_unique_url("memory://kit").await
//! }
//!
//! broker_core::conformance_suite!(kit);
//! ```

mod collect;
mod order;
pub mod scenarios;
mod support;

use std::fmt;
use std::future::Future;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;

use crate::backend::{Capabilities, DeliveryGuarantee, OrderingGuarantee};
use crate::{Broker, Result};

pub use collect::{Collector, Received};
pub use order::{KeyOrder, check_payload_order, first_deliveries};
pub use support::*;

/// Connects a fresh broker handle.
pub type ConnectFn = Arc<dyn Fn() -> BoxFuture<'static, Result<Arc<dyn Broker>>> + Send + Sync>;

/// Restarts the broker server a [`Restart`] target points at.
pub type RestartFn = Arc<dyn Fn() -> BoxFuture<'static, Result<()>> + Send + Sync>;

/// A broker server the kit may restart, with how to connect to it. Usually its own
/// instance on its own port, so restarting it does not disturb the other scenarios.
#[derive(Clone)]
pub struct Restart {
    /// Connects to this server.
    pub connect: ConnectFn,
    /// Restarts this server (stop, then start; data kept) and returns when it answers.
    pub restart: RestartFn,
}

impl fmt::Debug for Restart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Restart").finish_non_exhaustive()
    }
}

/// Builder methods that each claim one guarantee: `name(self)` sets the field `name`.
macro_rules! claims {
    ($($(#[$doc:meta])* $name:ident;)+) => {
        $(
            $(#[$doc])*
            pub fn $name(mut self) -> Self {
                self.$name = true;
                self
            }
        )+
    };
}

/// What a backend guarantees, as far as the kit is concerned: derived from the backend's
/// own [`Capabilities`] by [`Features::of`] (what [`Kit::from_backend`] does), so the kit
/// tests what the backend tells its users; the kit's own settings (a server to restart,
/// waits, a start hint) are added with the builder methods. [`Features::new`] claims
/// nothing.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Features {
    /// The backend's name, for messages.
    pub backend: &'static str,
    /// Queue groups: each message to one member.
    pub queue_groups: bool,
    /// Unacked messages outlive their subscriber and come back to the group.
    pub persistence: bool,
    /// Order kept per publisher (or per key) for each subscriber.
    pub ordering: bool,
    /// `nack` redelivers.
    pub redelivery: bool,
    /// Every acknowledged publish is delivered at least once.
    pub at_least_once: bool,
    /// The backend never delivers a message twice (reads are then not de-duplicated).
    pub exactly_once: bool,
    /// A server the restart scenario may restart.
    pub restart: Option<Restart>,
    /// How long the kit waits for expected messages before failing.
    pub timeout: Duration,
    /// How to start the broker, said when the kit cannot connect (e.g. `scripts/nats.sh start`).
    pub start_hint: Option<&'static str>,
}

impl Features {
    /// Nothing claimed; waits of 30 s.
    pub fn new(backend: &'static str) -> Self {
        Features {
            backend,
            queue_groups: false,
            persistence: false,
            ordering: false,
            redelivery: false,
            at_least_once: false,
            exactly_once: false,
            restart: None,
            timeout: Duration::from_secs(30),
            start_hint: None,
        }
    }

    /// What a backend with `capabilities` claims: queue groups, persistence, ordering
    /// (any but [`OrderingGuarantee::None`]), redelivery and at-least-once delivery as the
    /// capabilities say.
    pub fn of(capabilities: &Capabilities) -> Self {
        Features {
            queue_groups: capabilities.queue_groups,
            persistence: capabilities.persistence,
            ordering: capabilities.ordering != OrderingGuarantee::None,
            redelivery: capabilities.redelivery,
            at_least_once: capabilities.delivery == DeliveryGuarantee::AtLeastOnce,
            ..Features::new(capabilities.backend)
        }
    }

    claims! {
        /// Claims queue groups.
        queue_groups;
        /// Claims persistence.
        persistence;
        /// Claims ordering.
        ordering;
        /// Claims nack redelivery.
        redelivery;
        /// Claims at-least-once delivery.
        at_least_once;
        /// Claims exactly-once delivery.
        exactly_once;
    }

    /// Gives the kit a server it may restart.
    pub fn restart<C, CF, R, RF>(mut self, connect: C, restart: R) -> Self
    where
        C: Fn() -> CF + Send + Sync + 'static,
        CF: Future<Output = Result<Arc<dyn Broker>>> + Send + 'static,
        R: Fn() -> RF + Send + Sync + 'static,
        RF: Future<Output = Result<()>> + Send + 'static,
    {
        self.restart = Some(Restart {
            connect: Arc::new(move || connect().boxed()),
            restart: Arc::new(move || restart().boxed()),
        });
        self
    }

    /// Says how to start the broker when the kit cannot connect to it.
    pub fn start_hint(mut self, hint: &'static str) -> Self {
        self.start_hint = Some(hint);
        self
    }

    /// Sets how long the kit waits for expected messages.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

/// The broker address tests use: the value of the environment variable `var`, or
/// `default` when it is unset. Tests never skip when the broker is missing: connecting
/// then fails, and the failure says how to start the broker.
pub fn broker_address(var: &str, default: &str) -> String {
    std::env::var(var)
        .ok()
        .filter(|value| !value.trim().is_empty())
        .unwrap_or_else(|| default.to_owned())
}

/// Installs, once per process, the `tracing` subscriber the scenarios run under: an
/// OpenTelemetry layer whose tracer makes real trace ids (and exports nowhere), for the
/// trace-context scenario, and log lines written through the test harness, so that a
/// failing scenario shows the warnings logged while it ran. `KIT_LOG` (an `EnvFilter`
/// directive, `warn,librdkafka=error` by default) says which lines.
pub fn install_tracing() {
    use opentelemetry::trace::TracerProvider;
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;

    static INSTALLED: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    INSTALLED.get_or_init(|| {
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let tracer = provider.tracer("conformance");
        let filter = tracing_subscriber::EnvFilter::try_from_env("KIT_LOG")
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,librdkafka=error"));
        let logs = tracing_subscriber::fmt::layer()
            .with_test_writer()
            .with_filter(filter);
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(tracer))
            .with(logs);
        let _ = tracing::subscriber::set_global_default(subscriber);
    });
}

/// What the kit needs from a backend: its features and how to connect.
#[derive(Clone)]
pub struct Kit {
    /// What the backend guarantees.
    pub features: Features,
    connect: ConnectFn,
}

impl Kit {
    /// A kit for a backend with `features`, connecting with `connect` (called once per
    /// scenario, and again where a scenario needs a second handle).
    pub fn new<C, CF>(features: Features, connect: C) -> Self
    where
        C: Fn() -> CF + Send + Sync + 'static,
        CF: Future<Output = Result<Arc<dyn Broker>>> + Send + 'static,
    {
        Kit {
            features,
            connect: Arc::new(move || connect().boxed()),
        }
    }

    /// A kit for the backend `connect` reaches, with the [`Features`] its
    /// [`capabilities`](Broker::capabilities) claim (it connects once to read them).
    /// `start_hint` says how to start the broker when it cannot be reached. Add the
    /// kit's own settings with [`with_features`](Kit::with_features).
    pub async fn from_backend<C, CF>(start_hint: Option<&'static str>, connect: C) -> Self
    where
        C: Fn() -> CF + Send + Sync + 'static,
        CF: Future<Output = Result<Arc<dyn Broker>>> + Send + 'static,
    {
        let mut kit = Kit::new(Features::new("backend"), connect);
        kit.features.start_hint = start_hint;
        let probe = kit.connect().await;
        let mut features = Features::of(&probe.capabilities());
        features.start_hint = start_hint;
        let _ = probe.close().await;
        kit.features = features;
        kit
    }

    /// A kit for the backend at `base` followed by `-<unique>` (`memory://kit` becomes
    /// `memory://kit-0192…`), reached through [`connect`](crate::connect), with the
    /// features it claims (see [`from_backend`](Kit::from_backend)): for in-process
    /// backends, whose every handle on one URL shares one bus, so each scenario gets a
    /// bus of its own.
    pub async fn from_unique_url(base: &str) -> Self {
        let url = format!("{base}-{}", uuid::Uuid::now_v7().simple());
        Kit::from_backend(None, move || {
            let url = url.clone();
            async move { crate::connect(&url).await }
        })
        .await
    }

    /// The kit with its features changed by `change` (a server to restart, a wait).
    pub fn with_features(mut self, change: impl FnOnce(Features) -> Features) -> Self {
        self.features = change(self.features);
        self
    }

    /// A fresh broker handle.
    pub async fn connect(&self) -> Arc<dyn Broker> {
        match (self.connect)().await {
            Ok(broker) => broker,
            Err(err) => panic!(
                "conformance[{}]: cannot connect: {}{}",
                self.features.backend,
                err.display_chain(),
                self.features
                    .start_hint
                    .map(|hint| format!("\n  is the broker running? start it with: {hint}"))
                    .unwrap_or_default()
            ),
        }
    }

    /// A topic no other scenario uses: `kit.<scenario>.<unique>`.
    pub fn topic(&self, scenario: &str) -> String {
        format!("kit.{scenario}.{}", uuid::Uuid::now_v7().simple())
    }

    /// Prints, past the test harness's capture, that `scenario` is skipped and why.
    pub fn skip(&self, scenario: &str, needs: &str) {
        let line = format!(
            "conformance[{}]: SKIPPED {scenario}: the backend does not claim {needs}\n",
            self.features.backend
        );
        let _ = std::io::stderr().write_all(line.as_bytes());
    }
}

impl fmt::Debug for Kit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kit")
            .field("features", &self.features)
            .finish_non_exhaustive()
    }
}

/// Expands to one `#[test]` per conformance scenario, each running on a multi-threaded
/// tokio runtime with the [`Kit`] that `$kit` (an `async fn() -> Kit`) returns.
#[macro_export]
macro_rules! conformance_suite {
    ($kit:path) => {
        $crate::__conformance_tests!($kit;
            round_trip_headers_key_id,
            payload_shapes,
            batch_arrives_whole_and_in_key_order,
            batch_reports_failures_by_index,
            batches_gather_and_settle_together,
            concurrent_publishers_and_subscribers,
            many_topics_stay_isolated,
            blocked_handler_leaves_the_other_slots_working,
            fan_out_to_plain_subscribers,
            queue_group_splits_the_load,
            two_groups_each_get_everything,
            ordering_of_interleaved_streams,
            handler_keeps_key_order_and_runs_keys_at_once,
            wildcards_match_and_do_not_match,
            nack_twice_then_everything_arrives,
            nacking_member_then_acking_member,
            manual_ack_holds_the_next_message,
            unacked_messages_come_back_after_drop,
            reopened_subscribers_lose_nothing,
            concurrent_subscribe_and_unsubscribe,
            unsubscribe_stops_delivery,
            close_semantics,
            publish_then_close_loses_nothing,
            restart_mid_stream,
            invalid_subjects_are_rejected,
            handler_errors_retry_then_dead_letter,
            handler_panic_is_survived,
            undecodable_payload_goes_to_dead_letter,
            poison_messages_never_loop_hot,
            graceful_shutdown_loses_nothing,
            shutdown_deadline_cancels_and_redelivers,
            request_gets_a_reply,
            request_without_responder_times_out,
            trace_context_crosses_the_broker,
            correlation_id_reaches_the_second_hop,
            metrics_count_what_happened,
            metrics_sample_consumer_lag,
        );
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_tests {
    ($kit:path; $($scenario:ident),+ $(,)?) => {
        $(
            #[test]
            fn $scenario() {
                $crate::testkit::install_tracing();
                let runtime = ::tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("a tokio runtime");
                runtime.block_on(async {
                    let kit = $kit().await;
                    $crate::testkit::scenarios::$scenario(kit).await;
                });
            }
        )+
    };
}
