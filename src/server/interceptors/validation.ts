import { type DescField, type DescMessage, getOption, hasOption, type Message } from "@bufbuild/protobuf";
import type { Value } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { type FieldRules, Format, rules } from "../../../gen/fastpubsub/v1/field_rules_pb.ts";
import { isValidScope } from "../../services/scopes.ts";

/** A check of one field: a reason when the value breaks a rule, else undefined. */
type Check = (value: unknown) => string | undefined;

const resourceId = /^[a-zA-Z0-9-._]{1,128}$/;
const uuid = /^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$/i;

const formatChecks: Record<Format, Check> = {
  [Format.UNSPECIFIED]: () => undefined,
  [Format.RESOURCE_ID]: (value) =>
    typeof value === "string" && resourceId.test(value) ? undefined : "must be 1 to 128 characters of letters, digits, '-', '.' and '_'",
  [Format.UUID]: (value) => (typeof value === "string" && uuid.test(value) ? undefined : "must be a UUID"),
  [Format.NOT_BLANK]: (value) => (typeof value === "string" && value.trim() !== "" ? undefined : "must not be blank"),
  [Format.SCOPES]: (value) => {
    const scopes = typeof value === "string" ? value.trim().split(/\s+/).filter(Boolean) : [];
    if (scopes.length === 0) return "must not be blank";
    const invalid = scopes.find((scope) => !isValidScope(scope));
    return invalid === undefined ? undefined : `has an invalid scope ${JSON.stringify(invalid)}`;
  },
  [Format.FILTER]: (value) => (value === undefined || isFilter(value as Value) ? undefined : filterShape),
};

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

function checkFromRules(field: DescField, fieldRules: FieldRules): Check {
  const checks: Check[] = [];
  if (fieldRules.required) {
    checks.push((value) => (value === undefined || value === "" ? "is required" : undefined));
  }
  if (fieldRules.min !== undefined || fieldRules.max !== undefined) {
    const { min = -Infinity, max = Infinity } = fieldRules;
    const range =
      fieldRules.max === undefined ? `at least ${min}` : fieldRules.min === undefined ? `at most ${max}` : `between ${min} and ${max}`;
    checks.push((value) => (value === undefined || (Number(value) >= min && Number(value) <= max) ? undefined : `must be ${range}`));
  }
  const format: Check = formatChecks[fieldRules.format] ?? (() => undefined);
  if (field.fieldKind === "list") {
    const maxItems = fieldRules.maxItems ?? Infinity;
    checks.push((value) => {
      const items = value as unknown[];
      if (items.length > maxItems) return `must have at most ${maxItems} items`;
      for (const item of items) {
        const reason = format(item);
        if (reason) return `has an item that ${reason}: ${JSON.stringify(item)}`;
      }
      return undefined;
    });
  } else if (fieldRules.format !== Format.UNSPECIFIED) {
    checks.push(format);
  }
  return (value) => {
    for (const check of checks) {
      const reason = check(value);
      if (reason) return reason;
    }
    return undefined;
  };
}

/** Compiles the (fastpubsub.v1.rules) options of a request message into one validator. */
function compileValidator(schema: DescMessage): (message: Message) => void {
  const fieldChecks = schema.fields
    .filter((field) => hasOption(field, rules))
    .map((field) => ({ field, check: checkFromRules(field, getOption(field, rules)) }));
  return (message) => {
    for (const { field, check } of fieldChecks) {
      const reason = check((message as unknown as Record<string, unknown>)[field.localName]);
      if (reason) throw new ConnectError(`${field.name} ${reason}`, Code.InvalidArgument);
    }
  };
}

const validators = new Map<string, (message: Message) => void>();

/** Checks a message against the input rules of its type; throws invalid_argument naming the first field that breaks one. */
export function validateMessage(schema: DescMessage, message: Message) {
  let validate = validators.get(schema.typeName);
  if (!validate) {
    validate = compileValidator(schema);
    validators.set(schema.typeName, validate);
  }
  validate(message);
}

/**
 * Creates the interceptor that enforces the input rules written in the proto
 * on every unary request, whatever its protocol, before the handler runs.
 */
export function createValidationInterceptor(): Interceptor {
  return (next) => async (request) => {
    if (!request.stream) validateMessage(request.method.input, request.message);
    return next(request);
  };
}
