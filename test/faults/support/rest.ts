import http from "node:http";

/** One REST request: when it was made, when its bytes were all handed to the kernel, and its answer or the connection error that stopped it. */
export interface RestRequest {
  method: string;
  path: string;
  madeAt: number;
  writtenAt?: number;
  endedAt: number;
  status?: number;
  text?: string;
  error?: string;
}

/**
 * Sends one JSON request on `agent`'s connections to `base`, and resolves with
 * its record once it is answered or has failed. `onWritten` runs as soon as
 * the request is fully written, before anything else can happen.
 */
export function sendRest(
  agent: http.Agent,
  base: string,
  method: string,
  path: string,
  body?: unknown,
  onWritten?: (request: RestRequest) => void,
): Promise<RestRequest> {
  const record: RestRequest = { method, path, madeAt: performance.now(), endedAt: 0 };
  const payload = body === undefined ? undefined : JSON.stringify(body);
  return new Promise((resolve) => {
    const end = (fields: Partial<RestRequest>) => {
      if (record.endedAt === 0) resolve(Object.assign(record, { endedAt: performance.now() }, fields));
    };
    const request = http.request(new URL(path, base), {
      agent,
      method,
      // No request should take this long, whatever the fault: one that does is reported, not waited for.
      timeout: 15_000,
      headers: payload === undefined ? {} : { "content-type": "application/json", "content-length": Buffer.byteLength(payload) },
    });
    request.once("finish", () => {
      record.writtenAt = performance.now();
      onWritten?.(record);
    });
    request.once("response", (response) => {
      let text = "";
      response.setEncoding("utf8").on("data", (chunk: string) => {
        text += chunk;
      });
      response.once("end", () => end({ status: response.statusCode, text }));
      response.once("error", (error: NodeJS.ErrnoException) => end({ error: error.code ?? error.message }));
    });
    request.once("timeout", () => request.destroy(Object.assign(new Error("no answer within 15 s"), { code: "TIMEOUT" })));
    request.once("error", (error: NodeJS.ErrnoException) => end({ error: error.code ?? error.message }));
    request.end(payload);
  });
}
