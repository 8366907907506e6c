#!/usr/bin/env node
import { create, createFileRegistry, type DescFile } from "@bufbuild/protobuf";
import {
  type CodeGeneratorRequest,
  CodeGeneratorResponse_Feature,
  CodeGeneratorResponseSchema,
  FileDescriptorSetSchema,
} from "@bufbuild/protobuf/wkt";
import { type Plugin, runNodeJs } from "@bufbuild/protoplugin";
import { openApiDocument } from "./openapi-document.ts";

// The buf/protoc plugin that writes openapi.json, the OpenAPI document of the
// REST API, from the files to generate that declare services; it writes
// nothing for a request without services (such as google/api alone).
const protocGenOpenApi: Plugin = {
  name: "protoc-gen-openapi",
  version: "v1",
  run(request: CodeGeneratorRequest) {
    const registry = createFileRegistry(create(FileDescriptorSetSchema, { file: request.protoFile }));
    const files = request.fileToGenerate
      .map((name) => registry.getFile(name))
      .filter((file): file is DescFile => file !== undefined && file.services.length > 0);
    const document =
      files.length > 0 ? [{ name: "openapi.json", content: `${JSON.stringify(openApiDocument(registry, files), null, 2)}\n` }] : [];
    return create(CodeGeneratorResponseSchema, {
      supportedFeatures: BigInt(CodeGeneratorResponse_Feature.PROTO3_OPTIONAL),
      file: document,
    });
  },
};

runNodeJs(protocGenOpenApi);
