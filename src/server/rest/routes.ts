import { type DescField, getOption, hasOption } from "@bufbuild/protobuf";
import type { MethodImplSpec } from "@connectrpc/connect";
import { rules } from "../../../gen/fastpubsub/v1/field_rules_pb.ts";
import { http } from "../../../gen/google/api/annotations_pb.ts";
import { type RestBinding, restBinding } from "./rest-binding.ts";

/** A REST route: an RPC's REST binding and the implementation requests are passed to. */
export interface RestRoute extends RestBinding {
  spec: MethodImplSpec & { kind: "unary" };
}

/** Builds the REST routes of every unary method that carries a google.api.http annotation. */
export function restRoutesFromMethods(specs: Iterable<MethodImplSpec>): RestRoute[] {
  return [...specs]
    .filter((spec) => spec.kind === "unary" && hasOption(spec.method, http))
    .map((spec) => ({ ...restBinding(spec.method, getOption(spec.method, http), isRequired), spec: spec as RestRoute["spec"] }))
    .sort((a, b) => literalCount(b) - literalCount(a));
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
  const lowerVerb = verb.toLowerCase();
  let pathMatched = false;
  for (const route of routes) {
    const params = matchSegments(route.segments, parts);
    if (!params) continue;
    if (route.verb === lowerVerb) return { route, params };
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

function isRequired(field: DescField) {
  return getOption(field, rules).required;
}
