import { readFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";

type NodeRequest = IncomingMessage | Http2ServerRequest;
type NodeResponse = ServerResponse | Http2ServerResponse;

const require = createRequire(import.meta.url);
const swaggerUiDir = dirname(require.resolve("swagger-ui-dist/package.json"));
const redocDir = dirname(require.resolve("redoc/package.json"));

const css = "text/css; charset=utf-8";
const js = "text/javascript; charset=utf-8";
const html = "text/html; charset=utf-8";

// The pages load everything from this server, by URLs relative to /docs and /redoc, so they work offline and behind a path prefix.
const swaggerUiPage = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>fastpubsub API</title>
<link rel="stylesheet" href="docs/assets/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="docs/assets/swagger-ui-bundle.js"></script>
<script>SwaggerUIBundle({ url: "openapi.json", dom_id: "#swagger-ui", validatorUrl: null });</script>
</body>
</html>
`;

const redocPage = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>fastpubsub API</title>
<style>body { margin: 0; }</style>
</head>
<body>
<redoc spec-url="openapi.json"></redoc>
<script src="redoc/assets/redoc.standalone.js"></script>
</body>
</html>
`;

const assets = new Map([
  ["/docs/assets/swagger-ui.css", { file: join(swaggerUiDir, "swagger-ui.css"), type: css }],
  ["/docs/assets/swagger-ui-bundle.js", { file: join(swaggerUiDir, "swagger-ui-bundle.js"), type: js }],
  ["/redoc/assets/redoc.standalone.js", { file: join(redocDir, "bundles", "redoc.standalone.js"), type: js }],
]);

/**
 * Creates the handler of the API documentation, which answers GET
 * /openapi.json (the document generated from the proto), /docs (Swagger UI)
 * and /redoc (ReDoc) with their scripts and styles from node_modules, and
 * returns whether it answered.
 */
export function createDocsHandler() {
  const pages = new Map([
    ["/openapi.json", { body: readFileSync(new URL("../../gen/openapi.json", import.meta.url)), type: "application/json" }],
    ["/docs", { body: Buffer.from(swaggerUiPage), type: html }],
    ["/redoc", { body: Buffer.from(redocPage), type: html }],
  ]);
  const assetBodies = new Map<string, Promise<Buffer>>();

  return function handleDocs(req: NodeRequest, res: NodeResponse, url: URL): boolean {
    if (req.method !== "GET" && req.method !== "HEAD") return false;
    const page = pages.get(url.pathname);
    if (page) {
      send(res, 200, page.type, page.body);
      return true;
    }
    const asset = assets.get(url.pathname);
    if (!asset) return false;
    let body = assetBodies.get(url.pathname);
    if (!body) {
      body = readFile(asset.file);
      assetBodies.set(url.pathname, body);
    }
    body.then(
      (content) => send(res, 200, asset.type, content),
      () => send(res, 500, "application/json", Buffer.from(JSON.stringify({ detail: "Internal server error" }))),
    );
    return true;
  };
}

function send(res: NodeResponse, status: number, type: string, body: Buffer) {
  // The HTTP/2 compatibility response has the same methods as the HTTP/1 one.
  const out = res as ServerResponse;
  out.statusCode = status;
  out.setHeader("content-type", type);
  out.setHeader("content-length", body.byteLength);
  out.end(body);
}
