import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { staleConsoleFiles } from "../../console/build.ts";
import { startTestServer, type TestServer } from "../support/server.ts";

let server: TestServer;

beforeAll(async () => {
  server = await startTestServer();
});
afterAll(async () => {
  await server?.close();
});

describe("the console", () => {
  it("serves its page at /console, loading its assets by relative URLs", async () => {
    const response = await fetch(new URL("/console", server.url));
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toBe("text/html; charset=utf-8");
    const page = await response.text();
    expect(page).toContain('<script type="module" src="console/assets/console.js">');
    expect(page).toContain('<link rel="stylesheet" href="console/assets/console.css">');
    // Nothing is loaded from elsewhere, and the browser is told to refuse anything else.
    expect(page).not.toMatch(/(src|href)="(https?:)?\/\//);
    expect(response.headers.get("content-security-policy")).toContain("default-src 'self'");
    expect(response.headers.get("content-security-policy")).toContain("frame-ancestors 'none'");
  });

  it("sends /console/ to /console", async () => {
    const response = await fetch(new URL("/console/", server.url), { redirect: "manual" });
    expect(response.status).toBe(308);
    expect(new URL(response.headers.get("location") ?? "", response.url).pathname).toBe("/console");
  });

  it("serves its script and style sheet with their content types", async () => {
    const script = await fetch(new URL("/console/assets/console.js", server.url));
    expect(script.status).toBe(200);
    expect(script.headers.get("content-type")).toBe("text/javascript; charset=utf-8");
    expect((await script.text()).length).toBeGreaterThan(1000);
    const style = await fetch(new URL("/console/assets/console.css", server.url));
    expect(style.status).toBe(200);
    expect(style.headers.get("content-type")).toBe("text/css; charset=utf-8");
  });

  it("answers other paths under /console as the REST layer does", async () => {
    const response = await fetch(new URL("/console/assets/other.js", server.url));
    expect(response.status).toBe(404);
  });

  it("has a checked-in bundle that a fresh build of console/src reproduces", { timeout: 60_000 }, async () => {
    expect(await staleConsoleFiles()).toEqual([]);
  });
});
