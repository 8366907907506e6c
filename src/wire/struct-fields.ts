import type { DescField, DescMessage } from "@bufbuild/protobuf";

/** Whether a field holds google.protobuf.Struct values (a payload), singly or as a list. */
export const isStructField = (field: DescField) => field.message?.typeName === "google.protobuf.Struct";

/** Whether a field holds Struct values: as itself, a list, or within the messages it holds. */
function holdsStruct(field: DescField, seen = new Set<DescMessage>()): boolean {
  if (field.fieldKind !== "message" && !(field.fieldKind === "list" && field.listKind === "message")) return false;
  const message = field.message;
  if (isStructField(field)) return true;
  if (seen.has(message) || message.typeName.startsWith("google.protobuf.")) return false;
  seen.add(message);
  return message.fields.some((inner) => holdsStruct(inner, seen));
}

const structHolders = new Map<DescMessage, DescField[]>();

/** A message type's fields that hold Struct values: Struct fields, and message fields whose messages hold some. */
export function fieldsHoldingStruct(desc: DescMessage): DescField[] {
  let fields = structHolders.get(desc);
  if (!fields) {
    fields = desc.fields.filter((field) => holdsStruct(field));
    structHolders.set(desc, fields);
  }
  return fields;
}
