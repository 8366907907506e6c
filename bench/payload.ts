import type { JsonObject } from "@bufbuild/protobuf";

/** A JSON object of about 200 bytes, like a typical event; `n` makes each one different. */
export function eventPayload(n: number): JsonObject {
  const countries = ["BR", "US", "DE", "JP", "PL"];
  return {
    event: "user.updated",
    user_id: String(100_000 + n),
    country: countries[n % countries.length] ?? "BR",
    plan: n % 3 === 0 ? "premium" : "basic",
    amount: (n % 1000) + 0.5,
    active: n % 2 === 0,
    ts: "2026-11-25T12:00:00.000Z",
    note: "lorem ipsum dolor sit amet, consectetur adipiscing elit",
  };
}
