/**
 * Names the first character of `text` that PostgreSQL cannot keep in a text or
 * jsonb value, U+0000 or a lone UTF-16 surrogate, or returns undefined when
 * there is none.
 */
export function unstorableCharacter(text: string): string | undefined {
  if (text.isWellFormed() && !text.includes("\0")) return undefined;
  for (let index = 0; index < text.length; index++) {
    const unit = text.charCodeAt(index);
    if (unit === 0) return "U+0000";
    if (unit < 0xd800 || unit > 0xdfff) continue;
    const next = text.charCodeAt(index + 1);
    if (unit <= 0xdbff && next >= 0xdc00 && next <= 0xdfff) {
      index++;
      continue;
    }
    return `a lone surrogate (U+${unit.toString(16).toUpperCase()})`;
  }
  return undefined;
}
