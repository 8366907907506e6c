import { type DescField, type DescMessage, getOption, type JsonObject, ScalarType } from "@bufbuild/protobuf";
// Types only: the plugin runs before gen/ exists (buf.gen.yaml's clean: true).
import type { FieldRules } from "../../gen/fastpubsub/v1/field_rules_pb.ts";
import { canBeUnset, fieldFormat } from "../server/interceptors/field-formats.ts";
import { protoComment } from "./proto-comment.ts";
import type { ProtoOptions } from "./proto-options.ts";

/** Builds JSON Schemas for proto messages and fields as the server reads and writes them in JSON, collecting the components they refer to. */
export interface SchemaBuilder {
  /** A reference to the component schema of a message (or an inline schema for well-known types). */
  messageSchema(message: DescMessage): JsonObject;
  /** An inline object schema of a message without some of its fields. */
  partialMessageSchema(message: DescMessage, omit: ReadonlySet<DescField>): JsonObject;
  /** The schema of one field's JSON value, with its input rules and description. */
  fieldSchema(field: DescField): JsonObject;
  /** Whether the input rules refuse a request that leaves the field empty. */
  isRequired(field: DescField): boolean;
  /** The component schemas referred to so far, by name. */
  components(): JsonObject;
}

/** Creates a schema builder that reads input rules through `options`. */
export function createSchemaBuilder(options: ProtoOptions): SchemaBuilder {
  const components = new Map<string, { message: DescMessage; schema: JsonObject }>();

  function messageSchema(message: DescMessage): JsonObject {
    const known = wellKnownSchema(message);
    if (known) return known;
    const existing = components.get(message.name);
    if (existing && existing.message.typeName !== message.typeName) {
      throw new Error(`${message.typeName} and ${existing.message.typeName} would share the component name ${message.name}`);
    }
    if (!existing) {
      // Registered before its fields are built, so that recursive messages end.
      const entry = { message, schema: {} };
      components.set(message.name, entry);
      entry.schema = partialMessageSchema(message, new Set());
    }
    return { $ref: `#/components/schemas/${message.name}` };
  }

  function partialMessageSchema(message: DescMessage, omit: ReadonlySet<DescField>): JsonObject {
    const fields = message.fields.filter((field) => !omit.has(field));
    const required = fields.filter(isRequired).map((field) => field.name);
    return {
      type: "object",
      ...describe(protoComment(message)),
      properties: Object.fromEntries(fields.map((field) => [field.name, fieldSchema(field)])),
      ...(required.length > 0 ? { required } : {}),
    };
  }

  function fieldSchema(field: DescField): JsonObject {
    const rules = getOption(field, options.rules);
    let schema: JsonObject;
    switch (field.fieldKind) {
      case "list":
        schema = {
          type: "array",
          items: elementSchema(field, rules),
          ...(rules.maxItems === undefined ? {} : { maxItems: rules.maxItems }),
        };
        break;
      case "map":
        schema = { type: "object", additionalProperties: elementSchema(field, rules) };
        break;
      default:
        schema = elementSchema(field, rules);
    }
    return { ...schema, ...describe(protoComment(field)) };
  }

  function elementSchema(field: DescField, rules: FieldRules): JsonObject {
    const format = fieldFormat(options.format, rules.format).schema;
    if (field.message) return { ...messageSchema(field.message), ...format };
    if (field.enum) return { type: "string", enum: field.enum.values.map((value) => value.name) };
    return { ...scalarSchema(field.scalar ?? ScalarType.STRING), ...format, ...rangeRules(rules) };
  }

  // The validator checks each element of a repeated field against its format, so an empty list passes,
  // and a field that can be left unset passes every rule but `required` when it is.
  function isRequired(field: DescField): boolean {
    const rules = getOption(field, options.rules);
    return rules.required || (field.fieldKind !== "list" && !canBeUnset(field) && fieldFormat(options.format, rules.format).refusesEmpty);
  }

  return {
    messageSchema,
    partialMessageSchema,
    fieldSchema,
    isRequired,
    components: () => Object.fromEntries([...components].sort(([a], [b]) => compare(a, b)).map(([name, { schema }]) => [name, schema])),
  };
}

function rangeRules(rules: FieldRules): JsonObject {
  return {
    ...(rules.min === undefined ? {} : { minimum: rules.min }),
    ...(rules.max === undefined ? {} : { maximum: rules.max }),
    ...(rules.maxLength === undefined ? {} : { maxLength: rules.maxLength }),
  };
}

/** The JSON Schema of a scalar in proto JSON, where 64-bit integers are strings. */
function scalarSchema(scalar: ScalarType): JsonObject {
  switch (scalar) {
    case ScalarType.BOOL:
      return { type: "boolean" };
    case ScalarType.STRING:
      return { type: "string" };
    case ScalarType.BYTES:
      return { type: "string", contentEncoding: "base64" };
    case ScalarType.DOUBLE:
      return { type: "number", format: "double" };
    case ScalarType.FLOAT:
      return { type: "number", format: "float" };
    case ScalarType.INT32:
    case ScalarType.SINT32:
    case ScalarType.SFIXED32:
      return { type: "integer", format: "int32" };
    case ScalarType.UINT32:
    case ScalarType.FIXED32:
      return { type: "integer", format: "uint32", minimum: 0 };
    case ScalarType.UINT64:
    case ScalarType.FIXED64:
      return { type: "string", format: "uint64" };
    default:
      return { type: "string", format: "int64" };
  }
}

/** The JSON form of the well-known types, which proto JSON writes specially. */
function wellKnownSchema(message: DescMessage): JsonObject | undefined {
  switch (message.typeName) {
    case "google.protobuf.Timestamp":
      return { type: "string", format: "date-time" };
    case "google.protobuf.Duration":
      return { type: "string", pattern: "^-?[0-9]+(\\.[0-9]+)?s$" };
    case "google.protobuf.Struct":
      return { type: "object", additionalProperties: true };
    case "google.protobuf.Value":
      return {};
    case "google.protobuf.ListValue":
      return { type: "array", items: {} };
    case "google.protobuf.Empty":
      return { type: "object" };
  }
  const wrapped = message.file.name === "google/protobuf/wrappers.proto" ? message.fields[0] : undefined;
  return wrapped?.fieldKind === "scalar" ? scalarSchema(wrapped.scalar) : undefined;
}

/** A `description` entry, or nothing for an empty text. */
export function describe(text: string): JsonObject {
  return text === "" ? {} : { description: text };
}

/** Orders strings by code unit, the same in every locale. */
export function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
