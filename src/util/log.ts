// The process logger: pino, as JSON lines for machines, or one readable line per entry on a terminal.
import { Writable } from "node:stream";
import { pino, type Logger } from "pino";

export type { Logger } from "pino";

const LEVELS: Record<number, string> = { 10: "trace", 20: "debug", 30: "info", 40: "warn", 50: "error", 60: "fatal" };
const SKIP = new Set(["level", "time", "pid", "hostname", "msg", "v"]);

function formatValue(value: unknown): string {
  if (typeof value === "string") return /[\s"=]/.test(value) ? JSON.stringify(value) : value;
  return JSON.stringify(value);
}

/** Formats pino's JSON lines as `HH:MM:SS level message key=value ...`. */
export function readableLines(out: NodeJS.WritableStream): Writable {
  return new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString("utf8").split("\n")) {
        if (!line.trim()) continue;
        try {
          const entry = JSON.parse(line) as Record<string, unknown>;
          const time = new Date(Number(entry.time)).toTimeString().slice(0, 8);
          const level = (LEVELS[Number(entry.level)] ?? "info").padEnd(5);
          const fields = Object.entries(entry)
            .filter(([k]) => !SKIP.has(k))
            .map(([k, v]) => (k === "err" && v && typeof v === "object" ? `err=${formatValue((v as { message?: string }).message)}` : `${k}=${formatValue(v)}`));
          out.write(`${time} ${level} ${String(entry.msg ?? "")}${fields.length ? ` ${fields.join(" ")}` : ""}\n`);
        } catch {
          out.write(`${line}\n`);
        }
      }
      done();
    },
  });
}

export interface LoggerOptions {
  level?: string;
  /** Human-readable lines instead of JSON (default: when stdout is a terminal). */
  readable?: boolean;
  destination?: NodeJS.WritableStream;
}

export function createLogger(options: LoggerOptions = {}): Logger {
  const destination = options.destination ?? process.stdout;
  const readable = options.readable ?? Boolean((destination as { isTTY?: boolean }).isTTY);
  return pino({ level: options.level ?? process.env.CORRAL_LOG_LEVEL ?? "info", base: undefined }, readable ? readableLines(destination) : destination);
}
