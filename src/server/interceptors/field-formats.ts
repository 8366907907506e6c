import type { DescEnum, DescField, JsonObject } from "@bufbuild/protobuf";
import { FeatureSet_FieldPresence, type Value } from "@bufbuild/protobuf/wkt";
// Types only: the OpenAPI plugin imports this module and runs before gen/ exists (buf.gen.yaml's clean: true).
import type { Format } from "../../../gen/fastpubsub/v1/field_rules_pb.ts";
import { isValidScope } from "../../auth/scopes.ts";

/** One fastpubsub.v1.Format: how the validator checks a value, and how the OpenAPI document states the same rule. */
export interface FieldFormat {
  /** The reason a value (an element, for a repeated field) breaks the format, or undefined when it passes. */
  check(value: unknown): string | undefined;
  /** The JSON Schema keywords that state the format, merged over the schema of the field's type. */
  schema: JsonObject;
  /** Whether an empty field breaks the format, so that a request must set it (unless the field may be left unset). */
  refusesEmpty: boolean;
}

/** A format of texts: those that `pattern` matches, within `lengths`; any other value is refused with `message`. */
function textFormat(message: string, pattern: RegExp, lengths: { minLength?: number; maxLength?: number } = {}): FieldFormat {
  const { minLength = 0, maxLength = Number.POSITIVE_INFINITY } = lengths;
  const check = (value: unknown) =>
    typeof value === "string" && value.length >= minLength && value.length <= maxLength && pattern.test(value) ? undefined : message;
  // JSON Schema patterns are ECMA-262 regular expressions without flags, so the source states the same rule.
  return { check, schema: { pattern: pattern.source, ...lengths }, refusesEmpty: check("") !== undefined };
}

const blank = "must not be blank";

// At least one character that is not white space: \s is what String.prototype.trim removes.
const notBlank = textFormat(blank, /\S/, { minLength: 1 });

const filterShape = 'must be null or an object like {"country": ["BR", "US"]} whose values are arrays of strings, numbers or booleans';

function isFilter(value: Value): boolean {
  switch (value.kind.case) {
    case "nullValue":
      return true;
    case "structValue":
      return Object.values(value.kind.value.fields).every(
        (values) =>
          values.kind.case === "listValue" &&
          values.kind.value.values.every((item) => ["stringValue", "numberValue", "boolValue"].includes(item.kind.case ?? "")),
      );
    default:
      return false;
  }
}

/** Every fastpubsub.v1.Format by its TypeScript name; the validator and the OpenAPI document both read it. */
export const fieldFormats: Record<keyof typeof Format, FieldFormat> = {
  UNSPECIFIED: { check: () => undefined, schema: {}, refusesEmpty: false },
  RESOURCE_ID: textFormat("must be 1 to 128 characters of letters, digits, '-', '.' and '_'", /^[a-zA-Z0-9-._]+$/, {
    minLength: 1,
    maxLength: 128,
  }),
  UUID: textFormat("must be a UUID", /^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$/),
  NOT_BLANK: notBlank,
  SCOPES: {
    check: (value) => {
      const scopes = typeof value === "string" ? value.trim().split(/\s+/).filter(Boolean) : [];
      if (scopes.length === 0) return blank;
      const invalid = scopes.find((scope) => !isValidScope(scope));
      return invalid === undefined ? undefined : `has an invalid scope ${JSON.stringify(invalid)}`;
    },
    schema: notBlank.schema,
    refusesEmpty: true,
  },
  PAYLOAD_KEY: textFormat("must be a payload key: 1 to 256 characters, not only white space", /\S/, { minLength: 1, maxLength: 256 }),
  // An unset google.protobuf.Value passes; JSON null sets it to null_value.
  FILTER: {
    check: (value) => (value === undefined || isFilter(value as Value) ? undefined : filterShape),
    schema: { type: ["object", "null"], additionalProperties: { type: "array", items: { type: ["string", "number", "boolean"] } } },
    refusesEmpty: false,
  },
};

/** The FieldFormat of a Format value; `formatEnum` is fastpubsub.v1.Format's descriptor, from gen/ or from a registry. */
export function fieldFormat(formatEnum: DescEnum, format: number): FieldFormat {
  const name = formatEnum.value[format]?.localName;
  return name !== undefined && Object.hasOwn(fieldFormats, name) ? fieldFormats[name as keyof typeof Format] : fieldFormats.UNSPECIFIED;
}

/**
 * Whether a request can leave a field unset, as distinct from empty: a proto3
 * `optional` scalar, or a message. An unset field passes every rule but `required`.
 */
export function canBeUnset(field: DescField): boolean {
  return field.fieldKind !== "list" && field.fieldKind !== "map" && field.presence !== FeatureSet_FieldPresence.IMPLICIT;
}
