import { timestampDate } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import type { Browser, BrowserContext, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Message } from "../../gen/fastpubsub/v1/subscription_service_pb.ts";
import { createFastPubSubClient, type FastPubSubClient } from "../../src/client.ts";
import { createDatabasePool, type DatabasePool } from "../../src/db/pool.ts";
import { registerClient } from "../../src/services/client-service.ts";
import { launchChromium } from "../support/chromium.ts";
import { startTestServer, type TestServer } from "../support/server.ts";

const secretKey = "console-test-key-0f1e2d3c4b5a69788796a5b4c3d2e1f0";
const pollTimeout = { timeout: 20_000, interval: 250 };

let browser: Browser;

beforeAll(async () => {
  browser = await launchChromium();
}, 60_000);
afterAll(async () => {
  await browser?.close();
});

/** A browser context that may reach only `base`, noting every request to elsewhere. */
async function openContext(base: string) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const outside: string[] = [];
  await context.route(
    (url) => url.origin !== base,
    (route) => {
      outside.push(route.request().url());
      return route.abort();
    },
  );
  return { context, outside };
}

/** Opens the console in a new page. */
async function openConsole(context: BrowserContext, base: string): Promise<Page> {
  const page = await context.newPage();
  await page.goto(`${base}/console`);
  return page;
}

async function setFastRefresh(page: Page) {
  await page.getByLabel("Refresh").selectOption("2");
}

/** The text of one metric cell of a subscription's row. */
function metric(page: Page, subscriptionId: string, name: "available" | "delivered" | "acked" | "dlq") {
  return () => page.locator(`tr[data-subscription="${subscriptionId}"] td[data-metric="${name}"]`).textContent();
}

/** Opens a view's collapsed form, such as "Create a topic". */
async function openForm(page: Page, title: string) {
  await page.locator("summary", { hasText: title }).click();
}

/** Clicks `button`, then the confirm dialog's `action`. */
async function clickAndConfirm(page: Page, button: ReturnType<Page["getByRole"]>, action: string) {
  await button.click();
  const dialog = page.getByRole("dialog");
  await dialog.getByRole("button", { name: action, exact: true }).click();
  await dialog.waitFor({ state: "detached" });
}

describe("the console with authentication off", { timeout: 120_000 }, () => {
  let server: TestServer;
  let api: FastPubSubClient;

  beforeAll(async () => {
    server = await startTestServer();
    api = createFastPubSubClient(server.url);
  });
  afterAll(async () => {
    await server?.close();
  });

  /** Consumes `count` messages of orders-br through the API, waiting for them (each nacked message waits out a 1-second backoff). */
  async function consume(count: number) {
    const messages: Message[] = [];
    for (let round = 0; round < 10 && messages.length < count; round++) {
      const { data } = await api.subscriptions.consumeMessages({
        subscriptionId: "orders-br",
        consumerId: "w1",
        batchSize: count - messages.length,
        waitSeconds: 5,
      });
      messages.push(...data);
    }
    expect(messages).toHaveLength(count);
    return messages.sort((a, b) => Number(a.payload?.order) - Number(b.payload?.order));
  }

  /** orders-br's counts from GetSubscriptionMetrics, and its dead letters by reason from /metrics. */
  async function counts() {
    const { available, delivered, acked, dlq } = await api.subscriptions.getSubscriptionMetrics({ subscriptionId: "orders-br" });
    const text = await (await fetch(`${server.url}/metrics`)).text();
    const gauge = (reason: string) => {
      const name = `fastpubsub_subscription_dead_letters{subscription="orders-br",reason="${reason}"} `;
      const line = text.split("\n").find((candidate) => candidate.startsWith(name));
      return line === undefined ? undefined : Number(line.slice(name.length));
    };
    const byReason = {
      max_delivery_attempts: gauge("max_delivery_attempts"),
      lease_expired: gauge("lease_expired"),
      nacked: gauge("nacked"),
    };
    return { available, delivered, acked, dlq, byReason };
  }

  it("goes from a new topic to dead letters with their reasons, purged and reprocessed", async () => {
    const { context, outside } = await openContext(server.url);
    const page = await openConsole(context, server.url);
    const problems: string[] = [];
    page.on("pageerror", (error) => problems.push(error.message));
    page.on("console", (message) => {
      if (message.type() === "error") problems.push(message.text());
    });
    await setFastRefresh(page);

    // Create a topic.
    await openForm(page, "Create a topic");
    await page.getByLabel("Topic id").fill("orders");
    await page.getByRole("button", { name: "Create topic" }).click();
    await page.getByRole("status").filter({ hasText: "Created topic orders." }).waitFor();
    expect((await api.topics.getTopic({ id: "orders" })).id).toBe("orders");

    // Create a subscription with a filter, which the form shows as it will be sent.
    await page.getByRole("link", { name: "Subscriptions" }).click();
    await openForm(page, "Create a subscription");
    await page.getByLabel("Subscription id").fill("orders-br");
    await page.getByLabel("Topic", { exact: true }).fill("orders");
    await page.getByLabel("Filter (JSON, optional)").fill('{"country": "BR"}');
    await page.getByText("filter must be null or an object").waitFor();
    expect(await page.getByRole("button", { name: "Create subscription" }).isDisabled()).toBe(true);
    await page.getByLabel("Filter (JSON, optional)").fill('{"country": ["BR"]}');
    await page.locator(".filter-preview code").filter({ hasText: '{"country":["BR"]}' }).waitFor();
    await page.getByLabel("Max delivery attempts").fill("2");
    await page.getByLabel("Backoff min, seconds").fill("1");
    await page.getByLabel("Backoff max, seconds").fill("1");
    await page.getByRole("button", { name: "Create subscription" }).click();
    await page.getByRole("status").filter({ hasText: "Created subscription orders-br." }).waitFor();
    const subscription = await api.subscriptions.getSubscription({ id: "orders-br" });
    expect(subscription).toMatchObject({ topicId: "orders", maxDeliveryAttempts: 2, backoffMinSeconds: 1, backoffMaxSeconds: 1 });

    // Publish from the console: two messages pass the filter, one does not.
    await page.getByRole("link", { name: "Topics" }).click();
    await page.getByRole("button", { name: "Publish to orders" }).click();
    await page.getByLabel("Message JSON").fill("[1]");
    await page.getByText("must be a JSON object, or an array of JSON objects").waitFor();
    await page
      .getByLabel("Message JSON")
      .fill('[{"country": "BR", "order": 1}, {"country": "JP", "order": 2}, {"country": "BR", "order": 3}]');
    await page.getByRole("button", { name: "Publish", exact: true }).click();
    await page.getByRole("status").filter({ hasText: "Published 3 messages to orders." }).waitFor();

    // See the backlog.
    await page.getByRole("link", { name: "Subscriptions" }).click();
    await expect.poll(metric(page, "orders-br", "available"), pollTimeout).toBe("2");
    expect(await metric(page, "orders-br", "dlq")()).toBe("0");
    await page.locator('tr[data-subscription="orders-br"] svg.chart polyline').waitFor();

    // Through the API: nack order 3 to the dead-letter queue with a reason, and let order 1 use up its two attempts.
    const first = await consume(2);
    const byOrder = (order: number) => first.find((message) => message.payload?.order === order)?.id ?? "";
    const [one, three] = [byOrder(1), byOrder(3)];
    await api.subscriptions.nackMessages({ subscriptionId: "orders-br", messageIds: [three], deadLetter: true, reason: "bad schema" });
    await api.subscriptions.nackMessages({ subscriptionId: "orders-br", messageIds: [one] });
    const again = await consume(1);
    expect(again.map((message) => message.id)).toEqual([one]);
    await api.subscriptions.nackMessages({ subscriptionId: "orders-br", messageIds: [one] });
    await expect.poll(metric(page, "orders-br", "dlq"), pollTimeout).toBe("2");
    expect(await metric(page, "orders-br", "available")()).toBe("0");
    expect(await counts()).toEqual({
      available: 0,
      delivered: 0,
      acked: 0,
      dlq: 2,
      byReason: { max_delivery_attempts: 1, lease_expired: 0, nacked: 1 },
    });

    // The dead-letter queue shows each one's real reason, and when it died, as the API gives them.
    const dead = (await api.subscriptions.listDlqMessages({ subscriptionId: "orders-br" })).data;
    expect(dead.map((message) => [message.id, message.reason, message.deliveryAttempts])).toEqual([
      [one, "max_delivery_attempts", 2],
      [three, "bad schema", 1],
    ]);
    await page.getByRole("link", { name: "Dead letters of orders-br" }).click();
    await page.locator('[data-metric="dlq-count"]').filter({ hasText: "2 messages in the dead-letter queue." }).waitFor(pollTimeout);
    const item = (id: string) => page.locator(`li[data-message="${id}"]`);
    for (const message of dead) {
      await item(message.id).waitFor();
      const at = message.deadLetteredAt ? timestampDate(message.deadLetteredAt).toISOString() : "unset";
      expect(await item(message.id).locator('[data-field="dead-lettered-at"] time').getAttribute("datetime")).toBe(at);
    }
    expect(await item(one).locator('[data-field="reason"]').textContent()).toBe("max_delivery_attempts");
    expect(await item(one).locator('[data-field="attempts"]').textContent()).toBe("2");
    expect(await item(one).locator("pre.json").textContent()).toBe(JSON.stringify({ country: "BR", order: 1 }, null, 2));
    expect(await item(three).locator('[data-field="reason"]').textContent()).toBe("bad schema");
    expect(await item(three).locator('[data-field="attempts"]').textContent()).toBe("1");
    expect(await page.locator("li.message").count()).toBe(2);

    // Purge the one with the bad schema: asked first, and nothing happens on Cancel (nor on a cancelled reprocess).
    await item(three).getByRole("checkbox").check();
    await clickAndConfirm(page, page.getByRole("button", { name: "Purge selected" }), "Cancel");
    await clickAndConfirm(page, page.getByRole("button", { name: "Reprocess selected" }), "Cancel");
    expect((await api.subscriptions.listDlqMessages({ subscriptionId: "orders-br" })).data).toHaveLength(2);
    await clickAndConfirm(page, page.getByRole("button", { name: "Purge selected" }), "Purge");
    await page.getByRole("status").filter({ hasText: "Purged 1 selected message." }).waitFor();
    await item(three).waitFor({ state: "detached", ...pollTimeout });
    await page.locator('[data-metric="dlq-count"]').filter({ hasText: "1 message in the dead-letter queue." }).waitFor(pollTimeout);
    expect((await api.subscriptions.listDlqMessages({ subscriptionId: "orders-br" })).data.map((message) => message.id)).toEqual([one]);
    expect(await counts()).toEqual({
      available: 0,
      delivered: 0,
      acked: 0,
      dlq: 1,
      byReason: { max_delivery_attempts: 1, lease_expired: 0, nacked: 0 },
    });

    // Reprocess all of them, after a confirmation: order 1 is back with its attempts reset.
    await clickAndConfirm(page, page.getByRole("button", { name: "Reprocess all" }), "Cancel");
    expect((await counts()).dlq).toBe(1);
    await clickAndConfirm(page, page.getByRole("button", { name: "Reprocess all" }), "Reprocess");
    await page.getByText("The dead-letter queue is empty.").waitFor(pollTimeout);
    await page.locator('[data-metric="dlq-count"]').filter({ hasText: "0 messages in the dead-letter queue." }).waitFor(pollTimeout);
    expect(await counts()).toEqual({
      available: 1,
      delivered: 0,
      acked: 0,
      dlq: 0,
      byReason: { max_delivery_attempts: 0, lease_expired: 0, nacked: 0 },
    });
    await page.getByRole("link", { name: "← Subscriptions" }).click();
    await expect.poll(metric(page, "orders-br", "available"), pollTimeout).toBe("1");
    expect(await metric(page, "orders-br", "dlq")()).toBe("0");

    // Publish order 4 through the API, ack it, and nack order 1 to the dead-letter queue without a reason: "nacked".
    await api.topics.publishMessages({ topicId: "orders", messages: [{ country: "BR", order: 4 }] });
    const last = await consume(2);
    expect(last.map((message) => [message.payload?.order, message.deliveryAttempts])).toEqual([
      [1, 1],
      [4, 1],
    ]);
    const four = last.find((message) => message.payload?.order === 4)?.id ?? "";
    await api.subscriptions.ackMessages({ subscriptionId: "orders-br", messageIds: [four] });
    await api.subscriptions.nackMessages({ subscriptionId: "orders-br", messageIds: [one], deadLetter: true });
    await expect.poll(metric(page, "orders-br", "dlq"), pollTimeout).toBe("1");
    expect(await counts()).toEqual({
      available: 0,
      delivered: 0,
      acked: 1,
      dlq: 1,
      byReason: { max_delivery_attempts: 0, lease_expired: 0, nacked: 1 },
    });
    await page.getByRole("link", { name: "Dead letters of orders-br" }).click();
    expect(await item(one).locator('[data-field="reason"]').textContent()).toBe("nacked");

    // Purge all of them, after a confirmation: the counts go back to zero.
    await clickAndConfirm(page, page.getByRole("button", { name: "Purge all" }), "Cancel");
    expect((await counts()).dlq).toBe(1);
    await clickAndConfirm(page, page.getByRole("button", { name: "Purge all" }), "Purge");
    await page.getByRole("status").filter({ hasText: "Purged every dead letter." }).waitFor();
    await page.getByText("The dead-letter queue is empty.").waitFor(pollTimeout);
    expect(await page.getByRole("button", { name: "Purge all" }).isDisabled()).toBe(true);
    expect(await page.getByRole("button", { name: "Reprocess all" }).isDisabled()).toBe(true);
    expect(await counts()).toEqual({
      available: 0,
      delivered: 0,
      acked: 1,
      dlq: 0,
      byReason: { max_delivery_attempts: 0, lease_expired: 0, nacked: 0 },
    });
    expect((await api.subscriptions.listDlqMessages({ subscriptionId: "orders-br" })).data).toEqual([]);
    await page.getByRole("link", { name: "← Subscriptions" }).click();
    await expect.poll(metric(page, "orders-br", "dlq"), pollTimeout).toBe("0");
    expect(await metric(page, "orders-br", "available")()).toBe("0");
    expect(await metric(page, "orders-br", "delivered")()).toBe("0");
    expect(await metric(page, "orders-br", "acked")()).toBe("1");

    // Delete the subscription, then the topic, each after a confirmation.
    await clickAndConfirm(page, page.getByRole("button", { name: "Delete orders-br" }), "Delete subscription");
    await page.getByText("No subscriptions yet.").waitFor(pollTimeout);
    await page.getByRole("link", { name: "Topics" }).click();
    await clickAndConfirm(page, page.getByRole("button", { name: "Delete orders" }), "Delete topic");
    await page.getByText("No topics yet.").waitFor(pollTimeout);
    await expect(api.topics.getTopic({ id: "orders" })).rejects.toMatchObject({ code: Code.NotFound });

    expect(outside).toEqual([]);
    expect(problems).toEqual([]);
    await context.close();
  });

  it("goes back to the first page after all dead letters are purged from a later one", async () => {
    await api.topics.createTopic({ id: "paged" });
    await api.subscriptions.createSubscription({ id: "paged-sub", topicId: "paged" });
    await api.topics.publishMessages({ topicId: "paged", messages: Array.from({ length: 21 }, (_, n) => ({ n })) });
    const { data } = await api.subscriptions.consumeMessages({ subscriptionId: "paged-sub", consumerId: "w1", batchSize: 21 });
    expect(data).toHaveLength(21);
    const messageIds = data.map((message) => message.id);
    await api.subscriptions.nackMessages({ subscriptionId: "paged-sub", messageIds, deadLetter: true, reason: "late" });
    const { context } = await openContext(server.url);
    const page = await context.newPage();
    await page.goto(`${server.url}/console#/subscriptions/paged-sub/dlq`);
    await page.getByText("Messages 1–20 of 21").waitFor(pollTimeout);
    await page.getByRole("button", { name: "Next page" }).click();
    await page.getByText("Messages 21–21 of 21").waitFor(pollTimeout);
    await clickAndConfirm(page, page.getByRole("button", { name: "Purge all" }), "Purge");
    await page.getByText("The dead-letter queue is empty.").waitFor(pollTimeout);
    expect(await page.getByRole("button", { name: "Previous page" }).isDisabled()).toBe(true);
    expect(await api.subscriptions.getSubscriptionMetrics({ subscriptionId: "paged-sub" })).toMatchObject({ dlq: 0, available: 0 });
    await context.close();
  });

  it("stops asking for numbers while the tab is hidden", async () => {
    await api.topics.createTopic({ id: "hidden" });
    await api.subscriptions.createSubscription({ id: "hidden-sub", topicId: "hidden" });
    const { context } = await openContext(server.url);
    const page = await openConsole(context, server.url);
    let calls = 0;
    page.on("request", (request) => {
      if (request.url().endsWith("/GetSubscriptionMetrics")) calls += 1;
    });
    await page.getByRole("link", { name: "Subscriptions" }).click();
    await setFastRefresh(page);
    await expect.poll(() => calls, pollTimeout).toBeGreaterThan(1);
    const setHidden = (hidden: boolean) =>
      page.evaluate(`Object.defineProperty(document, "hidden", { configurable: true, get: () => ${hidden} });
        document.dispatchEvent(new Event("visibilitychange"))`);
    await setHidden(true);
    await page.waitForTimeout(500);
    calls = 0;
    await page.waitForTimeout(5000);
    expect(calls).toBe(0);
    await setHidden(false);
    await expect.poll(() => calls, pollTimeout).toBeGreaterThan(0);
    await context.close();
  });

  it("fits a 390-pixel screen and can be driven from the keyboard", async () => {
    await api.topics.createTopic({ id: "narrow" });
    await api.subscriptions.createSubscription({ id: "narrow-sub", topicId: "narrow" });
    const { context } = await openContext(server.url);
    const page = await openConsole(context, server.url);
    await page.setViewportSize({ width: 390, height: 844 });
    for (const view of ["Topics", "Subscriptions"]) {
      await page.getByRole("link", { name: view }).click();
      await page.getByRole("heading", { name: view, level: 1 }).waitFor();
      await page.locator("tbody tr").first().waitFor();
      expect(await page.evaluate("document.documentElement.scrollWidth"), `${view} scrolls sideways`).toBeLessThanOrEqual(390);
    }
    await page.getByLabel("Find").fill("narrow");
    await page.getByRole("rowheader", { name: "narrow-sub" }).waitFor();
    await page.getByLabel("Find").fill("nothing-like-it");
    await page.getByText('No subscription or topic id contains "nothing-like-it".').waitFor();
    // Tab reaches the views' links, Enter follows one, and the focused control is outlined.
    const fresh = await openConsole(context, server.url);
    await fresh.getByRole("heading", { name: "Topics", level: 1 }).waitFor();
    await fresh.keyboard.press("Tab");
    await fresh.keyboard.press("Tab");
    expect(await fresh.evaluate("document.activeElement.textContent")).toBe("Subscriptions");
    expect(await fresh.evaluate("getComputedStyle(document.activeElement).outlineStyle")).toBe("solid");
    await fresh.keyboard.press("Enter");
    await fresh.getByRole("heading", { name: "Subscriptions", level: 1 }).waitFor();
    await context.close();
  });

  it("shows the API's error message", async () => {
    await api.topics.createTopic({ id: "taken" });
    const { context } = await openContext(server.url);
    const page = await openConsole(context, server.url);
    await openForm(page, "Create a topic");
    await page.getByLabel("Topic id").fill("taken");
    await page.getByRole("button", { name: "Create topic" }).click();
    await page.getByRole("alert").filter({ hasText: "already_exists: This topic already exists" }).waitFor();
    await context.close();
  });
});

describe("the console with authentication on", { timeout: 120_000 }, () => {
  let server: TestServer;
  let db: DatabasePool;
  let admin: { id: string; secret: string };
  let api: FastPubSubClient;

  beforeAll(async () => {
    server = await startTestServer({ FASTPUBSUB_AUTH_ENABLED: "true", FASTPUBSUB_AUTH_SECRET_KEY: secretKey });
    db = createDatabasePool(server.databaseUrl, { maxPoolSize: 2 });
    admin = await registerClient(db, { name: "admin", scopes: "*" });
    const { clientCredentials } = await import("../../src/client.ts");
    api = createFastPubSubClient(server.url, { token: clientCredentials(server.url, admin.id, admin.secret) });
    await api.topics.createTopic({ id: "payments" });
  });
  afterAll(async () => {
    await db?.end();
    await server?.close();
  });

  async function signIn(page: Page, id: string, secret: string) {
    await page.getByLabel("Client id").fill(id);
    await page.getByLabel("Client secret").fill(secret);
    await page.getByRole("button", { name: "Sign in" }).click();
  }

  it("asks for credentials, refuses wrong ones, and creates a client whose secret it shows once", async () => {
    const { context, outside } = await openContext(server.url);
    await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: server.url });
    const page = await openConsole(context, server.url);
    await page.getByRole("heading", { name: "Sign in to fastpubsub" }).waitFor();
    await signIn(page, admin.id, "wrong");
    await page.getByRole("alert").filter({ hasText: "unauthenticated:" }).waitFor();
    await signIn(page, admin.id, admin.secret);
    await page.getByRole("heading", { name: "Topics", level: 1 }).waitFor();
    await page.getByRole("rowheader", { name: "payments" }).waitFor();
    expect(await page.locator("header .scopes").textContent()).toContain("*");

    await page.getByRole("link", { name: "Clients" }).click();
    await openForm(page, "Create a client");
    await page.getByLabel("Name").fill("reader");
    await page.getByLabel("Scopes").fill("topics:read nope");
    await page.getByText('has an invalid scope "nope"').waitFor();
    await page.getByLabel("Scopes").fill("topics:read");
    await page.getByRole("button", { name: "Create client" }).click();
    const id = await page.locator('[data-field="client-id"]').textContent();
    const secret = await page.locator('[data-field="client-secret"]').textContent();
    await page.getByRole("button", { name: "Copy secret" }).click();
    await page.getByRole("button", { name: "Copied" }).waitFor();
    expect(await page.evaluate("navigator.clipboard.readText()")).toBe(secret);
    await page.getByRole("button", { name: "Done" }).click();
    expect(await page.locator('[data-field="client-secret"]').count()).toBe(0);
    const created = await api.clients.getClient({ id: id ?? "" });
    expect(created).toMatchObject({ name: "reader", scopes: "topics:read", isActive: true });

    // Widen its scopes, after a confirmation.
    const item = page.locator(`li[data-client="${id}"]`);
    await item.getByRole("button", { name: "Edit scopes" }).click();
    await item.getByLabel("Scopes").fill("topics:read subscriptions:read");
    await clickAndConfirm(page, item.getByRole("button", { name: "Save" }), "Confirm");
    await expect
      .poll(async () => (await api.clients.getClient({ id: id ?? "" })).scopes, pollTimeout)
      .toBe("topics:read subscriptions:read");

    // The new client's secret works, and its token has the new scopes.
    await page.getByRole("button", { name: "Sign out" }).click();
    await signIn(page, id ?? "", secret ?? "");
    await page.getByRole("link", { name: "Topics" }).click();
    await page.getByRole("rowheader", { name: "payments" }).waitFor();
    expect(await page.locator("header .scopes").textContent()).toContain("topics:read subscriptions:read");
    expect(outside).toEqual([]);
    await context.close();
  });

  it("disables the actions that a token's scopes do not allow", async () => {
    const reader = await registerClient(db, { name: "limited", scopes: "topics:read subscriptions:read topics:publish:payments" });
    await api.topics.createTopic({ id: "refunds" });
    const { context } = await openContext(server.url);
    const page = await openConsole(context, server.url);
    await signIn(page, reader.id, reader.secret);
    await page.getByRole("rowheader", { name: "refunds" }).waitFor();
    await openForm(page, "Create a topic");
    expect(await page.getByRole("button", { name: "Create topic" }).isDisabled()).toBe(true);
    await page.getByText("Disabled: this token lacks topics:create.").waitFor();
    expect(await page.getByRole("button", { name: "Delete payments" }).isDisabled()).toBe(true);
    // A scope narrowed to one topic allows that topic only.
    expect(await page.getByRole("button", { name: "Publish to payments" }).isEnabled()).toBe(true);
    expect(await page.getByRole("button", { name: "Publish to refunds" }).isDisabled()).toBe(true);

    await page.getByRole("link", { name: "Subscriptions" }).click();
    await openForm(page, "Create a subscription");
    expect(await page.getByRole("button", { name: "Create subscription" }).isDisabled()).toBe(true);
    await page.getByText("Disabled: this token lacks subscriptions:create.").waitFor();
    await page.getByRole("link", { name: "Clients" }).click();
    await page.getByText("Disabled: this token lacks clients:read.").waitFor();
    await openForm(page, "Create a client");
    expect(await page.getByRole("button", { name: "Create client" }).isDisabled()).toBe(true);
    await context.close();
  });

  it("renews its token before the token expires", async () => {
    const { context } = await openContext(server.url);
    // The page's clock jumps; the server's does not, so the renewed token is as good as the first.
    await context.clock.install();
    const page = await openConsole(context, server.url);
    let tokenRequests = 0;
    page.on("request", (request) => {
      if (request.url().endsWith("/fastpubsub.v1.AuthService/CreateToken")) tokenRequests += 1;
    });
    await signIn(page, admin.id, admin.secret);
    await page.getByRole("rowheader", { name: "payments" }).waitFor();
    expect(tokenRequests).toBe(1);
    // Tokens last 30 minutes here; the console renews at four fifths of that.
    await page.clock.fastForward("23:00");
    expect(tokenRequests).toBe(1);
    await page.clock.fastForward("01:30");
    await expect.poll(() => tokenRequests, pollTimeout).toBe(2);
    await page.getByRole("rowheader", { name: "payments" }).waitFor();
    expect(await page.getByRole("heading", { name: "Sign in to fastpubsub" }).count()).toBe(0);
    await context.close();
  });

  it("sends an operator back to the login form when another disables or deletes the client", async () => {
    const { context: adminContext } = await openContext(server.url);
    const adminPage = await openConsole(adminContext, server.url);
    await signIn(adminPage, admin.id, admin.secret);
    await adminPage.getByRole("link", { name: "Clients" }).click();
    for (const revoke of ["disabled", "deleted"] as const) {
      const operator = await registerClient(db, { name: `operator ${revoke}`, scopes: "*" });
      const { context } = await openContext(server.url);
      const page = await openConsole(context, server.url);
      await signIn(page, operator.id, operator.secret);
      await page.getByRole("rowheader", { name: "payments" }).waitFor();
      await setFastRefresh(page);
      // The admin's console revokes it, after a confirmation.
      const item = adminPage.locator(`li[data-client="${operator.id}"]`);
      if (revoke === "disabled") {
        await clickAndConfirm(adminPage, item.getByRole("button", { name: "Disable" }), "Confirm");
        await expect.poll(async () => (await api.clients.getClient({ id: operator.id })).isActive, pollTimeout).toBe(false);
      } else {
        await clickAndConfirm(adminPage, item.getByRole("button", { name: "Delete" }), "Delete client");
        const stored = () =>
          api.clients.getClient({ id: operator.id }).then(
            () => "present",
            (error: { code?: Code }) => error.code,
          );
        await expect.poll(stored, pollTimeout).toBe(Code.NotFound);
      }
      await page.getByRole("heading", { name: "Sign in to fastpubsub" }).waitFor(pollTimeout);
      const reason = revoke === "disabled" ? "Client disabled" : "Client not found";
      await page
        .getByRole("alert")
        .filter({ hasText: `Signed out: ${reason}` })
        .waitFor();
      await context.close();
    }
    await adminContext.close();
  });
});
