/**
 * Message ids are bigints inside PostgreSQL and UUIDs outside: RFC 9562
 * version 8, laid out as 48 bits of the message's creation time in ms (so
 * they sort by time, like version 7), the version, 12 zero bits, the variant,
 * and the 62-bit id.
 */

const uuidShape = /^([0-9a-f]{8})-?([0-9a-f]{4})-?8000-?([89ab][0-9a-f]{3})-?([0-9a-f]{12})$/i;
const safeHexDigits = 13; // 2^52 fits in a double exactly

// The common case, an id below 2^48: then the UUID's last group is the id, and the one before it "8000".
// A batch's messages share their creation time, so the part made of it is kept from one call to the next.
const shortIdUuid = /^[0-9a-f]{8}-[0-9a-f]{4}-8000-8000-[0-9a-f]{12}$/i;
const shortIdMax = 2 ** 48;
let lastTime = { ms: Number.NaN, prefix: "" };

/** Formats a message's bigint id (as text) and creation time (ms) as its UUID. */
export function messageUuid(id: string, createdAtMs: number): string {
  if (createdAtMs !== lastTime.ms) {
    const time = Math.max(0, Math.trunc(createdAtMs)).toString(16).padStart(12, "0").slice(-12);
    lastTime = { ms: createdAtMs, prefix: `${time.slice(0, 8)}-${time.slice(8)}-8000-` };
  }
  // Ids have at most 19 digits; below 16 they are exact as doubles.
  if (id.length < 16 && Number(id) < shortIdMax) return `${lastTime.prefix}8000-${Number(id).toString(16).padStart(12, "0")}`;
  // The variant bits ("10") lead the 64 low bits; the id fills the other 62.
  const low = (BigInt(id) | (2n << 62n)).toString(16);
  return `${lastTime.prefix}${low.slice(0, 4)}-${low.slice(4)}`;
}

/** Reads the bigint id (as text) of a message UUID; undefined for a UUID that no message of fastpubsub has. */
export function messageIdFromUuid(uuid: string): string | undefined {
  if (shortIdUuid.test(uuid)) return Number.parseInt(uuid.slice(24), 16).toString();
  const match = uuidShape.exec(uuid);
  if (!match) return undefined;
  const low = `${match[3]}${match[4]}`;
  const variantFree = ((Number.parseInt(low[0] as string, 16) & 3).toString(16) + low.slice(1)).replace(/^0+(?=.)/, "");
  return variantFree.length <= safeHexDigits ? Number.parseInt(variantFree, 16).toString() : BigInt(`0x${variantFree}`).toString();
}
