// `-L` specs of `corral vm forward` (Slicer's CLI forms), and what they mean: where to listen on this host
// and which address to reach inside the VM. Listening is on 127.0.0.1 unless the spec names an address.
//   3000                          127.0.0.1:3000 -> 127.0.0.1:3000 (same port)
//   8080:80                       127.0.0.1:8080 -> 127.0.0.1:80
//   127.0.0.1:9000                127.0.0.1:9000 -> 127.0.0.1:9000 (same address both sides)
//   8080:127.0.0.1:80             127.0.0.1:8080 -> 127.0.0.1:80
//   0.0.0.0:8080:127.0.0.1:80     0.0.0.0:8080   -> 127.0.0.1:80
//   9000:unix:/run/app.sock       127.0.0.1:9000 -> unix:/run/app.sock (also 9000:/run/app.sock)
//   /tmp/app.sock:/run/app.sock   a unix socket here -> unix:/run/app.sock
// Port 0 listens on a free port.
import { parseForwardTarget, type ForwardTarget } from "../protocol/forward.ts";

export type ListenAddress = { kind: "tcp"; host: string; port: number } | { kind: "unix"; path: string };

export interface ForwardMapping {
  spec: string;
  listen: ListenAddress;
  target: ForwardTarget;
}

export const DEFAULT_LISTEN_HOST = "127.0.0.1";
const GUEST_LOOPBACK = "127.0.0.1";

const FORMS = "PORT, LOCAL_PORT:PORT, LOCAL_PORT:HOST:PORT, LOCAL_HOST:LOCAL_PORT:HOST:PORT, or a unix:/path target";

function fail(spec: string, problem: string): never {
  throw new Error(`Invalid forward ${JSON.stringify(spec)}: ${problem} (use ${FORMS})`);
}

function port(spec: string, text: string, { allowZero }: { allowZero: boolean }): number {
  if (!/^\d{1,5}$/.test(text) || Number(text) > 65535 || (!allowZero && Number(text) === 0)) {
    fail(spec, `${JSON.stringify(text)} is not a port${allowZero ? " (0 to 65535)" : " (1 to 65535)"}`);
  }
  return Number(text);
}

const isPort = (text: string): boolean => /^\d{1,5}$/.test(text);
const isPathLike = (text: string): boolean => text.startsWith("/") || text.startsWith("./") || text.startsWith("../");

/** Splits on ":" outside [brackets] (IPv6 addresses). */
function splitColons(text: string): string[] {
  const parts: string[] = [];
  let current = "";
  let depth = 0;
  for (const char of text) {
    if (char === "[") depth++;
    if (char === "]") depth--;
    if (char === ":" && depth === 0) {
      parts.push(current);
      current = "";
    } else {
      current += char;
    }
  }
  parts.push(current);
  return parts;
}

const unbracket = (host: string): string => (host.startsWith("[") && host.endsWith("]") ? host.slice(1, -1) : host);

function target(spec: string, text: string): ForwardTarget {
  try {
    return parseForwardTarget(text);
  } catch (err) {
    return fail(spec, (err as Error).message);
  }
}

function localSide(spec: string, text: string): ListenAddress {
  if (isPathLike(text)) return { kind: "unix", path: text };
  const parts = splitColons(text);
  if (parts.length === 1) return { kind: "tcp", host: DEFAULT_LISTEN_HOST, port: port(spec, parts[0] as string, { allowZero: true }) };
  if (parts.length === 2 && parts[0]) return { kind: "tcp", host: unbracket(parts[0]), port: port(spec, parts[1] as string, { allowZero: true }) };
  return fail(spec, `${JSON.stringify(text)} is not a local address`);
}

export function parseForwardSpec(input: string): ForwardMapping {
  const spec = input.trim();
  if (spec === "") fail(input, "it is empty");

  // A unix socket in the guest: "unix:/path" or a bare absolute path after the local side.
  const unixAt = spec.indexOf("unix:");
  const pathAt = spec.indexOf(":/");
  if (unixAt >= 0 || pathAt >= 0) {
    const cut = unixAt >= 0 ? unixAt : pathAt + 1;
    const remote = spec.slice(cut);
    const local = spec.slice(0, cut).replace(/:$/, "");
    if (local === "") fail(spec, "name the local port or socket before the guest's socket");
    return { spec, listen: localSide(spec, local), target: target(spec, remote.startsWith("unix:") ? remote : `unix:${remote}`) };
  }

  const parts = splitColons(spec);
  if (parts.some((p) => p === "")) fail(spec, "it has an empty part");
  const [a, b, c, d] = parts as [string, string?, string?, string?];
  switch (parts.length) {
    case 1:
      return { spec, listen: { kind: "tcp", host: DEFAULT_LISTEN_HOST, port: port(spec, a, { allowZero: false }) }, target: target(spec, `${GUEST_LOOPBACK}:${a}`) };
    case 2:
      if (isPort(a)) {
        return { spec, listen: { kind: "tcp", host: DEFAULT_LISTEN_HOST, port: port(spec, a, { allowZero: true }) }, target: target(spec, `${GUEST_LOOPBACK}:${b}`) };
      }
      // HOST:PORT: the same address on both sides, as Slicer's CLI reads it.
      return { spec, listen: { kind: "tcp", host: unbracket(a), port: port(spec, b as string, { allowZero: false }) }, target: target(spec, spec) };
    case 3:
      if (!isPort(a)) fail(spec, `the local port ${JSON.stringify(a)} is not a number`);
      return { spec, listen: { kind: "tcp", host: DEFAULT_LISTEN_HOST, port: port(spec, a, { allowZero: true }) }, target: target(spec, `${b}:${c}`) };
    case 4:
      return { spec, listen: { kind: "tcp", host: unbracket(a), port: port(spec, b as string, { allowZero: true }) }, target: target(spec, `${c}:${d}`) };
    default:
      return fail(spec, "it has too many parts");
  }
}

export function formatListenAddress(listen: ListenAddress): string {
  if (listen.kind === "unix") return listen.path;
  return listen.host.includes(":") ? `[${listen.host}]:${listen.port}` : `${listen.host}:${listen.port}`;
}
