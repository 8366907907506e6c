import { readFile } from "node:fs/promises";
import type { DocsAnswer } from "./docs.ts";

const html = "text/html; charset=utf-8";

// The page loads its script and style by URLs relative to /console, so it works behind a path prefix;
// the bundle (console/dist, built from console/src by console/build.ts) calls the API at the page's root.
const page = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>fastpubsub console</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="console/assets/console.css">
</head>
<body>
<div id="app"><p>Loading the console…</p></div>
<noscript>The console needs JavaScript.</noscript>
<script type="module" src="console/assets/console.js"></script>
</body>
</html>
`;

// The page runs only its own script and style, talks only to this server, and is never framed (so that
// no other site can trick a click on one of its buttons).
const pageHeaders = {
  "content-security-policy":
    "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
};

const dist = new URL("../../console/dist/", import.meta.url);

const assets = new Map([
  ["/console/assets/console.js", { file: new URL("console.js", dist), type: "text/javascript; charset=utf-8" }],
  ["/console/assets/console.css", { file: new URL("console.css", dist), type: "text/css; charset=utf-8" }],
]);

/**
 * Creates the handler of the operator console: GET /console (the page) and its
 * script and style, read from console/dist on first use. It returns undefined
 * for any other request.
 */
export function createConsoleHandler() {
  const bodies = new Map<string, Promise<Buffer>>();
  return function handleConsole(method: string, pathname: string): Promise<DocsAnswer> | undefined {
    if (method !== "GET" && method !== "HEAD") return undefined;
    if (pathname === "/console") return Promise.resolve({ route: "/console", type: html, body: Buffer.from(page), headers: pageHeaders });
    // The page's relative URLs need the path without the slash; the relative redirect keeps any path prefix.
    if (pathname === "/console/") {
      return Promise.resolve({ route: "/console", status: 308, type: html, body: Buffer.from(""), headers: { location: "../console" } });
    }
    const asset = assets.get(pathname);
    if (!asset) return undefined;
    let body = bodies.get(pathname);
    if (!body) {
      body = readFile(asset.file);
      // A failed read is tried again by the next request.
      body.catch(() => bodies.delete(pathname));
      bodies.set(pathname, body);
    }
    return body.then((content) => ({
      route: "/console",
      type: asset.type,
      body: content,
      headers: { "x-content-type-options": "nosniff" },
    }));
  };
}
