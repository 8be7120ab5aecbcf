package main

import (
	"fmt"
	"log"
	"time"

	"github.com/Shopify/sarama"
)

// The kafka plugin (github.com/go-micro/plugins/v4/broker/kafka@v1.2.0) consumes
// through a sarama ConsumerGroup whose group id is broker.SubscribeOptions.Queue, or
// a fresh uuid.New().String() when no queue is given (kafka.go, Subscribe), so
// every subscriber without a queue is its own group and gets every message. Its
// consumer config (kafka.go, getClusterConfig) is kafka.DefaultClusterConfig =
// sarama.NewConfig() with Version raised to at least V0_10_2_0 (it is V1_0_0_0),
// Consumer.Return.Errors = true and Consumer.Offsets.Initial = sarama.OffsetNewest:
// a group without a committed offset starts at the end of each partition, as
// resolved when the group's session claims it. Offsets are committed by sarama's
// auto-commit (every 1 s) of what the handler marked (AutoAck: after the handler
// returned nil; never for a message that failed to decode).
//
// That resolution happens some time after Subscribe returns (join, sync, offset
// fetch, ListOffsets), so a message published right after Subscribe could be
// missed. pinGroupStart closes that window without changing where the group
// starts: for every partition of the topic on which the group has no committed
// offset, it commits the current end offset (what OffsetNewest would pick) before
// Subscribe. A commit from outside the group is only accepted while the group has
// no members; otherwise the error is returned and the caller carries on.
func pinGroupStart(c *config, group string) error {
	cfg := sarama.NewConfig() // what the plugin's clients use
	cfg.Version = sarama.V1_0_0_0
	client, err := sarama.NewClient([]string{c.addr}, cfg)
	if err != nil {
		return err
	}
	defer client.Close()

	// Metadata requests may auto-create the topic; the first answers after a
	// creation can lack leaders, so retry for a while.
	var parts []int32
	deadline := time.Now().Add(c.timeout)
	for {
		parts, err = client.Partitions(c.topic)
		if err == nil && len(parts) > 0 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("partitions of %s: %v", c.topic, err)
		}
		time.Sleep(200 * time.Millisecond)
		_ = client.RefreshMetadata(c.topic)
	}

	coord, err := client.Coordinator(group)
	if err != nil {
		return fmt.Errorf("coordinator: %w", err)
	}
	fetch := &sarama.OffsetFetchRequest{Version: 1, ConsumerGroup: group}
	for _, p := range parts {
		fetch.AddPartition(c.topic, p)
	}
	fresp, err := coord.FetchOffset(fetch)
	if err != nil {
		return fmt.Errorf("offset fetch: %w", err)
	}
	commit := &sarama.OffsetCommitRequest{
		Version:                 2,
		ConsumerGroup:           group,
		ConsumerGroupGeneration: -1, // not a member: a "simple" commit
		RetentionTime:           -1,
	}
	pinned := map[int32]int64{}
	for _, p := range parts {
		if b := fresp.GetBlock(c.topic, p); b != nil && b.Err == sarama.ErrNoError && b.Offset >= 0 {
			continue // the group already has a position here
		}
		end, err := client.GetOffset(c.topic, p, sarama.OffsetNewest)
		if err != nil {
			return fmt.Errorf("end offset of %s/%d: %w", c.topic, p, err)
		}
		commit.AddBlock(c.topic, p, end, 0, "")
		pinned[p] = end
	}
	if len(pinned) == 0 {
		return nil
	}
	cresp, err := coord.CommitOffset(commit)
	if err != nil {
		return fmt.Errorf("offset commit: %w", err)
	}
	for _, perrs := range cresp.Errors {
		for p, kerr := range perrs {
			if kerr != sarama.ErrNoError {
				return fmt.Errorf("offset commit %s/%d: %w", c.topic, p, kerr)
			}
		}
	}
	log.Printf("group %s starts at end offsets %v of %s", group, pinned, c.topic)
	return nil
}
