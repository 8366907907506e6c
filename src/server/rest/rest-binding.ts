import { type DescField, type DescMethod, ScalarType } from "@bufbuild/protobuf";
// Types only: the OpenAPI plugin imports this module and runs before gen/ exists (buf.gen.yaml's clean: true).
import type { HttpRule } from "../../../gen/google/api/http_pb.ts";
import { canBeUnset } from "../interceptors/field-formats.ts";

/** How one RPC is reached over REST, as its google.api.http rule says; the server and the OpenAPI document both use it. */
export interface RestBinding {
  /** Lower case, e.g. `post`. */
  verb: Exclude<HttpRule["pattern"]["case"], "custom" | undefined>;
  /** The path template, e.g. `/topics/{id}`. */
  template: string;
  /** Each path segment: literal text, or the request field it binds. */
  segments: (string | DescField)[];
  pathFields: DescField[];
  /** Where the request body goes: nowhere, the whole message (`*`), or one field. */
  body: "none" | "message" | DescField;
  /**
   * The boolean query field `all` of a body bound to a list (reprocess and purge of dead letters):
   * when the query sets it to true, a missing body stands for an empty list; any other call needs its body.
   */
  bodyStandIn?: DescField;
  /**
   * The fields read from the query string: those bound neither by the path nor by the body, or, for a
   * body of the whole message, those it may leave out (optional, not required), when it does.
   */
  queryFields: DescField[];
  /** The query fields by their proto name and by their JSON name. */
  queryFieldByName: ReadonlyMap<string, DescField>;
  /** Every request field by its proto name and by its JSON name, as a body of the whole message may name them. */
  fieldByName: ReadonlyMap<string, DescField>;
  /** Whether the body may also be form-encoded (as OAuth2 clients send it): a body of the whole message, of fields a form can carry. */
  formBody: boolean;
  /** The status of success: 204 without a body, 201 for a POST that returns one, else 200. */
  successStatus: 200 | 201 | 204;
}

/**
 * Derives an RPC's REST binding from its google.api.http rule: the server
 * passes the option read through gen/, the OpenAPI plugin the same option
 * read through its registry, which decodes it to the same shape.
 * `isRequired` tells whether the input rules make a field required.
 */
export function restBinding(method: DescMethod, rule: HttpRule, isRequired: (field: DescField) => boolean): RestBinding {
  const where = `${method.parent.typeName}.${method.name}`;
  const { case: verb, value: template } = rule.pattern;
  if (verb === undefined || verb === "custom") throw new Error(`${where}: unsupported google.api.http pattern`);
  const field = (name: string) => {
    const found = method.input.fields.find((candidate) => candidate.name === name);
    if (!found) throw new Error(`${where}: ${name} is not a field of ${method.input.typeName}`);
    return found;
  };
  const segments = template
    .split("/")
    .slice(1)
    .map((segment) => {
      const variable = /^\{(\w+)\}$/.exec(segment);
      if (!variable?.[1] && segment.includes("{")) throw new Error(`${where}: unsupported path segment ${segment}`);
      return variable?.[1] ? field(variable[1]) : segment;
    });
  const pathFields = segments.filter((segment) => typeof segment !== "string");
  const body = rule.body === "" ? "none" : rule.body === "*" ? "message" : field(rule.body);
  // A body of the whole message may leave out an optional field that the query string then gives
  // (e.g. `?consumer_id=w1`); a required one belongs in the body.
  const queryFields = method.input.fields.filter(
    (candidate) =>
      !pathFields.includes(candidate) &&
      candidate !== body &&
      isPlain(candidate) &&
      (body !== "message" || (canBeUnset(candidate) && !isRequired(candidate))),
  );
  const bodiless = method.output.typeName === "google.protobuf.Empty";
  const all = queryFields.find((candidate) => candidate.name === "all");
  const bodyStandIn =
    typeof body !== "string" && body.fieldKind === "list" && all?.fieldKind === "scalar" && all.scalar === ScalarType.BOOL
      ? all
      : undefined;
  return {
    verb,
    template,
    segments,
    pathFields,
    body,
    ...(bodyStandIn ? { bodyStandIn } : {}),
    queryFields,
    queryFieldByName: fieldsByName(queryFields),
    fieldByName: fieldsByName(method.input.fields),
    formBody: body === "message" && method.input.fields.every(isPlain),
    successStatus: bodiless ? 204 : verb === "post" ? 201 : 200,
  };
}

/**
 * Whether a field's value can be written as text, as in a query string or a form: a scalar, an
 * enum, a google.protobuf.Timestamp (RFC 3339, as proto JSON writes it), or a list of scalars or enums.
 */
function isPlain(field: DescField) {
  return (
    field.fieldKind === "scalar" ||
    field.fieldKind === "enum" ||
    (field.fieldKind === "message" && field.message.typeName === "google.protobuf.Timestamp") ||
    (field.fieldKind === "list" && field.listKind !== "message")
  );
}

function fieldsByName(fields: readonly DescField[]): Map<string, DescField> {
  return new Map(fields.flatMap((field) => [[field.name, field] as const, [field.jsonName, field] as const]));
}
