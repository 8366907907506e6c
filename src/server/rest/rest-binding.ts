import type { DescField, DescMethod } from "@bufbuild/protobuf";

/** A google.api.http rule reduced to what the REST API uses: one verb, its path template, and the body binding. */
export interface HttpBinding {
  /** Lower case, e.g. `post`. */
  verb: "get" | "put" | "post" | "delete" | "patch";
  path: string;
  /** Empty for no body, `*` for the whole request, else one field's name. */
  body: string;
}

/** How one RPC is reached over REST, as its google.api.http rule says; the server and the OpenAPI document both use it. */
export interface RestBinding {
  verb: HttpBinding["verb"];
  /** The path template, e.g. `/topics/{id}`. */
  template: string;
  /** Each path segment: literal text, or the request field it binds. */
  segments: (string | DescField)[];
  pathFields: DescField[];
  /** Where the request body goes: nowhere, the whole message (`*`), or one field. */
  body: "none" | "message" | DescField;
  /** The fields read from the query string: those bound neither by the path nor by the body. */
  queryFields: DescField[];
  /** The status of success: 204 without a body, 201 for a POST that returns one, else 200. */
  successStatus: 200 | 201 | 204;
}

/** Derives an RPC's REST binding from its google.api.http rule. */
export function restBinding(method: DescMethod, rule: HttpBinding): RestBinding {
  const where = `${method.parent.typeName}.${method.name}`;
  const field = (name: string) => {
    const found = method.input.fields.find((candidate) => candidate.name === name);
    if (!found) throw new Error(`${where}: ${name} is not a field of ${method.input.typeName}`);
    return found;
  };
  const segments = rule.path
    .split("/")
    .slice(1)
    .map((segment) => {
      const variable = /^\{(\w+)\}$/.exec(segment);
      if (!variable?.[1] && segment.includes("{")) throw new Error(`${where}: unsupported path segment ${segment}`);
      return variable?.[1] ? field(variable[1]) : segment;
    });
  const pathFields = segments.filter((segment) => typeof segment !== "string");
  const body = rule.body === "" ? "none" : rule.body === "*" ? "message" : field(rule.body);
  const queryFields =
    body === "message"
      ? []
      : method.input.fields.filter(
          (candidate) =>
            !pathFields.includes(candidate) &&
            candidate !== body &&
            (candidate.fieldKind === "scalar" ||
              candidate.fieldKind === "enum" ||
              (candidate.fieldKind === "list" && candidate.listKind !== "message")),
        );
  const bodiless = method.output.typeName === "google.protobuf.Empty";
  return {
    verb: rule.verb,
    template: rule.path,
    segments,
    pathFields,
    body,
    queryFields,
    successStatus: bodiless ? 204 : rule.verb === "post" ? 201 : 200,
  };
}
