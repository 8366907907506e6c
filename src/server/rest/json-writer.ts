import { type DescField, type DescMessage, type JsonWriteOptions, ScalarType } from "@bufbuild/protobuf";
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import { PayloadText } from "../../wire/payload-text.ts";

/*
 * The REST answers of the hot path (a batch of messages) written straight to
 * JSON text, as `JSON.stringify(toJson(...))` with proto field names and implicit
 * fields emitted would write them: a payload that is still the JSON text
 * PostgreSQL returned is copied as it is, and nothing builds a JS object per
 * message. Message types with fields of a kind it does not know (enums, maps,
 * oneofs, 64-bit and floating point numbers, ...) are left to protobuf-es.
 */

type Writer = (value: unknown) => string;

const writeOptions = { useProtoFieldName: true, alwaysEmitImplicit: true };

const writers = new Map<DescMessage, Writer | undefined>();

/** A writer of the message type's proto JSON, or undefined when the type has a field it does not know. */
export function jsonWriterOf(desc: DescMessage, options: Partial<JsonWriteOptions>): Writer | undefined {
  if (!options.useProtoFieldName || !options.alwaysEmitImplicit) return undefined;
  if (!writers.has(desc)) {
    // A placeholder while it compiles: a type that holds itself is left to protobuf-es.
    writers.set(desc, undefined);
    writers.set(desc, compileMessage(desc));
  }
  return writers.get(desc);
}

function compileMessage(desc: DescMessage): Writer | undefined {
  const parts: { key: string; local: string; write: Writer }[] = [];
  for (const field of [...desc.fields].sort((a, b) => a.number - b.number)) {
    const write = field.oneof ? undefined : compileField(field);
    if (!write) return undefined;
    parts.push({ key: `${JSON.stringify(field.name)}:`, local: field.localName, write });
  }
  return (message) => {
    const values = message as Record<string, unknown>;
    let out = "";
    for (const { key, local, write } of parts) {
      const value = values[local];
      // Only a field with explicit presence can be unset; implicit ones always hold a value.
      if (value === undefined) continue;
      out += `${out === "" ? "" : ","}${key}${write(value)}`;
    }
    return `{${out}}`;
  };
}

function compileField(field: DescField): Writer | undefined {
  switch (field.fieldKind) {
    case "scalar":
      return scalarWriter(field.scalar);
    case "message":
      return messageWriter(field.message);
    case "list": {
      const item = field.listKind === "message" ? messageWriter(field.message) : undefined;
      return item && ((value) => `[${(value as unknown[]).map(item).join(",")}]`);
    }
    default:
      return undefined;
  }
}

function scalarWriter(scalar: ScalarType): Writer | undefined {
  switch (scalar) {
    case ScalarType.STRING:
      return (value) => JSON.stringify(value);
    case ScalarType.BOOL:
      return (value) => (value ? "true" : "false");
    case ScalarType.INT32:
    case ScalarType.SINT32:
    case ScalarType.SFIXED32:
    case ScalarType.UINT32:
    case ScalarType.FIXED32:
      return (value) => String(value);
    default:
      return undefined;
  }
}

function messageWriter(desc: DescMessage): Writer | undefined {
  switch (desc.typeName) {
    case "google.protobuf.Struct":
      return (value) => (value instanceof PayloadText ? value.text : JSON.stringify(value));
    case "google.protobuf.Timestamp":
      return (value) => timestampJson(value as Timestamp);
    default:
      return desc.typeName.startsWith("google.protobuf.") ? undefined : jsonWriterOf(desc, writeOptions);
  }
}

// The messages of a batch share their timestamp, mostly: the last one written is kept.
let lastTimestamp = { seconds: 0n, nanos: -1, json: "" };

/** A Timestamp as proto JSON writes it: RFC 3339 in UTC, with 0, 3, 6 or 9 digits of fraction. */
function timestampJson(value: Timestamp): string {
  const { seconds, nanos } = value;
  if (seconds === lastTimestamp.seconds && nanos === lastTimestamp.nanos) return lastTimestamp.json;
  const ms = Number(seconds) * 1000;
  // protobuf-es refuses what RFC 3339 cannot write; so does Date, for the years it cannot.
  if (ms < -62_135_596_800_000 || ms > 253_402_300_799_000 || nanos < 0 || nanos > 999_999_999) {
    throw new Error("cannot encode google.protobuf.Timestamp to JSON: out of range");
  }
  const fraction =
    nanos === 0
      ? ""
      : nanos % 1_000_000 === 0
        ? `.${String(nanos / 1_000_000).padStart(3, "0")}`
        : nanos % 1000 === 0
          ? `.${String(nanos / 1000).padStart(6, "0")}`
          : `.${String(nanos).padStart(9, "0")}`;
  const json = `"${new Date(ms).toISOString().slice(0, 19)}${fraction}Z"`;
  lastTimestamp = { seconds, nanos, json };
  return json;
}
