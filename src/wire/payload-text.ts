import type { DescMessage, JsonObject, Message } from "@bufbuild/protobuf";
import type { Interceptor } from "@connectrpc/connect";
import { fieldsHoldingStruct, isStructField } from "./struct-fields.ts";

/**
 * A payload as the JSON text PostgreSQL returned it. A response message carries
 * it in its google.protobuf.Struct field, in place of the JsonObject the field
 * is typed as, until the protocol writes the response: the REST writer copies the
 * text as it is, and the other protocols' writers parse it (materializePayloads).
 * So a REST consumer's payloads never become JS objects in the server.
 */
export class PayloadText {
  readonly text: string;
  constructor(text: string) {
    this.text = text;
  }
}

/** The value a Struct field of a response holds for a payload's JSON text. */
export function payloadFromText(text: string): JsonObject {
  return new PayloadText(text) as unknown as JsonObject;
}

/** The payload as a JsonObject, parsing it when it is still text. */
export function payloadObject(value: JsonObject): JsonObject {
  return value instanceof PayloadText ? (JSON.parse(value.text) as JsonObject) : value;
}

/** The message with every payload it holds as a JsonObject: itself when it holds no payload text. */
export function materializePayloads<T extends Message>(desc: DescMessage, message: T): T {
  const fields = fieldsHoldingStruct(desc);
  if (fields.length === 0) return message;
  let copy: Record<string, unknown> | undefined;
  const values = message as unknown as Record<string, unknown>;
  for (const field of fields) {
    const value = values[field.localName];
    if (value === undefined || field.message === undefined) continue;
    const inner = field.message;
    const convert = (item: unknown) =>
      isStructField(field) ? payloadObject(item as JsonObject) : materializePayloads(inner, item as Message);
    const converted = Array.isArray(value) ? value.map(convert) : convert(value);
    copy ??= { ...values };
    copy[field.localName] = converted;
  }
  return (copy ?? message) as T;
}

/**
 * The interceptor, outermost, of the protocols that protobuf-es writes: it parses
 * the payload texts of each response message (of a server stream, each one).
 */
export function createPayloadInterceptor(): Interceptor {
  return (next) => async (request) => {
    const response = await next(request);
    const desc = request.method.output;
    if (!response.stream) return { ...response, message: materializePayloads(desc, response.message) };
    const messages = response.message;
    return {
      ...response,
      message: (async function* () {
        for await (const message of messages) yield materializePayloads(desc, message);
      })(),
    };
  };
}
