// Template snapshots as the daemon reports them (GET /templates, GET /info): one entry per host group.
import { Type, type Static } from "@sinclair/typebox";

export const TemplateInfoSchema = Type.Object({
  hostgroup: Type.String(),
  state: Type.Union([Type.Literal("disabled"), Type.Literal("none"), Type.Literal("building"), Type.Literal("ready"), Type.Literal("failed")], {
    description: "disabled: the group boots every VM cold; none: no template yet; building; ready; failed: the last build or clone failed (see error)",
  }),
  template_id: Type.Union([Type.String(), Type.Null()], { description: "the template new sandboxes are cloned from" }),
  image: Type.String(),
  image_version: Type.Union([Type.String(), Type.Null()]),
  cpus: Type.Integer(),
  ram_bytes: Type.Integer(),
  built_at: Type.Union([Type.String(), Type.Null()]),
  build_ms: Type.Union([Type.Integer(), Type.Null()]),
  clones: Type.Integer({ description: "VMs of the group cloned from a template that still exist" }),
  warm_pool: Type.Integer({ description: "clones the group keeps restored and idle (configuration)" }),
  pooled: Type.Integer({ description: "clones restored and idle right now" }),
  error: Type.Union([Type.String(), Type.Null()]),
});

export type TemplateInfoBody = Static<typeof TemplateInfoSchema>;
