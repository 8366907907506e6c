// Command consumer consumes -subscription by streaming over gRPC until -count
// messages were processed: StreamMessages delivers messages as they become
// ready, never more than -max-outstanding not yet acked or nacked; the consumer
// processes each batch, acks the messages that succeeded and nacks the others
// (they come back after the subscription's backoff). When the stream breaks
// (the server restarts, the connection drops) it opens it again after a
// backoff that doubles up to 5 s.
//
//	go run ./consumer -address localhost:8000 -count 1000
package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"os"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"fastpubsub/examples/go/internal/example"
	pb "fastpubsub/gen/go/fastpubsub/v1"
)

func main() {
	options := example.Parse()
	connection := example.Dial(options)
	defer connection.Close()
	ctx, stop := context.WithCancel(example.Context(options))
	defer stop()
	subscriptions := pb.NewSubscriptionServiceClient(connection)
	maxOutstanding := int32(options.MaxOutstanding)
	worker := &consumer{
		subscriptions: subscriptions,
		subscription:  options.Subscription,
		id:            fmt.Sprintf("example-go-%d", os.Getpid()),
	}
	request := &pb.StreamMessagesRequest{
		SubscriptionId:         worker.subscription,
		ConsumerId:             worker.id,
		MaxOutstandingMessages: &maxOutstanding,
	}

	processed := 0
	backoff := 100 * time.Millisecond
	for processed < options.Count {
		stream, err := subscriptions.StreamMessages(ctx, request)
		for err == nil && processed < options.Count {
			var response *pb.StreamMessagesResponse
			if response, err = stream.Recv(); err == nil {
				backoff = 100 * time.Millisecond
				// An empty response is a heartbeat.
				processed += worker.handle(ctx, response.Data)
			}
		}
		if err != nil {
			if !reconnectable(err) {
				log.Fatalf("streaming: %v", err)
			}
			time.Sleep(backoff)
			if backoff *= 2; backoff > 5*time.Second {
				backoff = 5 * time.Second
			}
		}
	}
	fmt.Printf("processed %d messages from %s\n", processed, options.Subscription)
}

// consumer is the stream's consumer: the messages it acks and nacks are those
// locked to it.
type consumer struct {
	subscriptions pb.SubscriptionServiceClient
	subscription  string
	id            string
}

// handle processes a batch, acks the messages that succeeded and nacks the
// others, and returns how many succeeded.
func (c *consumer) handle(ctx context.Context, messages []*pb.Message) int {
	var acks, nacks []string
	for _, message := range messages {
		if err := process(message); err != nil {
			nacks = append(nacks, message.Id)
		} else {
			acks = append(acks, message.Id)
		}
	}
	if len(acks) > 0 {
		if _, err := c.subscriptions.AckMessages(ctx, &pb.AckMessagesRequest{SubscriptionId: c.subscription, MessageIds: acks, ConsumerId: &c.id}); err != nil {
			log.Fatalf("acking: %v", err)
		}
	}
	if len(nacks) > 0 {
		if _, err := c.subscriptions.NackMessages(ctx, &pb.NackMessagesRequest{SubscriptionId: c.subscription, MessageIds: nacks, ConsumerId: &c.id}); err != nil {
			log.Fatalf("nacking: %v", err)
		}
	}
	return len(acks)
}

// process is the work done for one message; a message that fails is nacked.
func process(message *pb.Message) error {
	if _, ok := message.Payload.GetFields()["order"]; !ok {
		return fmt.Errorf("unexpected payload in %s", message.Id)
	}
	return nil
}

// reconnectable tells whether a stream that ended with err should be opened
// again: it ended cleanly, or the server or the connection went away. Other
// errors (not_found, permission_denied, unauthenticated, ...) would recur.
func reconnectable(err error) bool {
	if err == io.EOF {
		return true
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.Internal, codes.DeadlineExceeded, codes.Unknown, codes.Aborted, codes.ResourceExhausted:
		return true
	}
	return false
}
