// Port forwarding (GET /vm/HOST/forward): which address inside the guest a forwarded connection goes to.
// Slicer's clients name it in the X-Inlets-Upstream header as HOST:PORT or unix:/absolute/path. Shared by
// the daemon (validation before the upgrade), the agent (dialing) and the SDK; no node: imports here.

export const UPSTREAM_HEADER = "x-inlets-upstream";

export type ForwardTarget = { kind: "tcp"; host: string; port: number } | { kind: "unix"; path: string };

/** The agent route that dials the target; request body = bytes to it, response body = bytes from it. */
export const FORWARD_AGENT_PATH = "/v1/forward";
/** Header carrying the JSON-encoded ForwardTarget. */
export const FORWARD_TARGET_HEADER = "corral-forward-target";
/** The agent's answer when the target cannot be reached (status 502) or did not answer in time (504). */
export const UPSTREAM_UNREACHABLE = "upstream_unreachable";

/** Linux keeps 108 bytes for a socket path, the last one a NUL. */
const MAX_UNIX_PATH_BYTES = 107;
const HOSTNAME = /^(?=.{1,253}$)[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,62}))*\.?$/;
const IPV6 = /^[0-9A-Fa-f:.]+(%[A-Za-z0-9_.-]+)?$/;

export const TARGET_FORMS = "HOST:PORT (e.g. 127.0.0.1:8080) or unix:/absolute/path";

/** Parses HOST:PORT, [IPV6]:PORT or unix:/path; throws an Error whose message says what is wrong. */
export function parseForwardTarget(value: string): ForwardTarget {
  const text = value.trim();
  if (text.startsWith("unix:")) {
    const path = text.slice("unix:".length);
    if (!path.startsWith("/")) throw new Error(`${JSON.stringify(value)} is not an absolute socket path: use unix:/path/to/socket`);
    if (path.includes("\0")) throw new Error(`${JSON.stringify(value)} contains a NUL byte`);
    if (new TextEncoder().encode(path).byteLength > MAX_UNIX_PATH_BYTES) {
      throw new Error(`The socket path in ${JSON.stringify(value)} is longer than ${MAX_UNIX_PATH_BYTES} bytes`);
    }
    return { kind: "unix", path };
  }
  const colon = text.lastIndexOf(":");
  if (colon <= 0) throw new Error(`${JSON.stringify(value)} is not an address: use ${TARGET_FORMS}`);
  let host = text.slice(0, colon);
  const portText = text.slice(colon + 1);
  if (host.startsWith("[") && host.endsWith("]")) {
    host = host.slice(1, -1);
    if (!IPV6.test(host) || !host.includes(":")) throw new Error(`${JSON.stringify(value)} has an invalid IPv6 address`);
  } else if (!HOSTNAME.test(host)) {
    throw new Error(`${JSON.stringify(value)} has an invalid host ${JSON.stringify(host)}: use ${TARGET_FORMS}`);
  }
  if (!/^\d{1,5}$/.test(portText) || Number(portText) < 1 || Number(portText) > 65535) {
    throw new Error(`${JSON.stringify(value)} has an invalid port ${JSON.stringify(portText)}: it must be 1 to 65535`);
  }
  return { kind: "tcp", host, port: Number(portText) };
}

/** The X-Inlets-Upstream text of a target. */
export function formatForwardTarget(target: ForwardTarget): string {
  if (target.kind === "unix") return `unix:${target.path}`;
  return target.host.includes(":") ? `[${target.host}]:${target.port}` : `${target.host}:${target.port}`;
}
