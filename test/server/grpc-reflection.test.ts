import { execFile } from "node:child_process";
import { join } from "node:path";
import { promisify } from "node:util";
import { create, createFileRegistry, fromBinary } from "@bufbuild/protobuf";
import { type FileDescriptorProto, FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TopicService } from "../../gen/fastpubsub/v1/topic_service_pb.ts";
import { http } from "../../gen/google/api/annotations_pb.ts";
import {
  ExtensionRequestSchema,
  type ServerReflectionRequest,
  type ServerReflectionResponse,
  ServerReflection as ServerReflectionV1,
} from "../../gen/grpc/reflection/v1/reflection_pb.ts";
import { ServerReflection as ServerReflectionV1alpha } from "../../gen/grpc/reflection/v1alpha/reflection_pb.ts";
import { uniqueId } from "../support/ids.ts";
import { startTestServer, type TestServer } from "../support/server.ts";

const buf = join(import.meta.dirname, "../../node_modules/.bin/buf");

/** Runs `buf curl` over gRPC (HTTP/2 without TLS) with `args`, and returns its exit code and output. */
async function bufCurl(args: string[]) {
  try {
    const { stdout, stderr } = await promisify(execFile)(buf, ["curl", "--protocol", "grpc", "--http2-prior-knowledge", ...args]);
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code: number; stdout: string; stderr: string };
    return { code: failed.code, stdout: failed.stdout, stderr: failed.stderr };
  }
}

const everyService = [
  "fastpubsub.v1.AuthService",
  "fastpubsub.v1.ClientService",
  "fastpubsub.v1.SubscriptionService",
  "fastpubsub.v1.TopicService",
  "grpc.health.v1.Health",
  "grpc.reflection.v1.ServerReflection",
  "grpc.reflection.v1alpha.ServerReflection",
];

// What topic_service.proto imports, directly or not.
const topicServiceImports = [
  "fastpubsub/v1/access.proto",
  "fastpubsub/v1/field_rules.proto",
  "google/api/annotations.proto",
  "google/api/http.proto",
  "google/protobuf/descriptor.proto",
  "google/protobuf/empty.proto",
  "google/protobuf/struct.proto",
  "google/protobuf/timestamp.proto",
];

describe("gRPC server reflection", () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer();
  });
  afterAll(async () => {
    await server.close();
  });

  it("lets buf curl list the API's services, health and reflection", async () => {
    const listed = await bufCurl(["--list-services", server.url]);
    expect(listed.stderr).toBe("");
    expect(listed.stdout.trim().split("\n").sort()).toEqual(everyService);
  });

  it.each(["grpc-v1", "grpc-v1alpha"])("lets buf curl call RPCs without the proto files, through %s reflection", async (version) => {
    const id = uniqueId("reflected");
    const created = await bufCurl([
      "--reflect-protocol",
      version,
      "-d",
      JSON.stringify({ id }),
      `${server.url}/fastpubsub.v1.TopicService/CreateTopic`,
    ]);
    expect(created.stderr).toBe("");
    expect(JSON.parse(created.stdout)).toMatchObject({ id });
    const listed = await bufCurl([
      "--reflect-protocol",
      version,
      "-d",
      '{"limit": 100}',
      `${server.url}/fastpubsub.v1.TopicService/ListTopics`,
    ]);
    expect(JSON.parse(listed.stdout).data).toContainEqual(expect.objectContaining({ id }));
  });

  it.each([
    ["v1", ServerReflectionV1],
    ["v1alpha", ServerReflectionV1alpha],
  ])("answers each kind of request of %s, in order, on one stream", async (_, service) => {
    const client = createClient(service as typeof ServerReflectionV1, createGrpcTransport({ baseUrl: server.url }));
    const requests: ServerReflectionRequest["messageRequest"][] = [
      { case: "listServices", value: "*" },
      { case: "fileContainingSymbol", value: "fastpubsub.v1.TopicService.CreateTopic" },
      { case: "fileByFilename", value: "fastpubsub/v1/access.proto" },
      {
        case: "fileContainingExtension",
        value: create(ExtensionRequestSchema, { containingType: "google.protobuf.MethodOptions", extensionNumber: 50002 }),
      },
      { case: "allExtensionNumbersOfType", value: "google.protobuf.MethodOptions" },
      { case: "fileContainingSymbol", value: "grpc.health.v1.HealthCheckResponse.SERVING" },
      { case: "fileContainingSymbol", value: "fastpubsub.v1.NoSuchThing" },
      { case: "fileByFilename", value: "no/such/file.proto" },
    ];
    const answers: ServerReflectionResponse[] = [];
    for await (const answer of client.serverReflectionInfo(
      (async function* () {
        for (const messageRequest of requests) yield { host: "localhost", messageRequest };
      })(),
    )) {
      answers.push(answer);
    }
    // Each answer carries its request; v1alpha's ExtensionRequest is another type of the same shape.
    const asked = (request: ServerReflectionRequest["messageRequest"] | undefined) => {
      if (request?.case !== "fileContainingExtension") return request;
      const { containingType, extensionNumber } = request.value;
      return { case: request.case, value: { containingType, extensionNumber } };
    };
    expect(answers.map((answer) => asked(answer.originalRequest?.messageRequest))).toEqual(requests.map(asked));
    expect(answers.map((answer) => answer.validHost)).toEqual(Array(requests.length).fill("localhost"));
    const [services, symbol, filename, extension, numbers, enumValue, noSymbol, noFile] = answers.map((answer) => answer.messageResponse);

    expect(services?.case === "listServicesResponse" && services.value.service.map((s) => s.name).sort()).toEqual(everyService);

    // The file first, then every file it imports.
    const files = fileNames(symbol);
    expect(files[0]).toBe("fastpubsub/v1/topic_service.proto");
    expect(files.slice(1).sort()).toEqual(topicServiceImports);
    // The stream has sent access.proto's imports already: only the file asked for comes back.
    expect(fileNames(filename)).toEqual(["fastpubsub/v1/access.proto"]);
    expect(fileNames(extension)).toEqual(["fastpubsub/v1/access.proto"]);
    expect(numbers?.case === "allExtensionNumbersResponse" && numbers.value).toMatchObject({
      baseTypeName: "google.protobuf.MethodOptions",
      extensionNumber: expect.arrayContaining([50002, http.number]),
    });
    expect(fileNames(enumValue)).toEqual(["grpc/health/v1/health.proto"]);
    for (const missing of [noSymbol, noFile]) {
      expect(missing?.case === "errorResponse" && missing.value).toMatchObject({ errorCode: 5 });
    }

    // The files describe the service as the generated code does.
    const protos = new Map(decodeFiles(symbol).map((file) => [file.name, file]));
    const registry = createFileRegistry(protos.get("fastpubsub/v1/topic_service.proto") as FileDescriptorProto, (name) => protos.get(name));
    const described = registry.getService("fastpubsub.v1.TopicService");
    expect(described?.methods.map((method) => [method.name, method.input.typeName, method.output.typeName])).toEqual(
      TopicService.methods.map((method) => [method.name, method.input.typeName, method.output.typeName]),
    );
  });
});

describe("gRPC server reflection with authentication enabled", () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer({
      FASTPUBSUB_AUTH_ENABLED: "true",
      FASTPUBSUB_AUTH_SECRET_KEY: "test-key-5b2d9e1f7a3c8b6d4e0f2a1c9b8d7e6f",
    });
  });
  afterAll(async () => {
    await server.close();
  });

  it("needs no token, while the API's RPCs still do", async () => {
    const listed = await bufCurl(["--list-services", server.url]);
    expect(listed.stdout.trim().split("\n").sort()).toEqual(everyService);
    // Reflection describes the RPC, so buf curl gets as far as calling it, and the call is refused.
    const refused = await bufCurl(["-d", "{}", `${server.url}/fastpubsub.v1.TopicService/ListTopics`]);
    expect(refused.code).not.toBe(0);
    expect(JSON.parse(refused.stderr)).toMatchObject({ code: "unauthenticated" });
  });
});

function decodeFiles(response: ServerReflectionResponse["messageResponse"] | undefined) {
  if (response?.case !== "fileDescriptorResponse") throw new Error(`expected files, got ${response?.case}`);
  return response.value.fileDescriptorProto.map((bytes) => fromBinary(FileDescriptorProtoSchema, bytes));
}

function fileNames(response: ServerReflectionResponse["messageResponse"] | undefined) {
  return decodeFiles(response).map((file) => file.name);
}
