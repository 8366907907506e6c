/**
 * Message ids are bigints inside PostgreSQL and UUIDs outside: RFC 9562
 * version 8, laid out as 48 bits of the message's creation time in ms (so
 * they sort by time, like version 7), the version, 12 zero bits, the variant,
 * and the 62-bit id.
 */

const idMask = (1n << 62n) - 1n;
const variant = 2n << 62n;

/** Formats a message's bigint id and creation time as its UUID. */
export function messageUuid(id: string | bigint, createdAt: Date): string {
  const time = Math.max(0, createdAt.getTime()).toString(16).padStart(12, "0").slice(-12);
  const low = (variant | (BigInt(id) & idMask)).toString(16);
  return `${time.slice(0, 8)}-${time.slice(8)}-8000-${low.slice(0, 4)}-${low.slice(4)}`;
}

/** Reads the bigint id of a message UUID; undefined for a UUID that no message of fastpubsub has. */
export function messageIdFromUuid(uuid: string): string | undefined {
  const hex = uuid.replaceAll("-", "").toLowerCase();
  if (!/^[0-9a-f]{32}$/.test(hex) || hex.slice(12, 16) !== "8000") return undefined;
  const low = BigInt(`0x${hex.slice(16)}`);
  if (low >> 62n !== 2n) return undefined;
  return (low & idMask).toString();
}
