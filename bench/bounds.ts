/**
 * Abusive clients against a fastpubsub server started here with the FASTPUBSUB_*
 * settings of the environment (the defaults unless set; it migrates
 * FASTPUBSUB_DATABASE_URL, or starts the embedded PostgreSQL):
 * `FASTPUBSUB_DATABASE_URL=… npx node bench/bounds.ts`. Prints, for each client,
 * the bound that applies and when the server cut it, and how GET /liveness was
 * answered meanwhile.
 */
import http2 from "node:http2";
import { setTimeout as sleep } from "node:timers/promises";
import { loadConfig } from "../src/config/config.ts";
import { createLogger } from "../src/logger.ts";
import { startServer } from "../src/server/server.ts";
import {
  type Cut,
  idleAfterRequestClient,
  idleHttp2Client,
  silentClient,
  silentClients,
  slowBodyClient,
  slowHeadersClient,
  stalledHttp2StreamClient,
} from "../test/support/abusive-clients.ts";

const config = loadConfig({ FASTPUBSUB_LOG_LEVEL: "critical", ...process.env, FASTPUBSUB_API_HOST: "127.0.0.1", FASTPUBSUB_API_PORT: "0" });
const server = await startServer(config, createLogger({ level: config.logLevel, format: config.logFormatter }));
const floodSize = 2000;
const headers = `${config.apiHeadersTimeoutSeconds} s headers`;
const request = `${config.apiRequestTimeoutSeconds} s request`;
const keepAlive = `${config.apiKeepaliveTimeoutSeconds} s keep-alive`;

const stalledStream = async () => {
  const session = http2.connect(server.url);
  session.on("error", () => {});
  try {
    return await stalledHttp2StreamClient(session);
  } finally {
    session.close();
  }
};
const clients: [string, string, () => Promise<Cut>][] = [
  ["HTTP/1.1 headers, a byte every 200 ms (slowloris)", headers, () => slowHeadersClient(server.url)],
  ["connection that sends nothing", headers, () => silentClient(server.url)],
  ["body of 100 bytes, stopped after 6", request, () => slowBodyClient(server.url, 100, '{"id":')],
  ["1 GB body, a byte every 200 ms", request, () => slowBodyClient(server.url, 1024 ** 3, "[", 200)],
  ["kept-alive connection idle after a request", keepAlive, () => idleAfterRequestClient(server.url)],
  ["HTTP/2 session that sends nothing after its preface", keepAlive, () => idleHttp2Client(server.url)],
  ["HTTP/2 stream whose body never ends", request, stalledStream],
];

let attacking = true;
const probes: { status: number; ms: number }[] = [];
const probing = (async () => {
  while (attacking) {
    const started = performance.now();
    const response = await fetch(new URL("/liveness", server.url));
    await response.text();
    probes.push({ status: response.status, ms: performance.now() - started });
    await sleep(100);
  }
})();
const cuts = await Promise.all(clients.map(([, , client]) => client()));
const rows = clients.map(([name, bound], n): [string, string, Cut] => [name, bound, cuts[n] as Cut]);
// The flood comes after, alone: waiting in the listen backlog would delay the others' connections.
const flood = await silentClients(server.url, floodSize);
rows.push([
  `${floodSize} connections that send nothing (the last one cut)`,
  headers,
  flood.reduce((slowest, cut) => (cut.ms > slowest.ms ? cut : slowest)),
]);
attacking = false;
await probing;
await server.close();

console.log("| client | bound | cut after | what the client got |");
console.log("| --- | --- | --- | --- |");
for (const [name, bound, cut] of rows) {
  const got = cut.received === String(http2.constants.NGHTTP2_CANCEL) ? "RST_STREAM CANCEL" : cut.received.split("\r\n")[0] || "closed";
  console.log(`| ${name} | ${bound} | ${(cut.ms / 1000).toFixed(2)} s | ${got} |`);
}
const answered = probes.filter((probe) => probe.status === 200);
const slowestProbe = Math.max(...answered.map((probe) => probe.ms));
console.log(
  `\nGET /liveness meanwhile: ${answered.length} of ${probes.length} answered 200, the slowest in ${slowestProbe.toFixed(0)} ms.`,
);
