import type { DescEnumValue, DescField, DescMessage, DescMethod, DescService } from "@bufbuild/protobuf";
import { getComments } from "@bufbuild/protoplugin";

/** The leading comment of a proto element as Markdown text, without the comment markers; empty when it has none. */
export function protoComment(desc: DescService | DescMethod | DescMessage | DescField | DescEnumValue): string {
  const comment = getComments(desc).leading ?? "";
  return comment
    .split("\n")
    .map((line) => line.replace(/^ /, "").trimEnd())
    .join("\n")
    .trim();
}

/** The first sentence of a text, on one line. */
export function firstSentence(text: string): string {
  const flat = text.replace(/\s+/g, " ").trim();
  const end = flat.search(/\.(\s|$)/);
  return end === -1 ? flat : flat.slice(0, end + 1);
}
