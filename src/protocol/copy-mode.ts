// How `/vm/HOST/cp` turns Slicer's `mode` (or, without one, the Content-Type or Accept header) into what
// is copied. Three generations of clients meet here: the TS SDK's `binary`/`tar`, the Go SDK's cp-v1 modes,
// and Go's ReadFile/WriteFile that send no mode at all.
import { CorralError } from "./errors.ts";
import type { DownloadSpec, UploadSpec } from "./files.ts";

/**
 * Response and request headers of Slicer's copy protocol (lower case, as HTTP/2 and Node spell them). Kept
 * here beside the modes, not with the schemas in files.ts, so that the SDK reads them without TypeBox.
 */
export const SLICER_COPY_HEADERS = {
  /** Octal permission bits of a downloaded file, e.g. `0644`. */
  fileMode: "x-slicer-file-mode",
  /** `file` or `directory`: what a cp-v1 download carries. */
  sourceType: "x-slicer-source-type",
  /** The source's base name, base64url without padding (any bytes survive a header this way). */
  sourceNameBase64: "x-slicer-source-name-base64",
  /** The base name in clear, read by an older Go SDK; sent only when it is printable ASCII. */
  sourceName: "x-slicer-source-name",
  /** Total size of the regular files in an uploaded tar (Go SDK; informational). */
  unpackedSize: "x-slicer-unpacked-size",
} as const;

export const COPY_MODES = ["binary", "tar", "cp-v1-binary", "cp-v1-tar", "cp-v1-recursive"] as const;
export type CopyMode = (typeof COPY_MODES)[number];

const TAR_TYPE = "application/x-tar";
const BINARY_TYPE = "application/octet-stream";

/** Media types of a Content-Type or Accept header, lower case, without parameters. */
export function mediaTypes(header: string | undefined): string[] {
  if (!header) return [];
  return header
    .split(",")
    .map((part) => (part.split(";")[0] ?? "").trim().toLowerCase())
    .filter(Boolean);
}

/**
 * Slicer's SDKs retry with an older mode when the answer contains exactly "invalid mode: MODE", so the
 * text must read that way.
 */
function invalidMode(mode: string, allowed: readonly string[]): CorralError {
  return new CorralError("invalid_request", `invalid mode: ${mode} (use ${allowed.map((m) => `"${m}"`).join(", ")})`);
}

const UPLOAD_MODES = ["binary", "tar", "cp-v1-binary", "cp-v1-tar"] as const;

/** The shape of an upload: the mode when given, else `Content-Type` (octet-stream: a file; otherwise tar). */
export function uploadShape(mode: string | undefined, contentType: string | undefined): Pick<UploadSpec, "format" | "placement"> {
  switch (mode) {
    case "binary":
      return { format: "file", placement: "exact" };
    case "tar":
      return { format: "tar", placement: "exact" };
    case "cp-v1-binary":
      return { format: "file", placement: "cp-v1" };
    case "cp-v1-tar":
      return { format: "tar", placement: "cp-v1" };
    case undefined:
    case "":
      return { format: mediaTypes(contentType).includes(BINARY_TYPE) ? "file" : "tar", placement: "exact" };
    default:
      throw invalidMode(mode, UPLOAD_MODES);
  }
}

/**
 * The shape of a download: the mode when given, else `Accept` (octet-stream: the file's bytes; x-tar: a
 * tar; both: whichever fits the source; neither: a tar, Slicer's default).
 */
export function downloadShape(mode: string | undefined, accept: string | undefined): Pick<DownloadSpec, "format" | "layout" | "cpV1"> {
  switch (mode) {
    case "binary":
      return { format: "file", layout: "named", cpV1: false };
    case "tar":
      return { format: "tar", layout: "named", cpV1: false };
    case "cp-v1-binary":
      return { format: "file", layout: "contents", cpV1: true };
    case "cp-v1-tar":
      return { format: "tar", layout: "contents", cpV1: true };
    case "cp-v1-recursive":
      return { format: "auto", layout: "contents", cpV1: true };
    case undefined:
    case "": {
      const types = mediaTypes(accept);
      const binary = types.includes(BINARY_TYPE);
      const tar = types.includes(TAR_TYPE);
      return { format: binary && tar ? "auto" : binary ? "file" : "tar", layout: "named", cpV1: false };
    }
    default:
      throw invalidMode(mode, COPY_MODES);
  }
}

/**
 * A cp-v1 source name must be one path element: it becomes a file or directory name in the guest.
 * (Slicer's Go SDK applies the same rule to the names it receives.)
 */
export function isSourceName(name: string): boolean {
  return name !== "" && name !== "." && name !== ".." && !name.includes("/") && !name.includes("\\") && !name.includes("\0");
}

/** Base64url without padding, as X-Slicer-Source-Name-Base64 carries names. */
export function encodeSourceName(name: string): string {
  return btoa(String.fromCharCode(...new TextEncoder().encode(name)))
    .replaceAll("+", "-")
    .replaceAll("/", "_")
    .replace(/=+$/, "");
}

export function decodeSourceName(encoded: string): string {
  const base64 = encoded.replaceAll("-", "+").replaceAll("_", "/");
  const binary = atob(base64 + "=".repeat((4 - (base64.length % 4)) % 4));
  return new TextDecoder().decode(Uint8Array.from(binary, (c) => c.charCodeAt(0)));
}
