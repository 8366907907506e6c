import type { JsonObject } from "@bufbuild/protobuf";
import { unstorableCharacter } from "./storable-text.ts";

// How JSON.stringify writes U+0000 and a lone surrogate: PostgreSQL's json operators
// cannot read them. An escaped backslash before "u0000" matches too, which costs only
// the slower, equally exact path.
const unreadableEscape = /\\u(?:0000|d[89a-f])/;

/**
 * The text forms of each payload's top-level values, as publish_messages
 * (p_text_forms) compares them with filters, when `text`, the payloads'
 * JSON, holds a string that PostgreSQL cannot read; else null, and
 * PostgreSQL reads the payloads themselves.
 */
export function textFormsOf(payloads: readonly JsonObject[], text: string): string | null {
  // includes() first: it is several times faster than the expression on the usual text, which has no escape.
  if (!text.includes("\\u") || !unreadableEscape.test(text)) return null;
  return JSON.stringify(payloads.map(textForms));
}

/** Each key to the texts its value can equal, as `payload ->> key` gives them; a string PostgreSQL cannot read equals none. */
function textForms(payload: JsonObject): Record<string, string[]> {
  return Object.fromEntries(
    Object.entries(payload).flatMap(([key, value]) => {
      // No filter can name such a key, and a null value counts as a missing key.
      if (unstorableCharacter(key) || value === null || value === undefined) return [];
      if (typeof value !== "string") return [[key, [JSON.stringify(value)]]];
      return [[key, unstorableCharacter(value) ? [] : [value]]];
    }),
  );
}
