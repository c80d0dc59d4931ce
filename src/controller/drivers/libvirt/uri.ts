// libvirt connection URIs of the qemu driver, read before any is handed to `virsh -c`: which transport, which
// machine, and which of libvirt's query parameters are let through. Pure: a string in, a value or a problem out.
//
// Why a short list of parameters: libvirt's client acts on several of them on the controller's machine.
// `command=` names the program run in place of `ssh`, `netcat=`/`proxy=` choose what runs on the far side,
// `socket=` points a unix connection at any socket of this machine (as root), `name=` makes the far side open
// another connection than the one registered, and `known_hosts=` of the libssh transports is a file libvirt
// *writes* (known_hosts_verify=auto appends to it). Whoever can register a host must not be able to run, write
// or reach anything on the controller's machine through the URI, so anything not listed below is refused.
import { quote } from "../../../protocol/errors.ts";

/** How libvirt's client reaches the daemon: its own unix socket (`local`, `unix`) or a remote machine. */
export type LibvirtTransport = "local" | "unix" | "ssh" | "tcp" | "tls";

export interface LibvirtUri {
  /** The URI as registered. */
  uri: string;
  driver: "qemu";
  transport: LibvirtTransport;
  /** The ssh user (ssh only); null: the controller's user, as ssh picks it. */
  user: string | null;
  /** The remote machine; null for the local transports. */
  host: string | null;
  port: number | null;
  /** `/system` (the system daemon, domains of root) or `/session` (the connecting user's own daemon). */
  path: "/system" | "/session";
  params: Readonly<Record<string, string>>;
  /**
   * What `virsh -c` is given: the URI with `no_tty=1` for ssh, so that ssh runs with BatchMode and a host that
   * would ask for a password fails at once instead of waiting on a terminal that the controller does not have.
   */
  connectUri: string;
}

const TRANSPORTS: Record<string, LibvirtTransport> = { "": "local", unix: "unix", ssh: "ssh", tcp: "tcp", tls: "tls" };
const REMOTE: ReadonlySet<LibvirtTransport> = new Set(["ssh", "tcp", "tls"]);

/** A path on the controller's machine, absolute, without control characters or `..`. */
// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what this refuses
const FILE_PATH = /^\/[^\0-\x1f\x7f]{0,4095}$/;
const FLAG = /^[01]$/;

interface Allowed {
  transports: readonly LibvirtTransport[];
  value: RegExp;
  says: string;
  /** Why it is safe, for the reader: the value only ever reaches one argument of ssh or TLS's file lookup. */
  why: string;
}

/** The parameters let through, each with the transports that read it and the values it takes. */
export const ALLOWED_PARAMS: Readonly<Record<string, Allowed>> = {
  keyfile: {
    transports: ["ssh"],
    value: FILE_PATH,
    says: "an absolute path",
    why: "becomes ssh's `-i FILE`, one argument after which `--` ends the options: a key is read, nothing run",
  },
  no_verify: { transports: ["ssh", "tls"], value: FLAG, says: "0 or 1", why: "ssh's StrictHostKeyChecking=no, or TLS without checking the server's certificate" },
  no_tty: { transports: ["ssh"], value: FLAG, says: "0 or 1", why: "ssh's BatchMode (always on here: see connectUri)" },
  mode: { transports: ["ssh"], value: /^(auto|legacy|direct)$/, says: "auto, legacy or direct", why: "which daemon socket the far side's helper connects to, from a fixed set" },
  pkipath: { transports: ["tls"], value: FILE_PATH, says: "an absolute path", why: "the directory TLS reads its certificates and key from" },
};

/** Parameters refused with a reason of their own (every other one is refused as unknown). */
const REFUSED_BECAUSE: Readonly<Record<string, string>> = {
  command: "it names the program libvirt runs on the controller's machine in place of ssh",
  netcat: "it names the program run on the far side in place of libvirt's own helper",
  proxy: "it chooses the program run on the far side in place of libvirt's own helper",
  socket: "it names a socket path: on the controller's machine for a unix connection, and in the command run on the far side for ssh",
  name: "it makes the far side open another connection than the one registered",
  known_hosts: "only libssh transports read it, and libvirt writes to that file; Corral's ssh transport uses ssh's own known_hosts",
  known_hosts_verify: "only libssh transports read it (Corral accepts qemu+ssh, which uses ssh's own checks: see no_verify)",
  sshauth: "only libssh transports read it; qemu+ssh authenticates with a key (keyfile) or ssh's agent",
};

const USER = /^[a-z_][a-z0-9_.-]{0,31}$/i;
const HOSTNAME = /^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/i;
const IPV6 = /^\[[0-9a-f:.]{2,45}\]$/i;
const SHAPE = /^([a-z][a-z0-9]*)(?:\+([a-z0-9]+))?:\/\/(?:([^@/?#]*)@)?(\[[^\]/?#]*\]|[^/?#:]*)(?::([^/?#]*))?(\/[^?#]*)?(?:\?([^#]*))?(#.*)?$/i;

export const LIBVIRT_URI_EXAMPLES = "qemu:///system, qemu+ssh://root@HOST/system?keyfile=/root/.ssh/id_ed25519";

/** `uri` read as a libvirt URI of the qemu driver, or the problem with it in a sentence. */
export function parseLibvirtUri(uri: string): LibvirtUri | { problem: string } {
  const problem = (why: string) => ({ problem: `Cannot use libvirt URI ${quote(uri)}: ${why}` });
  if (uri.length > 1024) return { problem: `Cannot use a libvirt URI of ${uri.length} characters: at most 1024` };
  if (/[\0-\x20\x7f]/.test(uri)) return problem("it contains spaces or control characters");
  const m = SHAPE.exec(uri);
  if (!m) return problem(`it is not of the form driver[+transport]://[user@][host][:port]/path[?params] (e.g. ${LIBVIRT_URI_EXAMPLES})`);
  const [, driver = "", transportName = "", user, rawHost = "", rawPort, rawPath = "", query, fragment] = m;
  if (driver.toLowerCase() !== "qemu") return problem(`Corral drives libvirt's qemu driver only, not ${quote(driver)}`);
  let transport = TRANSPORTS[transportName.toLowerCase()];
  if (transport === undefined) return problem(`libvirt's transport ${quote(transportName)} is not one Corral accepts (unix, ssh, tcp, tls)`);
  if (fragment !== undefined) return problem("a libvirt URI has no #fragment");
  // libvirt: a host with no transport means TLS to that host.
  if (transport === "local" && rawHost !== "") transport = "tls";
  const remote = REMOTE.has(transport);
  if (!remote && (rawHost !== "" || user !== undefined || rawPort !== undefined))
    return problem(`a ${transport === "unix" ? "qemu+unix" : "qemu"} URI names no user, host or port: it reaches this machine's own libvirt daemon`);
  if (remote && rawHost === "") return problem(`qemu+${transport} needs the remote machine's name or address`);
  if (user !== undefined && transport !== "ssh") return problem(`only qemu+ssh takes a user, not qemu+${transport}`);
  if (user !== undefined && !USER.test(user)) return problem(`the user ${quote(user)} is not a user name (letters, digits, '_', '.', '-', not first '-')`);
  const host = rawHost === "" ? null : rawHost;
  if (host !== null && !HOSTNAME.test(host) && !IPV6.test(host)) return problem(`the host ${quote(host)} is not a host name or an IP address`);
  let port: number | null = null;
  if (rawPort !== undefined) {
    port = /^\d{1,5}$/.test(rawPort) ? Number(rawPort) : NaN;
    if (!(port >= 1 && port <= 65535)) return problem(`the port ${quote(rawPort)} is not a port number (1-65535)`);
  }
  const path = rawPath.replace(/\/+$/, "") || "";
  if (path !== "/system" && path !== "/session") return problem(`its path must be /system or /session (the qemu driver's daemons), not ${quote(rawPath || "(none)")}`);

  const params: Record<string, string> = {};
  for (const part of query === undefined || query === "" ? [] : query.split("&")) {
    const eq = part.indexOf("=");
    let name: string;
    let value: string;
    try {
      name = decodeURIComponent(eq < 0 ? part : part.slice(0, eq));
      value = eq < 0 ? "" : decodeURIComponent(part.slice(eq + 1).replace(/\+/g, " "));
    } catch {
      return problem(`its parameter ${quote(part)} is not well %-encoded`);
    }
    const allowed = ALLOWED_PARAMS[name];
    if (allowed === undefined) {
      const because = REFUSED_BECAUSE[name] ?? `it is not one Corral lets through to libvirt (${Object.keys(ALLOWED_PARAMS).join(", ")})`;
      return problem(`its parameter ${quote(name)} is refused: ${because}`);
    }
    if (Object.hasOwn(params, name)) return problem(`its parameter ${quote(name)} is given twice`);
    if (!allowed.transports.includes(transport))
      return problem(
        `its parameter ${quote(name)} is read by ${allowed.transports.map((t) => `qemu+${t}`).join(" and ")} only, not by ${transport === "local" ? "qemu" : `qemu+${transport}`}`,
      );
    if (!allowed.value.test(value) || value.includes("/../") || value.endsWith("/..")) return problem(`its parameter ${quote(name)} must be ${allowed.says}, not ${quote(value)}`);
    params[name] = value;
  }
  const connectUri = transport === "ssh" && params.no_tty !== "1" ? withParam(uri, "no_tty", "1") : uri;
  return { uri, driver: "qemu", transport, user: user ?? null, host, port, path, params, connectUri };
}

/** `uri` with `name=value` set (replacing a `no_tty=0`). */
function withParam(uri: string, name: string, value: string): string {
  const [base = "", query] = uri.split("?", 2);
  const kept = (query ?? "").split("&").filter((part) => part !== "" && part.split("=", 1)[0] !== name);
  return `${base}?${[...kept, `${name}=${value}`].join("&")}`;
}

/** Does `uri` reach a machine other than the controller's (ssh, tcp, tls)? */
export function isRemoteTransport(transport: LibvirtTransport): boolean {
  return REMOTE.has(transport);
}
