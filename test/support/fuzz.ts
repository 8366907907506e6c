import { gzipSync } from "node:zlib";
import {
  type DescField,
  type DescMessage,
  type DescMethod,
  fromJson,
  getOption,
  hasOption,
  type JsonValue,
  ScalarType,
  toBinary,
} from "@bufbuild/protobuf";
import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import fc from "fast-check";
import { rules } from "../../gen/fastpubsub/v1/field_rules_pb.ts";
import { http } from "../../gen/google/api/annotations_pb.ts";
import { type RestBinding, restBinding } from "../../src/server/rest/rest-binding.ts";
import { services } from "../../src/server/routes.ts";

/*
 * Random and adversarial requests for every RPC of the served services, over
 * REST, Connect JSON, Connect binary and gRPC-Web, built from the descriptors
 * in gen/: a new RPC or field is fuzzed without a change here. A case is plain
 * data, so that fast-check can print and shrink it; texts that must name what
 * exists on the server are drawn from pools of seeded ids when the case runs.
 */

/** The kinds of ids the seeded data offers. */
export type PoolName = "topic" | "subscription" | "message" | "client";

/** A text taken at run time from a pool of seeded ids (index modulo its size), with `suffix` appended. */
export class Pooled {
  readonly pool: PoolName;
  readonly index: number;
  readonly suffix: string;
  constructor(pool: PoolName, index: number, suffix = "") {
    this.pool = pool;
    this.index = index;
    this.suffix = suffix;
  }
  toString() {
    return `${this.pool}#${this.index}${JSON.stringify(this.suffix)}`;
  }
}

/** JSON arrays nested `depth` deep, written out as text only when the case runs. */
export class Nested {
  readonly depth: number;
  constructor(depth: number) {
    this.depth = depth;
  }
  toString() {
    return `nested(${this.depth})`;
  }
}

/** A text of `length` x's, written out only when the case runs, so that a failing case prints short. */
export class Long {
  readonly length: number;
  constructor(length: number) {
    this.length = length;
  }
  toString() {
    return `long(${this.length})`;
  }
}

/** A JSON number too large for a double (`1e400`), which JSON.parse reads as an infinity and protobuf binary can carry. */
export class Overflow {
  readonly negative: boolean;
  constructor(negative: boolean) {
    this.negative = negative;
  }
  toString() {
    return this.negative ? "-1e400" : "1e400";
  }
}

/** A JSON-like value of a case: JSON, with pooled texts, long texts, deep nests and overflowing numbers in it. */
export type Fuzzed = JsonValue | Pooled | Long | Nested | Overflow | Fuzzed[] | { [key: string]: Fuzzed };

/** The ids the seeded data offers, by kind. */
export type Pools = Record<PoolName, readonly string[]>;

/** The protocols the fuzzer speaks. */
export const fuzzProtocols = ["rest", "connect-json", "connect-binary", "grpc-web"] as const;
export type FuzzProtocol = (typeof fuzzProtocols)[number];

/** The unary RPCs of every served service, as the descriptors in gen/ declare them. */
export const fuzzMethods: readonly DescMethod[] = services.flatMap((service) => service.methods.filter((m) => m.methodKind === "unary"));

/** The REST binding of an RPC, if it has one. */
export function restBindingOf(method: DescMethod): RestBinding | undefined {
  return hasOption(method, http) ? restBinding(method, getOption(method, http), (field) => getOption(field, rules).required) : undefined;
}

// ---- texts, numbers and JSON ----

const trickyTexts = [
  "",
  " ",
  "\0",
  "a\0b",
  "\ud800",
  "a\udfffb",
  "\ud83d\ude00",
  "é",
  "\u2028",
  "\ufeff",
  ".",
  "..",
  "%",
  "%00",
  "%zz",
  "%2e%2e",
  "/",
  "a/b",
  "\\",
  "\\u0000",
  "'; DROP TABLE topics; --",
  "null",
  "true",
  "0",
  "-1",
  "1e999",
  "NaN",
  "*",
  "topics:read",
  "topics:publish:",
  "Bearer x",
  "y".repeat(129),
];

const utf16Unit = fc.integer({ min: 0, max: 0xffff }).map((unit) => String.fromCharCode(unit));
const pooledArb = fc.record({
  pool: fc.constantFrom<PoolName>("topic", "subscription", "message", "client"),
  index: fc.nat(50),
  suffix: fc.oneof({ weight: 6, arbitrary: fc.constant("") }, { weight: 1, arbitrary: fc.constantFrom(...trickyTexts) }),
});

/** Any text a client could send, pooled ids included. */
export const textArb: fc.Arbitrary<Fuzzed> = fc.oneof(
  { weight: 6, arbitrary: pooledArb.map(({ pool, index, suffix }) => new Pooled(pool, index, suffix)) },
  { weight: 3, arbitrary: fc.constantFrom(...trickyTexts) },
  { weight: 2, arbitrary: fc.string({ unit: "binary", maxLength: 20 }) },
  { weight: 2, arbitrary: fc.string({ unit: utf16Unit, maxLength: 20 }) },
  { weight: 1, arbitrary: fc.stringMatching(/^[a-zA-Z0-9._-]{1,40}$/) },
  { weight: 1, arbitrary: fc.uuid() },
  { weight: 1, arbitrary: fc.constantFrom(1_000, 20_000).map((length) => new Long(length)) },
);

const plainTextArb = fc.oneof(fc.constantFrom(...trickyTexts), fc.string({ unit: utf16Unit, maxLength: 12 }), fc.string({ maxLength: 12 }));

const overflowArb = fc.boolean().map((negative) => new Overflow(negative));

const numberArb: fc.Arbitrary<Fuzzed> = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom(0, 1, -1, 2, 5, 10, 60, 99, 100, 101, 1000, 1001, 86_400, 2 ** 31 - 1, 2 ** 31, -(2 ** 31) - 1) },
  { weight: 2, arbitrary: fc.integer() },
  { weight: 1, arbitrary: fc.double() },
  { weight: 1, arbitrary: fc.constantFrom(2 ** 53 + 2, 1e300, -0, 0.5) },
  { weight: 1, arbitrary: overflowArb },
  { weight: 1, arbitrary: fc.constantFrom("5", "-1", "abc", "", "0x10", "1e3", "NaN", "Infinity", " 7", "7 ", "99999999999999999999") },
);

const boolArb: fc.Arbitrary<Fuzzed> = fc.oneof(
  { weight: 4, arbitrary: fc.boolean() },
  { weight: 1, arbitrary: fc.constantFrom("true", "false", "1", "0", "yes", 1, 0, "TRUE") },
);

const keyArb = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom("a", "n", "kind", "country", "id", "payload") },
  { weight: 1, arbitrary: fc.constantFrom("", "\0", "a\0", "\ud800", "__proto__", "constructor", "toString", "a.b", "𝒳") },
  { weight: 1, arbitrary: fc.string({ unit: utf16Unit, maxLength: 6 }) },
);

const scalarJsonArb: fc.Arbitrary<Fuzzed> = fc.oneof(
  { weight: 3, arbitrary: plainTextArb },
  { weight: 1, arbitrary: fc.double() },
  { weight: 1, arbitrary: fc.integer() },
  { weight: 1, arbitrary: fc.boolean() },
  { weight: 1, arbitrary: fc.constant(null) },
  { weight: 1, arbitrary: overflowArb },
);

/** Any JSON value, strings of any UTF-16 code units included. */
export const jsonArb: fc.Arbitrary<Fuzzed> = fc.letrec<{ value: Fuzzed; array: Fuzzed[]; object: Record<string, Fuzzed> }>((tie) => ({
  value: fc.oneof({ depthSize: "small", withCrossShrink: true }, scalarJsonArb, tie("array"), tie("object")),
  array: fc.array(tie("value"), { maxLength: 4 }),
  object: fc.dictionary(keyArb, tie("value"), { maxKeys: 4 }),
})).value;

const nestedArb = fc.constantFrom(30, 31, 32, 33, 99, 100, 10_000, 1_000_000).map((depth) => new Nested(depth));

/** A JSON value that is not an object: what a client sends by mistake where one belongs. */
const notObjectArb: fc.Arbitrary<Fuzzed> = fc.constantFrom(null, 1, "x", true, [], [{}]);

const payloadArb: fc.Arbitrary<Fuzzed> = fc.oneof(
  { weight: 6, arbitrary: fc.dictionary(keyArb, jsonArb, { maxKeys: 5 }) },
  { weight: 1, arbitrary: nestedArb.map((nested) => ({ a: nested })) },
  { weight: 1, arbitrary: notObjectArb },
);

const filterArb: fc.Arbitrary<Fuzzed> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.dictionary(keyArb, fc.array(fc.oneof(plainTextArb, numberArb, fc.boolean()), { maxLength: 3 }), { maxKeys: 3 }),
  },
  { weight: 1, arbitrary: fc.constant(null) },
  { weight: 1, arbitrary: jsonArb },
  { weight: 1, arbitrary: nestedArb.map((nested) => ({ a: nested })) },
);

const timestampArb: fc.Arbitrary<Fuzzed> = fc.oneof(
  fc.date({ noInvalidDate: true }).map((date) => date.toISOString()),
  fc.constantFrom("", "now", "2026-13-01T00:00:00Z", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "2026-01-01"),
);

// ---- request messages, from their descriptors ----

/** A value of the wrong JSON type for whatever field it lands in. */
const wrongArb: fc.Arbitrary<Fuzzed> = fc.constantFrom(null, {}, [], "x", 1, true, [null]);

/** A value for one element of a field: the field itself, or an item of a list or map. */
function singleArb(field: DescField, depth: number): fc.Arbitrary<Fuzzed> {
  if (field.enum) {
    return fc.oneof(fc.constantFrom(...field.enum.values.map((value) => value.name)), fc.integer({ min: -1, max: 9 }), plainTextArb);
  }
  if (field.message) {
    switch (field.message.typeName) {
      case "google.protobuf.Value":
        return filterArb;
      case "google.protobuf.Struct":
        return payloadArb;
      case "google.protobuf.Timestamp":
        return timestampArb;
      default:
        return depth > 2 ? wrongArb : messageArb(field.message, depth + 1);
    }
  }
  switch (field.scalar) {
    case ScalarType.STRING:
    case ScalarType.BYTES:
      return textArb;
    case ScalarType.BOOL:
      return boolArb;
    default:
      return numberArb;
  }
}

/** The pool of ids a string field most likely names, read from its name, or for `id` from its message's. */
function poolOf(field: DescField): PoolName | undefined {
  const pools = ["topic", "subscription", "message", "client"] as const;
  const named = pools.find((pool) => field.name.startsWith(pool));
  if (named) return named;
  return field.name === "id" ? pools.find((pool) => field.parent.name.toLowerCase().includes(pool)) : undefined;
}

/** A value a well-behaved client would send for one element of a field, naming seeded data where it can. */
function validArb(field: DescField): fc.Arbitrary<Fuzzed> {
  if (field.enum) return fc.constantFrom(...field.enum.values.map((value) => value.name));
  if (field.message) {
    switch (field.message.typeName) {
      case "google.protobuf.Value":
        return fc.oneof(
          fc.constant(null),
          fc.dictionary(fc.constantFrom("kind", "n"), fc.array(fc.constantFrom("a", "b", 1, true), { maxLength: 2 })),
        );
      case "google.protobuf.Struct":
        return fc.record({ kind: fc.constantFrom("a", "b", "c"), n: fc.integer({ min: 0, max: 3 }) }, { requiredKeys: [] });
      case "google.protobuf.Timestamp":
        return fc.constant(new Date().toISOString());
      default:
        return fc.constant({});
    }
  }
  switch (field.scalar) {
    case ScalarType.STRING: {
      const pool = poolOf(field);
      if (pool) {
        return fc.oneof(
          { weight: 4, arbitrary: fc.nat(50).map((index): Fuzzed => new Pooled(pool, index)) },
          { weight: 1, arbitrary: fc.nat(1000).map((n) => `fz-${pool}-${n}`) },
        );
      }
      if (field.name === "scopes") return fc.constantFrom("*", "topics:read", "topics:publish:fz-t1 subscriptions:consume");
      return fc.constantFrom("w1", "fuzz", "a b");
    }
    case ScalarType.BOOL:
      return fc.boolean();
    default:
      return fc.integer({ min: 0, max: 12 });
  }
}

/** A value for a whole field, list and map fields included, from `item` for each element. */
function fieldArb(field: DescField, item: fc.Arbitrary<Fuzzed>, wrong: boolean): fc.Arbitrary<Fuzzed> {
  const whole =
    field.fieldKind === "list"
      ? fc.oneof(
          { weight: 8, arbitrary: fc.array(item, { maxLength: 5 }) },
          { weight: wrong ? 1 : 0, arbitrary: item.map((one) => Array.from({ length: 1001 }, () => one)) },
        )
      : field.fieldKind === "map"
        ? fc.dictionary(keyArb, item, { maxKeys: 3 })
        : item;
  return wrong ? fc.oneof({ weight: 6, arbitrary: whole }, { weight: 1, arbitrary: wrongArb }) : whole;
}

/**
 * A request message as proto JSON, by its fields' proto or JSON names: one a
 * well-behaved client would send (naming seeded data), or such a message with
 * one field set to something adversarial (so that the fault is found past
 * every check before it), or one with adversarial values anywhere; and now and
 * then a field no RPC has.
 */
export function messageArb(desc: DescMessage, depth = 0): fc.Arbitrary<Record<string, Fuzzed>> {
  const valid = desc.fields.map((field) => fieldArb(field, validArb(field), false));
  const adversarial = desc.fields.map((field) => fieldArb(field, singleArb(field, depth), true));
  const mixed = valid.map((value, index) =>
    fc.oneof({ weight: 3, arbitrary: value }, { weight: 2, arbitrary: adversarial[index] ?? value }),
  );
  const present = (values: fc.Arbitrary<Fuzzed>[]) => values.map((value) => fc.option(value, { freq: 6, nil: undefined }));
  const oneFault = fc
    .tuple(fc.tuple(...present(valid)), fc.nat(Math.max(0, desc.fields.length - 1)))
    .chain(([values, index]) =>
      (adversarial[index] ?? fc.constant(undefined)).map((fault) => values.map((value, at) => (at === index ? fault : value))),
    );
  const values = fc.oneof(
    { weight: 3, arbitrary: fc.tuple(...present(valid)) },
    { weight: 4, arbitrary: oneFault },
    { weight: 2, arbitrary: fc.tuple(...present(mixed)) },
  );
  const names = fc.tuple(...desc.fields.map((field) => fc.constantFrom(field.name, field.name, field.jsonName)));
  return fc.tuple(values, names, rareArb(fc.tuple(keyArb, jsonArb))).map(([fieldValues, fieldNames, unknown]) => {
    const message: Record<string, Fuzzed> = {};
    const entries = fieldValues.map((value, index) => [fieldNames[index], value] as const);
    for (const [name, value] of unknown ? [unknown, ...entries] : entries) {
      if (name !== undefined && value !== undefined) Object.defineProperty(message, name, { value, enumerable: true, writable: true });
    }
    return message;
  });
}

// ---- whole cases ----

/** A request body as a case holds it: the request message, or something else in its place. */
export type Body =
  | { kind: "message" }
  | { kind: "json"; json: Fuzzed }
  | { kind: "text"; text: string }
  | { kind: "bytes"; bytes: number[] }
  | { kind: "none" }
  | { kind: "oversize" };

/** How a case damages the protobuf binary it sends. */
export type Damage = "none" | "truncate" | "flip" | "append" | "bad-utf8" | "bad-frame";

/** Who calls: with or without authentication on the server, and with which token. */
export type TokenKind = "admin" | "narrow" | "none" | "garbage" | "malformed" | "expired" | "forged" | "disabled" | "deleted";

/** One fuzzed call, as plain data: texts are resolved and bodies written only when it runs. */
export interface Case {
  target: "open" | "auth";
  token: TokenKind;
  protocol: FuzzProtocol;
  /** `Service.Method`. */
  rpc: string;
  /** The request message, for the body, the path and the query. */
  message: Record<string, Fuzzed>;
  body: Body;
  /** Another HTTP method than the route's (REST) or POST. */
  verb?: string;
  /** REST: path values written as they are, percent-encoding only what HTTP cannot carry. */
  rawPath: boolean;
  /** REST: query parameters besides those of the message. */
  extraQuery: [string, Fuzzed][];
  damage: Damage;
  contentType?: string;
  contentEncoding?: "gzip" | "gzip-lie" | "br-lie" | "identity" | "x-junk";
  bom: boolean;
  /** Connect: connect-timeout-ms; gRPC-Web: grpc-timeout. */
  timeout?: string;
}

const bodyArb: fc.Arbitrary<Body> = fc.oneof(
  { weight: 60, arbitrary: fc.constant<Body>({ kind: "message" }) },
  { weight: 8, arbitrary: fc.oneof(jsonArb, notObjectArb, nestedArb).map((json): Body => ({ kind: "json", json })) },
  {
    weight: 4,
    arbitrary: fc
      .oneof(fc.string({ unit: utf16Unit }), fc.constantFrom("{", "[", '{"a":', "\ufeff{}", "{}{}", "[1,]", "client_id=a&client_secret=b"))
      .map((text): Body => ({ kind: "text", text })),
  },
  { weight: 4, arbitrary: fc.array(fc.integer({ min: 0, max: 255 }), { maxLength: 40 }).map((bytes): Body => ({ kind: "bytes", bytes })) },
  { weight: 4, arbitrary: fc.constant<Body>({ kind: "none" }) },
  { weight: 1, arbitrary: fc.constant<Body>({ kind: "oversize" }) },
);

/** Mostly undefined, now and then a value of `arbitrary`. */
const rareArb = <T>(arbitrary: fc.Arbitrary<T>, odds = 8) =>
  fc.oneof({ weight: odds, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary });

/** Any case, over any RPC, protocol, server and token. */
export const caseArb: fc.Arbitrary<Case> = fc.constantFrom(...fuzzMethods).chain((method) =>
  fc.record({
    target: fc.constantFrom("open", "open", "open", "auth"),
    token: fc.oneof(
      { weight: 8, arbitrary: fc.constant<TokenKind>("admin") },
      {
        weight: 1,
        arbitrary: fc.constantFrom<TokenKind>("narrow", "none", "garbage", "malformed", "expired", "forged", "disabled", "deleted"),
      },
    ),
    protocol: fc.constantFrom(...fuzzProtocols),
    rpc: fc.constant(`${method.parent.name}.${method.name}`),
    message: messageArb(method.input),
    body: bodyArb,
    verb: rareArb(fc.constantFrom("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"), 12),
    rawPath: fc.oneof({ weight: 3, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) }),
    extraQuery: fc.oneof(
      { weight: 6, arbitrary: fc.constant<[string, Fuzzed][]>([]) },
      { weight: 1, arbitrary: fc.array(fc.tuple(keyArb, textArb), { maxLength: 3 }) },
    ),
    damage: fc.oneof(
      { weight: 12, arbitrary: fc.constant<Damage>("none") },
      { weight: 1, arbitrary: fc.constantFrom<Damage>("truncate", "flip", "append", "bad-utf8", "bad-frame") },
    ),
    contentType: rareArb(
      fc.constantFrom(
        "application/json",
        "application/json; charset=utf-8",
        "application/json; charset=latin1",
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/proto",
        "application/grpc-web+json",
        "",
      ),
    ),
    contentEncoding: rareArb(fc.constantFrom("gzip", "gzip-lie", "br-lie", "identity", "x-junk") as fc.Arbitrary<Case["contentEncoding"]>),
    bom: fc.oneof({ weight: 12, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) }),
    timeout: rareArb(fc.constantFrom("1", "0", "abc", "10000", "-5", "99999999999", "5S", "1m"), 12),
  }),
);

/** The unary RPC a case calls. */
export function methodOf(fuzzCase: Case): DescMethod {
  const method = fuzzMethods.find((candidate) => `${candidate.parent.name}.${candidate.name}` === fuzzCase.rpc);
  if (!method) throw new Error(`no RPC ${fuzzCase.rpc}`);
  return method;
}

// ---- writing a case as an HTTP request ----

/** An HTTP request, ready to send. */
export interface HttpRequest {
  method: string;
  path: string;
  headers: Record<string, string>;
  body?: Uint8Array;
}

/** Replaces the pooled texts of a value by the ids of `pools`. */
export function resolve(value: Fuzzed, pools: Pools): Fuzzed {
  if (value instanceof Pooled) {
    const pool = pools[value.pool];
    return (pool.length === 0 ? "" : (pool[value.index % pool.length] ?? "")) + value.suffix;
  }
  if (value instanceof Long) return "x".repeat(value.length);
  if (value instanceof Nested || value instanceof Overflow || value === null || typeof value !== "object") return value;
  if (Array.isArray(value)) return value.map((item) => resolve(item, pools));
  return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, resolve(item, pools)]));
}

/** Writes a resolved value as JSON text, deep nests included. */
export function jsonText(value: Fuzzed): string {
  if (value instanceof Nested) return "[".repeat(value.depth) + "]".repeat(value.depth);
  if (value instanceof Overflow) return String(value);
  if (value instanceof Pooled || value instanceof Long) throw new Error(`unresolved ${value}`);
  if (Array.isArray(value)) return `[${value.map(jsonText).join(",")}]`;
  if (value !== null && typeof value === "object") {
    return `{${Object.entries(value)
      .map(([key, item]) => `${JSON.stringify(key)}:${jsonText(item)}`)
      .join(",")}}`;
  }
  return JSON.stringify(value) ?? "null";
}

const utf8 = new TextEncoder();

/** Percent-encodes text as UTF-8, and a lone surrogate as the three bytes UTF-8 would give it, which are not UTF-8. */
function percentEncode(text: string, keep: RegExp = /[A-Za-z0-9\-._~]/): string {
  let encoded = "";
  for (let index = 0; index < text.length; index++) {
    const unit = text.charCodeAt(index);
    const next = text.charCodeAt(index + 1);
    const pair = unit >= 0xd800 && unit <= 0xdbff && next >= 0xdc00 && next <= 0xdfff;
    const character = pair ? text.slice(index, index + 2) : text.charAt(index);
    if (pair) index++;
    if (keep.test(character)) {
      encoded += character;
      continue;
    }
    const bytes =
      unit >= 0xd800 && unit <= 0xdfff && !pair
        ? [0xe0 | (unit >> 12), 0x80 | ((unit >> 6) & 0x3f), 0x80 | (unit & 0x3f)]
        : utf8.encode(character);
    for (const byte of bytes) encoded += `%${byte.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return encoded;
}

const textOf = (value: Fuzzed | undefined) => (typeof value === "string" ? value : value === undefined ? "" : jsonText(value));

function fieldValue(message: Record<string, Fuzzed>, field: DescField): Fuzzed | undefined {
  return Object.hasOwn(message, field.name) ? message[field.name] : message[field.jsonName];
}

/** The protobuf binary of a message given as proto JSON, damaged as asked; bytes of JSON text when it is no valid message. */
function binaryOf(desc: DescMessage, message: Record<string, Fuzzed>, damage: Damage): Uint8Array {
  const text = jsonText(message);
  let bytes: Uint8Array;
  try {
    bytes = toBinary(desc, fromJson(desc, JSON.parse(text) as JsonValue, { ignoreUnknownFields: true }));
  } catch {
    bytes = utf8.encode(text);
  }
  const middle = Math.floor(bytes.length / 2);
  switch (damage) {
    case "truncate":
      return bytes.slice(0, middle);
    case "flip":
      return bytes.map((byte, index) => (index === middle ? byte ^ 0xff : byte));
    case "append":
      return new Uint8Array([...bytes, 0xff, 0xff, 0xff, 0x0f]);
    case "bad-utf8": {
      const field = desc.fields.find((candidate) => candidate.scalar === ScalarType.STRING) ?? desc.fields[0];
      if (!field) return bytes;
      const invalid = new BinaryWriter()
        .tag(field.number, WireType.LengthDelimited)
        .bytes(new Uint8Array([0x61, 0xed, 0xa0, 0x80, 0xc0, 0x80, 0xff]));
      return new Uint8Array([...bytes, ...invalid.finish()]);
    }
    default:
      return bytes;
  }
}

/** A gRPC-Web frame holding `message`; a damaged frame states a wrong length. */
function grpcWebFrame(message: Uint8Array, compressed: boolean, damage: Damage): Uint8Array {
  const frame = new Uint8Array(5 + message.length);
  const view = new DataView(frame.buffer);
  view.setUint8(0, compressed ? 1 : 0);
  view.setUint32(1, damage === "bad-frame" ? message.length + 7 : message.length);
  frame.set(message, 5);
  return frame;
}

/** A body well over the 16 MiB the server reads, so that some of it is still unread when it answers. */
const oversize = 20 * 1024 * 1024;

/** Writes a case as the HTTP request it stands for; `tokens` are the bearer tokens of the auth server. */
export function requestOf(fuzzCase: Case, pools: Pools, tokens: Partial<Record<TokenKind, string>>): HttpRequest {
  const method = methodOf(fuzzCase);
  const message = resolve(fuzzCase.message, pools) as Record<string, Fuzzed>;
  const binding = restBindingOf(method);
  const protocol = fuzzCase.protocol === "rest" && !binding ? "connect-json" : fuzzCase.protocol;
  const headers: Record<string, string> = {};
  if (fuzzCase.target === "auth") {
    const authorization = {
      none: undefined,
      garbage: "Bearer garbage",
      malformed: "Basic Zm9vOmJhcg==",
    }[fuzzCase.token as string];
    const token = tokens[fuzzCase.token];
    if (token) headers.authorization = `Bearer ${token}`;
    else if (authorization) headers.authorization = authorization;
  }

  let path: string;
  let verb = "POST";
  let body: Uint8Array | undefined;
  const written = (json: Fuzzed) => utf8.encode(jsonText(json));
  switch (fuzzCase.body.kind) {
    case "json":
      body = written(resolve(fuzzCase.body.json, pools));
      break;
    case "text":
      body = utf8.encode(fuzzCase.body.text);
      break;
    case "bytes":
      body = new Uint8Array(fuzzCase.body.bytes);
      break;
    case "oversize":
      body = new Uint8Array(oversize).fill(0x20);
      break;
    default:
      body = undefined;
  }

  if (protocol === "rest" && binding) {
    const keep = fuzzCase.rawPath ? /[!-~]/ : undefined;
    path = binding.segments
      .map((segment) =>
        typeof segment === "string" ? segment : percentEncode(textOf(fieldValue(message, segment)), keep).replace(/[?#]/g, ""),
      )
      .map((segment) => `/${segment}`)
      .join("");
    const query: string[] = [];
    for (const field of binding.queryFields) {
      const value = fieldValue(message, field);
      if (value === undefined) continue;
      for (const item of Array.isArray(value) ? value : [value]) query.push(`${field.name}=${percentEncode(textOf(item))}`);
    }
    for (const [name, value] of fuzzCase.extraQuery) query.push(`${percentEncode(name)}=${percentEncode(textOf(resolve(value, pools)))}`);
    if (query.length > 0) path += `?${query.join("&")}`;
    verb = fuzzCase.verb ?? binding.verb.toUpperCase();
    if (fuzzCase.body.kind === "message" && binding.body !== "none") {
      const value = binding.body === "message" ? message : fieldValue(message, binding.body);
      body = value === undefined ? undefined : written(value);
    }
    if (body) headers["content-type"] = fuzzCase.contentType ?? "application/json";
  } else {
    path = `/${method.parent.typeName}/${method.name}`;
    verb = fuzzCase.verb ?? "POST";
    if (protocol === "connect-json") {
      if (fuzzCase.body.kind === "message") body = written(message);
      headers["content-type"] = fuzzCase.contentType ?? "application/json";
      if (fuzzCase.timeout) headers["connect-timeout-ms"] = fuzzCase.timeout;
    } else {
      if (fuzzCase.body.kind === "message") body = binaryOf(method.input, message, fuzzCase.damage);
      headers["content-type"] = fuzzCase.contentType ?? (protocol === "grpc-web" ? "application/grpc-web+proto" : "application/proto");
      if (protocol === "connect-binary" && fuzzCase.timeout) headers["connect-timeout-ms"] = fuzzCase.timeout;
    }
    if (protocol === "connect-json" || protocol === "connect-binary") headers["connect-protocol-version"] = "1";
  }

  if (body && fuzzCase.bom) body = new Uint8Array([0xef, 0xbb, 0xbf, ...body]);
  const encoding = fuzzCase.contentEncoding;
  if (protocol === "grpc-web") {
    headers["x-grpc-web"] = "1";
    if (fuzzCase.timeout) headers["grpc-timeout"] = fuzzCase.timeout;
    if (encoding)
      headers["grpc-encoding"] = { gzip: "gzip", "gzip-lie": "gzip", "br-lie": "br", identity: "identity", "x-junk": "x-junk" }[encoding];
    const compressed = encoding === "gzip" || encoding === "gzip-lie";
    const payload = body && encoding === "gzip" ? gzipSync(body) : body;
    body = grpcWebFrame(payload ?? new Uint8Array(), compressed, fuzzCase.damage);
  } else if (encoding && body) {
    headers["content-encoding"] = { gzip: "gzip", "gzip-lie": "gzip", "br-lie": "br", identity: "identity", "x-junk": "x-junk" }[encoding];
    if (encoding === "gzip") body = gzipSync(body);
  }
  return { method: verb, path, headers, body };
}

// ---- reading the answer ----

/** What an answer says, for the properties and the figures. */
export interface Verdict {
  /** e.g. `422`, `400 invalid_argument`, `grpc 3`. */
  label: string;
  /** The server failed: a 5xx, or a Connect or gRPC code that stands for one. */
  serverError: boolean;
  /** The server refused the request as the client's fault, so nothing may have changed. */
  refused: boolean;
  /** What is wrong with the answer's form, if anything. */
  malformed?: string;
}

// gRPC codes that stand for a failure of the server: unknown, internal, unavailable, data loss.
const serverCodes = new Set([2, 13, 14, 15]);
const connectServerCodes = new Set(["unknown", "internal", "unavailable", "data_loss"]);

/** Judges an answer to a case's request. */
export function verdictOf(fuzzCase: Case, request: HttpRequest, status: number, headers: Headers, body: Uint8Array): Verdict {
  const method = methodOf(fuzzCase);
  const protocol = fuzzCase.protocol === "rest" && !restBindingOf(method) ? "connect-json" : fuzzCase.protocol;
  const text = new TextDecoder().decode(body);
  // Every RPC is implemented: connect-es answers unimplemented to a compression it does not
  // speak and to a unary call without exactly one message, both the client's doing.
  const clientsFault = (code: string) => code === "unimplemented";
  // A deadline the client set itself ran out: whether the call ran is unknown.
  const ownDeadline = (code: string) =>
    code === "deadline_exceeded" && (request.headers["connect-timeout-ms"] ?? request.headers["grpc-timeout"]) !== undefined;
  if (protocol === "rest") {
    const verdict: Verdict = { label: String(status), serverError: status >= 500, refused: status >= 400 && status < 500 };
    // Node's HTTP parser answers 431 (request line and headers over 16 KiB) itself, without a body.
    if (status >= 400 && status !== 431 && request.method !== "HEAD") {
      const json = parseJson(text) as { detail?: unknown } | undefined;
      if (typeof json?.detail !== "string" || Object.keys(json).length !== 1)
        verdict.malformed = `REST error body is not {"detail": "…"}: ${text.slice(0, 200)}`;
    }
    return verdict;
  }
  if (protocol === "grpc-web") {
    const code = Number(headers.get("grpc-status") ?? grpcWebTrailer(body) ?? Number.NaN);
    const codeName = Number.isNaN(code) ? "none" : String(code);
    const label = `${status} grpc ${codeName}`;
    if (status !== 200) return { label, serverError: status >= 500, refused: status >= 400 && status < 500 };
    if (Number.isNaN(code)) return { label, serverError: true, refused: false, malformed: "gRPC-Web answer without grpc-status" };
    const name = grpcCodeNames[code] ?? "unknown";
    const serverError = serverCodes.has(code) || (name === "deadline_exceeded" && !ownDeadline(name));
    return { label, serverError, refused: code !== 0 && !serverError && name !== "deadline_exceeded" && name !== "canceled" };
  }
  if (status === 200) return { label: "200", serverError: false, refused: false };
  const json = parseJson(text) as { code?: unknown } | undefined;
  const code = typeof json?.code === "string" ? json.code : "none";
  const serverError = connectServerCodes.has(code) || (status >= 500 && !clientsFault(code) && !ownDeadline(code));
  return { label: `${status} ${code}`, serverError, refused: (status >= 400 && status < 500) || clientsFault(code) };
}

const grpcCodeNames = [
  "ok",
  "canceled",
  "unknown",
  "invalid_argument",
  "deadline_exceeded",
  "not_found",
  "already_exists",
  "permission_denied",
  "resource_exhausted",
  "failed_precondition",
  "aborted",
  "out_of_range",
  "unimplemented",
  "internal",
  "unavailable",
  "data_loss",
  "unauthenticated",
];

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** The grpc-status of a gRPC-Web body's trailer frame. */
function grpcWebTrailer(body: Uint8Array): string | undefined {
  let offset = 0;
  while (offset + 5 <= body.length) {
    const flags = body[offset] ?? 0;
    const length = new DataView(body.buffer, body.byteOffset + offset + 1, 4).getUint32(0);
    const frame = body.subarray(offset + 5, offset + 5 + length);
    if (flags & 0x80) return /grpc-status:\s*(\d+)/i.exec(new TextDecoder().decode(frame))?.[1];
    offset += 5 + length;
  }
  return undefined;
}
