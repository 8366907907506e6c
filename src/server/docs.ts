import { readFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";

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
  ["/docs/assets/swagger-ui.css", { route: "/docs", file: join(swaggerUiDir, "swagger-ui.css"), type: css }],
  ["/docs/assets/swagger-ui-bundle.js", { route: "/docs", file: join(swaggerUiDir, "swagger-ui-bundle.js"), type: js }],
  ["/redoc/assets/redoc.standalone.js", { route: "/redoc", file: join(redocDir, "bundles", "redoc.standalone.js"), type: js }],
]);

/** A documentation answer, and the route it counts under in logs and metrics. */
export interface DocsAnswer {
  route: string;
  type: string;
  body: Buffer;
  /** 200 unless said otherwise. */
  status?: number;
  /** Headers to send besides the content type and length. */
  headers?: Record<string, string>;
}

/**
 * Creates the handler of the API documentation: GET /openapi.json (the
 * document generated from the proto), /docs (Swagger UI) and /redoc (ReDoc)
 * with their scripts and styles, read from node_modules on first use. It
 * returns undefined for any other request.
 */
export function createDocsHandler() {
  const pages = new Map([
    [
      "/openapi.json",
      { route: "/openapi.json", body: readFileSync(new URL("../../gen/openapi.json", import.meta.url)), type: "application/json" },
    ],
    ["/docs", { route: "/docs", body: Buffer.from(swaggerUiPage), type: html }],
    ["/redoc", { route: "/redoc", body: Buffer.from(redocPage), type: html }],
  ]);
  const assetBodies = new Map<string, Promise<Buffer>>();

  return function handleDocs(method: string, pathname: string): Promise<DocsAnswer> | undefined {
    if (method !== "GET" && method !== "HEAD") return undefined;
    const page = pages.get(pathname);
    if (page) return Promise.resolve(page);
    const asset = assets.get(pathname);
    if (!asset) return undefined;
    let body = assetBodies.get(pathname);
    if (!body) {
      body = readFile(asset.file);
      // A failed read is tried again by the next request.
      body.catch(() => assetBodies.delete(pathname));
      assetBodies.set(pathname, body);
    }
    return body.then((content) => ({ route: asset.route, type: asset.type, body: content }));
  };
}
