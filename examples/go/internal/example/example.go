// Package example holds the command-line options and the connection shared by the Go examples.
package example

import (
	"context"
	"flag"
	"log"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

// Options are the examples' command-line options.
type Options struct {
	Address        string
	Token          string
	Topic          string
	Subscription   string
	Count          int
	BatchSize      int
	MaxOutstanding int
}

// Parse reads the options from the command line.
func Parse() Options {
	var options Options
	flag.StringVar(&options.Address, "address", "localhost:8000", "host:port of the fastpubsub server (gRPC without TLS)")
	flag.StringVar(&options.Token, "token", "", "access token, when the server has authentication on")
	flag.StringVar(&options.Topic, "topic", "example-orders", "topic id")
	flag.StringVar(&options.Subscription, "subscription", "example-orders-worker", "subscription id")
	flag.IntVar(&options.Count, "count", 1000, "number of messages")
	flag.IntVar(&options.BatchSize, "batch-size", 100, "messages per publish call")
	flag.IntVar(&options.MaxOutstanding, "max-outstanding", 100, "most messages streamed to the consumer and not yet acked or nacked (1 to 1000)")
	flag.Parse()
	return options
}

// Dial connects to the server over gRPC (HTTP/2 without TLS).
func Dial(options Options) *grpc.ClientConn {
	connection, err := grpc.Dial(strings.TrimPrefix(options.Address, "http://"), grpc.WithInsecure(), grpc.WithBlock())
	if err != nil {
		log.Fatalf("connecting to %s: %v", options.Address, err)
	}
	return connection
}

// Context returns a context that carries the access token, if any.
func Context(options Options) context.Context {
	if options.Token == "" {
		return context.Background()
	}
	return metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+options.Token)
}
