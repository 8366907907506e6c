import { describe, expect, it } from "vitest";
import { messageIdFromUuid, messageUuid } from "../../src/db/message-ids.ts";

describe("message ids", () => {
  const createdAt = Date.parse("2026-11-25T12:00:00.123Z");

  it.each(["1", "123456789", "281474976710655", "281474976710656", "4503599627370495", "4503599627370496", "4611686018427387903"])(
    "round-trip the id %s through a UUID",
    (id) => {
      const uuid = messageUuid(id, createdAt);
      expect(uuid).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
      expect(messageIdFromUuid(uuid)).toBe(id);
      expect(messageIdFromUuid(uuid.toUpperCase().replaceAll("-", ""))).toBe(id);
    },
  );

  it("hold an id below 2^48 in their last group, and the creation time of each message", () => {
    expect(messageUuid("2748", createdAt)).toBe("01a21293-b67b-8000-8000-000000000abc");
    expect(messageUuid("2748", createdAt + 1)).toBe("01a21293-b67c-8000-8000-000000000abc");
    expect(messageUuid("281474976710656", createdAt)).toBe("01a21293-b67b-8000-8001-000000000000");
    expect(messageIdFromUuid("01A21293-B67B-8000-8000-000000000ABC")).toBe("2748");
  });

  it("begin with the creation time, so they sort by it", () => {
    const earlier = messageUuid("900", createdAt);
    const later = messageUuid("5", createdAt + 1);
    expect(earlier.slice(0, 13)).toBe("01a21293-b67b");
    expect([later, earlier].sort()).toEqual([earlier, later]);
  });

  it.each([
    ["a version 4 UUID", "550e8400-e29b-41d4-a716-446655440000"],
    ["a version 8 UUID with other reserved bits", "01a21293-b67b-8001-8000-000000000001"],
    ["a UUID of another variant", "01a21293-b67b-8000-c000-000000000001"],
    ["text that is no UUID", "not-a-uuid"],
  ])("find no message id in %s", (_, uuid) => {
    expect(messageIdFromUuid(uuid)).toBeUndefined();
  });
});
