import { fileURLToPath } from "node:url";

/** The log levels of FASTPUBSUB_LOG_LEVEL, in increasing severity. */
export type LogLevel = "debug" | "info" | "warning" | "error" | "critical";

/** Extra fields of a log line, e.g. `{ "request.method": "GET" }`. */
export type LogFields = Record<string, unknown>;

/** Writes one JSON object per line to stderr, with the seed's field names. */
export interface Logger {
  debug(message: string, fields?: LogFields): void;
  info(message: string, fields?: LogFields): void;
  warning(message: string, fields?: LogFields): void;
  error(message: string, fields?: LogFields): void;
  critical(message: string, fields?: LogFields): void;
}

const severity: Record<LogLevel, number> = { debug: 10, info: 20, warning: 30, error: 40, critical: 50 };

/**
 * Creates a logger that, like the seed's python-json-logger, writes the fields
 * named in `format` (e.g. `%(asctime)s level=%(levelname)s message=%(message)s`)
 * followed by the extra fields of each call, as one JSON object per line.
 */
export function createLogger(options: { level: LogLevel; format: string; name?: string; write?: (line: string) => void }): Logger {
  const keys = [...options.format.matchAll(/%\((\w+)\)/g)].map((match) => match[1] as string);
  const wantsCaller = keys.includes("pathname") || keys.includes("lineno") || keys.includes("filename");
  const write = options.write ?? writeToStderr;
  const threshold = severity[options.level];

  function log(level: LogLevel, message: string, fields?: LogFields) {
    if (severity[level] < threshold) return;
    const caller = wantsCaller ? findCaller(log) : undefined;
    const record: LogFields = {};
    for (const key of keys) {
      record[key] = standardField(key, level, message, options.name, caller);
    }
    // A replacer slows JSON.stringify down several times: only values it changes need it.
    const plain = !fields || Object.values(fields).every(isPlainValue);
    write(`${JSON.stringify(fields ? Object.assign(record, fields) : record, plain ? undefined : jsonSafe)}\n`);
  }

  return {
    debug: (message, fields) => log("debug", message, fields),
    info: (message, fields) => log("info", message, fields),
    warning: (message, fields) => log("warning", message, fields),
    error: (message, fields) => log("error", message, fields),
    critical: (message, fields) => log("critical", message, fields),
  };
}

// Lines logged in one turn of the event loop go to stderr in one write: a write to a pipe is a
// system call that Node makes synchronously, and a busy server logs a line per request.
let pending = "";
function writeToStderr(line: string) {
  if (pending === "") setImmediate(flushStderr);
  pending += line;
}
function flushStderr() {
  if (pending === "") return;
  const lines = pending;
  pending = "";
  process.stderr.write(lines);
}
// Whatever way the process ends, what it logged last is written.
process.on("exit", flushStderr);

function standardField(key: string, level: LogLevel, message: string, name: string | undefined, caller: Caller | undefined) {
  switch (key) {
    case "asctime":
      return asctime(new Date());
    case "levelname":
      return level.toUpperCase();
    case "levelno":
      return severity[level];
    case "message":
      return message;
    case "name":
      return name ?? "fastpubsub";
    case "pathname":
      return caller?.pathname;
    case "filename":
      return caller?.pathname.split("/").pop();
    case "lineno":
      return caller?.lineno;
    case "process":
      return process.pid;
    case "created":
      return Date.now() / 1000;
    default:
      return undefined;
  }
}

/** Formats a time as Python's logging does: `2025-12-29 15:30:00,123`, in UTC. */
function asctime(date: Date) {
  const iso = date.toISOString();
  return `${iso.slice(0, 10)} ${iso.slice(11, 19)},${iso.slice(20, 23)}`;
}

interface Caller {
  pathname: string;
  lineno: number;
}

const thisFile = import.meta.filename;
const thisUrl = import.meta.url;

/** The first call site outside this file, below `below` (whose frames and those above it are left out). */
function findCaller(below: (...args: never[]) => unknown): Caller | undefined {
  // Structured call sites are several times cheaper than a formatted stack, and two frames are enough:
  // the level's method, then its caller.
  const { prepareStackTrace, stackTraceLimit } = Error;
  Error.prepareStackTrace = (_, callSites) => callSites;
  Error.stackTraceLimit = 2;
  const holder: { stack?: NodeJS.CallSite[] } = {};
  Error.captureStackTrace(holder, below);
  const sites = holder.stack;
  Error.prepareStackTrace = prepareStackTrace;
  Error.stackTraceLimit = stackTraceLimit;
  for (const site of sites ?? []) {
    const file = site.getFileName();
    if (!file || file === thisFile || file === thisUrl) continue;
    return { pathname: pathnameOf(file), lineno: site.getLineNumber() ?? 0 };
  }
  return undefined;
}

// A file URL parses slowly, and a log line's caller is one of a few files.
const pathnames = new Map<string, string>();
function pathnameOf(file: string) {
  let pathname = pathnames.get(file);
  if (pathname === undefined) {
    pathname = file.startsWith("file:") ? fileURLToPath(file) : file;
    pathnames.set(file, pathname);
  }
  return pathname;
}

const isPlainValue = (value: unknown) => value === null || (typeof value !== "object" && typeof value !== "bigint");

function jsonSafe(_key: string, value: unknown) {
  if (value instanceof Error) return `${value.name}: ${value.message}`;
  if (typeof value === "bigint") return value.toString();
  return value;
}
