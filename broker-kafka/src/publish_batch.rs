//! Publishing a batch: every record is handed to librdkafka before any delivery report
//! is awaited, then the reports are awaited together.

use std::collections::VecDeque;

use broker_core::batch::BatchFailure;
use broker_core::{Message, Result};

use crate::broker::Inner;
use crate::error::check_topic;
use rdkafka::producer::DeliveryFuture;

use crate::publish::{Sent, delivered};

impl Inner {
    /// Checks the broker and the topic once (creating the topic when creation is on),
    /// then hands each record to librdkafka in batch order without waiting for its
    /// report. When librdkafka's queue is full, it waits for the oldest report of this
    /// batch still pending, which makes room; with none pending, for room as a single
    /// publish does. Then it awaits the remaining reports.
    ///
    /// Returns the records that failed; `Err` when the broker is closed or the topic is
    /// not usable, before any record is sent (see
    /// [`broker_core::batch::publish_with`]).
    pub(crate) async fn publish_batch(
        &self,
        topic: &str,
        messages: Vec<Message>,
    ) -> Result<Vec<BatchFailure>> {
        self.check_open()?;
        if !self.ready_to_publish(topic) {
            check_topic(topic)?;
            self.prepare_publish(topic).await?;
        }
        let mut failures = Vec::new();
        let mut pending: VecDeque<(usize, DeliveryFuture)> = VecDeque::new();
        for (index, message) in messages.into_iter().enumerate() {
            if let Err(err) = message.check_size(self.options.max_message_bytes, "the Kafka broker")
            {
                failures.push(BatchFailure::new(index, err));
                continue;
            }
            loop {
                match self.try_send(topic, &message) {
                    Ok(delivery) => pending.push_back((index, delivery)),
                    Err(Sent::Failed(err)) => failures.push(BatchFailure::new(index, err)),
                    Err(Sent::QueueFull) => match pending.pop_front() {
                        Some((earlier, delivery)) => {
                            if let Err(err) = delivered(topic, delivery).await {
                                failures.push(BatchFailure::new(earlier, err));
                            }
                            continue;
                        }
                        None => match self.send_when_room(topic, &message).await {
                            Ok(delivery) => pending.push_back((index, delivery)),
                            Err(err) => failures.push(BatchFailure::new(index, err)),
                        },
                    },
                }
                break;
            }
        }
        for (index, delivery) in pending {
            if let Err(err) = delivered(topic, delivery).await {
                failures.push(BatchFailure::new(index, err));
            }
        }
        Ok(failures)
    }
}
