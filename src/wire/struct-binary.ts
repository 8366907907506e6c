import { isUtf8 } from "node:buffer";
import type { JsonObject, JsonValue } from "@bufbuild/protobuf";

/*
 * The binary form of google.protobuf.Struct, written and read straight from and
 * to the JsonObject protobuf-es holds, without its Struct, Value and ListValue
 * messages. The output is byte for byte what protobuf-es writes (map entries in
 * the object's key order, every entry with its key and value, a number as a
 * double, -0 included); the input is read as protobuf-es reads it, then turned
 * to JSON as its toJson does: unknown fields skipped, field numbers trusted
 * over wire types, a repeated message field merged, the last of a repeated map
 * key kept, the same limits on depth and UTF-8, and an error for a Value with
 * no kind or a number that is not finite.
 *
 * Struct { map<string, Value> fields = 1; }  (an entry: key = 1, value = 2)
 * Value { oneof kind { NullValue null_value = 1; double number_value = 2; string string_value = 3;
 *                      bool bool_value = 4; Struct struct_value = 5; ListValue list_value = 6; } }
 * ListValue { repeated Value values = 1; }
 */

// protobuf-es's default recursion limit: the Struct read first is at depth 1.
const recursionLimit = 100;

// Tags (field number << 3 | wire type) of what is written.
const tagEntry = 0x0a; // Struct.fields, ListValue.values, map entry key: field 1, length-delimited
const tagEntryValue = 0x12;
const tagNull = 0x08;
const tagNumber = 0x11;
const tagString = 0x1a;
const tagBool = 0x20;
const tagStruct = 0x2a;
const tagList = 0x32;

// ---------------------------------------------------------------------------------------------
// Encoding

// Buffer's own method under Buffer#write, which checks its arguments first.
const utf8Write = (Buffer.prototype as unknown as { utf8Write(this: Buffer, text: string, offset: number): number }).utf8Write;

const outSize = 8192;
let out = Buffer.allocUnsafe(outSize);
let outView = new DataView(out.buffer, out.byteOffset, out.byteLength);
let at = 0;

function reserve(bytes: number) {
  if (at + bytes <= out.length) return;
  let size = out.length * 2;
  while (size < at + bytes) size *= 2;
  const grown = Buffer.allocUnsafe(size);
  out.copy(grown, 0, 0, at);
  out = grown;
  outView = new DataView(out.buffer, out.byteOffset, out.byteLength);
}

function writeVarint(value: number) {
  while (value > 0x7f) {
    out[at++] = (value & 0x7f) | 0x80;
    value >>>= 7;
  }
  out[at++] = value;
}

const varintSize = (value: number) => (value < 0x80 ? 1 : value < 0x4000 ? 2 : value < 0x200000 ? 3 : value < 0x10000000 ? 4 : 5);

/**
 * Ends a length-delimited field whose content starts at `start`, one byte
 * after the byte kept for its length: writes the length there, first moving
 * the content when the length takes more than one byte.
 */
function closeLength(start: number) {
  const length = at - start;
  if (length < 0x80) {
    out[start - 1] = length;
    return;
  }
  const extra = varintSize(length) - 1;
  reserve(extra);
  out.copyWithin(start + extra, start, at);
  at = start - 1;
  writeVarint(length);
  at += length;
}

// Strings up to this many UTF-16 units are copied by a loop while they are ASCII.
const shortString = 64;

function writeString(tag: number, text: string) {
  const units = text.length;
  // Three bytes per UTF-16 unit at most, plus the tag and a length of up to 5 bytes.
  reserve(units * 3 + 6);
  out[at++] = tag;
  if (units <= shortString) {
    const start = at + 1;
    let index = 0;
    for (; index < units; index++) {
      const code = text.charCodeAt(index);
      if (code > 0x7f) break;
      out[start + index] = code;
    }
    if (index === units) {
      out[at] = units;
      at = start + units;
      return;
    }
  }
  const bytes = units < 0x2a ? -1 : Buffer.byteLength(text, "utf8");
  if (bytes < 0) {
    // Short: at most 127 bytes, so one length byte; written first, measured after.
    const start = ++at;
    at += utf8Write.call(out, text, start);
    out[start - 1] = at - start;
    return;
  }
  writeVarint(bytes);
  at += utf8Write.call(out, text, at);
}

// Thrown by writeValue for a value JSON cannot hold; structToBinary then finds where it is.
const notJson = new Error("not JSON");

function writeValue(value: JsonValue | undefined) {
  switch (typeof value) {
    case "string":
      writeString(tagString, value);
      return;
    case "number":
      reserve(9);
      out[at++] = tagNumber;
      outView.setFloat64(at, value, true);
      at += 8;
      return;
    case "boolean":
      reserve(2);
      out[at++] = tagBool;
      out[at++] = value ? 1 : 0;
      return;
    case "object": {
      reserve(7);
      if (value === null) {
        out[at++] = tagNull;
        out[at++] = 0;
        return;
      }
      if (Array.isArray(value)) {
        out[at++] = tagList;
        const start = ++at;
        for (let index = 0; index < value.length; index++) {
          reserve(6);
          out[at++] = tagEntry;
          const itemStart = ++at;
          // As JSON.stringify writes it: a hole or undefined in an array is null.
          writeValue(value[index] ?? null);
          closeLength(itemStart);
        }
        closeLength(start);
        return;
      }
      out[at++] = tagStruct;
      const start = ++at;
      writeFields(value);
      closeLength(start);
      return;
    }
    default:
      throw notJson;
  }
}

function writeFields(object: JsonObject) {
  const keys = Object.keys(object);
  for (let index = 0; index < keys.length; index++) {
    const key = keys[index] as string;
    const value = object[key];
    // As JSON.stringify writes it: a member that is undefined is left out.
    if (value === undefined) continue;
    reserve(1);
    out[at++] = tagEntry;
    const entryStart = ++at;
    writeString(tagEntry, key);
    reserve(2);
    out[at++] = tagEntryValue;
    const valueStart = ++at;
    writeValue(value);
    closeLength(valueStart);
    closeLength(entryStart);
  }
}

/**
 * Encodes a JSON object as the protobuf binary of the google.protobuf.Struct
 * it stands for, as `toBinary(StructSchema, fromJson(StructSchema, object))`
 * does, byte for byte. A member that is undefined is left out, as JSON leaves
 * it out; a value JSON cannot hold (a bigint, a function) throws.
 */
export function structToBinary(object: JsonObject): Uint8Array {
  at = 0;
  try {
    writeFields(object);
  } catch (error) {
    if (error !== notJson) throw error;
    throw new Error(`${findNotJson(object, "payload")}, which JSON cannot hold`);
  }
  // A small Buffer comes from Node's pool, cheaper than an ArrayBuffer of its own.
  const bytes = Buffer.allocUnsafe(at);
  out.copy(bytes, 0, 0, at);
  // A buffer grown for a large payload is not kept.
  if (out.length > 1024 * 1024) {
    out = Buffer.allocUnsafe(outSize);
    outView = new DataView(out.buffer, out.byteOffset, out.byteLength);
  }
  return bytes;
}

/** Where the first value JSON cannot hold is, and what it is. */
function findNotJson(value: unknown, path: string): string | undefined {
  switch (typeof value) {
    case "string":
    case "number":
    case "boolean":
    case "undefined":
      return undefined;
    case "object": {
      if (value === null) return undefined;
      const entries: [string, unknown][] = Array.isArray(value)
        ? value.map((item, index) => [`${path}[${index}]`, item])
        : Object.entries(value).map(([key, item]) => [`${path}[${JSON.stringify(key)}]`, item]);
      for (const [itemPath, item] of entries) {
        const found = findNotJson(item, itemPath);
        if (found) return found;
      }
      return undefined;
    }
    default:
      return `${path} is a ${typeof value}`;
  }
}

// ---------------------------------------------------------------------------------------------
// Decoding

let buf: Uint8Array = new Uint8Array(0);
let pos = 0;
let len = 0;
let depth = 0;
// Set when a Value without a kind or with a number that is not finite was read; such a value may
// still be replaced by a later one, so the whole result is checked once it is read.
let suspect = false;

// A Value that has no kind (yet).
const noKind: unique symbol = Symbol("no kind");
type Read = JsonValue | typeof noKind;

const float = new Float64Array(1);
const floatBytes = new Uint8Array(float.buffer);
const latin1Slice = (Buffer.prototype as unknown as { latin1Slice(this: Uint8Array, start: number, end: number): string }).latin1Slice;
const utf8Slice = (Buffer.prototype as unknown as { utf8Slice(this: Uint8Array, start: number, end: number): string }).utf8Slice;

function eof(): never {
  throw new RangeError("premature EOF");
}

function readVarint32(): number {
  let byte = buf[pos++] as number;
  if ((byte & 0x80) === 0) {
    if (pos > len) eof();
    return byte;
  }
  let result = byte & 0x7f;
  for (let shift = 7; shift < 28; shift += 7) {
    byte = buf[pos++] as number;
    result |= (byte & 0x7f) << shift;
    if ((byte & 0x80) === 0) {
      if (pos > len) eof();
      return result;
    }
  }
  byte = buf[pos++] as number;
  result |= (byte & 0x0f) << 28;
  for (let read = 5; (byte & 0x80) !== 0 && read < 10; read++) byte = buf[pos++] as number;
  if ((byte & 0x80) !== 0) throw new Error("invalid varint");
  if (pos > len) eof();
  return result >>> 0;
}

/** Reads a varint of up to 64 bits and says whether any bit protobuf-es keeps of it is set. */
function readVarintNonZero(): boolean {
  let lo = 0;
  let hi = 0;
  for (let shift = 0; shift < 28; shift += 7) {
    const byte = buf[pos++] as number;
    lo |= (byte & 0x7f) << shift;
    if ((byte & 0x80) === 0) {
      if (pos > len) eof();
      return lo !== 0;
    }
  }
  const middle = buf[pos++] as number;
  lo |= (middle & 0x0f) << 28;
  hi = (middle & 0x70) >> 4;
  if ((middle & 0x80) === 0) {
    if (pos > len) eof();
    return lo !== 0 || hi !== 0;
  }
  for (let shift = 3; shift <= 31; shift += 7) {
    const byte = buf[pos++] as number;
    hi |= (byte & 0x7f) << shift;
    if ((byte & 0x80) === 0) {
      if (pos > len) eof();
      return lo !== 0 || hi !== 0;
    }
  }
  throw new Error("invalid varint");
}

/** Reads a tag; returns field number << 3 | wire type, checked as protobuf-es checks it. */
function readTag(): number {
  const start = pos;
  const tag = readVarint32();
  const read = pos - start;
  if (read > 5 || (read === 5 && (buf[pos - 1] as number) > 0x0f)) throw new Error("illegal tag: varint overflows uint32");
  const fieldNo = tag >>> 3;
  const wireType = tag & 7;
  if (fieldNo <= 0 || wireType > 5) throw new Error(`illegal tag: field no ${fieldNo} wire type ${wireType}`);
  return tag;
}

/** Skips a field that is not read, as protobuf-es skips an unknown field. */
function skip(tag: number, budget: number) {
  switch (tag & 7) {
    case 0:
      while ((buf[pos++] as number) & 0x80) {}
      break;
    case 1:
      pos += 8;
      break;
    case 5:
      pos += 4;
      break;
    case 2: {
      const length = readVarint32();
      pos += length;
      break;
    }
    case 3:
      if (budget <= 0) throw new Error("maximum recursion depth reached");
      for (;;) {
        const inner = readTag();
        if ((inner & 7) === 4) {
          if (inner >>> 3 !== tag >>> 3) throw new Error("invalid end group tag");
          break;
        }
        skip(inner, budget - 1);
      }
      break;
    default:
      throw new Error(`cant skip wire type ${tag & 7}`);
  }
  if (pos > len) eof();
}

// Short ASCII strings read lately, by a hash of their bytes: payloads repeat their keys and many
// values, and a string found here costs no allocation and, as a key, no lookup in V8's string table.
const recentSize = 1024;
const recent: string[] = new Array(recentSize).fill("");
const recentMaxLength = 32;

function readString(): string {
  const length = readVarint32();
  const start = pos;
  pos += length;
  if (pos > len) eof();
  let hash = 0;
  for (let index = start; index < pos; index++) {
    const byte = buf[index] as number;
    if (byte > 0x7f) return readUtf8(start);
    hash = (Math.imul(hash, 31) + byte) | 0;
  }
  if (length > recentMaxLength) return latin1Slice.call(buf, start, pos);
  const slot = (hash ^ (hash >>> 10)) & (recentSize - 1);
  const known = recent[slot] as string;
  if (known.length === length) {
    let index = 0;
    while (index < length && known.charCodeAt(index) === buf[start + index]) index++;
    if (index === length) return known;
  }
  const codes = new Array<number>(length);
  for (let index = 0; index < length; index++) codes[index] = buf[start + index] as number;
  const text = String.fromCharCode.apply(null, codes);
  recent[slot] = text;
  return text;
}

function readUtf8(start: number): string {
  const bytes = buf.subarray(start, pos);
  if (!isUtf8(bytes)) throw new TypeError("invalid UTF-8 in a string of google.protobuf.Struct");
  return utf8Slice.call(buf, start, pos);
}

function enter(typeName: string) {
  if (++depth > recursionLimit) {
    throw new Error(`cannot decode message ${typeName} from binary: maximum recursion depth of ${recursionLimit} reached`);
  }
}

/** Reads a Struct message's fields (of `length` bytes) into `object`. */
function readStruct(object: JsonObject, length: number) {
  enter("google.protobuf.Struct");
  const end = pos + length;
  while (pos < end) {
    const tag = readTag();
    if (tag >>> 3 === 1) readEntry(object);
    else skip(tag, recursionLimit - depth);
  }
  depth--;
}

function readEntry(object: JsonObject) {
  const length = readVarint32();
  const end = pos + length;
  let key = "";
  let value: Read = noKind;
  while (pos < end) {
    const tag = readTag();
    const fieldNo = tag >>> 3;
    if (fieldNo === 1) key = readString();
    else if (fieldNo === 2) value = readValue(value);
    else skip(tag, recursionLimit - depth);
  }
  if (value === noKind) suspect = true;
  if (key === "__proto__") Object.defineProperty(object, key, { value, enumerable: true, configurable: true, writable: true });
  else object[key] = value as JsonValue;
}

/** Reads a Value message, merged into what an earlier occurrence of the same field read. */
function readValue(existing: Read): Read {
  enter("google.protobuf.Value");
  const length = readVarint32();
  const end = pos + length;
  let value = existing;
  while (pos < end) {
    const tag = readTag();
    switch (tag >>> 3) {
      case 1:
        readVarint32();
        value = null;
        break;
      case 2: {
        if (pos + 8 > len) throw new RangeError("Offset is outside the bounds of the DataView");
        for (let index = 0; index < 8; index++) floatBytes[index] = buf[pos + index] as number;
        pos += 8;
        const number = float[0] as number;
        if (!Number.isFinite(number)) suspect = true;
        value = number;
        break;
      }
      case 3:
        value = readString();
        break;
      case 4:
        if ((buf[pos] as number) < 0x80) value = buf[pos++] !== 0;
        else value = readVarintNonZero();
        break;
      case 5: {
        const object = typeof value === "object" && value !== null && !Array.isArray(value) ? (value as JsonObject) : {};
        readStruct(object, readVarint32());
        value = object;
        break;
      }
      case 6: {
        const list = Array.isArray(value) ? value : [];
        readList(list, readVarint32());
        value = list;
        break;
      }
      default:
        skip(tag, recursionLimit - depth);
    }
  }
  depth--;
  return value;
}

function readList(list: Read[], length: number) {
  enter("google.protobuf.ListValue");
  const end = pos + length;
  while (pos < end) {
    const tag = readTag();
    if (tag >>> 3 === 1) {
      const item = readValue(noKind);
      if (item === noKind) suspect = true;
      list.push(item);
    } else skip(tag, recursionLimit - depth);
  }
  depth--;
}

/** Throws for the first Value left without a kind, or holding a number that is not finite. */
function checkKinds(value: Read, path: string) {
  if (value === noKind) throw new Error(`google.protobuf.Value must have a value (at ${path})`);
  if (typeof value === "number") {
    if (!Number.isFinite(value)) throw new Error(`google.protobuf.Value cannot be NaN or Infinity (at ${path})`);
    return;
  }
  if (typeof value !== "object" || value === null) return;
  if (Array.isArray(value)) {
    for (let index = 0; index < value.length; index++) checkKinds(value[index] as Read, `${path}[${index}]`);
    return;
  }
  for (const key of Object.keys(value)) checkKinds(value[key] as Read, `${path}[${JSON.stringify(key)}]`);
}

/**
 * Decodes the protobuf binary of a google.protobuf.Struct to the JSON object it
 * stands for, as `toJson(StructSchema, fromBinary(StructSchema, bytes))` does;
 * throws an Error saying why for bytes protobuf-es refuses, and for a Value with
 * no kind or a number that is not finite.
 */
export function structFromBinary(bytes: Uint8Array): JsonObject {
  buf = bytes;
  pos = 0;
  len = bytes.length;
  depth = 0;
  suspect = false;
  const object: JsonObject = {};
  try {
    readStruct(object, len);
    if (suspect) checkKinds(object, "");
  } catch (error) {
    throw new Error(`invalid google.protobuf.Struct: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
  } finally {
    buf = empty;
  }
  return object;
}

const empty = new Uint8Array(0);
