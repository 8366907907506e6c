import type { IncomingMessage, ServerResponse } from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import type { DescService } from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  type ConnectRouter,
  cors,
  createConnectRouter,
  createServiceImplSpec,
  type Interceptor,
  type MethodImplSpec,
  type ServiceImpl,
} from "@connectrpc/connect";
import {
  compressionBrotli,
  compressionGzip,
  universalRequestFromNodeRequest,
  universalResponseToNodeResponse,
} from "@connectrpc/connect-node";
import type { Logger } from "../logger.ts";
import { createPayloadInterceptor } from "../wire/payload-text.ts";
import { createConsoleHandler } from "./console.ts";
import { createDocsHandler } from "./docs.ts";
import { type HealthResponse, liveness } from "./health.ts";
import type { Metrics } from "./metrics.ts";
import { requestGate } from "./request-gate.ts";
import { createRestHandler } from "./rest/rest-handler.ts";
import { restRoutesFromMethods } from "./rest/routes.ts";
import { createStructTwinRouter, isBinaryRequest } from "./struct-twin-router.ts";

type NodeRequest = IncomingMessage | Http2ServerRequest;
type NodeResponse = ServerResponse | Http2ServerResponse;

// The paths answered here rather than by an RPC.
const fixedPaths = new Set(["/liveness", "/readiness", "/metrics"]);

/** What the request handler serves. */
export interface HandlerOptions {
  /** Registers the service implementations. */
  routes: (router: ConnectRouter) => void;
  /** Interceptors run for every call, whatever its protocol, outermost first. */
  interceptors: Interceptor[];
  /** Answers /readiness. */
  readiness: () => Promise<HealthResponse>;
  logger: Logger;
  /** Origins allowed to call from a browser. */
  corsOrigins: readonly string[];
  /** The largest request body accepted, in bytes. */
  readMaxBytes: number;
  /** Times and counts each request. */
  metrics: Metrics;
  /** Renders /metrics (with several workers, all of theirs). */
  renderMetrics: () => Promise<string>;
}

/**
 * Creates the handler of every HTTP request on the port: Connect, gRPC and
 * gRPC-Web calls go to their Connect handler, the REST paths to the same
 * handlers through the transcoder; the probes, /metrics, the API docs and
 * the console answer directly. Every request is timed, counted and logged once.
 */
export function createRequestHandler(options: HandlerOptions) {
  const jsonOptions = { useProtoFieldName: true, alwaysEmitImplicit: true, ignoreUnknownFields: true };
  const routerOptions = {
    interceptors: options.interceptors,
    readMaxBytes: options.readMaxBytes,
    jsonOptions,
    requestGate,
    // What connectNodeAdapter accepts by default; readMaxBytes bounds a message once decompressed.
    acceptCompression: [compressionGzip, compressionBrotli],
  };
  // protobuf-es writes this router's answers: their payloads must be objects by then. (The twins'
  // encoder takes a payload still held as text itself.)
  const router = createConnectRouter({ ...routerOptions, interceptors: [createPayloadInterceptor(), ...options.interceptors] });
  // The binary protocols of the methods carrying payloads go to their twins, which read and write
  // each google.protobuf.Struct with our codec instead of protobuf-es's reflection.
  const twins = createStructTwinRouter(routerOptions);
  // The REST transcoder calls the implementations directly, through the same interceptors.
  const methods: MethodImplSpec[] = [];
  options.routes({
    handlers: router.handlers,
    service(service, implementation, serviceOptions) {
      methods.push(...Object.values(createServiceImplSpec(service, implementation).methods));
      twins.service(service, implementation as Partial<ServiceImpl<DescService>>, serviceOptions);
      return router.service(service, implementation, serviceOptions);
    },
    rpc: router.rpc.bind(router),
  });
  const rpcHandlers = new Map(router.handlers.map((handler) => [handler.requestPath, handler]));
  const twinHandlers = new Map(
    twins.router.handlers.filter((handler) => twins.paths.has(handler.requestPath)).map((handler) => [handler.requestPath, handler]),
  );
  const handleRest = createRestHandler(restRoutesFromMethods(methods), options.interceptors, jsonOptions);
  const allowedOrigins = new Set(options.corsOrigins);
  const handleDocs = createDocsHandler();
  const handleConsole = createConsoleHandler();

  /** Answers a request, noting in `taken` the route it took (a template, never a raw id), for logs and metrics. */
  async function route(req: NodeRequest, res: NodeResponse, url: URL, taken: { route: string }) {
    const rpc = (isBinaryRequest(req.headers["content-type"]) && twinHandlers.get(url.pathname)) || rpcHandlers.get(url.pathname);
    if (rpc) {
      taken.route = url.pathname;
      const response = await rpc(universalRequestFromNodeRequest(req, res, undefined, undefined));
      closeIfUnread(req, res);
      await universalResponseToNodeResponse(response, res);
      return;
    }
    if (req.method === "GET" && fixedPaths.has(url.pathname)) {
      taken.route = url.pathname;
      if (url.pathname === "/liveness") return sendJson(res, liveness());
      if (url.pathname === "/readiness") return sendJson(res, await options.readiness());
      const text = await options.renderMetrics();
      return send(res, 200, Buffer.from(text), options.metrics.contentType);
    }
    const docs = handleDocs(req.method ?? "GET", url.pathname) ?? handleConsole(req.method ?? "GET", url.pathname);
    if (docs) {
      const answer = await docs;
      taken.route = answer.route;
      for (const [name, value] of Object.entries(answer.headers ?? {})) res.setHeader(name, value);
      return send(res, answer.status ?? 200, answer.body, answer.type);
    }
    const abort = new AbortController();
    res.once("close", () => {
      if (!res.writableFinished) abort.abort();
    });
    const response = await handleRest({
      method: req.method ?? "GET",
      url,
      headers: req.headers,
      body: () => readBody(req, options.readMaxBytes),
      signal: abort.signal,
      // Noted before the body is read, for a request whose connection closes while it is.
      matched: (template) => {
        taken.route = template;
      },
    });
    response.headers?.forEach((value, name) => {
      res.setHeader(name, value);
    });
    closeIfUnread(req, res);
    send(res, response.status, response.body);
  }

  return function handleRequest(req: NodeRequest, res: NodeResponse) {
    const started = performance.now();
    const method = req.method ?? "GET";
    const url = new URL(req.url ?? "/", "http://localhost");
    const done = options.metrics.startRequest(method);
    const taken = { route: "unmatched" };
    res.once("close", () => {
      // A connection closed before the answer was all written (the client gave up, or a bound cut
      // it) is counted as nginx counts it, 499, whatever status the handler had set.
      const status = answeredWhole(res) ? res.statusCode : 499;
      done(taken.route, status);
      options.logger.info("request", {
        method,
        route: taken.route,
        path: url.pathname,
        status,
        duration: `${((performance.now() - started) / 1000).toFixed(4)}s`,
      });
    });
    const origin = req.headers.origin;
    if (origin && allowedOrigins.has(origin)) {
      res.setHeader("access-control-allow-origin", origin);
      res.setHeader("vary", "origin");
      // A browser client reads a 401's challenge only when it is exposed.
      res.setHeader("access-control-expose-headers", [...cors.exposedHeaders, "WWW-Authenticate"].join(", "));
      if (req.method === "OPTIONS" && req.headers["access-control-request-method"]) {
        res.setHeader("access-control-allow-methods", [...cors.allowedMethods, "PUT", "PATCH", "DELETE"].join(", "));
        res.setHeader("access-control-allow-headers", [...cors.allowedHeaders, "Authorization"].join(", "));
        res.setHeader("access-control-max-age", "7200");
        send(res, 204);
        return;
      }
    }
    route(req, res, url, taken).catch((error: unknown) => {
      // Writing to a connection that is gone fails; the close above has counted it.
      if (connectionGone(res)) return;
      options.logger.error("request failed", { method, path: url.pathname, error: String(error) });
      if (!res.headersSent) sendJson(res, { status: 500, body: { detail: "Internal server error" } });
      else res.destroy();
    });
  };
}

/** Whether an answer was written whole before its connection (or HTTP/2 stream) closed. */
function answeredWhole(res: NodeResponse) {
  // An HTTP/2 response counts as finished when its stream is reset; the reset's code tells.
  return "stream" in res ? !res.stream.rstCode : res.writableFinished;
}

/** Whether the connection (or HTTP/2 stream) of an answer is gone. */
function connectionGone(res: NodeResponse) {
  return "stream" in res ? res.stream.destroyed : res.destroyed;
}

/**
 * Makes the answer close an HTTP/1.1 connection whose request body was not read
 * to its end, as when it is larger than readMaxBytes: the rest would be taken
 * for the next request on the connection, which would then wait forever.
 */
function closeIfUnread(req: NodeRequest, res: NodeResponse) {
  if (!req.complete && req.httpVersionMajor === 1) res.setHeader("connection", "close");
}

function sendJson(res: NodeResponse, answer: { status: number; body: unknown }) {
  send(res, answer.status, Buffer.from(JSON.stringify(answer.body)));
}

/** Writes a whole answer; a body is JSON unless said otherwise. */
function send(res: NodeResponse, status: number, body?: Uint8Array, contentType = "application/json") {
  // The HTTP/2 compatibility response has the same methods as the HTTP/1 one.
  const out = res as ServerResponse;
  out.statusCode = status;
  if (body) {
    out.setHeader("content-type", contentType);
    out.setHeader("content-length", body.byteLength);
  }
  out.end(body);
}

async function readBody(req: NodeRequest, readMaxBytes: number): Promise<Uint8Array> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.byteLength;
    if (size > readMaxBytes) throw new ConnectError(`request body is larger than ${readMaxBytes} bytes`, Code.ResourceExhausted);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}
