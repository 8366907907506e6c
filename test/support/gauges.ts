import { send } from "./http.ts";

/** The value of an unlabelled gauge in a server's /metrics. */
export async function gauge(url: string, name: string) {
  const { text } = await send(url, "GET", "/metrics");
  const line = text.split("\n").find((candidate) => candidate.startsWith(`${name} `));
  return Number(line?.split(" ")[1]);
}
