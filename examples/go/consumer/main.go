// Command consumer consumes -subscription over gRPC until -count messages were
// processed: consume a batch, process each message, ack the ones that succeeded
// and nack the others (they come back after the subscription's backoff). When
// the queue is empty it waits a little longer each time, up to a second; a
// streaming RPC would replace exactly this loop.
//
//	go run ./consumer -address localhost:8000 -count 1000
package main

import (
	"fmt"
	"log"
	"os"
	"time"

	"fastpubsub/examples/go/internal/example"
	pb "fastpubsub/gen/go/fastpubsub/v1"
)

func main() {
	options := example.Parse()
	connection := example.Dial(options)
	defer connection.Close()
	ctx := example.Context(options)
	subscriptions := pb.NewSubscriptionServiceClient(connection)
	consumerID := fmt.Sprintf("example-go-%d", os.Getpid())
	batchSize := int32(options.BatchSize)

	processed := 0
	idle := time.Duration(0)
	for processed < options.Count {
		answer, err := subscriptions.ConsumeMessages(ctx, &pb.ConsumeMessagesRequest{
			SubscriptionId: options.Subscription,
			ConsumerId:     consumerID,
			BatchSize:      &batchSize,
		})
		if err != nil {
			log.Fatalf("consuming: %v", err)
		}
		if len(answer.Data) == 0 {
			idle = min(time.Second, max(10*time.Millisecond, 2*idle))
			time.Sleep(idle)
			continue
		}
		idle = 0
		var acks, nacks []string
		for _, message := range answer.Data {
			if err := process(message); err != nil {
				nacks = append(nacks, message.Id)
			} else {
				acks = append(acks, message.Id)
			}
		}
		if len(acks) > 0 {
			if _, err := subscriptions.AckMessages(ctx, &pb.AckMessagesRequest{SubscriptionId: options.Subscription, MessageIds: acks}); err != nil {
				log.Fatalf("acking: %v", err)
			}
		}
		if len(nacks) > 0 {
			if _, err := subscriptions.NackMessages(ctx, &pb.NackMessagesRequest{SubscriptionId: options.Subscription, MessageIds: nacks}); err != nil {
				log.Fatalf("nacking: %v", err)
			}
		}
		processed += len(acks)
	}
	fmt.Printf("processed %d messages from %s\n", processed, options.Subscription)
}

// process is the work done for one message; a message that fails is nacked.
func process(message *pb.Message) error {
	if _, ok := message.Payload.GetFields()["order"]; !ok {
		return fmt.Errorf("unexpected payload in %s", message.Id)
	}
	return nil
}

func min(a, b time.Duration) time.Duration {
	if a < b {
		return a
	}
	return b
}

func max(a, b time.Duration) time.Duration {
	if a > b {
		return a
	}
	return b
}
