import { Code, ConnectError } from "@connectrpc/connect";
import {
  BackendTerminatedError,
  BackendTerminatedUnexpectedlyError,
  ConnectionError,
  UniqueIntegrityConstraintViolationError,
} from "slonik";

/**
 * SQLSTATEs raised by fastpubsub's SQL functions (class `FP`), named after the
 * HTTP status they stand for, and the Connect code each becomes.
 */
const codeFromSqlState: Record<string, Code> = {
  FP404: Code.NotFound,
  FP409: Code.AlreadyExists,
  FP422: Code.InvalidArgument,
};

/** DatabaseUnavailableError reports a call that got no answer from PostgreSQL: no connection, a lost one, or no answer in time. */
export class DatabaseUnavailableError extends Error {
  override name = "DatabaseUnavailableError";
  constructor(what: string, cause?: unknown) {
    super(cause instanceof Error ? `${what}: ${cause.message}` : what, { cause });
  }
}

// Connection exceptions (08), insufficient resources (53: too many connections, disk full),
// operator intervention (57P0x), and the statement and idle-in-transaction timeouts.
const unavailableSqlState = /^(08|53|57P0|57014|25P03)/;
const unavailableErrno = new Set(["ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "EHOSTUNREACH", "ENOTFOUND", "EPIPE", "EAI_AGAIN"]);

/**
 * Translates a database error into the Connect error it stands for, or returns
 * undefined for an error that is not the client's or the database's to explain.
 */
export function connectErrorFromDatabaseError(error: unknown): ConnectError | undefined {
  const code = sqlState(error);
  if (code !== undefined && code in codeFromSqlState) {
    return new ConnectError((error as Error).message, codeFromSqlState[code]);
  }
  if (error instanceof UniqueIntegrityConstraintViolationError) {
    return new ConnectError("already exists", Code.AlreadyExists, undefined, undefined, error);
  }
  if (isDatabaseUnavailable(error)) {
    return new ConnectError("database is unavailable", Code.Unavailable, undefined, undefined, error);
  }
  return undefined;
}

function sqlState(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : undefined;
}

/** Tells whether an error (or one of its causes) says that PostgreSQL did not answer, rather than refused. */
export function isDatabaseUnavailable(error: unknown): boolean {
  if (
    error instanceof DatabaseUnavailableError ||
    error instanceof ConnectionError ||
    error instanceof BackendTerminatedError ||
    error instanceof BackendTerminatedUnexpectedlyError
  ) {
    return true;
  }
  const code = sqlState(error);
  if (code !== undefined && (unavailableSqlState.test(code) || unavailableErrno.has(code))) return true;
  const cause = (error as { cause?: unknown } | null)?.cause;
  return cause !== undefined && cause !== error && isDatabaseUnavailable(cause);
}

/**
 * Tells whether PostgreSQL refused a statement (a SQLSTATE outside the
 * connection classes 08 and 57P), which leaves the session usable.
 */
export function isStatementRefusal(error: unknown): boolean {
  for (let current = error; current instanceof Error; current = current.cause) {
    const code = sqlState(current);
    if (code !== undefined && /^[0-9A-Z]{5}$/.test(code)) return !/^(08|57P)/.test(code);
  }
  return false;
}
