import { type DescEnum, type DescExtension, type DescFile, type DescMessage, type DescService, toBinary } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import type { ServerReflection as ServerReflectionV1 } from "../../gen/grpc/reflection/v1/reflection_pb.ts";
import type { ServerReflection as ServerReflectionV1alpha } from "../../gen/grpc/reflection/v1alpha/reflection_pb.ts";

/** A reflection request, as v1 and v1alpha both shape it. */
interface ReflectionRequest {
  host: string;
  messageRequest:
    | { case: "fileByFilename" | "fileContainingSymbol" | "allExtensionNumbersOfType" | "listServices"; value: string }
    | { case: "fileContainingExtension"; value: { containingType: string; extensionNumber: number } }
    | { case: undefined; value?: undefined };
}

/** The answer to one reflection request, as v1 and v1alpha both shape it. */
type ReflectionAnswer =
  | { case: "fileDescriptorResponse"; value: { fileDescriptorProto: Uint8Array[] } }
  | { case: "allExtensionNumbersResponse"; value: { baseTypeName: string; extensionNumber: number[] } }
  | { case: "listServicesResponse"; value: { service: { name: string }[] } }
  | { case: "errorResponse"; value: { errorCode: number; errorMessage: string } };

/** What reflection describes: the services, the files that declare them and everything those import. */
interface DescriptorIndex {
  services: string[];
  files: Map<string, DescFile>;
  /** Each file's FileDescriptorProto, serialized. */
  encoded: Map<DescFile, Uint8Array>;
  /** The file that declares each fully-qualified name: message, field, oneof, enum, enum value, extension, service or method. */
  symbols: Map<string, DescFile>;
  messages: Set<string>;
  /** The extensions of each message type, by field number. */
  extensions: Map<string, Map<number, DescExtension>>;
}

/**
 * Implements gRPC server reflection, grpc.reflection.v1 and its predecessor
 * v1alpha (still the only one some tools ask), for `services`: what grpcurl,
 * grpcui, Postman and `buf curl` need to call them without the proto files.
 * Files are described as the generated code embeds them, without comments.
 */
export function createReflectionServices(services: readonly DescService[]) {
  const index = indexDescriptors(services);
  const v1: ServiceImpl<typeof ServerReflectionV1> = { serverReflectionInfo: (requests) => answerEach(index, requests) };
  const v1alpha: ServiceImpl<typeof ServerReflectionV1alpha> = { serverReflectionInfo: (requests) => answerEach(index, requests) };
  return { v1, v1alpha };
}

async function* answerEach<Request extends ReflectionRequest>(index: DescriptorIndex, requests: AsyncIterable<Request>) {
  // As in grpc-go: a stream sends each imported file once, and the file asked for every time.
  const sent = new Set<string>();
  for await (const request of requests) {
    yield { validHost: request.host, originalRequest: request, messageResponse: answer(index, request, sent) };
  }
}

function answer(index: DescriptorIndex, request: ReflectionRequest, sent: Set<string>): ReflectionAnswer {
  const asked = request.messageRequest;
  switch (asked.case) {
    case "listServices":
      return { case: "listServicesResponse", value: { service: index.services.map((name) => ({ name })) } };
    case "fileByFilename":
      return filesAnswer(index, index.files.get(asked.value), sent, `file not found: ${asked.value}`);
    case "fileContainingSymbol":
      return filesAnswer(index, index.symbols.get(asked.value), sent, `symbol not found: ${asked.value}`);
    case "fileContainingExtension": {
      const { containingType, extensionNumber } = asked.value;
      const extension = index.extensions.get(containingType)?.get(extensionNumber);
      return filesAnswer(index, extension?.file, sent, `extension not found: ${containingType} ${extensionNumber}`);
    }
    case "allExtensionNumbersOfType": {
      if (!index.messages.has(asked.value)) return errorAnswer(Code.NotFound, `type not found: ${asked.value}`);
      const numbers = [...(index.extensions.get(asked.value)?.keys() ?? [])];
      return { case: "allExtensionNumbersResponse", value: { baseTypeName: asked.value, extensionNumber: numbers } };
    }
    case undefined:
      throw new ConnectError("the request asks for nothing", Code.InvalidArgument);
  }
}

/** The file, then those of its imports, direct or not, that this stream has not sent yet. */
function filesAnswer(index: DescriptorIndex, file: DescFile | undefined, sent: Set<string>, notFound: string): ReflectionAnswer {
  if (!file) return errorAnswer(Code.NotFound, notFound);
  const answered: Uint8Array[] = [];
  const queue = [file];
  for (let next = queue.shift(); next; next = queue.shift()) {
    if (next !== file && sent.has(next.proto.name)) continue;
    sent.add(next.proto.name);
    answered.push(index.encoded.get(next) ?? toBinary(FileDescriptorProtoSchema, next.proto));
    queue.push(...next.dependencies.filter((dependency) => !sent.has(dependency.proto.name)));
  }
  return { case: "fileDescriptorResponse", value: { fileDescriptorProto: answered } };
}

function errorAnswer(code: Code, message: string): ReflectionAnswer {
  // Connect's codes are gRPC's status codes.
  return { case: "errorResponse", value: { errorCode: code, errorMessage: message } };
}

function indexDescriptors(services: readonly DescService[]): DescriptorIndex {
  const index: DescriptorIndex = {
    services: services.map((service) => service.typeName),
    files: new Map(),
    encoded: new Map(),
    symbols: new Map(),
    messages: new Set(),
    extensions: new Map(),
  };
  const addExtension = (extension: DescExtension) => {
    index.symbols.set(extension.typeName, extension.file);
    const numbers = index.extensions.get(extension.extendee.typeName) ?? new Map<number, DescExtension>();
    numbers.set(extension.number, extension);
    index.extensions.set(extension.extendee.typeName, numbers);
  };
  const addEnum = (enumeration: DescEnum) => {
    index.symbols.set(enumeration.typeName, enumeration.file);
    // Enum values are scoped like their enum, not inside it.
    const scope = enumeration.parent?.typeName ?? enumeration.file.proto.package;
    for (const value of enumeration.values) index.symbols.set(scope ? `${scope}.${value.name}` : value.name, enumeration.file);
  };
  const addMessage = (message: DescMessage) => {
    index.symbols.set(message.typeName, message.file);
    index.messages.add(message.typeName);
    for (const member of [...message.fields, ...message.oneofs]) index.symbols.set(`${message.typeName}.${member.name}`, message.file);
    message.nestedMessages.forEach(addMessage);
    message.nestedEnums.forEach(addEnum);
    message.nestedExtensions.forEach(addExtension);
  };
  const addFile = (file: DescFile) => {
    if (index.files.has(file.proto.name)) return;
    index.files.set(file.proto.name, file);
    index.encoded.set(file, toBinary(FileDescriptorProtoSchema, file.proto));
    file.messages.forEach(addMessage);
    file.enums.forEach(addEnum);
    file.extensions.forEach(addExtension);
    for (const service of file.services) {
      index.symbols.set(service.typeName, file);
      for (const method of service.methods) index.symbols.set(`${service.typeName}.${method.name}`, file);
    }
    file.dependencies.forEach(addFile);
  };
  for (const service of services) addFile(service.file);
  return index;
}
