// POST /images/build: a Dockerfile build on the daemon. The request body is the build context as an
// uncompressed tar; the answer is NDJSON, one BuildEvent a line, ending with `done` or `error`.
import { Type, type Static } from "@sinclair/typebox";
import { IMAGE_PATTERN } from "./names.ts";

export const ImageBuildQuerySchema = Type.Object(
  {
    name: Type.String({ pattern: IMAGE_PATTERN, description: "the image to build a new version of" }),
    dockerfile: Type.Optional(Type.String({ minLength: 1, maxLength: 1024, description: "the Dockerfile's path inside the context (default Dockerfile)" })),
    build_arg: Type.Optional(
      Type.Union(
        [
          Type.String({ pattern: "^[A-Za-z_][A-Za-z0-9_]*=", maxLength: 65536 }),
          Type.Array(Type.String({ pattern: "^[A-Za-z_][A-Za-z0-9_]*=", maxLength: 65536 }), { maxItems: 256 }),
        ],
        {
          description: "NAME=VALUE, repeated: values for the Dockerfile's ARGs",
        },
      ),
    ),
    no_cache: Type.Optional(Type.Boolean({ description: "run every step, even those the step cache has" })),
  },
  { additionalProperties: false },
);
export type ImageBuildQuery = Static<typeof ImageBuildQuerySchema>;

/** One line of the build's progress stream. */
export type BuildEvent =
  | { type: "step"; step: number; total: number; instruction: string }
  /** The step's result came from the step cache (a commit): it was not run. */
  | { type: "cached"; step: number; commit: string }
  | { type: "output"; step: number; stream: "stdout" | "stderr"; text: string }
  | { type: "vm"; hostname: string; event: "started" | "removed" }
  /** The step's result was saved for the cache. */
  | { type: "committed"; step: number; commit: string }
  | { type: "warning"; message: string }
  | { type: "done"; image: string; version: string; cached_steps: number; run_steps: number; vms_started: number; reused_version: boolean }
  | { type: "error"; error: string; code: string };
