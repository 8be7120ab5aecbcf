// Command gomicro-peer plays a go-micro v4 service for broker-rs interop tests and
// benchmarks. It talks to NATS or Kafka only through go-micro's broker API
// (go-micro.dev/v4/broker with the go-micro/plugins/v4 kafka and nats plugins), so
// the bytes it puts on (and accepts from) the wire are exactly those of a go-micro
// service that uses broker.Publish / broker.Subscribe. See WIRE.md.
//
// Usage:
//
//	gomicro-peer [flags] pub    publish -count messages, one JSON line each
//	gomicro-peer [flags] sub    print READY, then one JSON line per event; exit 0
//	                            after -count events, 1 after -timeout
//	gomicro-peer [flags] bench  publish -count messages of -size bytes, print the rate;
//	                            -mode pubsub: to a subscriber of its own, the rate
//	                            from the first publish to the last receipt
//
// Output lines (stdout; everything else goes to stderr):
//
//	pub, sub: {"topic":"…","header":{…},"body_b64":"…"}
//	          (pub prints the broker.Message it handed to the plugin; sub adds
//	          "error":"…" for an event go-micro could not decode: it is delivered
//	          through broker.ErrorHandler with the raw bytes as body and counts
//	          towards -count)
//	bench:    {"messages":N,"seconds":S,"rate":R,"mode":"publish"|"pubsub",…}
//
// pub -via event publishes as micro.NewEvent(topic, client).Publish does (adds
// Content-Type, Micro-Topic, Micro-Id; JSON payload) instead of broker.Publish.
//
// Kafka sub: the plugin's defaults are kept (a fresh uuid group per subscriber
// unless -queue, OffsetNewest), except that -pin (default on) fixes the start
// offsets before READY, -offset oldest and -retention N pass a sarama ClusterConfig
// (see kafka.go and WIRE.md: with the defaults, sarama v1.30.1 cannot commit
// offsets to Kafka 4).
//
// Exit status: 0 success, 1 runtime failure (connect, publish, timeout), 2 usage.
package main

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/Shopify/sarama"
	kafka "github.com/go-micro/plugins/v4/broker/kafka"
	natsb "github.com/go-micro/plugins/v4/broker/nats"
	"github.com/google/uuid"
	"go-micro.dev/v4/broker"
	"go-micro.dev/v4/client"
	"go-micro.dev/v4/logger"
	"go-micro.dev/v4/metadata"
)

type headerFlags []string

func (h *headerFlags) String() string { return strings.Join(*h, ",") }
func (h *headerFlags) Set(v string) error {
	if !strings.Contains(v, "=") {
		return fmt.Errorf("header %q is not k=v", v)
	}
	*h = append(*h, v)
	return nil
}

type config struct {
	broker    string
	addr      string
	topic     string
	queue     string
	count     int
	body      string
	bodyHex   string
	headers   headerFlags
	timeout   time.Duration
	size      int
	parallel  int
	mode      string
	via       string
	offset    string
	retention time.Duration
	pin       bool
	verbose   bool
}

// Line is what pub and sub print for each message.
type Line struct {
	Topic   string            `json:"topic"`
	Header  map[string]string `json:"header"`
	BodyB64 string            `json:"body_b64"`
	Error   string            `json:"error,omitempty"`
}

var (
	stdoutMu sync.Mutex
	stdout   = json.NewEncoder(os.Stdout)
)

func emit(v interface{}) {
	stdoutMu.Lock()
	defer stdoutMu.Unlock()
	if err := stdout.Encode(v); err != nil {
		log.Fatalf("stdout: %v", err)
	}
}

func main() {
	log.SetFlags(0)
	log.SetPrefix("gomicro-peer: ")

	var c config
	fs := flag.NewFlagSet("gomicro-peer", flag.ContinueOnError)
	fs.StringVar(&c.broker, "broker", "nats", "kafka or nats")
	fs.StringVar(&c.addr, "addr", "", "broker address (default 127.0.0.1:9092 for kafka, nats://127.0.0.1:4222 for nats)")
	fs.StringVar(&c.topic, "topic", "gomicro-interop", "topic (NATS subject / Kafka topic)")
	fs.StringVar(&c.queue, "queue", "", "sub: broker.Queue option (NATS queue group / Kafka consumer group id); empty = none")
	fs.IntVar(&c.count, "count", 1, "pub/sub: number of messages; bench: number of messages (0 = 10000)")
	fs.StringVar(&c.body, "body", "", "pub: message body as text")
	fs.StringVar(&c.bodyHex, "body-hex", "", "pub: message body as hex (overrides -body)")
	fs.Var(&c.headers, "H", "pub: header k=v (repeatable); with -via event: metadata in the context")
	fs.StringVar(&c.via, "via", "broker", "pub: broker = broker.Publish(topic, &broker.Message{Header, Body}); event = what micro.NewEvent(topic, client).Publish(ctx, payload) does (client.Publish with the default client, Content-Type application/json; -body must be JSON)")
	fs.DurationVar(&c.timeout, "timeout", 30*time.Second, "sub: give up (exit 1) after this long; pub/bench: overall limit")
	fs.IntVar(&c.size, "size", 128, "bench: body size in bytes")
	fs.IntVar(&c.parallel, "parallel", 1, "bench: publishing goroutines")
	fs.StringVar(&c.mode, "mode", "publish", "bench: publish = the rate of publishing alone; pubsub = one subscriber (broker.Subscribe) on the topic, the rate from the first publish to the last receipt")
	fs.StringVar(&c.offset, "offset", "newest", "sub, kafka only: where a group without committed offsets starts: newest (the plugin's default, sarama.OffsetNewest) or oldest (passes a kafka.ClusterConfig with sarama.OffsetOldest)")
	fs.DurationVar(&c.retention, "retention", 0, "sub, kafka only: 0 = plugin default (sarama Consumer.Offsets.Retention 0, so sarama 1.30.1 commits with OffsetCommit v1, which Kafka 4 rejects: offsets are never committed); > 0 passes a kafka.ClusterConfig with this retention, so commits use OffsetCommit v2 and work")
	fs.BoolVar(&c.pin, "pin", true, "sub, kafka only, default offsets: commit the partitions' end offsets for a group that has none before READY, so every message published after READY is delivered")
	fs.BoolVar(&c.verbose, "v", false, "log sarama / go-micro debug output to stderr")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: gomicro-peer [flags] pub|sub|bench\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		os.Exit(2)
	}
	if fs.NArg() != 1 {
		fs.Usage()
		os.Exit(2)
	}
	cmd := fs.Arg(0)
	switch c.broker {
	case "kafka":
		if c.addr == "" {
			c.addr = "127.0.0.1:9092"
		}
	case "nats":
		if c.addr == "" {
			c.addr = "nats://127.0.0.1:4222"
		}
	default:
		usage(fs, "-broker must be kafka or nats, got %q", c.broker)
	}
	switch c.offset {
	case "oldest", "newest":
	default:
		usage(fs, "-offset must be newest or oldest, got %q", c.offset)
	}
	if c.count < 0 || c.size < 0 || c.parallel < 1 {
		usage(fs, "-count and -size must be >= 0, -parallel >= 1")
	}

	if c.verbose {
		sarama.Logger = log.New(os.Stderr, "sarama: ", log.LstdFlags|log.Lmicroseconds)
		installLogger(logger.DebugLevel)
	} else {
		installLogger(logger.InfoLevel)
	}

	var err error
	switch cmd {
	case "pub":
		err = runPub(&c)
	case "sub":
		err = runSub(&c)
	case "bench":
		err = runBench(&c)
	default:
		usage(fs, "unknown command %q", cmd)
	}
	if err != nil {
		log.Printf("%s: %v", cmd, err)
		os.Exit(1)
	}
}

func usage(fs *flag.FlagSet, format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "gomicro-peer: "+format+"\n", args...)
	fs.Usage()
	os.Exit(2)
}

// setup installs the plugin broker as broker.DefaultBroker (so the package-level
// broker.Publish / broker.Subscribe are used, as in a go-micro service) and connects.
func setup(c *config, extra ...broker.Option) error {
	opts := append([]broker.Option{broker.Addrs(c.addr)}, extra...)
	switch c.broker {
	case "kafka":
		// Defaults (see kafka@v1.2.0/kafka.go, options.go): producer and client use
		// kafka.DefaultBrokerConfig = sarama.NewConfig() (sarama v1.30.1: Version
		// V1_0_0_0, acks WaitForLocal, hash partitioner -> random partition for the
		// nil key, no compression, ClientID "sarama") with Return.Successes/Errors
		// forced on, driving a SyncProducer. Codec: go-micro.dev/v4/codec/json.Marshaler.
		broker.DefaultBroker = kafka.NewBroker(opts...)
	case "nats":
		// Defaults (nats@v1.2.0/nats.go): nats.GetDefaultOptions() of nats.go
		// v1.16.0, codec go-micro.dev/v4/codec/json.Marshaler.
		broker.DefaultBroker = natsb.NewBroker(opts...)
	}
	deadline := time.Now().Add(c.timeout)
	for {
		err := broker.Connect()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("connect to %s %s: %w", c.broker, c.addr, err)
		}
		log.Printf("connect to %s %s: %v; retrying", c.broker, c.addr, err)
		time.Sleep(500 * time.Millisecond)
	}
}

// disconnect closes the broker, but does not wait more than a few seconds for it.
func disconnect() {
	done := make(chan struct{})
	go func() {
		if err := broker.Disconnect(); err != nil {
			log.Printf("disconnect: %v", err)
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		log.Printf("disconnect: still closing after 5s; exiting anyway")
	}
}

func pubBody(c *config) ([]byte, error) {
	if c.bodyHex != "" {
		b, err := hex.DecodeString(c.bodyHex)
		if err != nil {
			return nil, fmt.Errorf("-body-hex: %w", err)
		}
		return b, nil
	}
	return []byte(c.body), nil
}

func pubHeader(c *config) map[string]string {
	h := make(map[string]string, len(c.headers))
	for _, kv := range c.headers {
		k, v, _ := strings.Cut(kv, "=")
		h[k] = v
	}
	return h
}

func runPub(c *config) error {
	body, err := pubBody(c)
	if err != nil {
		return err
	}
	if c.via != "broker" && c.via != "event" {
		return fmt.Errorf("-via must be broker or event, got %q", c.via)
	}
	if c.via == "event" && !json.Valid(body) {
		return fmt.Errorf("-via event: the body must be JSON (it is the event payload), got %q", body)
	}
	if err := setup(c); err != nil {
		return err
	}
	defer disconnect()
	if c.via == "event" {
		if err := pubEvent(c, body); err != nil {
			return err
		}
	}
	for i := 0; c.via == "broker" && i < c.count; i++ {
		// A fresh map per message: plugins must not see a shared map mutated.
		msg := &broker.Message{Header: pubHeader(c), Body: body}
		if err := broker.Publish(c.topic, msg); err != nil {
			return fmt.Errorf("publish %d/%d: %w", i+1, c.count, err)
		}
		emit(Line{Topic: c.topic, Header: msg.Header, BodyB64: base64.StdEncoding.EncodeToString(body)})
	}
	if c.broker == "nats" {
		// broker.Publish on NATS only buffers; make sure the server has everything.
		if err := natsRoundTrip(c.timeout); err != nil {
			return err
		}
	}
	return nil
}

// recordingBroker passes everything to the real broker and keeps the last message
// given to Publish, so pub can print what client.Publish built.
type recordingBroker struct {
	broker.Broker
	last *broker.Message
}

func (r *recordingBroker) Publish(topic string, m *broker.Message, opts ...broker.PublishOption) error {
	r.last = m
	return r.Broker.Publish(topic, m, opts...)
}

// pubEvent publishes like a go-micro service's micro.Event: micro.NewEvent(topic,
// client).Publish(ctx, payload) is client.Publish(ctx, client.NewMessage(topic,
// payload)) (go-micro.dev/v4@v4.9.0/event.go), and rpcClient.Publish
// (client/rpc_client.go) encodes the payload with the Content-Type's codec
// (application/json: codec/json.Codec.Write = json.Encoder.Encode, with a trailing
// newline) and adds Content-Type, Micro-Topic and Micro-Id to the context metadata.
func pubEvent(c *config, body []byte) error {
	rec := &recordingBroker{Broker: broker.DefaultBroker}
	cl := client.NewClient(client.Broker(rec))
	for i := 0; i < c.count; i++ {
		ctx := metadata.NewContext(context.Background(), metadata.Metadata(pubHeader(c)))
		if err := cl.Publish(ctx, cl.NewMessage(c.topic, json.RawMessage(body))); err != nil {
			return fmt.Errorf("publish %d/%d: %w", i+1, c.count, err)
		}
		emit(Line{Topic: c.topic, Header: rec.last.Header, BodyB64: base64.StdEncoding.EncodeToString(rec.last.Body)})
	}
	if c.broker == "nats" {
		return natsRoundTrip(c.timeout)
	}
	return nil
}

func runSub(c *config) error {
	var (
		mu       sync.Mutex
		received int
		done     = make(chan struct{})
	)
	onEvent := func(e broker.Event) {
		m := e.Message()
		line := Line{Topic: e.Topic(), Header: map[string]string{}}
		if m != nil {
			if m.Header != nil {
				line.Header = m.Header
			}
			line.BodyB64 = base64.StdEncoding.EncodeToString(m.Body)
		}
		if err := e.Error(); err != nil {
			line.Error = err.Error()
		}
		mu.Lock()
		defer mu.Unlock()
		if received >= c.count {
			return
		}
		emit(line)
		received++
		if received == c.count {
			close(done)
		}
	}
	handler := func(e broker.Event) error { onEvent(e); return nil }
	// Events the plugin could not decode (body not the JSON envelope) go to the
	// ErrorHandler with the raw bytes as Message().Body and the Header as far as
	// it was decoded (usually empty). Kafka never marks (commits) such a record.
	brokerOpts := []broker.Option{broker.ErrorHandler(handler)}
	if c.broker == "kafka" && (c.offset == "oldest" || c.retention > 0) {
		brokerOpts = append(brokerOpts, kafka.ClusterConfig(clusterConfig(c)))
	}
	if err := setup(c, brokerOpts...); err != nil {
		return err
	}
	defer disconnect()

	var subOpts []broker.SubscribeOption
	group := c.queue
	if c.broker == "kafka" {
		if group == "" {
			// Same as the plugin's own default (kafka.go Subscribe: Queue:
			// uuid.New().String()), but known to us so that it can be pinned.
			group = uuid.New().String()
		}
		if c.offset == "newest" && c.pin {
			if err := pinGroupStart(c, group); err != nil {
				log.Printf("pin start offsets of group %s: %v (continuing)", group, err)
			}
		}
		subOpts = append(subOpts, broker.Queue(group))
	} else if group != "" {
		subOpts = append(subOpts, broker.Queue(group))
	}
	if c.count == 0 {
		close(done)
	}
	sub, err := broker.Subscribe(c.topic, handler, subOpts...)
	if err != nil {
		return fmt.Errorf("subscribe %s: %w", c.topic, err)
	}
	if c.broker == "nats" {
		// The SUB must have reached the server before READY.
		if err := natsRoundTrip(c.timeout); err != nil {
			return err
		}
	}
	log.Printf("subscribed to %s on %s %s (queue %q)", c.topic, c.broker, c.addr, sub.Options().Queue)
	fmt.Fprintln(os.Stdout, "READY")

	select {
	case <-done:
		if c.broker == "kafka" && c.retention > 0 {
			// Let sarama's auto-commit (every Offsets.AutoCommit.Interval = 1 s) run
			// once more: closing the plugin's consumer group right away loses the
			// last marks, as a long-running service would not.
			time.Sleep(1500 * time.Millisecond)
		}
		return nil
	case <-time.After(c.timeout):
		mu.Lock()
		n := received
		mu.Unlock()
		return fmt.Errorf("timeout after %s: received %d of %d messages", c.timeout, n, c.count)
	}
}

// clusterConfig is the plugin's getClusterConfig (kafka.go) with the -offset and
// -retention changes; a ClusterConfig option replaces the plugin's default one.
func clusterConfig(c *config) *sarama.Config {
	cfg := sarama.NewConfig()
	if !cfg.Version.IsAtLeast(sarama.V0_10_2_0) {
		cfg.Version = sarama.V0_10_2_0
	}
	cfg.Consumer.Return.Errors = true
	cfg.Consumer.Offsets.Initial = sarama.OffsetNewest
	if c.offset == "oldest" {
		cfg.Consumer.Offsets.Initial = sarama.OffsetOldest
	}
	// sarama v1.30.1 offset_manager.go constructRequest: Retention == 0 -> OffsetCommit
	// v1 (removed in Kafka 4.0, KIP-896; the broker closes the connection), else v2.
	cfg.Consumer.Offsets.Retention = c.retention
	return cfg
}

type benchResult struct {
	Messages      int     `json:"messages"`
	Seconds       float64 `json:"seconds"`
	Rate          float64 `json:"rate"`
	Mode          string  `json:"mode"`
	Broker        string  `json:"broker"`
	Size          int     `json:"size"`
	Parallel      int     `json:"parallel"`
	EnvelopeBytes int     `json:"envelope_bytes"`
}

// probeHeader marks the messages bench -mode pubsub sends on Kafka until its
// subscriber is live; they are not counted.
const probeHeader = "X-Probe"

// benchMessages is what both bench modes send: n messages of -size bytes with the
// bench's three headers, made by mk, and the size of one envelope on the wire.
func benchMessages(c *config) (n int, mk func(i int) *broker.Message, envelope int) {
	n = c.count
	if n == 0 {
		n = 10000
	}
	body := make([]byte, c.size)
	for i := range body {
		body[i] = byte('a' + i%26)
	}
	mk = func(i int) *broker.Message {
		return &broker.Message{
			Header: map[string]string{
				"Content-Type": "application/octet-stream",
				"Micro-Topic":  c.topic,
				"X-Seq":        fmt.Sprint(i),
			},
			Body: body,
		}
	}
	env, _ := json.Marshal(mk(n - 1))
	return n, mk, len(env)
}

func runBench(c *config) error {
	switch c.mode {
	case "publish":
		return runBenchPublish(c)
	case "pubsub":
		return runBenchPubSub(c)
	default:
		return fmt.Errorf("-mode must be publish or pubsub, got %q", c.mode)
	}
}

// runBenchPublish: the rate from the first publish to the end of the last (on NATS:
// until the server has them all).
func runBenchPublish(c *config) error {
	n, mk, envelope := benchMessages(c)
	if err := setup(c); err != nil {
		return err
	}
	defer disconnect()

	start := time.Now()
	if err := publishAll(c, n, mk); err != nil {
		return err
	}
	if c.broker == "nats" {
		// Count only what the server has received.
		if err := natsRoundTrip(c.timeout); err != nil {
			return err
		}
	}
	secs := time.Since(start).Seconds()
	emit(benchResult{Messages: n, Seconds: round(secs, 4), Rate: round(float64(n)/secs, 1),
		Mode: c.mode, Broker: c.broker, Size: c.size, Parallel: c.parallel, EnvelopeBytes: envelope})
	return nil
}

// runBenchPubSub: one subscriber (broker.Subscribe) on the topic, live before the
// clock starts; the rate from the first publish to the last receipt. Every message
// must arrive, with the body it was sent with, within -timeout.
func runBenchPubSub(c *config) error {
	n, mk, envelope := benchMessages(c)
	var (
		mu       sync.Mutex
		received int
		last     time.Time
		bad      error
		probed   = make(chan struct{})
		done     = make(chan struct{})
	)
	handler := func(e broker.Event) error {
		m := e.Message()
		mu.Lock()
		defer mu.Unlock()
		switch {
		case e.Error() != nil:
			if bad == nil {
				bad = fmt.Errorf("undecodable event: %w", e.Error())
			}
		case m == nil:
			if bad == nil {
				bad = errors.New("event without a message")
			}
		case m.Header[probeHeader] != "":
			select {
			case <-probed:
			default:
				close(probed)
			}
			return nil
		case len(m.Body) != c.size:
			if bad == nil {
				bad = fmt.Errorf("body of %d B, sent %d B", len(m.Body), c.size)
			}
		}
		received++
		if received == n {
			last = time.Now()
			close(done)
		}
		return nil
	}
	if err := setup(c, broker.ErrorHandler(handler)); err != nil {
		return err
	}
	defer disconnect()

	var subOpts []broker.SubscribeOption
	if c.broker == "kafka" {
		// The plugin's default (a fresh uuid group, OffsetNewest), pinned so that
		// nothing published after Subscribe is missed (see kafka.go).
		group := uuid.New().String()
		if err := pinGroupStart(c, group); err != nil {
			log.Printf("pin start offsets of group %s: %v (continuing)", group, err)
		}
		subOpts = append(subOpts, broker.Queue(group))
	}
	sub, err := broker.Subscribe(c.topic, handler, subOpts...)
	if err != nil {
		return fmt.Errorf("subscribe %s: %w", c.topic, err)
	}
	defer sub.Unsubscribe()
	if err := subscriberLive(c, probed); err != nil {
		return err
	}

	start := time.Now()
	if err := publishAll(c, n, mk); err != nil {
		return err
	}
	select {
	case <-done:
	case <-time.After(time.Until(start.Add(c.timeout))):
		mu.Lock()
		defer mu.Unlock()
		return fmt.Errorf("timeout after %s: received %d of %d messages", c.timeout, received, n)
	}
	mu.Lock()
	defer mu.Unlock()
	if bad != nil {
		return bad
	}
	secs := last.Sub(start).Seconds()
	emit(benchResult{Messages: n, Seconds: round(secs, 4), Rate: round(float64(n)/secs, 1),
		Mode: c.mode, Broker: c.broker, Size: c.size, Parallel: c.parallel, EnvelopeBytes: envelope})
	return nil
}

// subscriberLive returns once the subscription receives: on NATS once the server has
// processed the SUB; on Kafka once a probe message (marked with probeHeader, sent
// every 200 ms) has come back, i.e. the consumer group has joined and fetches.
func subscriberLive(c *config, probed <-chan struct{}) error {
	if c.broker == "nats" {
		return natsRoundTrip(c.timeout)
	}
	deadline := time.After(c.timeout)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		probe := &broker.Message{Header: map[string]string{probeHeader: "1"}, Body: []byte{}}
		if err := broker.Publish(c.topic, probe); err != nil {
			return fmt.Errorf("probe publish: %w", err)
		}
		select {
		case <-probed:
			return nil
		case <-deadline:
			return fmt.Errorf("the subscriber received nothing within %s", c.timeout)
		case <-tick.C:
		}
	}
}

// publishAll publishes mk(0) … mk(n-1) to the topic through broker.Publish from
// -parallel goroutines, and returns the first error.
func publishAll(c *config, n int, mk func(i int) *broker.Message) error {
	var (
		wg    sync.WaitGroup
		next  = make(chan int, 1024)
		errMu sync.Mutex
		first error
	)
	go func() {
		for i := 0; i < n; i++ {
			next <- i
		}
		close(next)
	}()
	for w := 0; w < c.parallel; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := broker.Publish(c.topic, mk(i)); err != nil {
					errMu.Lock()
					if first == nil {
						first = fmt.Errorf("publish %d: %w", i, err)
					}
					errMu.Unlock()
					for range next {
					}
					return
				}
			}
		}()
	}
	wg.Wait()
	return first
}

func round(f float64, digits int) float64 {
	p := 1.0
	for i := 0; i < digits; i++ {
		p *= 10
	}
	return float64(int64(f*p+0.5)) / p
}

// natsRoundTrip proves that the server has processed everything sent so far on the
// plugin's connection: it subscribes, through the same broker, to a private subject,
// publishes one message to it and waits for it. NATS processes a connection's
// protocol in order, so earlier SUBs and PUBs are done when the probe comes back.
// (The plugin hides its *nats.Conn, so conn.Flush() is not available.)
func natsRoundTrip(timeout time.Duration) error {
	subject := "_GOMICRO_PEER.probe." + uuid.New().String()
	got := make(chan struct{}, 1)
	s, err := broker.Subscribe(subject, func(broker.Event) error {
		select {
		case got <- struct{}{}:
		default:
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("probe subscribe: %w", err)
	}
	defer s.Unsubscribe()
	if err := broker.Publish(subject, &broker.Message{}); err != nil {
		return fmt.Errorf("probe publish: %w", err)
	}
	select {
	case <-got:
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("no NATS round trip within %s", timeout)
	}
}
