import { type DescField, type DescMethod, getOption, hasOption } from "@bufbuild/protobuf";
import type { UniversalHandler } from "@connectrpc/connect/protocol";
import { http } from "../../../gen/google/api/annotations_pb.ts";

/** A REST route read from a method's google.api.http annotation. */
export interface RestRoute {
  /** The HTTP method, e.g. `POST`. */
  verb: string;
  /** The path template, e.g. `/topics/{id}`. */
  template: string;
  /** Each path segment: literal text, or the request field it binds. */
  segments: (string | DescField)[];
  /** Where the request body goes: nowhere, the whole message (`*`), or one field. */
  body: "none" | "message" | DescField;
  /** The status of a successful answer: 204 without a body, 201 for a POST that returns one, else 200. */
  successStatus: number;
  /** The Connect handler the request is passed to. */
  handler: UniversalHandler;
}

/** Builds the REST routes of every handler whose method carries a google.api.http annotation. */
export function restRoutesFromHandlers(handlers: readonly UniversalHandler[]): RestRoute[] {
  return handlers
    .filter((handler) => hasOption(handler.method, http))
    .map((handler) => routeFromMethod(handler.method, handler))
    .sort((a, b) => literalCount(b) - literalCount(a));
}

function routeFromMethod(method: DescMethod, handler: UniversalHandler): RestRoute {
  const rule = getOption(method, http);
  const { case: verb, value: template } = rule.pattern;
  if (verb === undefined || verb === "custom") {
    throw new Error(`${method.parent.typeName}.${method.name}: unsupported google.api.http pattern`);
  }
  const field = (name: string) => {
    const found = method.input.fields.find((candidate) => candidate.name === name);
    if (!found) throw new Error(`${method.parent.typeName}.${method.name}: ${name} is not a field of ${method.input.typeName}`);
    return found;
  };
  const segments = template
    .split("/")
    .slice(1)
    .map((segment) => {
      const variable = /^\{(\w+)\}$/.exec(segment);
      return variable?.[1] ? field(variable[1]) : segment;
    });
  const bodiless = method.output.typeName === "google.protobuf.Empty";
  return {
    verb: verb.toUpperCase(),
    template,
    segments,
    body: rule.body === "" ? "none" : rule.body === "*" ? "message" : field(rule.body),
    successStatus: bodiless ? 204 : verb === "post" ? 201 : 200,
    handler,
  };
}

function literalCount(route: RestRoute) {
  return route.segments.filter((segment) => typeof segment === "string").length;
}

/** The route a request matches, with its path variables, or the status that says why none does. */
export type RouteMatch = { route: RestRoute; params: Map<DescField, string> } | { status: 404 | 405 };

/** Finds the route of a method and path; a trailing slash is ignored. */
export function matchRoute(routes: readonly RestRoute[], verb: string, path: string): RouteMatch {
  const parts = path
    .replace(/(.)\/$/, "$1")
    .split("/")
    .slice(1);
  let pathMatched = false;
  for (const route of routes) {
    const params = matchSegments(route.segments, parts);
    if (!params) continue;
    if (route.verb === verb) return { route, params };
    pathMatched = true;
  }
  return { status: pathMatched ? 405 : 404 };
}

function matchSegments(segments: readonly (string | DescField)[], parts: readonly string[]) {
  if (segments.length !== parts.length) return undefined;
  const params = new Map<DescField, string>();
  for (const [index, segment] of segments.entries()) {
    const part = parts[index] ?? "";
    if (typeof segment === "string") {
      if (segment !== part) return undefined;
    } else {
      const value = decodePathSegment(part);
      if (!value) return undefined;
      params.set(segment, value);
    }
  }
  return params;
}

function decodePathSegment(part: string) {
  try {
    return decodeURIComponent(part);
  } catch {
    return undefined;
  }
}
