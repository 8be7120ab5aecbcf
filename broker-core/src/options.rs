//! How a subscription and its handler behave: [`SubscribeOptions`] (queue group, ack
//! mode, start position, in-flight bound) and the handler's [`Backoff`].

pub use crate::subscriber::Backoff;

/// Who settles a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum AckMode {
    /// The framework settles for you (the default, as in go-micro). A handler returning
    /// `Ok` acks and `Err` nacks; on a raw subscription stream, a delivery dropped without
    /// `ack()` or `nack()` is acked.
    #[default]
    Auto,
    /// You settle every delivery with [`Delivery::ack`](crate::Delivery::ack) or
    /// [`Delivery::nack`](crate::Delivery::nack). A delivery dropped unsettled is nacked, so
    /// it comes back where the backend redelivers.
    Manual,
}

/// Where a subscriber with no stored position starts reading, on backends that keep
/// history (Kafka, JetStream).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StartPosition {
    /// Only messages published after the subscription is live.
    Latest,
    /// Everything the broker still retains.
    Earliest,
}

/// How a subscription behaves. Build with the methods; the default is a plain subscriber
/// (every subscriber gets every message) with auto-ack and at most 256 deliveries in flight.
///
/// ```
/// use broker_core::SubscribeOptions;
/// use broker_core::options::AckMode;
///
/// let options = SubscribeOptions::new()
///     .queue("notification-service")
///     .manual_ack()
///     .max_in_flight(16);
/// assert_eq!(options.queue.as_deref(), Some("notification-service"));
/// assert_eq!(options.ack_mode, AckMode::Manual);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SubscribeOptions {
    /// The queue group (Kafka: consumer group), if any.
    pub queue: Option<String>,
    /// Who settles deliveries.
    pub ack_mode: AckMode,
    /// The bound on deliveries handed out and not yet settled (at least 1).
    pub max_in_flight: usize,
    /// Where to start without a stored position; see [`SubscribeOptions::start_position`].
    pub start: Option<StartPosition>,
}

/// The default bound on unsettled deliveries of one subscription.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 256;

impl Default for SubscribeOptions {
    fn default() -> Self {
        SubscribeOptions {
            queue: None,
            ack_mode: AckMode::Auto,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            start: None,
        }
    }
}

impl SubscribeOptions {
    /// The defaults.
    pub fn new() -> Self {
        SubscribeOptions::default()
    }

    /// Joins the queue group (Kafka: consumer group) `name`: its members share the load,
    /// and each message goes to one of them. Different groups each get every message.
    pub fn queue(mut self, name: impl Into<String>) -> Self {
        self.queue = Some(name.into());
        self
    }

    /// Sets the ack mode.
    pub fn ack_mode(mut self, mode: AckMode) -> Self {
        self.ack_mode = mode;
        self
    }

    /// Shorthand for `ack_mode(AckMode::Manual)`.
    pub fn manual_ack(self) -> Self {
        self.ack_mode(AckMode::Manual)
    }

    /// At most `max` deliveries are handed out and not yet settled; the next one waits.
    /// `max_in_flight(1)` with manual ack processes strictly one message at a time. Zero is
    /// taken as one.
    pub fn max_in_flight(mut self, max: usize) -> Self {
        self.max_in_flight = max.max(1);
        self
    }

    /// Where to start when there is no stored position. Unset, a queue group starts at
    /// [`StartPosition::Earliest`] (a new group processes what is retained) and a plain
    /// subscriber at [`StartPosition::Latest`].
    pub fn start(mut self, start: StartPosition) -> Self {
        self.start = Some(start);
        self
    }

    /// The start position in force: the one set, or the default for this kind of
    /// subscriber.
    pub fn start_position(&self) -> StartPosition {
        self.start.unwrap_or(if self.queue.is_some() {
            StartPosition::Earliest
        } else {
            StartPosition::Latest
        })
    }
}
