import {
  type DescField,
  type DescMessage,
  fromJson,
  type JsonObject,
  type JsonValue,
  type JsonWriteOptions,
  type Message,
  toJson,
} from "@bufbuild/protobuf";
import { fieldsHoldingStruct, isStructField } from "../../wire/struct-fields.ts";

/*
 * protobuf-es holds a google.protobuf.Struct field as the JsonObject it stands
 * for, yet its JSON codec turns each one into Struct and Value messages and
 * back. The REST paths receive and send payloads as JSON already, so these
 * two functions pass Struct fields through as they are and leave every other
 * field to protobuf-es: on a batch of messages that is most of the codec's
 * work and of the garbage it makes.
 */

type Fields = Record<string, unknown>;

const isJsonObject = (value: unknown): value is JsonObject => typeof value === "object" && value !== null && !Array.isArray(value);

/**
 * Reads a request message from proto JSON as `fromJson` does, taking its
 * top-level Struct fields (a JSON object, or a list of them) as they are.
 * A value of the wrong shape is left to `fromJson`, and so to its error.
 */
export function requestFromJson<Desc extends DescMessage>(desc: Desc, json: JsonObject) {
  const taken: [DescField, JsonValue][] = [];
  let rest = json;
  for (const field of fieldsHoldingStruct(desc)) {
    const value = json[field.jsonName];
    if (!isStructField(field) || value === undefined) continue;
    const fits = field.fieldKind === "list" ? Array.isArray(value) && value.every(isJsonObject) : isJsonObject(value);
    if (!fits) continue;
    if (rest === json) rest = { ...json };
    delete rest[field.jsonName];
    taken.push([field, value]);
  }
  const message = fromJson(desc, rest);
  for (const [field, value] of taken) (message as Fields)[field.localName] = value;
  return message;
}

/** Writes a message as proto JSON, as `toJson` does, with every Struct field written as the JSON object it holds. */
export function responseToJson(desc: DescMessage, message: Message, options: Partial<JsonWriteOptions>): JsonValue {
  return restore(desc, message, toJson(desc, strip(desc, message), options), options);
}

/** A shallow copy of the message with its Struct values left out, so that `toJson` skips them. */
function strip(desc: DescMessage, message: Message): Message {
  const fields = fieldsHoldingStruct(desc);
  if (fields.length === 0) return message;
  const copy: Fields = { ...message };
  for (const field of fields) {
    const value = copy[field.localName];
    if (value === undefined) continue;
    if (isStructField(field)) copy[field.localName] = field.fieldKind === "list" ? [] : undefined;
    else if (field.message) {
      const inner = field.message;
      copy[field.localName] = Array.isArray(value) ? value.map((item: Message) => strip(inner, item)) : strip(inner, value as Message);
    }
  }
  return copy as Message;
}

/** Puts the Struct values back into the JSON `toJson` wrote, each where its field comes. */
function restore(desc: DescMessage, message: Message, json: JsonValue, options: Partial<JsonWriteOptions>): JsonValue {
  const fields = fieldsHoldingStruct(desc);
  if (fields.length === 0 || !isJsonObject(json)) return json;
  const values = message as unknown as Fields;
  const out: JsonObject = {};
  for (const field of desc.fields) {
    const key = options.useProtoFieldName ? field.name : field.jsonName;
    const value = values[field.localName];
    if (!fields.includes(field)) {
      if (key in json) out[key] = json[key] as JsonValue;
    } else if (isStructField(field)) {
      if (value !== undefined && (field.fieldKind !== "list" || (value as unknown[]).length > 0 || key in json))
        out[key] = value as JsonValue;
    } else if (key in json && field.message) {
      const inner = field.message;
      const written = json[key] as JsonValue;
      out[key] = Array.isArray(value)
        ? (value as Message[]).map((item, index) => restore(inner, item, (written as JsonValue[])[index] ?? null, options))
        : restore(inner, value as Message, written, options);
    }
  }
  return out;
}
