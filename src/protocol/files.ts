// File copy and filesystem: the daemon's Slicer-shaped requests (`/vm/HOST/cp`, `/vm/HOST/fs/*`) and what the
// daemon asks of the guest agent for them. Shared by the daemon, the agent and the SDK; no node: imports.
import { Type, type Static } from "@sinclair/typebox";
import { StringEnum } from "./slicer.ts";

// ---- Slicer's wire ----

export const OCTAL_MODE_PATTERN = "^(0o?)?[0-7]{1,4}$";
const UidSchema = Type.Integer({ minimum: 0, maximum: 4294967294 });
const StringOrList = Type.Union([Type.String(), Type.Array(Type.String())]);

/** Query of `GET|POST /vm/HOST/cp`. `mode` is checked by hand: Slicer's SDKs look for "invalid mode: X". */
export const CopyQuerySchema = Type.Object({
  path: Type.String({ minLength: 1 }),
  mode: Type.Optional(Type.String()),
  uid: Type.Optional(UidSchema),
  gid: Type.Optional(UidSchema),
  permissions: Type.Optional(Type.String({ pattern: OCTAL_MODE_PATTERN, description: 'an octal mode such as "0644"' })),
  copy_semantics: Type.Optional(StringEnum(["cp-v1"])),
  source_name: Type.Optional(Type.String()),
  source_type: Type.Optional(StringEnum(["file", "directory"])),
  copy_contents: Type.Optional(Type.Boolean()),
  exclude: Type.Optional(StringOrList),
});
export type CopyQuery = Static<typeof CopyQuerySchema>;

export const FsPathQuerySchema = Type.Object({ path: Type.String({ minLength: 1 }) });
export type FsPathQuery = Static<typeof FsPathQuerySchema>;

export const FsRemoveQuerySchema = Type.Object({ path: Type.String({ minLength: 1 }), recursive: Type.Optional(Type.Boolean()) });
export type FsRemoveQuery = Static<typeof FsRemoveQuerySchema>;

export const FsMkdirBodySchema = Type.Object(
  {
    path: Type.String({ minLength: 1 }),
    recursive: Type.Optional(Type.Boolean()),
    mode: Type.Optional(Type.String({ pattern: OCTAL_MODE_PATTERN, description: 'an octal mode such as "0755"' })),
  },
  { additionalProperties: false },
);
export type FsMkdirBody = Static<typeof FsMkdirBodySchema>;

export const WATCH_EVENT_TYPES = ["create", "write", "remove", "rename", "chmod"] as const;
export type WatchEventType = (typeof WATCH_EVENT_TYPES)[number];

export const FsWatchQuerySchema = Type.Object({
  paths: Type.Optional(StringOrList),
  patterns: Type.Optional(StringOrList),
  events: Type.Optional(Type.Union([StringEnum(WATCH_EVENT_TYPES), Type.Array(StringEnum(WATCH_EVENT_TYPES))])),
  uid: Type.Optional(UidSchema),
  recursive: Type.Optional(Type.Boolean()),
  one_shot: Type.Optional(Type.Boolean()),
  debounce: Type.Optional(Type.String({ description: 'a Go duration such as "100ms"' })),
  timeout: Type.Optional(Type.String({ description: 'a Go duration such as "5m"' })),
  max_events: Type.Optional(Type.Integer({ minimum: 0 })),
});
export type FsWatchQuery = Static<typeof FsWatchQuerySchema>;

/**
 * One entry of `readdir`, or the answer of `stat`. `mtime` is RFC 3339: both official SDKs decode it as a
 * time (Go `time.Time`, TS `string`), although Slicer's document shows Unix seconds.
 */
export const FsInfoSchema = Type.Object({
  name: Type.String(),
  type: StringEnum(["file", "directory", "symlink"]),
  size: Type.Integer(),
  mtime: Type.String(),
  mode: Type.String({ description: "octal permission bits, e.g. 0644" }),
});
export type FsInfo = Static<typeof FsInfoSchema>;

/** One Server-Sent Event of `/fs/watch` (`isDir` is camelCase on Slicer's wire). */
export interface WatchEvent {
  id: number;
  type: WatchEventType | "error";
  path: string;
  timestamp: string;
  size: number;
  isDir: boolean;
  message?: string;
}

// ---- between the daemon and the agent ----

export const AGENT_FILE_PATHS = {
  upload: "/v1/files/upload",
  download: "/v1/files/download",
  readdir: "/v1/fs/readdir",
  stat: "/v1/fs/stat",
  mkdir: "/v1/fs/mkdir",
  remove: "/v1/fs/remove",
  watch: "/v1/fs/watch",
} as const;

/** Headers carrying a JSON-encoded UploadSpec, DownloadSpec or WatchSpec next to a streamed body. */
export const COPY_SPEC_HEADER = "corral-copy-spec";
export const WATCH_SPEC_HEADER = "corral-watch-spec";

/**
 * Where an upload lands. `exact`: at `path` itself (Slicer's legacy modes). `cp-v1`: like cp(1) (into an
 * existing directory under `sourceName`, or into `path` itself with `copyContents`).
 */
export type Placement = "exact" | "cp-v1";

export interface UploadSpec {
  path: string;
  /** `file`: the body is the file's bytes; `tar`: an uncompressed tar unpacked under the destination. */
  format: "file" | "tar";
  placement: Placement;
  sourceName?: string;
  copyContents?: boolean;
  uid?: number;
  gid?: number;
  /** Permission bits for the written file(s); directories of a tar keep theirs. */
  permissions?: number;
  /** Glob patterns (Slicer's syntax) of tar entries to leave out. */
  exclude: string[];
}

/**
 * What a download sends. `file`: the bytes (400 for a directory). `tar`: a tar of the directory (or of a
 * single file). `auto`: bytes for a file, tar for a directory. `layout` names tar entries: `named` puts the
 * directory's own name on top (`dir/`, `dir/a`), `contents` makes them relative to it (`a`).
 * `cpV1` adds the X-Slicer-Source-* headers and refuses a tar of a file.
 */
export interface DownloadSpec {
  path: string;
  format: "file" | "tar" | "auto";
  layout: "named" | "contents";
  cpV1: boolean;
  exclude: string[];
}

export interface WatchSpec {
  paths: string[];
  recursive: boolean;
  /** Event types to send; empty means all. */
  events: WatchEventType[];
  patterns: string[];
  /** Events for one path within this window are merged into one. 0: none. */
  debounceMs: number;
  /** The stream ends after this long. 0: when the client goes. */
  timeoutMs: number;
  /** The stream ends after this many events. 0: no limit. */
  maxEvents: number;
  /** Ids continue after this one (SSE Last-Event-ID). */
  lastEventId: number;
  /** Whose home `~` means. */
  uid?: number;
}

/** What the agent answers once an upload is written. */
export interface UploadResult {
  path: string;
  files: number;
  bytes: number;
}

/** "0644" from a mode number (permission bits and setuid/setgid/sticky). */
export function formatOctalMode(mode: number): string {
  return (mode & 0o7777).toString(8).padStart(4, "0");
}

/** 0o644 from "0644", "644" or "0o644"; undefined for anything else. */
export function parseOctalMode(text: string): number | undefined {
  if (!new RegExp(OCTAL_MODE_PATTERN).test(text)) return undefined;
  return Number.parseInt(text.replace(/^0o/, ""), 8);
}
