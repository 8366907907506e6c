import { once } from "node:events";
import http2 from "node:http2";
import net, { type Socket } from "node:net";

/** How an abusive client ended: when the server cut it, and what the server sent it. */
export interface Cut {
  /** Milliseconds from the moment the bound started to count to the close. */
  ms: number;
  /** Everything the server sent, as text. */
  received: string;
}

/** A raw TCP connection to a server. */
export interface RawConnection {
  socket: Socket;
  /** When it was established, as `performance.now()`. */
  openedAt: number;
  /** Resolves with what the server sent once it closes the connection. */
  closed: Promise<string>;
}

/** Opens a TCP connection to `url` and waits until it is established. */
export async function connect(url: string): Promise<RawConnection> {
  const { hostname, port } = new URL(url);
  const socket = net.connect(Number(port), hostname);
  let received = "";
  socket.setEncoding("utf8").on("data", (chunk: string) => {
    received += chunk;
  });
  // A reset is one way for the server to close; only the close matters here.
  socket.on("error", () => {});
  const closed = new Promise<string>((resolve) => socket.once("close", () => resolve(received)));
  await once(socket, "connect");
  return { socket, openedAt: performance.now(), closed };
}

/** Resolves with the Cut of a connection, measured from `since` (by default its opening) to its close. */
export async function cutOf(connection: RawConnection, since = connection.openedAt): Promise<Cut> {
  const received = await connection.closed;
  return { ms: performance.now() - since, received };
}

/** A client that connects and never sends a byte. */
export async function silentClient(url: string): Promise<Cut> {
  return cutOf(await connect(url));
}

/** `count` clients that connect and never send a byte, opened 250 at a time so that none waits in the listen backlog. */
export async function silentClients(url: string, count: number): Promise<Cut[]> {
  const cuts: Promise<Cut>[] = [];
  for (let opened = 0; opened < count; opened += 250) {
    const batch = await Promise.all(Array.from({ length: Math.min(250, count - opened) }, () => connect(url)));
    cuts.push(...batch.map((connection) => cutOf(connection)));
  }
  return Promise.all(cuts);
}

/** A slowloris: an HTTP/1.1 request whose headers never end, one more byte every `everyMs`. */
export async function slowHeadersClient(url: string, everyMs = 200): Promise<Cut> {
  const connection = await connect(url);
  connection.socket.write("GET /liveness HTTP/1.1\r\nHost: fastpubsub\r\nX-Slow: ");
  const cut = cutOf(connection, performance.now());
  const drip = setInterval(() => connection.socket.write("a"), everyMs);
  try {
    return await cut;
  } finally {
    clearInterval(drip);
  }
}

/**
 * A request whose body announces `length` bytes: `sent` of them go at once,
 * then one more every `everyMs` (never, when undefined).
 */
export async function slowBodyClient(url: string, length: number, sent: string, everyMs?: number): Promise<Cut> {
  const connection = await connect(url);
  connection.socket.write(
    `POST /topics HTTP/1.1\r\nHost: fastpubsub\r\nContent-Type: application/json\r\nContent-Length: ${length}\r\n\r\n${sent}`,
  );
  const cut = cutOf(connection, performance.now());
  const drip = everyMs === undefined ? undefined : setInterval(() => connection.socket.write(" "), everyMs);
  try {
    return await cut;
  } finally {
    clearInterval(drip);
  }
}

/** A client that sends one kept-alive request, reads the answer, then stays silent; measured from the answer. */
export async function idleAfterRequestClient(url: string): Promise<Cut> {
  const connection = await connect(url);
  let answered = "";
  const answer = new Promise<void>((resolve) => {
    connection.socket.on("data", (chunk: string) => {
      answered += chunk;
      if (answered.endsWith('{"status":"alive"}')) resolve();
    });
  });
  connection.socket.write("GET /liveness HTTP/1.1\r\nHost: fastpubsub\r\n\r\n");
  await Promise.race([answer, connection.closed]);
  const cut = await cutOf(connection, performance.now());
  return { ms: cut.ms, received: cut.received.slice(answered.length) };
}

/** An HTTP/2 client that opens a session (preface and settings) and then sends nothing. */
export async function idleHttp2Client(url: string): Promise<Cut> {
  const session = http2.connect(url);
  session.on("error", () => {});
  const started = performance.now();
  await once(session, "close");
  return { ms: performance.now() - started, received: "" };
}

/** An HTTP/2 stream whose request announces a body, sends part of it, and never ends; `received` is the reset code. */
export async function stalledHttp2StreamClient(session: http2.ClientHttp2Session): Promise<Cut> {
  const stream = session.request({ ":method": "POST", ":path": "/topics", "content-type": "application/json" }, { endStream: false });
  stream.on("error", () => {});
  stream.resume();
  stream.write('{"id":');
  const started = performance.now();
  await once(stream, "close");
  return { ms: performance.now() - started, received: String(stream.rstCode) };
}
