import net from "node:net";

/** A TCP proxy to a port on 127.0.0.1 that a test can start, and freeze without closing anything. */
export interface TcpProxy {
  port: number;
  /** Starts accepting connections and forwarding them. */
  start(): Promise<void>;
  /**
   * Stops carrying bytes both ways, on every connection and on those to
   * come, without closing any: each side sees a silent peer, as behind a
   * dropped route or a dead NAT entry.
   */
  freeze(): void;
  /** Closes every connection and stops listening. */
  close(): Promise<void>;
}

/** Creates a proxy on `port` to `targetPort`, not yet listening: until `start`, connections to `port` are refused. */
export function createTcpProxy(port: number, targetPort: number): TcpProxy {
  let frozen = false;
  const sockets = new Set<net.Socket>();
  const pairs: [net.Socket, net.Socket][] = [];
  const track = (socket: net.Socket) => {
    sockets.add(socket);
    socket.on("error", () => {});
    socket.once("close", () => sockets.delete(socket));
  };
  const server = net.createServer((client) => {
    track(client);
    // A connection made while frozen is accepted, then never answered.
    if (frozen) {
      client.pause();
      return;
    }
    const upstream = net.connect(targetPort, "127.0.0.1");
    track(upstream);
    client.pipe(upstream);
    upstream.pipe(client);
    client.once("close", () => upstream.destroy());
    upstream.once("close", () => client.destroy());
    pairs.push([client, upstream]);
  });
  return {
    port,
    start: () => new Promise((resolve) => server.listen(port, "127.0.0.1", resolve)),
    freeze() {
      frozen = true;
      for (const [client, upstream] of pairs) {
        client.unpipe(upstream);
        upstream.unpipe(client);
        client.pause();
        upstream.pause();
      }
    },
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
