import type { DescField, DescMessage, JsonValue, Message } from "@bufbuild/protobuf";
import type { Value } from "@bufbuild/protobuf/wkt";
import { PublishMessagesRequestSchema } from "../../../gen/fastpubsub/v1/topic_service_pb.ts";
import { unstorableCharacter } from "../../db/storable-text.ts";

/**
 * How deep a JSON value of a request (a payload, a filter) may nest, counting
 * its arrays and objects. protobuf's decoders stop at 100 nested messages, and
 * each JSON level is two of them in google.protobuf.Value: a deeper payload
 * could not be delivered over gRPC or Connect binary.
 */
export const maxJsonDepth = 32;

/** The reason a request is refused, naming where the value is, or undefined when every value passes. */
type Found = string | undefined;

// Published payloads go to PostgreSQL as json text, which keeps every character
// as sent; every other string of a request becomes text or jsonb, which cannot.
const jsonTextFields = new Set<DescField>([PublishMessagesRequestSchema.field.messages]);

/**
 * Finds the first value of a request message, at any depth, that the service
 * cannot store as given: a string PostgreSQL cannot keep (map keys and the
 * keys and strings of google.protobuf.Value and Struct fields included), or a
 * JSON value nested deeper than maxJsonDepth or holding a number that is not
 * finite. Says where it is and why.
 */
export function findUnstorableValue(desc: DescMessage, message: Message): Found {
  return inMessage(desc, message, "");
}

function inText(text: string, path: string): Found {
  const character = unstorableCharacter(text);
  return character && `${path} must not contain ${character}`;
}

const tooDeep = (path: string) => `${path} ${nestedTooDeep}`;
const nestedTooDeep = `must not nest more than ${maxJsonDepth} levels of arrays and objects`;
// JSON has no NaN or infinity (1e400 parses as one): a payload would keep null instead, and a filter could not be stored.
const notFinite = "must hold finite numbers only";
const keyPath = (path: string, key: string) => `${path} key ${JSON.stringify(key)}`;
const memberPath = (path: string, key: string) => `${path}[${JSON.stringify(key)}]`;

function inMessage(desc: DescMessage, message: Message, prefix: string): Found {
  const values = message as unknown as Record<string, unknown>;
  for (const field of desc.fields) {
    const oneof = field.oneof && (values[field.oneof.localName] as { case?: string; value?: unknown });
    const value = oneof ? (oneof.case === field.localName ? oneof.value : undefined) : values[field.localName];
    const found = value === undefined ? undefined : inField(field, value, prefix + field.name);
    if (found) return found;
  }
  return undefined;
}

function inField(field: DescField, value: unknown, path: string): Found {
  if (jsonTextFields.has(field)) {
    for (const [index, item] of (value as JsonValue[]).entries()) {
      const found = inPayload(item, 1);
      if (found) return `${path}[${index}] ${found}`;
    }
    return undefined;
  }
  switch (field.fieldKind) {
    case "scalar":
      return inScalar(value, path);
    case "enum":
      return undefined;
    case "message":
      return inMessageValue(field.message, value, path);
    case "list":
      for (const [index, item] of (value as unknown[]).entries()) {
        const itemPath = `${path}[${index}]`;
        const found = field.listKind === "message" ? inMessageValue(field.message, item, itemPath) : inScalar(item, itemPath);
        if (found) return found;
      }
      return undefined;
    case "map":
      for (const [key, item] of Object.entries(value as Record<string, unknown>)) {
        const itemPath = memberPath(path, key);
        const found =
          inText(key, keyPath(path, key)) ??
          (field.mapKind === "message" ? inMessageValue(field.message, item, itemPath) : inScalar(item, itemPath));
        if (found) return found;
      }
      return undefined;
  }
}

const inScalar = (value: unknown, path: string): Found => (typeof value === "string" ? inText(value, path) : undefined);

/** A message-typed value as protobuf-es holds it: Struct fields as JSON, wrappers unwrapped, Value as a message. */
function inMessageValue(desc: DescMessage, value: unknown, path: string): Found {
  if (typeof value !== "object" || value === null) return inScalar(value, path);
  if (desc.typeName === "google.protobuf.Value") return inValue(value as Value, path, 1);
  if (!("$typeName" in value)) return inJson(value as JsonValue, path, 1);
  return inMessage(desc, value as Message, `${path}.`);
}

function inValue(value: Value, path: string, depth: number): Found {
  const { kind } = value;
  if ((kind.case === "structValue" || kind.case === "listValue") && depth > maxJsonDepth) return tooDeep(path);
  switch (kind.case) {
    case "stringValue":
      return inText(kind.value, path);
    case "numberValue":
      return Number.isFinite(kind.value) ? undefined : `${path} must be a finite number`;
    case "structValue":
      for (const [key, item] of Object.entries(kind.value.fields)) {
        const found = inText(key, keyPath(path, key)) ?? inValue(item, memberPath(path, key), depth + 1);
        if (found) return found;
      }
      return undefined;
    case "listValue":
      for (const [index, item] of kind.value.values.entries()) {
        const found = inValue(item, `${path}[${index}]`, depth + 1);
        if (found) return found;
      }
      return undefined;
    default:
      return undefined;
  }
}

function inJson(value: JsonValue, path: string, depth: number): Found {
  if (typeof value === "string") return inText(value, path);
  if (typeof value === "number") return Number.isFinite(value) ? undefined : `${path} must be a finite number`;
  if (typeof value !== "object" || value === null) return undefined;
  if (depth > maxJsonDepth) return tooDeep(path);
  if (Array.isArray(value)) {
    for (const [index, item] of value.entries()) {
      const found = inJson(item, `${path}[${index}]`, depth + 1);
      if (found) return found;
    }
    return undefined;
  }
  for (const [key, item] of Object.entries(value)) {
    const found = inText(key, keyPath(path, key)) ?? inJson(item as JsonValue, memberPath(path, key), depth + 1);
    if (found) return found;
  }
  return undefined;
}

/**
 * Why a payload cannot be kept (nested deeper than maxJsonDepth, or a number
 * that is not finite), or undefined; its strings are not read, as json text
 * keeps them all.
 */
function inPayload(value: JsonValue, depth: number): Found {
  if (depth > maxJsonDepth) return nestedTooDeep;
  for (const key in value as object) {
    const item = (value as Record<string, JsonValue>)[key] as JsonValue;
    // Checked here rather than by a call, which most values (scalars) would make for nothing.
    if (typeof item === "number" && !Number.isFinite(item)) return notFinite;
    const found = typeof item === "object" && item !== null ? inPayload(item, depth + 1) : undefined;
    if (found) return found;
  }
  return undefined;
}
