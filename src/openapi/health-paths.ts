import type { JsonObject } from "@bufbuild/protobuf";

/** The tag of the paths that no RPC serves: the health probes and the metrics. */
export const healthTag: JsonObject = {
  name: "Health",
  description: "Probes for orchestrators and metrics for monitoring. They are always public.",
};

function statusBody(status: string): JsonObject {
  return {
    "application/json": {
      schema: { type: "object", properties: { status: { type: "string", const: status } }, required: ["status"] },
      example: { status },
    },
  };
}

/** The OpenAPI paths of GET /liveness, /readiness and /metrics, described by hand since no RPC serves them. */
export const healthPaths: JsonObject = {
  "/liveness": {
    get: {
      tags: ["Health"],
      summary: "Liveness probe.",
      description: "Answers as long as the process serves requests; it does not touch the database.",
      operationId: "Liveness",
      responses: { "200": { description: "The process is alive.", content: statusBody("alive") } },
    },
  },
  "/readiness": {
    get: {
      tags: ["Health"],
      summary: "Readiness probe.",
      description: "Ready when the database answers a query within two seconds.",
      operationId: "Readiness",
      responses: {
        "200": { description: "The database answers.", content: statusBody("ready") },
        "503": {
          description: "The database does not answer.",
          content: { "application/json": { schema: { $ref: "#/components/schemas/Error" }, example: { detail: "database is down" } } },
        },
      },
    },
  },
  "/metrics": {
    get: {
      tags: ["Health"],
      summary: "Prometheus metrics.",
      description: "The server's metrics in the Prometheus text exposition format.",
      operationId: "Metrics",
      responses: {
        "200": {
          description: "The metrics, one sample a line.",
          content: {
            "text/plain": {
              schema: { type: "string" },
              example: '# TYPE http_requests_total counter\nhttp_requests_total{method="GET",path="/topics",status="200"} 3\n',
            },
          },
        },
      },
    },
  },
};
