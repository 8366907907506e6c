import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type BrowserContext, chromium } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestServer, type TestServer } from "../support/server.ts";

const chromiumPath = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const chromiumArgs = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

// Every REST path of the API, written out by hand, and the health paths.
const restPaths = [
  "/topics",
  "/topics/{id}",
  "/topics/{topic_id}/messages",
  "/subscriptions",
  "/subscriptions/{id}",
  "/subscriptions/{subscription_id}/messages",
  "/subscriptions/{subscription_id}/acks",
  "/subscriptions/{subscription_id}/nacks",
  "/subscriptions/{subscription_id}/dlq",
  "/subscriptions/{subscription_id}/dlq/reprocess",
  "/subscriptions/{subscription_id}/metrics",
  "/clients",
  "/clients/{id}",
  "/oauth/token",
  "/liveness",
  "/readiness",
  "/metrics",
];

describe("API docs in a browser", { timeout: 60_000 }, () => {
  let server: TestServer;
  let base: string;
  let profile: string;
  let context: BrowserContext | undefined;
  const outsideRequests: string[] = [];

  // Each browser test fails with this reason, rather than the whole file being skipped, when Chromium is missing.
  function newPage() {
    if (!context) throw new Error(`Chromium is not at ${chromiumPath}: install it (apt-get install -y chromium) or set CHROMIUM_PATH`);
    return context.newPage();
  }

  beforeAll(async () => {
    server = await startTestServer();
    base = server.url;
    if (!existsSync(chromiumPath)) return;
    profile = await mkdtemp(join(tmpdir(), "fastpubsub-chromium-"));
    context = await chromium.launchPersistentContext(profile, { executablePath: chromiumPath, headless: true, args: chromiumArgs });
    // Nothing may come from elsewhere; ReDoc's footer logo is the one image it tries, and hides when it fails.
    await context.route(
      (url) => url.origin !== base && url.protocol !== "blob:",
      (route) => {
        if (route.request().resourceType() !== "image") outsideRequests.push(route.request().url());
        return route.abort();
      },
    );
  }, 60_000);

  afterAll(async () => {
    await context?.close();
    await server?.close();
    if (profile) await rm(profile, { recursive: true, force: true });
  });

  it("serves /openapi.json as generated", async () => {
    const response = await fetch(`${base}/openapi.json`);
    expect(response.headers.get("content-type")).toBe("application/json");
    expect(await response.text()).toBe(await readFile(new URL("../../gen/openapi.json", import.meta.url), "utf8"));
  });

  it("creates a topic through Swagger UI's Try it out", async () => {
    const page = await newPage();
    await page.goto(`${base}/docs`);
    const operation = page.locator("#operations-TopicService-CreateTopic");
    await operation.locator(".opblock-summary").click();
    expect(await page.locator(".errors-wrapper").count(), "Swagger UI found errors in the document").toBe(0);
    await operation.getByRole("button", { name: "Try it out" }).click();
    await operation.locator("textarea.body-param__text").fill(JSON.stringify({ id: "docs-topic" }));
    await operation.getByRole("button", { name: "Execute" }).click();
    const answer = operation.locator(".live-responses-table .response");
    await expect.poll(async () => (await answer.locator(".response-col_status").textContent())?.trim(), { timeout: 30_000 }).toBe("201");
    const body = JSON.parse((await answer.locator(".response-col_description pre").first().textContent()) ?? "") as Record<string, unknown>;
    expect(body).toMatchObject({ id: "docs-topic", created_at: expect.any(String) });
    const stored = await fetch(`${server.url}/topics/docs-topic`);
    expect(stored.status).toBe(200);
    await page.close();
    expect(outsideRequests).toEqual([]);
  });

  it("shows every REST path on the ReDoc page", async () => {
    const page = await newPage();
    await page.goto(`${base}/redoc`);
    await page.locator('[data-section-id="tag/TopicService/operation/CreateTopic"]').waitFor({ timeout: 30_000 });
    for (const path of restPaths) {
      await page.getByText(path, { exact: true }).first().waitFor({ state: "visible", timeout: 5_000 });
    }
    await page.close();
    expect(outsideRequests).toEqual([]);
  });
});
