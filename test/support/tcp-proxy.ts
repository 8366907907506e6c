import net from "node:net";

/** A TCP proxy to a port on 127.0.0.1 that a test can start, and freeze without closing anything. */
export interface TcpProxy {
  port: number;
  /** Starts accepting connections and forwarding them. */
  start(): Promise<void>;
  /** Stops forwarding bytes in both directions on every connection, as a network that drops packets would; nothing is closed. */
  freeze(): void;
  /** Closes every connection and stops listening. */
  close(): Promise<void>;
}

/** Creates a proxy on `port` to `targetPort`, not yet listening: until `start`, connections to `port` are refused. */
export function createTcpProxy(port: number, targetPort: number): TcpProxy {
  const pairs = new Set<[net.Socket, net.Socket]>();
  let frozen = false;
  const server = net.createServer((client) => {
    const upstream = net.connect(targetPort, "127.0.0.1");
    const pair: [net.Socket, net.Socket] = [client, upstream];
    pairs.add(pair);
    for (const socket of pair) {
      socket.on("error", () => {});
      socket.on("close", () => {
        pairs.delete(pair);
        for (const other of pair) if (!frozen) other.destroy();
      });
    }
    client.pipe(upstream);
    upstream.pipe(client);
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
      for (const pair of pairs) for (const socket of pair) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
