// The image catalogue on the daemon (GET /images, GET|DELETE /images/NAME, POST /images/prune) and the ways
// images come in (POST /images/import, POST /images/pull).
import { Type, type Static } from "@sinclair/typebox";
import { IMAGE_PATTERN } from "./names.ts";

export const ImageConfigSchema = Type.Object(
  {
    env: Type.Optional(Type.Array(Type.String(), { description: '"KEY=VALUE" entries (OCI Env)' })),
    working_dir: Type.Optional(Type.String()),
    user: Type.Optional(Type.String({ description: 'OCI User: "name", "uid", "name:group" or "uid:gid"' })),
    entrypoint: Type.Optional(Type.Array(Type.String())),
    cmd: Type.Optional(Type.Array(Type.String())),
    labels: Type.Optional(Type.Record(Type.String(), Type.String())),
    default_user: Type.Optional(Type.String()),
  },
  { additionalProperties: true },
);

const ImageSourceSchema = Type.Object({ kind: Type.String({ description: "recipe, dockerfile or oci" }) }, { additionalProperties: true });

export const ImageUseSchema = Type.Object({
  kind: Type.Union([Type.Literal("vm"), Type.Literal("template"), Type.Literal("commit")]),
  id: Type.String({ description: "the VM's hostname, the template's or the commit's id" }),
  state_dir: Type.String({ description: "the state folder of the daemon that owns the disk" }),
  in_making: Type.Boolean({ description: "a template or commit still being made" }),
});

export const ImageVersionSchema = Type.Object({
  version: Type.String(),
  current: Type.Boolean({ description: "the version new VMs get" }),
  created_at: Type.String(),
  kernel_release: Type.String(),
  disk_usage_bytes: Type.Integer({ description: "bytes the version occupies on the host (sparse files)" }),
  disk_size_bytes: Type.Integer({ description: "the root disk's size as a guest sees it" }),
  source: Type.Union([ImageSourceSchema, Type.Null()]),
  parent: Type.Union([Type.Object({ name: Type.String(), version: Type.String() }), Type.Null()]),
  config: ImageConfigSchema,
  used_by: Type.Array(ImageUseSchema),
});

export const ImageDetailSchema = Type.Object({
  name: Type.String(),
  version: Type.Union([Type.String(), Type.Null()], { description: "the current version" }),
  versions: Type.Array(ImageVersionSchema, { description: "newest first" }),
});

export type ImageDetailBody = Static<typeof ImageDetailSchema>;

/** What an import or pull answers: the version it installed (made current). */
export const ImportedImageSchema = Type.Intersect([Type.Object({ name: Type.String() }), ImageVersionSchema]);
export type ImportedImage = Static<typeof ImportedImageSchema>;

export const ImageParams = Type.Object({ name: Type.String({ pattern: IMAGE_PATTERN }) });

export const ImportQuerySchema = Type.Object({ name: Type.String({ pattern: IMAGE_PATTERN, description: "the image's name" }) }, { additionalProperties: false });

export const PullBodySchema = Type.Object(
  {
    reference: Type.String({ minLength: 1, maxLength: 512, description: 'e.g. "127.0.0.1:5000/team/tool:1.0" or "docker://…"' }),
    name: Type.Optional(Type.String({ pattern: IMAGE_PATTERN, description: "default: the repository's last component" })),
    username: Type.Optional(Type.String({ maxLength: 1024 })),
    password: Type.Optional(Type.String({ maxLength: 16384 })),
    insecure: Type.Optional(Type.Boolean({ description: "allow plain HTTP and unverified TLS (Slicer's registry `insecure`)" })),
  },
  { additionalProperties: false },
);
export type PullBody = Static<typeof PullBodySchema>;

export const PruneResultSchema = Type.Object({
  removed: Type.Array(Type.Object({ name: Type.String(), version: Type.String(), disk_usage_bytes: Type.Integer() })),
  reclaimed_bytes: Type.Integer(),
});
export type PruneResultBody = Static<typeof PruneResultSchema>;

/** A line of an import's or pull's progress stream (Accept: application/x-ndjson). */
export type ImageProgressLine =
  | { type: "progress"; stage: "step" | "skip" | "done"; message: string }
  | { type: "image"; image: ImportedImage }
  | { type: "error"; status: number; code: string; error: string };
