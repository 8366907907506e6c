// Command publisher publishes -count messages to -topic over gRPC, creating the
// topic and a subscription -subscription to it when they do not exist yet.
//
//	go run ./publisher -address localhost:8000 -count 1000
package main

import (
	"context"
	"fmt"
	"log"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"fastpubsub/examples/go/internal/example"
	pb "fastpubsub/gen/go/fastpubsub/v1"
)

func main() {
	options := example.Parse()
	connection := example.Dial(options)
	defer connection.Close()
	ctx := example.Context(options)
	topics := pb.NewTopicServiceClient(connection)
	subscriptions := pb.NewSubscriptionServiceClient(connection)

	ensure(ctx, func(ctx context.Context) error {
		_, err := topics.CreateTopic(ctx, &pb.CreateTopicRequest{Id: options.Topic})
		return err
	})
	ensure(ctx, func(ctx context.Context) error {
		_, err := subscriptions.CreateSubscription(ctx, &pb.CreateSubscriptionRequest{Id: options.Subscription, TopicId: options.Topic})
		return err
	})

	for sent := 0; sent < options.Count; sent += options.BatchSize {
		batch := []*structpb.Struct{}
		for n := sent; n < sent+options.BatchSize && n < options.Count; n++ {
			payload, err := structpb.NewStruct(map[string]interface{}{
				"event": "order.created",
				"order": n,
				"at":    time.Now().UTC().Format(time.RFC3339Nano),
			})
			if err != nil {
				log.Fatal(err)
			}
			batch = append(batch, payload)
		}
		if _, err := topics.PublishMessages(ctx, &pb.PublishMessagesRequest{TopicId: options.Topic, Messages: batch}); err != nil {
			log.Fatalf("publishing: %v", err)
		}
	}
	fmt.Printf("published %d messages to %s\n", options.Count, options.Topic)
}

// ensure runs a create call, treating "already exists" as done.
func ensure(ctx context.Context, create func(context.Context) error) {
	if err := create(ctx); err != nil && status.Code(err) != codes.AlreadyExists {
		log.Fatalf("creating: %v", err)
	}
}
