// Command wirecap shows the raw bytes on the wire, bypassing go-micro: it reads
// Kafka records with a plain sarama consumer (no group) or NATS messages with
// nats.go, and can publish raw bytes, to check what go-micro's plugins write and how
// they take foreign input. Used to confirm WIRE.md; not part of gomicro-peer.
//
//	wirecap -broker kafka -topic T [-from oldest|newest] [-count N] capture
//	wirecap -broker nats  -topic S [-count N] capture        (prints READY first)
//	wirecap -broker kafka|nats -topic T -value TEXT [-key K] [-H k=v]... rawpub
//
// capture prints one JSON line per record/message: value/data as text and hex,
// key (Kafka; null when absent), headers, Kafka partition/offset/timestamp.
package main

import (
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"strings"
	"time"

	"github.com/Shopify/sarama"
	"github.com/nats-io/nats.go"
)

type hdrs []string

func (h *hdrs) String() string     { return strings.Join(*h, ",") }
func (h *hdrs) Set(v string) error { *h = append(*h, v); return nil }

type record struct {
	Partition *int32              `json:"partition,omitempty"`
	Offset    *int64              `json:"offset,omitempty"`
	Timestamp string              `json:"timestamp,omitempty"`
	Key       *string             `json:"key"`
	Headers   map[string][]string `json:"headers"`
	Value     string              `json:"value"`
	ValueHex  string              `json:"value_hex"`
}

func main() {
	log.SetFlags(0)
	log.SetPrefix("wirecap: ")
	b := flag.String("broker", "kafka", "kafka or nats")
	addr := flag.String("addr", "", "address (default 127.0.0.1:9092 / nats://127.0.0.1:4222)")
	topic := flag.String("topic", "", "topic / subject")
	from := flag.String("from", "oldest", "kafka capture: oldest or newest")
	count := flag.Int("count", 1, "capture: records to print")
	timeout := flag.Duration("timeout", 30*time.Second, "capture: give up after")
	value := flag.String("value", "", "rawpub: value / data")
	key := flag.String("key", "", "rawpub kafka: record key (empty = none)")
	var hs hdrs
	flag.Var(&hs, "H", "rawpub: record / NATS header k=v (repeatable)")
	flag.Parse()
	if *topic == "" || flag.NArg() != 1 {
		log.Fatal("need -topic and one command: capture or rawpub")
	}
	if *addr == "" {
		*addr = map[string]string{"kafka": "127.0.0.1:9092", "nats": nats.DefaultURL}[*b]
	}
	enc := json.NewEncoder(os.Stdout)
	cfg := sarama.NewConfig() // same defaults as the go-micro kafka plugin
	cfg.Producer.Return.Successes = true

	switch *b + " " + flag.Arg(0) {
	case "kafka capture":
		c, err := sarama.NewConsumer([]string{*addr}, cfg)
		check(err)
		parts, err := c.Partitions(*topic)
		check(err)
		start := sarama.OffsetOldest
		if *from == "newest" {
			start = sarama.OffsetNewest
		}
		out := make(chan *sarama.ConsumerMessage)
		for _, p := range parts {
			pc, err := c.ConsumePartition(*topic, p, start)
			check(err)
			go func() {
				for m := range pc.Messages() {
					out <- m
				}
			}()
		}
		fmt.Println("READY")
		for i := 0; i < *count; i++ {
			select {
			case m := <-out:
				r := record{Partition: &m.Partition, Offset: &m.Offset, Headers: map[string][]string{},
					Timestamp: m.Timestamp.UTC().Format(time.RFC3339Nano),
					Value:     string(m.Value), ValueHex: hex.EncodeToString(m.Value)}
				if m.Key != nil {
					k := string(m.Key)
					r.Key = &k
				}
				for _, h := range m.Headers {
					r.Headers[string(h.Key)] = append(r.Headers[string(h.Key)], string(h.Value))
				}
				check(enc.Encode(r))
			case <-time.After(*timeout):
				log.Fatalf("timeout after %d records", i)
			}
		}
	case "nats capture":
		nc, err := nats.Connect(*addr)
		check(err)
		ch := make(chan *nats.Msg, 1024)
		_, err = nc.ChanSubscribe(*topic, ch)
		check(err)
		check(nc.Flush())
		fmt.Println("READY")
		for i := 0; i < *count; i++ {
			select {
			case m := <-ch:
				r := record{Headers: map[string][]string(m.Header), Value: string(m.Data), ValueHex: hex.EncodeToString(m.Data)}
				if r.Headers == nil {
					r.Headers = map[string][]string{}
				}
				check(enc.Encode(r))
			case <-time.After(*timeout):
				log.Fatalf("timeout after %d messages", i)
			}
		}
		nc.Close()
	case "kafka rawpub":
		p, err := sarama.NewSyncProducer([]string{*addr}, cfg)
		check(err)
		m := &sarama.ProducerMessage{Topic: *topic, Value: sarama.StringEncoder(*value)}
		if *key != "" {
			m.Key = sarama.StringEncoder(*key)
		}
		for _, kv := range hs {
			k, v, _ := strings.Cut(kv, "=")
			m.Headers = append(m.Headers, sarama.RecordHeader{Key: []byte(k), Value: []byte(v)})
		}
		part, off, err := p.SendMessage(m)
		check(err)
		log.Printf("sent to %s/%d@%d", *topic, part, off)
		check(p.Close())
	case "nats rawpub":
		nc, err := nats.Connect(*addr)
		check(err)
		m := nats.NewMsg(*topic)
		m.Data = []byte(*value)
		for _, kv := range hs {
			k, v, _ := strings.Cut(kv, "=")
			m.Header.Add(k, v)
		}
		check(nc.PublishMsg(m))
		check(nc.Flush())
		nc.Close()
	default:
		log.Fatalf("unknown broker/command %q", *b+" "+flag.Arg(0))
	}
}

func check(err error) {
	if err != nil {
		log.Fatal(err)
	}
}
