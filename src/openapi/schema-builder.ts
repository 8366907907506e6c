import { type DescField, type DescMessage, type JsonObject, ScalarType } from "@bufbuild/protobuf";
import { protoComment } from "./proto-comment.ts";
import type { FieldRules, ProtoOptions } from "./proto-options.ts";

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

/** The pattern, length limits and description of a topic or subscription id (FORMAT_RESOURCE_ID). */
const resourceId = { pattern: "^[a-zA-Z0-9-._]+$", minLength: 1, maxLength: 128 };

// A text that is not blank has at least one character that is not white space; JSON Schema patterns are not anchored.
const notBlank = { minLength: 1, pattern: "\\S" };

// Formats that no empty string passes, so a request must set the field.
const formatsRefusingEmpty = new Set(["FORMAT_RESOURCE_ID", "FORMAT_UUID", "FORMAT_NOT_BLANK", "FORMAT_SCOPES"]);

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
    const rules = options.fieldRules(field);
    let schema: JsonObject;
    switch (field.fieldKind) {
      case "list":
        schema = {
          type: "array",
          items: elementSchema(field, rules),
          ...(rules.max_items === undefined ? {} : { maxItems: rules.max_items }),
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
    if (rules.format === "FORMAT_FILTER") return filterSchema;
    if (field.message) return messageSchema(field.message);
    if (field.enum) return { type: "string", enum: field.enum.values.map((value) => value.name) };
    return { ...scalarSchema(field.scalar ?? ScalarType.STRING), ...textRules(rules), ...rangeRules(rules) };
  }

  function isRequired(field: DescField): boolean {
    const rules = options.fieldRules(field);
    return rules.required === true || (field.fieldKind !== "list" && formatsRefusingEmpty.has(rules.format ?? ""));
  }

  return {
    messageSchema,
    partialMessageSchema,
    fieldSchema,
    isRequired,
    components: () => Object.fromEntries([...components].sort(([a], [b]) => compare(a, b)).map(([name, { schema }]) => [name, schema])),
  };
}

// A filter: null, or an object whose values are arrays of accepted strings, numbers or booleans.
const filterSchema: JsonObject = {
  type: ["object", "null"],
  additionalProperties: { type: "array", items: { type: ["string", "number", "boolean"] } },
};

function textRules(rules: FieldRules): JsonObject {
  switch (rules.format) {
    case "FORMAT_RESOURCE_ID":
      return resourceId;
    case "FORMAT_UUID":
      return { format: "uuid" };
    case "FORMAT_NOT_BLANK":
    case "FORMAT_SCOPES":
      return notBlank;
    default:
      return {};
  }
}

function rangeRules(rules: FieldRules): JsonObject {
  return { ...(rules.min === undefined ? {} : { minimum: rules.min }), ...(rules.max === undefined ? {} : { maximum: rules.max }) };
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
