// Command go is the load generator of the benchmark's grpc-go target: it runs
// scenario A (pipeline), A-unthrottled or B (fan-out) of bench/scenarios.ts
// against a fastpubsub server with the generated Go client over gRPC, as the
// Go examples call it, and prints its counts as one JSON line at the start and
// one at the end of the measured window, so that bench/run.ts can read the CPU
// times at the same moments.
//
//	go run fastpubsub/bench/go -address http://127.0.0.1:8000 -scenario A -warmup 5 -duration 20
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"math"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/structpb"

	pb "fastpubsub/gen/go/fastpubsub/v1"
)

const (
	topic     = "bench"
	batchSize = 100
)

// subscription is a subscription of a scenario; filter is nil for none.
type subscription struct {
	id     string
	filter map[string]interface{}
}

func main() {
	address := flag.String("address", "localhost:8000", "the fastpubsub server: host:port or http://host:port (gRPC without TLS)")
	scenario := flag.String("scenario", "A", "A, A-unthrottled or B")
	warmup := flag.Float64("warmup", 5, "seconds of warm-up before the measured window")
	duration := flag.Float64("duration", 20, "seconds measured")
	flag.Parse()
	target := *address
	if parsed, err := url.Parse(target); err == nil && parsed.Host != "" {
		target = parsed.Host
	}

	var subscriptions []subscription
	var loops []func(*run)
	switch *scenario {
	case "A", "A-unthrottled":
		backlog := int64(2000)
		if *scenario == "A-unthrottled" {
			backlog = math.MaxInt64
		}
		subscriptions = []subscription{{id: "bench-a"}}
		publisher := func(r *run) { r.publish(target, backlog, false) }
		consumer := func(r *run) { r.consume(target, "bench-a") }
		loops = []func(*run){publisher, publisher, consumer, consumer}
	case "B":
		subscriptions = []subscription{
			{id: "bench-b1"}, {id: "bench-b2"}, {id: "bench-b3"}, {id: "bench-b4"},
			{id: "bench-b5", filter: map[string]interface{}{"country": []interface{}{"BR", "US"}}},
		}
		publisher := func(r *run) { r.publish(target, math.MaxInt64, true) }
		loops = []func(*run){publisher, publisher}
	default:
		log.Fatalf("unknown scenario %q (A, A-unthrottled or B)", *scenario)
	}

	admin := dial(target)
	defer admin.Close()
	setUp(pb.NewTopicServiceClient(admin), pb.NewSubscriptionServiceClient(admin), subscriptions)

	r := newRun()
	var done sync.WaitGroup
	for _, loop := range loops {
		done.Add(1)
		go func(loop func(*run)) {
			defer done.Done()
			loop(r)
		}(loop)
	}
	time.Sleep(seconds(*warmup))
	r.report("start")
	time.Sleep(seconds(*duration))
	r.report("end")
	r.stop()
	done.Wait()
	// As the TypeScript drivers' close: the topic goes, with every message left.
	_, _ = pb.NewTopicServiceClient(admin).DeleteTopic(context.Background(), &pb.DeleteTopicRequest{Id: topic})
}

// setUp creates the topic and the subscriptions, empty: it deletes the topic of an earlier run first.
func setUp(topics pb.TopicServiceClient, subscriptions pb.SubscriptionServiceClient, wanted []subscription) {
	ctx := context.Background()
	_, _ = topics.DeleteTopic(ctx, &pb.DeleteTopicRequest{Id: topic})
	if _, err := topics.CreateTopic(ctx, &pb.CreateTopicRequest{Id: topic}); err != nil {
		log.Fatalf("creating the topic: %v", err)
	}
	for _, s := range wanted {
		filter := structpb.NewNullValue()
		if s.filter != nil {
			var err error
			if filter, err = structpb.NewValue(s.filter); err != nil {
				log.Fatal(err)
			}
		}
		request := &pb.CreateSubscriptionRequest{Id: s.id, TopicId: topic, Filter: filter}
		if _, err := subscriptions.CreateSubscription(ctx, request); err != nil {
			log.Fatalf("creating subscription %s: %v", s.id, err)
		}
	}
}

// run holds the counts of a scenario's loops, and whether they still run.
type run struct {
	mu        sync.Mutex
	changed   *sync.Cond // signalled on every ack and on stop
	running   bool
	began     time.Time
	published int64
	acked     int64
	routed    int64
}

// newRun starts the counts of a run, which runs until stopped.
func newRun() *run {
	r := &run{running: true, began: time.Now()}
	r.changed = sync.NewCond(&r.mu)
	return r
}

// publish publishes the prepared batches over a connection of its own until the run stops,
// pausing while more than backlog messages are unacked; with fanOut it counts the rows routed
// to scenario B's subscriptions (four unfiltered, one for BR and US).
func (r *run) publish(target string, backlog int64, fanOut bool) {
	connection := dial(target)
	defer connection.Close()
	topics := pb.NewTopicServiceClient(connection)
	for {
		r.mu.Lock()
		for r.running && r.published-r.acked > backlog {
			r.changed.Wait()
		}
		running := r.running
		r.mu.Unlock()
		if !running {
			return
		}
		b := nextBatch()
		if _, err := topics.PublishMessages(context.Background(), &pb.PublishMessagesRequest{TopicId: topic, Messages: b.messages}); err != nil {
			log.Fatalf("publishing: %v", err)
		}
		r.mu.Lock()
		r.published += int64(len(b.messages))
		if fanOut {
			r.routed += int64(4*len(b.messages) + b.brOrUS)
		}
		r.mu.Unlock()
	}
}

// consume consumes batches of the subscription and acks them, over a connection of its own,
// until the run stops; it asks again after 1 ms when a batch comes back empty.
func (r *run) consume(target, subscriptionID string) {
	connection := dial(target)
	defer connection.Close()
	subscriptions := pb.NewSubscriptionServiceClient(connection)
	consumerID := fmt.Sprintf("bench-go-%d", atomic.AddInt64(&consumers, 1))
	size := int32(batchSize)
	ctx := context.Background()
	for r.isRunning() {
		answer, err := subscriptions.ConsumeMessages(ctx, &pb.ConsumeMessagesRequest{SubscriptionId: subscriptionID, ConsumerId: consumerID, BatchSize: &size})
		if err != nil {
			log.Fatalf("consuming: %v", err)
		}
		if len(answer.Data) == 0 {
			time.Sleep(time.Millisecond)
			continue
		}
		ids := make([]string, len(answer.Data))
		for n, message := range answer.Data {
			ids[n] = message.Id
		}
		// Without consumer_id, as the TypeScript gRPC driver acks.
		if _, err := subscriptions.AckMessages(ctx, &pb.AckMessagesRequest{SubscriptionId: subscriptionID, MessageIds: ids}); err != nil {
			log.Fatalf("acking: %v", err)
		}
		r.mu.Lock()
		r.acked += int64(len(ids))
		r.changed.Broadcast()
		r.mu.Unlock()
	}
}

// isRunning tells whether the loops should go on.
func (r *run) isRunning() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.running
}

// stop tells the loops to end after their current call.
func (r *run) stop() {
	r.mu.Lock()
	r.running = false
	r.changed.Broadcast()
	r.mu.Unlock()
}

// report prints the counts so far and the seconds since the run began, as one JSON line.
func (r *run) report(window string) {
	r.mu.Lock()
	line, err := json.Marshal(map[string]interface{}{
		"window":    window,
		"seconds":   time.Since(r.began).Seconds(),
		"published": r.published,
		"acked":     r.acked,
		"routed":    r.routed,
	})
	r.mu.Unlock()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Fprintln(os.Stdout, string(line))
}

// dial connects to the server over gRPC (HTTP/2 without TLS), as the Go examples do.
func dial(target string) *grpc.ClientConn {
	connection, err := grpc.Dial(target, grpc.WithInsecure(), grpc.WithBlock())
	if err != nil {
		log.Fatalf("connecting to %s: %v", target, err)
	}
	return connection
}

// seconds converts the flags' seconds to a duration.
func seconds(s float64) time.Duration {
	return time.Duration(s * float64(time.Second))
}

// batch is a prepared batch of payloads, with how many of them are for BR or US.
type batch struct {
	messages []*structpb.Struct
	brOrUS   int
}

// batches are bench/scenarios.ts's: 50 batches of 100, ready before the run, as a real publisher
// has its data ready; the publishers cycle through them.
var (
	batches  = prepareBatches()
	sequence uint64
)

// consumers numbers the consumers, for their ids.
var consumers int64

// nextBatch returns the publishers' next batch, cycling through the prepared ones.
func nextBatch() batch {
	return batches[(atomic.AddUint64(&sequence, 1)-1)%uint64(len(batches))]
}

// prepareBatches makes the 50 batches of eventPayload 0 to 4999 as structpb messages.
func prepareBatches() []batch {
	prepared := make([]batch, 50)
	for b := range prepared {
		for n := b * batchSize; n < (b+1)*batchSize; n++ {
			payload := eventPayload(n)
			message, err := structpb.NewStruct(payload)
			if err != nil {
				log.Fatal(err)
			}
			prepared[b].messages = append(prepared[b].messages, message)
			if country := payload["country"]; country == "BR" || country == "US" {
				prepared[b].brOrUS++
			}
		}
	}
	return prepared
}

// eventPayload is bench/payload.ts's eventPayload: a JSON object of about 200 bytes, like a
// typical event; n makes each one different.
func eventPayload(n int) map[string]interface{} {
	countries := []string{"BR", "US", "DE", "JP", "PL"}
	plan := "basic"
	if n%3 == 0 {
		plan = "premium"
	}
	return map[string]interface{}{
		"event":   "user.updated",
		"user_id": fmt.Sprint(100000 + n),
		"country": countries[n%len(countries)],
		"plan":    plan,
		"amount":  float64(n%1000) + 0.5,
		"active":  n%2 == 0,
		"ts":      "2026-11-25T12:00:00.000Z",
		"note":    "lorem ipsum dolor sit amet, consectetur adipiscing elit",
	}
}
