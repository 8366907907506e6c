import type { IncomingHttpHeaders } from "node:http";
import {
  type DescField,
  type DescMessage,
  type JsonObject,
  type JsonValue,
  type JsonWriteOptions,
  type Message,
  ScalarType,
} from "@bufbuild/protobuf";
import { Code, ConnectError, createContextValues, createHandlerContext, type Interceptor } from "@connectrpc/connect";
import { invokeUnaryImplementation } from "@connectrpc/connect/protocol";
import { materializePayloads } from "../../wire/payload-text.ts";
import { kRestRoute } from "../context.ts";
import { httpStatusFromCode } from "./http-status.ts";
import { jsonWriterOf } from "./json-writer.ts";
import { matchRoute, type RestRoute } from "./routes.ts";
import { requestFromJson, responseToJson } from "./struct-json.ts";

/** A REST request, reduced to what the transcoder reads. */
export interface RestRequest {
  method: string;
  url: URL;
  headers: IncomingHttpHeaders;
  body: () => Promise<Uint8Array>;
  signal: AbortSignal;
  /** Hears the template of the route the request matched, as soon as it is matched. */
  matched?: (template: string) => void;
}

/** A REST answer: a status, headers (an error's metadata) and, unless 204, a JSON body; `route` is the template it matched, if any. */
export interface RestResponse {
  status: number;
  headers?: Headers;
  body?: Uint8Array;
  route?: string;
}

// Headers that describe the REST request itself rather than the RPC call it becomes.
const droppedHeaders = /^(host|connection|keep-alive|transfer-encoding|upgrade|content-.*|accept-encoding|te|connect-.*|grpc-.*|:.*)$/;

/**
 * Creates the REST transcoder: it matches a request to a route read from the
 * proto annotations, builds the RPC's request from the path, query and body,
 * calls the same implementation through the same interceptors as every other
 * protocol, and turns the answer into the seed's status codes and JSON.
 */
export function createRestHandler(routes: readonly RestRoute[], interceptors: Interceptor[], jsonOptions: Partial<JsonWriteOptions>) {
  /** Calls the route's RPC with the request's path, query and body, and answers as the seed does. */
  async function answer(route: RestRoute, params: Map<DescField, string>, request: RestRequest): Promise<RestResponse> {
    const { method } = route.spec;
    try {
      const json = requestJson(route, params, request.url.searchParams, route.body === "none" ? undefined : await readBody(route, request));
      const input = parseRequest(route, json);
      const requestHeader: Record<string, string> = {};
      for (const [name, value] of Object.entries(request.headers)) {
        if (value !== undefined && !droppedHeaders.test(name)) requestHeader[name] = Array.isArray(value) ? value.join(", ") : value;
      }
      const context = createHandlerContext({
        service: method.parent,
        method,
        protocolName: "rest",
        requestMethod: request.method,
        url: request.url.toString(),
        requestHeader,
        requestSignal: request.signal,
        contextValues: createContextValues().set(kRestRoute, route.template),
      });
      const output = await invokeUnaryImplementation(route.spec, context, input, interceptors);
      if (route.successStatus === 204) return { status: 204 };
      return { status: route.successStatus, body: utf8Encoder.encode(responseJson(method.output, output, jsonOptions)) };
    } catch (error) {
      const { code, rawMessage, metadata } = ConnectError.from(error);
      // The metadata carries headers that belong to the answer, such as a 401's WWW-Authenticate.
      return { ...detail(httpStatusFromCode(code), code === Code.Internal ? "Internal server error" : rawMessage), headers: metadata };
    }
  }

  return async function handleRest(request: RestRequest): Promise<RestResponse> {
    const match = matchRoute(routes, request.method, request.url.pathname);
    if ("status" in match) {
      return detail(match.status, match.status === 404 ? "Not Found" : "Method Not Allowed");
    }
    request.matched?.(match.route.template);
    return { ...(await answer(match.route, match.params, request)), route: match.route.template };
  };
}

/** Reads the RPC's request message from its proto JSON, as Connect reads a parsed JSON body. */
function parseRequest(route: RestRoute, json: JsonObject) {
  try {
    return requestFromJson(route.spec.method.input, json);
  } catch (error) {
    throw ConnectError.from(error, Code.InvalidArgument);
  }
}

const utf8Encoder = new TextEncoder();

/** The answer's JSON text: written directly where the message type allows, else through protobuf-es. */
function responseJson(desc: DescMessage, message: Message, options: Partial<JsonWriteOptions>) {
  const write = jsonWriterOf(desc, options);
  return write ? write(message) : JSON.stringify(responseToJson(desc, materializePayloads(desc, message), options));
}

function detail(status: number, reason: string): RestResponse {
  return { status, body: utf8Encoder.encode(JSON.stringify({ detail: reason })) };
}

// Drops a leading byte-order mark, as JSON parsers of other stacks do.
const utf8 = new TextDecoder();

/** Reads the body: JSON, or a form when the route takes one and the request says it sends one. */
async function readBody(route: RestRoute, request: RestRequest): Promise<JsonValue | undefined> {
  const type = request.headers["content-type"]?.split(";")[0]?.trim().toLowerCase();
  if (!route.formBody || type !== "application/x-www-form-urlencoded") return readJsonBody(request);
  const form = new URLSearchParams(utf8.decode(await request.body()));
  const json: JsonObject = {};
  for (const [name, value] of form) {
    const field = route.fieldByName.get(name);
    if (field) json[name] = field.fieldKind === "list" ? form.getAll(name) : queryValue(field, value);
  }
  return json;
}

async function readJsonBody(request: RestRequest): Promise<JsonValue | undefined> {
  const text = utf8.decode(await request.body());
  if (text.trim() === "") return undefined;
  try {
    return JSON.parse(text) as JsonValue;
  } catch (error) {
    throw new ConnectError(`request body is not valid JSON: ${(error as Error).message}`, Code.InvalidArgument);
  }
}

/** Builds the RPC request, in proto JSON, from the path variables, the query string and the body. */
function requestJson(route: RestRoute, params: Map<DescField, string>, query: URLSearchParams, body: JsonValue | undefined): JsonObject {
  const message: JsonObject = {};
  for (const [name, value] of query) {
    const field = route.queryFieldByName.get(name);
    if (field) message[field.jsonName] = field.fieldKind === "list" ? query.getAll(name) : queryValue(field, value);
  }
  if (route.body === "message") {
    if (body === undefined) body = {};
    if (typeof body !== "object" || body === null || Array.isArray(body)) {
      throw new ConnectError("request body must be a JSON object", Code.InvalidArgument);
    }
    for (const [name, value] of Object.entries(body)) {
      const field = route.fieldByName.get(name);
      if (field && value !== undefined) message[field.jsonName] = value;
    }
  } else if (route.body !== "none") {
    // `?all=true` (reprocess or purge every dead letter) stands in for the list of ids; any other call needs its body.
    if (body === undefined && route.bodyStandIn && message[route.bodyStandIn.jsonName] === true) body = [];
    if (body === undefined) throw new ConnectError("request body is required", Code.InvalidArgument);
    checkBodyShape(route.body, body);
    message[route.body.jsonName] = body;
  }
  for (const [field, value] of params) {
    message[field.jsonName] = value;
  }
  return message;
}

/**
 * Refuses a body of a JSON type that the field it binds cannot hold: proto JSON
 * would read a null as the field's default, and an array item that is not an
 * object without saying which.
 */
function checkBodyShape(field: DescField, body: JsonValue) {
  if (field.fieldKind === "list") {
    if (!Array.isArray(body)) throw new ConnectError(`request body must be a JSON array, not ${jsonKind(body)}`, Code.InvalidArgument);
    const { typeName } = field.message ?? {};
    const objects = typeName === "google.protobuf.Struct" || (typeName !== undefined && !typeName.startsWith("google.protobuf."));
    const index = objects ? body.findIndex((item) => jsonKind(item) !== "an object") : -1;
    if (index >= 0) {
      throw new ConnectError(
        `request body must be a JSON array of objects: item ${index} is ${jsonKind(body[index])}`,
        Code.InvalidArgument,
      );
    }
  } else if (body === null && field.message?.typeName !== "google.protobuf.Value") {
    throw new ConnectError("request body must not be null", Code.InvalidArgument);
  }
}

function jsonKind(value: JsonValue | undefined) {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  return typeof value === "object" ? "an object" : `a ${typeof value}`;
}

function queryValue(field: DescField, value: string): JsonValue {
  if (field.fieldKind === "scalar" && field.scalar === ScalarType.BOOL) {
    return value === "true" || value === "1" ? true : value === "false" || value === "0" ? false : value;
  }
  return value;
}
