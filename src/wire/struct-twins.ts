import {
  clone,
  create,
  createFileRegistry,
  type DescField,
  type DescFile,
  type DescMessage,
  type DescMethod,
  type DescService,
  isFieldSet,
  type JsonObject,
  type Message,
} from "@bufbuild/protobuf";
import {
  type DescriptorProto,
  FieldDescriptorProto_Label,
  FieldDescriptorProto_Type,
  FieldDescriptorProtoSchema,
  FileDescriptorProtoSchema,
  OneofDescriptorProtoSchema,
} from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { payloadObject } from "./payload-text.ts";
import { structFromBinary, structToBinary } from "./struct-binary.ts";

/*
 * protobuf-es writes and reads a google.protobuf.Struct field by turning its
 * JsonObject into Struct and Value messages, by reflection, which costs ~10×
 * what src/wire/struct-binary.ts does. Neither it nor Connect takes a codec
 * for one type, so the binary protocols run on "twins" of the services: the
 * same files, package, services, methods, messages and options, in which each
 * Struct field is `bytes` holding the Struct's binary form (explicit presence
 * kept, so an empty Struct is still written). The wire is the same, byte for
 * byte; a twin message converts to the original one and back by running only
 * its Struct fields through the codec.
 */

const structType = ".google.protobuf.Struct";

/** How to convert one message type between its original and its twin: its Struct fields, and its fields holding such messages. */
interface Plan {
  structs: { localName: string; name: string; list: boolean }[];
  nested: { localName: string; name: string; list: boolean; plan: Plan }[];
}

/** A method and its twin, with the conversions of their messages. */
export interface TwinMethod {
  original: DescMethod;
  twin: DescMethod;
  /** Whether the request or the response holds a Struct (if neither, the twin is the original in all but name). */
  holdsStruct: boolean;
  /** The twin request of an original request (or request init). */
  requestToTwin(message: object): Message;
  /** The original request of a twin request; ConnectError with `code`, naming the field, when a Struct's bytes are not one. */
  requestFromTwin(message: Message, code?: Code): Message;
  responseToTwin(message: object): Message;
  responseFromTwin(message: Message, code?: Code): Message;
}

/** A service and its twin. */
export interface TwinService {
  original: DescService;
  twin: DescService;
  /** The service's methods and their twins, by the original method. */
  methods: Map<DescMethod, TwinMethod>;
  /** Whether any method's request or response holds a Struct. */
  holdsStruct: boolean;
}

const twins = new Map<DescService, TwinService>();

/** The twin of a service, built on first use from the generated file descriptors. */
export function twinOf(service: DescService): TwinService {
  let twin = twins.get(service);
  if (!twin) {
    twin = createTwin(service);
    twins.set(service, twin);
  }
  return twin;
}

function createTwin(service: DescService): TwinService {
  const file = twinFile(service.file);
  const twinService = file.services.find((candidate) => candidate.typeName === service.typeName);
  if (!twinService) throw new Error(`no twin of ${service.typeName}`);
  const methods = new Map<DescMethod, TwinMethod>();
  for (const original of service.methods) {
    const twin = twinService.methods.find((candidate) => candidate.name === original.name);
    if (!twin) throw new Error(`no twin of ${service.typeName}.${original.name}`);
    const input = planOf(original.input);
    const output = planOf(original.output);
    methods.set(original, {
      original,
      twin,
      holdsStruct: input !== undefined || output !== undefined,
      requestToTwin: (message) => toTwin(input, message) as Message,
      requestFromTwin: (message, code = Code.InvalidArgument) => fromTwin(input, message, "", code) as Message,
      responseToTwin: (message) => toTwin(output, message) as Message,
      responseFromTwin: (message, code = Code.Internal) => fromTwin(output, message, "", code) as Message,
    });
  }
  return { original: service, twin: twinService, methods, holdsStruct: [...methods.values()].some((method) => method.holdsStruct) };
}

// Twin files by name, built with the twins of the files they import (google's own files excepted).
const twinFiles = new Map<string, DescFile>();

function twinFile(file: DescFile): DescFile {
  const fileName = file.proto.name;
  const built = twinFiles.get(fileName);
  if (built) return built;
  const proto = clone(FileDescriptorProtoSchema, file.proto);
  for (const message of proto.messageType) rewriteStructFields(message);
  const byName = new Map(file.dependencies.map((dependency) => [dependency.proto.name, dependency]));
  const registry = createFileRegistry(proto, (name) => {
    const dependency = byName.get(name);
    if (!dependency) return undefined;
    return name.startsWith("google/") ? dependency : twinFile(dependency);
  });
  const twin = registry.getFile(fileName);
  if (!twin) throw new Error(`no twin of ${fileName}`);
  twinFiles.set(fileName, twin);
  return twin;
}

/** Makes each Struct field of a message (and of the messages nested in it) `bytes`, keeping its presence. */
function rewriteStructFields(message: DescriptorProto) {
  for (const field of message.field) {
    if (field.typeName !== structType) continue;
    field.type = FieldDescriptorProto_Type.BYTES;
    field.typeName = "";
    if (field.label !== FieldDescriptorProto_Label.REPEATED && !isFieldSet(field, FieldDescriptorProtoSchema.field.oneofIndex)) {
      // A message field is present or not; a proto3 `bytes` field is so only when `optional`.
      field.proto3Optional = true;
      field.oneofIndex = message.oneofDecl.length;
      message.oneofDecl.push(create(OneofDescriptorProtoSchema, { name: `_${field.name}` }));
    }
  }
  for (const nested of message.nestedType) rewriteStructFields(nested);
}

const plans = new Map<DescMessage, Plan | undefined>();

/** The plan of a message type, or undefined when it holds no Struct at any depth. */
function planOf(desc: DescMessage, seen = new Set<DescMessage>()): Plan | undefined {
  if (plans.has(desc)) return plans.get(desc);
  if (seen.has(desc) || desc.typeName.startsWith("google.protobuf.")) return undefined;
  seen.add(desc);
  const plan: Plan = { structs: [], nested: [] };
  for (const field of desc.fields) {
    const message = messageOf(field);
    if (!message) continue;
    if (field.oneof && (message.typeName === "google.protobuf.Struct" || planOf(message, seen))) {
      throw new Error(`${field} holds a google.protobuf.Struct in a oneof, which the twins do not convert`);
    }
    const entry = { localName: field.localName, name: field.name, list: field.fieldKind === "list" };
    if (message.typeName === "google.protobuf.Struct") plan.structs.push(entry);
    else {
      const inner = planOf(message, seen);
      if (inner) plan.nested.push({ ...entry, plan: inner });
    }
  }
  const result = plan.structs.length + plan.nested.length > 0 ? plan : undefined;
  plans.set(desc, result);
  return result;
}

function messageOf(field: DescField): DescMessage | undefined {
  if (field.fieldKind === "message") return field.message;
  if (field.fieldKind === "list" && field.listKind === "message") return field.message;
  if (field.fieldKind === "map" && field.mapKind === "message" && field.message.typeName === "google.protobuf.Struct") {
    throw new Error(`${field} maps to google.protobuf.Struct, which the twins do not convert`);
  }
  return undefined;
}

type Fields = Record<string, unknown>;

/** A shallow copy of an original message (or init) with its Struct fields encoded. */
function toTwin(plan: Plan | undefined, message: object): object {
  if (!plan) return message;
  const copy: Fields = { ...message };
  for (const { localName, list } of plan.structs) {
    const value = copy[localName];
    if (value === undefined) {
      // protobuf-es tells an `optional` field that is set by its own property.
      delete copy[localName];
      continue;
    }
    // A payload may still be the JSON text PostgreSQL returned (payload-text.ts).
    copy[localName] = list
      ? (value as JsonObject[]).map((item) => structToBinary(payloadObject(item)))
      : structToBinary(payloadObject(value as JsonObject));
  }
  for (const { localName, list, plan: inner } of plan.nested) {
    const value = copy[localName];
    if (value === undefined) continue;
    copy[localName] = list ? (value as object[]).map((item) => toTwin(inner, item)) : toTwin(inner, value as object);
  }
  return copy;
}

/** A shallow copy of a twin message with its Struct fields decoded; `path` names where the message is. */
function fromTwin(plan: Plan | undefined, message: object, path: string, code: Code): object {
  if (!plan) return message;
  const copy: Fields = { ...message };
  for (const { localName, name, list } of plan.structs) {
    const value = copy[localName];
    if (value === undefined) continue;
    if (list) {
      const items = value as Uint8Array[];
      const decoded = new Array<JsonObject>(items.length);
      for (let index = 0; index < items.length; index++) {
        decoded[index] = decode(items[index] as Uint8Array, `${path}${name}[${index}]`, code);
      }
      copy[localName] = decoded;
    } else copy[localName] = decode(value as Uint8Array, path + name, code);
  }
  for (const { localName, name, list, plan: inner } of plan.nested) {
    const value = copy[localName];
    if (value === undefined) continue;
    copy[localName] = list
      ? (value as object[]).map((item, index) => fromTwin(inner, item, `${path}${name}[${index}].`, code))
      : fromTwin(inner, value as object, `${path}${name}.`, code);
  }
  return copy;
}

function decode(bytes: Uint8Array, path: string, code: Code): JsonObject {
  try {
    return structFromBinary(bytes);
  } catch (error) {
    throw new ConnectError(`${path}: ${error instanceof Error ? error.message : String(error)}`, code);
  }
}
