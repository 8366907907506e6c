import http, { type IncomingMessage, type ServerResponse } from "node:http";
import http2, { type Http2ServerRequest, type Http2ServerResponse, type Http2Session } from "node:http2";
import net, { type AddressInfo, type Socket } from "node:net";

type RequestHandler = (req: IncomingMessage | Http2ServerRequest, res: ServerResponse | Http2ServerResponse) => void;

/** A listening port and how to stop it. */
export interface Listener {
  /** The bound address, e.g. `http://127.0.0.1:8000`. */
  url: string;
  port: number;
  /** Stops accepting, lets in-flight requests finish for up to `graceMs`, then closes what is left. */
  close(graceMs?: number): Promise<void>;
}

/** Where to listen, and the bounds every connection is held to. */
export interface ListenOptions {
  host: string;
  port: number;
  /** Time a new connection has to send its first bytes, and a request its headers. */
  headersTimeoutMs: number;
  /** Time a request has to arrive whole, headers and body. */
  requestTimeoutMs: number;
  /** Time a connection with no request in flight is kept open. */
  keepAliveTimeoutMs: number;
  /** Connections beyond this many are closed as soon as they are accepted. */
  maxConnections: number;
}

// Every HTTP/2 connection without TLS starts with this preface; no HTTP/1 request line does.
const http2Preface = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");

// How often the HTTP/1.1 server looks for requests past their headers or request bound.
const boundsCheckIntervalMs = 250;

/**
 * Serves HTTP/1.1 and cleartext HTTP/2 (gRPC needs it) on one port: each new
 * connection is handed to the HTTP/2 server when it opens with the HTTP/2
 * preface, else to the HTTP/1.1 server. Both call the same handler.
 */
export function listen(handler: RequestHandler, options: ListenOptions): Promise<Listener> {
  const http1Server = http.createServer(
    {
      headersTimeout: options.headersTimeoutMs,
      requestTimeout: options.requestTimeoutMs,
      keepAliveTimeout: options.keepAliveTimeoutMs,
      connectionsCheckingInterval: boundsCheckIntervalMs,
    },
    handler,
  );
  // Node enforces headersTimeout and requestTimeout only on a server that has emitted
  // 'listening' (undocumented), and this one never listens: sockets are handed to it.
  // No public API starts those checks otherwise, and no listener-side timer could see
  // where each request of a kept-alive connection starts.
  http1Server.emit("listening");
  const http2Server = http2.createServer({}, handler);
  const sessions = new Set<Http2Session>();
  http2Server.on("session", (session) => {
    sessions.add(session);
    // Node's HTTP/2 timeouts measure silence, not requests: they would destroy a session
    // whose stream waits on a long answer, and let a body trickle in forever.
    let streams = 0;
    let idle = setTimeout(() => session.close(), options.keepAliveTimeoutMs);
    session.on("stream", (stream) => {
      streams++;
      clearTimeout(idle);
      const unfinished = setTimeout(() => {
        if (!stream.state.remoteClose) stream.close(http2.constants.NGHTTP2_CANCEL);
      }, options.requestTimeoutMs);
      stream.once("close", () => {
        clearTimeout(unfinished);
        if (--streams === 0 && !session.closed && !session.destroyed) idle = setTimeout(() => session.close(), options.keepAliveTimeoutMs);
      });
    });
    session.once("close", () => {
      sessions.delete(session);
      clearTimeout(idle);
    });
  });
  // Count the requests in flight on each HTTP/1.1 connection, to close it at
  // shutdown as soon as it has none.
  const inFlight = new Map<Socket, number>();
  let closing = false;
  http1Server.on("connection", (socket: Socket) => {
    inFlight.set(socket, 0);
    socket.once("close", () => inFlight.delete(socket));
  });
  http1Server.on("request", (req: IncomingMessage, res: ServerResponse) => {
    const socket = req.socket;
    inFlight.set(socket, (inFlight.get(socket) ?? 0) + 1);
    if (closing) res.shouldKeepAlive = false;
    res.once("close", () => {
      const left = (inFlight.get(socket) ?? 1) - 1;
      inFlight.set(socket, left);
      if (closing && left === 0) socket.destroySoon();
    });
  });
  const closeIdleConnections = () => {
    for (const [socket, requests] of inFlight) if (requests === 0) socket.destroy();
  };

  const sockets = new Set<Socket>();
  const server = net.createServer({ noDelay: true }, (socket) => {
    sockets.add(socket);
    const silent = setTimeout(() => socket.destroy(), options.headersTimeoutMs);
    socket.once("close", () => {
      sockets.delete(socket);
      clearTimeout(silent);
    });
    socket.once("readable", () => routeConnection(socket, silent));
  });
  // In a cluster worker, a connection over the cap would otherwise wait in the primary until a
  // worker has room. (dropMaxConnection is documented since Node 22.12, not yet in @types/node.)
  Object.assign(server, { maxConnections: options.maxConnections, dropMaxConnection: true });

  function routeConnection(socket: Socket, silent: NodeJS.Timeout) {
    const head: Buffer | null = socket.read(Math.min(socket.readableLength, http2Preface.length));
    if (head === null) {
      socket.once("readable", () => routeConnection(socket, silent));
      return;
    }
    socket.unshift(head);
    const isHttp2 = http2Preface.subarray(0, head.length).equals(head);
    if (isHttp2 && head.length < http2Preface.length) {
      socket.once("readable", () => routeConnection(socket, silent));
      return;
    }
    clearTimeout(silent);
    (isHttp2 ? http2Server : http1Server).emit("connection", socket);
  }

  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port, options.host, () => {
      const address = server.address() as AddressInfo;
      const shownHost = address.family === "IPv6" ? `[${address.address}]` : address.address;
      resolve({
        url: `http://${shownHost}:${address.port}`,
        port: address.port,
        async close(graceMs = 10_000) {
          closing = true;
          const closed = new Promise<void>((done) => server.close(() => done()));
          // Stops the HTTP/1.1 server's bounds checks.
          http1Server.close();
          closeIdleConnections();
          for (const session of sessions) session.close();
          const deadline = setTimeout(() => {
            for (const session of sessions) session.destroy();
            for (const socket of sockets) socket.destroy();
          }, graceMs);
          await closed;
          clearTimeout(deadline);
        },
      });
    });
  });
}
