/**
 * Micro-benchmark of the google.protobuf.Struct codec (`node bench/struct-binary.ts`):
 * µs per bench payload to write and read its binary form, with protobuf-es and
 * with src/wire/struct-binary.ts.
 */
import { fromBinary, fromJson, toBinary, toJson } from "@bufbuild/protobuf";
import { StructSchema } from "@bufbuild/protobuf/wkt";
import { structFromBinary, structToBinary } from "../src/wire/struct-binary.ts";
import { eventPayload } from "./payload.ts";

const payloads = Array.from({ length: 1000 }, (_, n) => eventPayload(n));
const encoded = payloads.map((payload) => toBinary(StructSchema, fromJson(StructSchema, payload)));

function measure(name: string, work: (index: number) => unknown) {
  let sink = 0;
  for (let round = 0; round < 50; round++) for (let index = 0; index < payloads.length; index++) sink ^= work(index) ? 1 : 0;
  const rounds = 400;
  const started = process.hrtime.bigint();
  for (let round = 0; round < rounds; round++) for (let index = 0; index < payloads.length; index++) sink ^= work(index) ? 1 : 0;
  const perCall = Number(process.hrtime.bigint() - started) / 1000 / (rounds * payloads.length);
  process.stdout.write(`${name.padEnd(44)} ${perCall.toFixed(2)} µs${sink === 2 ? " " : ""}\n`);
}

process.stdout.write(`bench payload: ${encoded[0]?.byteLength} bytes of Struct binary\n`);
measure("protobuf-es toBinary(fromJson(Struct))", (index) => toBinary(StructSchema, fromJson(StructSchema, payloads[index] ?? {})));
measure("structToBinary", (index) => structToBinary(payloads[index] ?? {}));
measure("protobuf-es toJson(fromBinary(Struct))", (index) =>
  toJson(StructSchema, fromBinary(StructSchema, encoded[index] ?? new Uint8Array())),
);
measure("structFromBinary", (index) => structFromBinary(encoded[index] ?? new Uint8Array()));
