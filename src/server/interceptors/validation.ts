import { type DescField, type DescMessage, getOption, hasOption, type Message } from "@bufbuild/protobuf";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { type FieldRules, Format, FormatSchema, rules } from "../../../gen/fastpubsub/v1/field_rules_pb.ts";
import { kUnreadablePayload } from "../context.ts";
import { canBeUnset, fieldFormat } from "./field-formats.ts";
import { requestMessage } from "./single-request.ts";
import { findUnstorableValue } from "./unstorable-values.ts";

/** A check of one field: a reason when the value breaks a rule, else undefined. */
type Check = (value: unknown) => string | undefined;

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
  if (fieldRules.maxLength !== undefined) {
    const { maxLength } = fieldRules;
    checks.push((value) =>
      typeof value !== "string" || value.length <= maxLength ? undefined : `must be at most ${maxLength} characters`,
    );
  }
  const format: Check = fieldFormat(FormatSchema, fieldRules.format).check;
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
  const unsettable = canBeUnset(field);
  return (value) => {
    // A field left unset breaks no rule but `required`.
    if (value === undefined && unsettable) return fieldRules.required ? "is required" : undefined;
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

/**
 * Checks a message against the input rules of its type, and every value in it
 * against what the service can store; throws invalid_argument naming the first
 * field that breaks one.
 */
export function validateMessage(schema: DescMessage, message: Message) {
  const unstorable = findUnstorableValue(schema, message);
  if (unstorable) throw new ConnectError(unstorable, Code.InvalidArgument);
  let validate = validators.get(schema.typeName);
  if (!validate) {
    validate = compileValidator(schema);
    validators.set(schema.typeName, validate);
  }
  validate(message);
}

/**
 * Creates the interceptor that enforces the input rules written in the proto,
 * and refuses values that the service cannot store, on every request message
 * of a unary or server-streaming call,
 * whatever its protocol, before the handler runs.
 */
export function createValidationInterceptor(): Interceptor {
  return (next) => async (request) => {
    const unreadable = request.contextValues.get(kUnreadablePayload);
    if (unreadable) throw unreadable;
    const message = requestMessage(request);
    if (message) validateMessage(request.method.input, message);
    return next(request);
  };
}
