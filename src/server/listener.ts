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

// Every HTTP/2 connection without TLS starts with this preface; no HTTP/1 request line does.
const http2Preface = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");

/**
 * Serves HTTP/1.1 and cleartext HTTP/2 (gRPC needs it) on one port: each new
 * connection is handed to the HTTP/2 server when it opens with the HTTP/2
 * preface, else to the HTTP/1.1 server. Both call the same handler.
 */
export function listen(handler: RequestHandler, host: string, port: number): Promise<Listener> {
  const http1Server = http.createServer({ keepAliveTimeout: 65_000 }, handler);
  const http2Server = http2.createServer({}, handler);
  const sessions = new Set<Http2Session>();
  http2Server.on("session", (session) => {
    sessions.add(session);
    session.once("close", () => sessions.delete(session));
  });
  // The HTTP/1.1 server never listens itself, so it does not track its
  // connections: count the requests in flight on each one to close it when idle.
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
    socket.once("close", () => sockets.delete(socket));
    socket.once("readable", () => routeConnection(socket));
  });

  function routeConnection(socket: Socket) {
    const head: Buffer | null = socket.read(Math.min(socket.readableLength, http2Preface.length));
    if (head === null) {
      socket.once("readable", () => routeConnection(socket));
      return;
    }
    socket.unshift(head);
    const isHttp2 = http2Preface.subarray(0, head.length).equals(head);
    if (isHttp2 && head.length < http2Preface.length) {
      socket.once("readable", () => routeConnection(socket));
      return;
    }
    (isHttp2 ? http2Server : http1Server).emit("connection", socket);
  }

  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      const address = server.address() as AddressInfo;
      const shownHost = address.family === "IPv6" ? `[${address.address}]` : address.address;
      resolve({
        url: `http://${shownHost}:${address.port}`,
        port: address.port,
        async close(graceMs = 10_000) {
          closing = true;
          const closed = new Promise<void>((done) => server.close(() => done()));
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
