import { randomUUID } from "node:crypto";
import { describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config/config.ts";
import { createClient } from "../../src/db/clients.ts";
import { openDatabase } from "../../src/db/database.ts";
import { publishMessages } from "../../src/db/messages.ts";
import { createTopic } from "../../src/db/topics.ts";
import { createLogger } from "../../src/logger.ts";
import { createTestDatabase } from "../support/server.ts";

describe("FASTPUBSUB_DATABASE_ECHO", () => {
  it("logs every statement's text and never its values", async () => {
    const lines: string[] = [];
    const logger = createLogger({ level: "info", format: "%(message)s", write: (line) => lines.push(line) });
    const db = openDatabase(await createTestDatabase(), loadConfig({ FASTPUBSUB_DATABASE_ECHO: "true" }), logger);
    try {
      await createClient(db.pool, randomUUID(), { name: "echoed", scopes: "*", isActive: true }, "scrypt$32768$8$1$c2FsdA==$aGFzaA==");
      await createTopic(db.pool, "echo-topic");
      await publishMessages(db.queue, "echo-topic", [{ secret: "payload-value" }]);
    } finally {
      await db.end();
    }
    const queries = lines.map((line) => JSON.parse(line) as Record<string, unknown>).filter((line) => line.message === "query");
    expect(queries.map((line) => String(line.sql))).toEqual([
      expect.stringContaining("create_client"),
      expect.stringContaining("create_topic"),
      expect.stringContaining("publish_messages"),
    ]);
    const log = lines.join("");
    for (const value of ["scrypt$", "echoed", "echo-topic", "payload-value"]) expect(log).not.toContain(value);
  });
});
