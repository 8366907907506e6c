/**
 * The API's input rules, as the console checks them before a call. The formats
 * are the server's own (src/server/interceptors/field-formats.ts), so the
 * console refuses exactly what the server would; the server checks again.
 */
import { fromJson, type JsonObject, type JsonValue } from "@bufbuild/protobuf";
import { type Value, ValueSchema } from "@bufbuild/protobuf/wkt";
import { fieldFormats } from "../../src/server/interceptors/field-formats.ts";

/** Why a resource id (topic or subscription) is refused, or undefined when it is fine. */
export function idProblem(text: string): string | undefined {
  return text === "" ? undefined : fieldFormats.RESOURCE_ID.check(text);
}

/** Why an optional payload key (dedup_key, ordering_key) is refused. */
export function payloadKeyProblem(text: string): string | undefined {
  return text === "" ? undefined : fieldFormats.PAYLOAD_KEY.check(text);
}

/** Why a space-separated list of scopes is refused. */
export function scopesProblem(text: string): string | undefined {
  return fieldFormats.SCOPES.check(text);
}

/** Why a client name is refused. */
export function nameProblem(text: string): string | undefined {
  return fieldFormats.NOT_BLANK.check(text);
}

/** An optional whole number between `min` and `max`: its value, or why it is refused. Empty means unset. */
export function parseCount(text: string, min: number, max = 2_147_483_647): { value?: number; problem?: string } {
  if (text.trim() === "") return {};
  const value = Number(text);
  if (!Number.isInteger(value) || value < min || value > max) {
    return { problem: max === 2_147_483_647 ? `must be a whole number, at least ${min}` : `must be a whole number from ${min} to ${max}` };
  }
  return { value };
}

/** A filter typed as JSON: the google.protobuf.Value to send (undefined for none), or why it is refused. */
export function parseFilter(text: string): { value?: Value; problem?: string } {
  if (text.trim() === "") return {};
  let json: JsonValue;
  try {
    json = JSON.parse(text) as JsonValue;
  } catch (error) {
    return { problem: `is not JSON: ${(error as Error).message}` };
  }
  const value = fromJson(ValueSchema, json);
  const problem = fieldFormats.FILTER.check(value);
  return problem ? { problem } : { value };
}

/** Messages to publish typed as JSON, one object or an array of them: the payloads, or why they are refused. */
export function parsePayloads(text: string): { value?: JsonObject[]; problem?: string } {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    return { problem: `is not JSON: ${(error as Error).message}` };
  }
  const items = Array.isArray(json) ? json : [json];
  if (items.length === 0) return { problem: "holds no message" };
  if (items.length > 1000) return { problem: "holds more than 1000 messages" };
  const isObject = (item: unknown) => typeof item === "object" && item !== null && !Array.isArray(item);
  if (!items.every(isObject)) return { problem: "must be a JSON object, or an array of JSON objects" };
  return { value: items as JsonObject[] };
}
