// Command grpc-go-client calls fastpubsub with grpc-go the way gRPC tools do,
// over HTTP/2 without TLS:
//
//	grpc-go-client probe -address A -service S
//
// checks the health of service S as a Kubernetes grpc probe does and prints
// the status (SERVING, NOT_SERVING);
//
//	grpc-go-client call -address A -method pkg.Service/Method -data JSON
//
// knows no proto file, as grpcurl: it lists the services through v1alpha
// server reflection, builds every file the server sends with protodesc (which
// refuses a file or an import it cannot resolve), prints the services, then
// calls the method with the request decoded from JSON and prints the answer
// as JSON.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"strings"
	"time"

	protov1 "github.com/golang/protobuf/proto"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
)

func main() {
	if len(os.Args) < 2 {
		log.Fatal("usage: grpc-go-client probe|call [flags]")
	}
	flags := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	address := flags.String("address", "127.0.0.1:8000", "the server's host:port")
	service := flags.String("service", "", "probe: the service whose health to check")
	method := flags.String("method", "", "call: the method, as pkg.Service/Method")
	data := flags.String("data", "{}", "call: the request as JSON")
	flags.Parse(os.Args[2:])

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := grpc.DialContext(ctx, *address, grpc.WithInsecure(), grpc.WithBlock())
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()

	switch os.Args[1] {
	case "probe":
		answer, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: *service})
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(answer.Status)
	case "call":
		call(ctx, conn, *method, *data)
	default:
		log.Fatalf("unknown command %q", os.Args[1])
	}
}

func call(ctx context.Context, conn *grpc.ClientConn, method, data string) {
	stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		log.Fatal(err)
	}
	ask := func(request *reflectionpb.ServerReflectionRequest) *reflectionpb.ServerReflectionResponse {
		if err := stream.Send(request); err != nil {
			log.Fatal(err)
		}
		answer, err := stream.Recv()
		if err != nil {
			log.Fatal(err)
		}
		if failure := answer.GetErrorResponse(); failure != nil {
			log.Fatalf("reflection: %d %s", failure.ErrorCode, failure.ErrorMessage)
		}
		return answer
	}

	listed := ask(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}})
	set := &descriptorpb.FileDescriptorSet{}
	seen := map[string]bool{}
	var names []string
	for _, service := range listed.GetListServicesResponse().Service {
		names = append(names, service.Name)
		answer := ask(&reflectionpb.ServerReflectionRequest{
			MessageRequest: &reflectionpb.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: service.Name},
		})
		for _, encoded := range answer.GetFileDescriptorResponse().FileDescriptorProto {
			file := &descriptorpb.FileDescriptorProto{}
			if err := proto.Unmarshal(encoded, file); err != nil {
				log.Fatal(err)
			}
			if !seen[file.GetName()] {
				seen[file.GetName()] = true
				set.File = append(set.File, file)
			}
		}
	}
	stream.CloseSend()
	files, err := protodesc.NewFiles(set)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(strings.Join(names, " "))

	found, err := files.FindDescriptorByName(protoreflect.FullName(strings.Replace(method, "/", ".", 1)))
	if err != nil {
		log.Fatal(err)
	}
	described := found.(protoreflect.MethodDescriptor)
	request := dynamicpb.NewMessage(described.Input())
	if err := protojson.Unmarshal([]byte(data), request); err != nil {
		log.Fatal(err)
	}
	response := dynamicpb.NewMessage(described.Output())
	if err := conn.Invoke(ctx, "/"+method, protov1.MessageV1(request), protov1.MessageV1(response)); err != nil {
		log.Fatal(err)
	}
	fmt.Println(protojson.Format(response))
}
