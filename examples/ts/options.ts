import { parseArgs } from "node:util";
import type { Protocol } from "fastpubsub/client";

/** The command-line options shared by the examples. */
export function exampleOptions() {
  const { values } = parseArgs({
    args: process.argv.slice(3),
    options: {
      url: { type: "string", default: "http://localhost:8000" },
      protocol: { type: "string", default: "connect" },
      token: { type: "string" },
      topic: { type: "string", default: "example-orders" },
      subscription: { type: "string", default: "example-orders-worker" },
      count: { type: "string", default: "1000" },
      "batch-size": { type: "string", default: "100" },
      "max-outstanding": { type: "string", default: "100" },
    },
  });
  if (!["connect", "grpc", "grpc-web"].includes(values.protocol)) throw new Error("--protocol must be connect, grpc or grpc-web");
  return {
    url: values.url,
    protocol: values.protocol as Protocol,
    token: values.token,
    topic: values.topic,
    subscription: values.subscription,
    count: Number(values.count),
    batchSize: Number(values["batch-size"]),
    maxOutstanding: Number(values["max-outstanding"]),
  };
}
