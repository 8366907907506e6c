import type { DescMessage, JsonObject, Message } from "@bufbuild/protobuf";
import type { Interceptor } from "@connectrpc/connect";

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

const isStruct = (desc: DescMessage | undefined) => desc?.typeName === "google.protobuf.Struct";

/** For each message type, its fields that hold payloads: Struct fields, and message fields whose messages hold some. */
const payloadFields = new Map<DescMessage, DescMessage["fields"]>();
function fieldsHoldingPayloads(desc: DescMessage, seen = new Set<DescMessage>()): DescMessage["fields"] {
  let fields = payloadFields.get(desc);
  if (fields) return fields;
  seen.add(desc);
  fields = desc.fields.filter((field) => {
    if (field.fieldKind !== "message" && !(field.fieldKind === "list" && field.listKind === "message")) return false;
    if (isStruct(field.message)) return true;
    const inner = field.message;
    if (seen.has(inner) || inner.typeName.startsWith("google.protobuf.")) return false;
    return fieldsHoldingPayloads(inner, seen).length > 0;
  });
  payloadFields.set(desc, fields);
  return fields;
}

/** The message with every payload it holds as a JsonObject: itself when it holds no payload text. */
export function materializePayloads<T extends Message>(desc: DescMessage, message: T): T {
  const fields = fieldsHoldingPayloads(desc);
  if (fields.length === 0) return message;
  let copy: Record<string, unknown> | undefined;
  const values = message as unknown as Record<string, unknown>;
  for (const field of fields) {
    const value = values[field.localName];
    if (value === undefined || field.message === undefined) continue;
    const inner = field.message;
    const convert = (item: unknown) => (isStruct(inner) ? payloadObject(item as JsonObject) : materializePayloads(inner, item as Message));
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
