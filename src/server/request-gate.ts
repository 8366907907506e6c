import { Code, ConnectError, type HandlerContext } from "@connectrpc/connect";

/**
 * The RPC router's request gate: it lets every call through, and makes a
 * request body that is not valid protobuf binary invalid_argument, as a body
 * that is not valid JSON already is.
 */
export function requestGate(context: HandlerContext) {
  // connect-es 2 reports such a body as internal, a fault of the server's, with no
  // sign but its message ("parse binary: …"). Every protocol's handler passes the
  // error to its context's abort() before writing it (an abort the public signal may
  // not show, when a deadline fired first), so its code is corrected there.
  const controller = context as HandlerContext & { abort(reason?: unknown): void };
  const abort = controller.abort.bind(controller);
  controller.abort = (reason?: unknown) => {
    if (reason instanceof ConnectError && reason.code === Code.Internal && reason.rawMessage.startsWith("parse binary:")) {
      (reason as { code: Code }).code = Code.InvalidArgument;
    }
    abort(reason);
  };
}
