import { Code, ConnectError, type HandlerContext } from "@connectrpc/connect";

/**
 * The RPC router's request gate: it lets every call through, and corrects the
 * error a call ends with where connect-es 2 would answer a client's bad bytes
 * as a fault of the server's.
 */
export function requestGate(context: HandlerContext) {
  // Every protocol's handler passes the error to its context's abort() before writing
  // it (an abort the public signal may not show, when a deadline fired first).
  const controller = context as HandlerContext & { abort(reason?: unknown): void };
  const abort = controller.abort.bind(controller);
  controller.abort = (reason?: unknown) => {
    if (reason instanceof ConnectError) correct(reason);
    // A call that ended well is aborted too, to release what listens to its signal: with no reason,
    // AbortController makes a DOMException, whose stack trace cost ~3 % of the server's CPU over gRPC.
    abort(reason ?? callEnded);
  };
}

const callEnded = new ConnectError("the call has ended", Code.Canceled);

function correct(error: ConnectError) {
  const fields = error as { code: Code; rawMessage: string };
  // A body that is not protobuf binary is internal, a 500, with no sign but the message;
  // a body that is not JSON is already invalid_argument.
  if (error.code === Code.Internal && error.rawMessage.startsWith("parse binary:")) fields.code = Code.InvalidArgument;
  // So is a body that its content-encoding cannot decompress, unless zlib names the error.
  if (error.code === Code.Internal && error.rawMessage === "decompression failed") fields.code = Code.InvalidArgument;
  // gRPC and gRPC-Web percent-encode the message as UTF-8, which throws on a lone surrogate,
  // and the call ended in a 500: JSON.parse quotes a bad body in its message, cut anywhere.
  if (!error.rawMessage.isWellFormed()) fields.rawMessage = error.rawMessage.toWellFormed();
}
