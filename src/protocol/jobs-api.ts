// The daemon API's schemas for background exec: each is the request validator and the OpenAPI entry; the
// wire types themselves are the interfaces in jobs.ts (the guest agent shares those without TypeBox), and
// the compile-time checks at the end keep the two descriptions equal.
import { Type, type Static } from "@sinclair/typebox";
import {
  EXEC_ID_PATTERN,
  MAX_KILL_GRACE_MS,
  MAX_RING_BYTES,
  DEFAULT_RING_BYTES,
  type BackgroundInfo,
  type BackgroundLaunch,
  type KillResult,
  type Reaped,
  type WaitExit,
} from "./jobs.ts";
import { ExecQuerySchema, HostnameParam } from "./slicer.ts";

export const ExecIdParam = Type.String({ pattern: EXEC_ID_PATTERN, description: 'an exec id such as "ex_0123456789abcdef"' });
export const ExecJobParams = Type.Object({ hostname: HostnameParam, exec_id: ExecIdParam });

/** POST /vm/HOST/exec takes these besides the exec parameters. */
export const BackgroundExecQuerySchema = Type.Composite([
  ExecQuerySchema,
  Type.Object({
    background: Type.Optional(Type.Boolean()),
    ring_bytes: Type.Optional(Type.Integer({ minimum: 0, maximum: MAX_RING_BYTES, description: `bytes of output kept (0 for the default, ${DEFAULT_RING_BYTES})` })),
  }),
]);
export type BackgroundExecQuery = Static<typeof BackgroundExecQuerySchema>;

export const BackgroundLaunchSchema = Type.Object({
  exec_id: Type.String(),
  pid: Type.Integer(),
  started_at: Type.String(),
  ring_bytes: Type.Integer(),
});

const JobStateSchema = Type.Union([Type.Literal("running"), Type.Literal("exited")]);

export const BackgroundInfoSchema = Type.Object({
  exec_id: Type.String(),
  pid: Type.Integer(),
  command: Type.String(),
  args: Type.Array(Type.String()),
  cwd: Type.Optional(Type.String()),
  uid: Type.Optional(Type.Integer()),
  gid: Type.Optional(Type.Integer()),
  shell: Type.Optional(Type.String()),
  state: JobStateSchema,
  running: Type.Boolean(),
  started_at: Type.String(),
  exit_code: Type.Optional(Type.Integer()),
  signal: Type.Optional(Type.String()),
  ended_at: Type.Optional(Type.String()),
  encoding: Type.Optional(Type.Literal("base64")),
  bytes_written: Type.Integer(),
  bytes_dropped: Type.Integer(),
  frames_dropped: Type.Integer(),
  next_id: Type.Integer(),
  ring_bytes: Type.Integer(),
});

export const JobLogsQuerySchema = Type.Object({
  follow: Type.Optional(Type.Boolean()),
  from_id: Type.Optional(Type.Integer({ minimum: 0, description: "send the frames after this id" })),
});

export const KillBodySchema = Type.Object(
  {
    signal: Type.Optional(Type.Union([Type.String({ maxLength: 16 }), Type.Integer()], { description: 'a signal name ("TERM") or number' })),
    grace_ms: Type.Optional(Type.Integer({ minimum: 0, maximum: MAX_KILL_GRACE_MS })),
  },
  { additionalProperties: false },
);
export type KillBody = Static<typeof KillBodySchema>;

export const KillResultSchema = Type.Object({
  exec_id: Type.String(),
  pid: Type.Integer(),
  running: Type.Boolean(),
  signal_sent: Type.String(),
});

export const WaitExitQuerySchema = Type.Object({
  timeout: Type.Optional(Type.String({ description: "whole seconds" })),
});

export const WaitExitSchema = Type.Object({
  exec_id: Type.String(),
  running: Type.Boolean(),
  state: JobStateSchema,
  exit_code: Type.Optional(Type.Integer()),
  signal: Type.Optional(Type.String()),
  ended_at: Type.Optional(Type.String()),
  timed_out: Type.Boolean(),
});

export const ReapedSchema = Type.Object({ exec_id: Type.String(), reaped: Type.Boolean() });

// Compile-time: each schema describes exactly its wire interface (a mismatch fails the type check).
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const schemasMatch: [
  Same<Static<typeof BackgroundLaunchSchema>, BackgroundLaunch>,
  Same<Static<typeof BackgroundInfoSchema>, BackgroundInfo>,
  Same<Static<typeof KillResultSchema>, KillResult>,
  Same<Static<typeof WaitExitSchema>, WaitExit>,
  Same<Static<typeof ReapedSchema>, Reaped>,
] = [true, true, true, true, true];
void schemasMatch;
