//! Publishing a batch: every record is handed to librdkafka before any delivery report
//! is awaited, then the reports are awaited together.

use std::collections::VecDeque;

use broker_core::Message;
use broker_core::batch::{BatchError, BatchFailure};

use crate::broker::Inner;
use crate::error::check_topic;
use crate::publish::{Delivered, Sent};

impl Inner {
    /// Checks the broker and the topic once (creating the topic when creation is on),
    /// then hands each record to librdkafka in batch order without waiting for its
    /// report. When librdkafka's queue is full, it waits for the oldest report of this
    /// batch still pending, which makes room; with none pending, for room as a single
    /// publish does. Then it awaits the remaining reports.
    pub(crate) async fn publish_batch(
        &self,
        topic: &str,
        messages: Vec<Message>,
    ) -> Result<(), BatchError> {
        let batch_len = messages.len();
        if batch_len == 0 {
            return Ok(());
        }
        let ready = async {
            self.check_open()?;
            if !self.ready_to_publish(topic) {
                check_topic(topic)?;
                self.prepare_publish(topic).await?;
            }
            Ok(())
        };
        if let Err(err) = ready.await {
            return Err(BatchError::whole(batch_len, err));
        }
        let mut failures = Vec::new();
        let mut pending: VecDeque<(usize, Delivered<'_>)> = VecDeque::new();
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
                            if let Err(err) = delivery.await {
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
            if let Err(err) = delivery.await {
                failures.push(BatchFailure::new(index, err));
            }
        }
        BatchError::check(batch_len, failures)
    }
}
