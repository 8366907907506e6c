import { fromBinary, fromJson, type JsonObject, type JsonValue, toBinary, toJson } from "@bufbuild/protobuf";
import { StructSchema } from "@bufbuild/protobuf/wkt";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { eventPayload } from "../../bench/payload.ts";
import { structFromBinary, structToBinary } from "../../src/wire/struct-binary.ts";

const runs = Number(process.env.FASTPUBSUB_FUZZ_RUNS ?? 1000);

/** What protobuf-es writes for a JSON object. */
const reference = (object: JsonObject) => toBinary(StructSchema, fromJson(StructSchema, object));
const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString("hex");

/** What protobuf-es reads from bytes, or the fact that it throws. */
function referenceRead(bytes: Uint8Array): { json: JsonValue } | "throws" {
  try {
    return { json: toJson(StructSchema, fromBinary(StructSchema, bytes)) };
  } catch {
    return "throws";
  }
}

function ourRead(bytes: Uint8Array): { json: JsonValue } | "throws" {
  try {
    return { json: structFromBinary(bytes) };
  } catch {
    return "throws";
  }
}

const unicodeString = fc.string({ unit: "grapheme" });
const anyString = fc.oneof(fc.string(), unicodeString, fc.string({ unit: "binary" }), fc.string({ minLength: 100, maxLength: 400 }));
const number = fc.oneof(
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.integer(),
  fc.constantFrom(-0, 0, 1e300, -1e300, Number.MAX_SAFE_INTEGER, Number.MIN_VALUE, 5e-324),
);
const json: fc.Arbitrary<JsonValue> = fc.letrec<{ value: JsonValue }>((tie) => ({
  value: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    fc.constant(null),
    fc.boolean(),
    number,
    anyString,
    fc.array(tie("value"), { maxLength: 8 }),
    fc.dictionary(anyString, tie("value"), { maxKeys: 8 }),
  ),
})).value;
const jsonObject = fc.oneof(
  fc.dictionary(anyString, json, { maxKeys: 12 }),
  fc.jsonValue().filter((value): value is JsonObject => typeof value === "object" && value !== null && !Array.isArray(value)),
);

/** Bytes near valid encodings: some changed, dropped, added or cut. */
const mangled = fc
  .tuple(
    jsonObject,
    fc.array(fc.tuple(fc.nat(), fc.nat(255), fc.constantFrom("set", "drop", "insert", "cut")), { minLength: 1, maxLength: 4 }),
  )
  .map(([object, edits]) => {
    const bytes = [...reference(object)];
    for (const [where, byte, edit] of edits) {
      const index = bytes.length === 0 ? 0 : where % bytes.length;
      if (edit === "set") bytes[index] = byte;
      else if (edit === "drop") bytes.splice(index, 1);
      else if (edit === "insert") bytes.splice(index, 0, byte);
      else bytes.length = index;
    }
    return new Uint8Array(bytes);
  });

describe("structToBinary", () => {
  it("writes what protobuf-es writes, byte for byte", () => {
    fc.assert(
      fc.property(jsonObject, (object) => {
        expect(hex(structToBinary(object))).toBe(hex(reference(object)));
      }),
      { numRuns: runs },
    );
  });

  it("writes every JSON kind, -0, large numbers, unicode and long strings as protobuf-es does", () => {
    const object: JsonObject = {
      "": "",
      null: null,
      zero: 0,
      negativeZero: -0,
      large: 1e300,
      small: -5e-324,
      yes: true,
      no: false,
      empty: {},
      list: [],
      nested: { a: [1, "two", { three: [null, [], {}] }] },
      unicode: "zażółć gęślą jaźń — 日本語 🎉",
      long: "x".repeat(300),
      longUnicode: "é".repeat(300),
      "ключ 🔑": "value",
      deep: JSON.parse(`${"[".repeat(40)}1${"]".repeat(40)}`),
      __proto__: 1,
      ...eventPayload(1),
    };
    expect(hex(structToBinary(object))).toBe(hex(reference(object)));
  });

  it("writes a payload of megabytes, and the payload after it, as protobuf-es does", () => {
    const large: JsonObject = { text: "é".repeat(600_000), list: Array.from({ length: 20_000 }, (_, index) => ({ index })) };
    expect(hex(structToBinary(large))).toBe(hex(reference(large)));
    expect(structFromBinary(structToBinary(large))).toEqual(large);
    expect(hex(structToBinary({ after: 1 }))).toBe(hex(reference({ after: 1 })));
  });

  it("leaves out members that are undefined, as JSON does", () => {
    expect(hex(structToBinary({ a: 1, b: undefined } as unknown as JsonObject))).toBe(hex(reference({ a: 1 })));
  });

  it("refuses a value JSON cannot hold, saying where it is", () => {
    expect(() => structToBinary({ a: [1, { b: 2n }] } as unknown as JsonObject)).toThrow('payload["a"][1]["b"] is a bigint');
  });
});

describe("structFromBinary", () => {
  it("reads back what protobuf-es writes", () => {
    fc.assert(
      fc.property(jsonObject, (object) => {
        const bytes = reference(object);
        expect(structFromBinary(bytes)).toEqual(toJson(StructSchema, fromBinary(StructSchema, bytes)));
      }),
      { numRuns: runs },
    );
  });

  it("reads any bytes as protobuf-es does, or throws where it throws", () => {
    fc.assert(
      fc.property(fc.oneof(fc.uint8Array({ maxLength: 64 }), mangled), (bytes) => {
        expect(ourRead(bytes)).toEqual(referenceRead(bytes));
      }),
      { numRuns: runs * 5 },
    );
  });

  it("keeps the last of a repeated key in the place of the first, and skips unknown fields", () => {
    // {a: 1, b: 2, a: "x"} with an unknown varint field 7 in the Struct and field 9 in an entry.
    const bytes = Buffer.from(
      [
        "0a0e0a0161120911000000000000f03f", // "a": 1
        "3801", // field 7 of Struct, a varint
        "0a100a016212091100000000000000404801", // "b": 2, with field 9 in the entry
        "0a080a016112031a0178", // "a": "x"
      ].join(""),
      "hex",
    );
    const expected = referenceRead(bytes);
    expect(expected).not.toBe("throws");
    expect(structFromBinary(bytes)).toEqual((expected as { json: JsonValue }).json);
    expect(structFromBinary(bytes)).toEqual({ a: "x", b: 2 });
    expect(Object.keys(structFromBinary(bytes))).toEqual(["a", "b"]);
  });

  it("refuses a Value with no kind", () => {
    // {a: Value{}}
    expect(() => structFromBinary(Buffer.from("0a050a01611200", "hex"))).toThrow(
      'invalid google.protobuf.Struct: google.protobuf.Value must have a value (at ["a"])',
    );
  });

  it("refuses truncated bytes and invalid UTF-8", () => {
    const bytes = reference({ key: "value" });
    for (let cut = 1; cut < bytes.length; cut++) expect(() => structFromBinary(bytes.subarray(0, cut))).toThrow();
    expect(() => structFromBinary(Buffer.from("0a080a016112031a01ff", "hex"))).toThrow("invalid UTF-8");
  });

  it("reads a key named __proto__ as an own member", () => {
    const object = structFromBinary(reference(JSON.parse('{"__proto__": {"a": 1}}')));
    expect(Object.getPrototypeOf(object)).toBe(Object.prototype);
    expect(Object.keys(object)).toEqual(["__proto__"]);
  });
});
