/**
 * Writes the README's screenshots of the console, console/screenshots/*.png:
 * `npm run console:screenshots`. It starts a server with authentication on, over
 * a fresh database on FASTPUBSUB_TEST_DATABASE_URL's cluster (else the local
 * PostgreSQL at 127.0.0.1:5432), fills it with a few topics, subscriptions and
 * dead letters, and drives Debian's Chromium (or CHROMIUM_PATH) through the views.
 * `npm run console:screenshots -- DIR` writes them to DIR instead.
 */
import { mkdir } from "node:fs/promises";
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { fromJson } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import type { Page } from "playwright-core";
import { createFastPubSubClient } from "../src/client.ts";
import { loadConfig } from "../src/config/config.ts";
import { migrate } from "../src/db/migrate.ts";
import { createDatabasePool } from "../src/db/pool.ts";
import { createLogger } from "../src/logger.ts";
import { startServer } from "../src/server/server.ts";
import { registerClient } from "../src/services/client-service.ts";
import { launchChromium } from "../test/support/chromium.ts";
import { databaseUrl, query } from "../test/support/db.ts";

const adminUrl = process.env.FASTPUBSUB_TEST_DATABASE_URL ?? "postgresql://postgres@127.0.0.1:5432/postgres";
const out = process.argv[2] ? pathToFileURL(`${resolve(process.argv[2])}/`) : new URL("screenshots/", import.meta.url);
const database = `fastpubsub_screenshots_${process.pid}`;

await query(adminUrl, `CREATE DATABASE ${database}`);
const url = databaseUrl(adminUrl, database);
await migrate(url);
const config = loadConfig({
  FASTPUBSUB_DATABASE_URL: url,
  FASTPUBSUB_API_HOST: "127.0.0.1",
  FASTPUBSUB_API_PORT: "0",
  FASTPUBSUB_LOG_LEVEL: "critical",
  FASTPUBSUB_AUTH_ENABLED: "true",
  FASTPUBSUB_AUTH_SECRET_KEY: "screenshots-only-key-5d8c1e2f3a4b5c6d7e8f9a0b1c2d3e4f",
});
const server = await startServer(config, createLogger({ level: "critical", format: "%(message)s" }));
const pool = createDatabasePool(url, { maxPoolSize: 2 });
const browser = await launchChromium();

try {
  const admin = await registerClient(pool, { name: "Operations console", scopes: "*" });
  await registerClient(pool, { name: "orders-publisher", scopes: "topics:publish:orders" });
  await registerClient(pool, { name: "billing-worker", scopes: "subscriptions:consume:billing subscriptions:read" });
  const { clientCredentials } = await import("../src/client.ts");
  const api = createFastPubSubClient(server.url, { token: clientCredentials(server.url, admin.id, admin.secret) });

  await api.topics.createTopic({ id: "orders", dedupKey: "order_id", dedupWindowSeconds: 3600 });
  await api.topics.createTopic({ id: "payments" });
  await api.topics.createTopic({ id: "user-events" });
  await api.subscriptions.createSubscription({ id: "billing", topicId: "orders", maxDeliveryAttempts: 1 });
  await api.subscriptions.createSubscription({
    id: "shipping-br",
    topicId: "orders",
    filter: fromJson(ValueSchema, { country: ["BR"] }),
    orderingKey: "customer_id",
  });
  await api.subscriptions.createSubscription({ id: "audit", topicId: "user-events", ackDeadlineSeconds: 120 });

  let order = 0;
  const publish = (count: number) =>
    api.topics.publishMessages({
      topicId: "orders",
      messages: Array.from({ length: count }, () => {
        order += 1;
        return { order_id: `o-${order}`, customer_id: `c-${order % 7}`, country: order % 3 ? "BR" : "US", total: 10 + (order % 5) * 7.5 };
      }),
    });

  // A few of billing's messages are dead-lettered: the first by a consumer that found it bad,
  // with its reason, the others because they failed their only attempt.
  await publish(4);
  const failed = await api.subscriptions.consumeMessages({ subscriptionId: "billing", consumerId: "billing-1", batchSize: 3 });
  const [bad, ...retried] = failed.data.map((message) => message.id);
  await api.subscriptions.nackMessages({
    subscriptionId: "billing",
    messageIds: bad ? [bad] : [],
    deadLetter: true,
    reason: "invoice rejected: the customer has no billing address",
  });
  await api.subscriptions.nackMessages({ subscriptionId: "billing", messageIds: retried });

  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  await page.goto(`${server.url}/console`);
  await page.getByRole("heading", { name: "Sign in to fastpubsub" }).waitFor();
  await page.getByLabel("Client id").fill(admin.id);
  await shoot(page, "login");
  await page.getByLabel("Client secret").fill(admin.secret);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("rowheader", { name: "orders" }).waitFor();
  await page.getByLabel("Refresh").selectOption("2");

  // Watch the backlog move for a while: publish in bursts while a consumer drains shipping-br.
  await page.getByRole("link", { name: "Subscriptions" }).click();
  for (let round = 0; round < 16; round++) {
    await publish(round < 8 ? 6 : 1);
    const batch = await api.subscriptions.consumeMessages({ subscriptionId: "shipping-br", consumerId: "ship-1", batchSize: 3 });
    await api.subscriptions.ackMessages({ subscriptionId: "shipping-br", messageIds: batch.data.map((message) => message.id) });
    await page.waitForTimeout(2000);
  }
  await page.locator("summary", { hasText: "Create a subscription" }).click();
  await page.getByLabel("Filter (JSON, optional)").fill('{"country": ["BR", "US"], "priority": [1, 2]}');
  await shoot(page, "subscriptions");

  await page.getByRole("link", { name: "Topics" }).click();
  await page.getByRole("button", { name: "Publish to orders" }).click();
  await page.getByLabel("Message JSON").fill('{\n  "order_id": "o-1001",\n  "customer_id": "c-3",\n  "country": "BR"\n}');
  await page.getByLabel("Delay, seconds (optional)").fill("30");
  await shoot(page, "topics");

  await page.getByRole("link", { name: "Subscriptions" }).click();
  await page.getByRole("link", { name: "Dead letters of billing" }).click();
  await page.locator("li.message").first().waitFor();
  await page.locator("li.message").first().getByRole("checkbox").check();
  await shoot(page, "dead-letters");

  await page.getByRole("link", { name: "Clients" }).click();
  await page.locator("summary", { hasText: "Create a client" }).click();
  await page.getByLabel("Name").fill("reporting");
  await page.getByLabel("Scopes").fill("topics:read subscriptions:read");
  await page.getByRole("button", { name: "Create client" }).click();
  await page.getByRole("button", { name: "Copy secret" }).waitFor();
  await shoot(page, "clients");

  await page.setViewportSize({ width: 390, height: 844 });
  await page.getByRole("link", { name: "Subscriptions" }).click();
  await page.locator("tr[data-subscription]").first().waitFor();
  await page.locator("h2", { hasText: "All subscriptions" }).scrollIntoViewIfNeeded();
  await shoot(page, "subscriptions-390", false);
  await context.close();
} finally {
  await browser.close();
  await pool.end();
  await server.close();
  await query(adminUrl, `DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
}

async function shoot(page: Page, name: string, fullPage = true) {
  await mkdir(out, { recursive: true });
  // Let the last refresh land before the picture.
  await page.waitForTimeout(500);
  await page.screenshot({ path: new URL(`${name}.png`, out).pathname, fullPage });
  console.log(new URL(`${name}.png`, out).pathname);
}
