// Secrets: named bytes the daemon keeps (0600 files on the host) and delivers into every VM under
// /run/corral/secrets/NAME. Names become file names on the host and in the guest, so they are strict.
// Shared by src/daemon, src/guest and src/sdk; no node: imports and no TypeBox (see secrets-api.ts).
import { CorralError, quote } from "./errors.ts";

/** Letters, digits, ".", "_", "-"; starting with a letter or digit (no hidden files, nothing option-like). */
export const SECRET_NAME_PATTERN = "^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$";
const secretNameRe = new RegExp(SECRET_NAME_PATTERN);

export function isSecretName(name: string): boolean {
  return secretNameRe.test(name) && !name.includes("..");
}

export function assertSecretName(name: string): string {
  if (!isSecretName(name)) {
    throw new CorralError("invalid_name", `Invalid secret name ${quote(name)}: use letters, digits, ".", "_" and "-" (1-128 characters, starting with a letter or digit, no "..")`);
  }
  return name;
}

/** Largest secret, decoded. */
export const MAX_SECRET_BYTES = 4 * 1024 * 1024;
/** How many secrets, and how many bytes together: every VM holds all of them in RAM (/run is a tmpfs). */
export const MAX_SECRETS = 256;
export const MAX_TOTAL_SECRET_BYTES = 64 * 1024 * 1024;
export const DEFAULT_SECRET_PERMISSIONS = "0600";

/** "600", "0600" -> "0600"; anything else (e.g. "999", "abc", "4755") is a 400. */
export function parsePermissions(text: string): string {
  const match = /^0?([0-7]{3})$/.exec(text);
  if (!match) throw new CorralError("invalid_request", `Invalid permissions ${quote(text)}: use three octal digits such as "0600" or "0644"`);
  return `0${match[1]}`;
}

/**
 * Checks that `text` is standard base64 (padding optional, line breaks allowed: `base64` wraps its output)
 * and at most MAX_SECRET_BYTES once decoded; returns it without line breaks, ready for a decoder. Node's
 * decoder would silently skip bad characters, hence the check. Messages never quote the data.
 */
export function checkSecretData(text: string, field = "data"): string {
  const compact = text.replace(/\r?\n/g, "");
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(compact) || compact.length % 4 === 1 || (compact.includes("=") && compact.length % 4 !== 0)) {
    throw new CorralError("invalid_request", `Invalid body field "${field}": it must be base64 (standard alphabet)`);
  }
  const size = Math.floor((compact.replace(/=+$/, "").length * 3) / 4);
  if (size > MAX_SECRET_BYTES) {
    throw new CorralError("payload_too_large", `Cannot store ${size} bytes in one secret: the limit is ${MAX_SECRET_BYTES} bytes`);
  }
  return compact;
}

/** What GET /secrets lists: never the data. `mod_time` is the older document's name for `modified_at`. */
export interface SecretInfo {
  name: string;
  size: number;
  permissions: string;
  uid: number;
  gid: number;
  modified_at: string;
  mod_time: string;
}

// ---- host <-> guest ----

export const SECRET_AGENT_PATHS = {
  secrets: "/v1/secrets",
  secret: (name: string) => `/v1/secrets/${name}`,
} as const;

/** Header with the JSON-encoded GuestSecretMeta of a PUT; the body is the secret's bytes. */
export const SECRET_META_HEADER = "corral-secret-meta";

export interface GuestSecretMeta {
  permissions: string;
  uid: number;
  gid: number;
}

/** What the guest holds, so the host sends only what differs. */
export interface GuestSecretEntry extends GuestSecretMeta {
  name: string;
  size: number;
  sha256: string;
}

/** Where secrets appear in every guest (a tmpfs: never on the VM's disk). */
export const GUEST_SECRETS_DIR = "/run/corral/secrets";
