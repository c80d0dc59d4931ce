// Commits and forks (POST /vm/HOST/commit, GET /vm/commits, POST /vm/commits/ID/fork, DELETE /vm/commits/ID)
// in the field names of Slicer's SDK: commit_id, source_hostname, tags, labels, cache_key.
import { NetworkPolicyBodySchema } from "./net.ts";
import { Type, type Static } from "@sinclair/typebox";
import { HostnameParam, LifetimeField } from "./slicer.ts";

const Tag = Type.String({ minLength: 1, maxLength: 256 });
const Tags = Type.Array(Tag, { maxItems: 64 });
const Labels = Type.Record(Type.String({ pattern: "^[A-Za-z0-9][A-Za-z0-9._/-]{0,62}$" }), Type.String({ maxLength: 1024 }), {
  description: "name -> value (names: letters, digits, '.', '_', '/', '-')",
  // A pattern-keyed record alone would let other names through unchecked.
  additionalProperties: false,
  maxProperties: 64,
});

export const CommitIdParam = Type.String({ pattern: "^c-[0-9a-f]{12}$", description: "a commit id (c- and 12 hex digits)" });
export const CommitParams = Type.Object({ commit_id: CommitIdParam });
export const CommitVmParams = Type.Object({ hostname: HostnameParam });

export const CommitBodySchema = Type.Object(
  {
    memory: Type.Optional(Type.Boolean({ description: "save the VM's memory and devices too: forks resume where it was (default false: forks boot from the disk)" })),
    tags: Type.Optional(Tags),
    labels: Type.Optional(Labels),
    cache_key: Type.Optional(Type.String({ maxLength: 256 })),
  },
  { additionalProperties: false },
);
export const CommitQuerySchema = Type.Object({ memory: Type.Optional(Type.Boolean()) });

export const CommitSchema = Type.Object({
  commit_id: Type.String(),
  source_hostname: Type.String(),
  hostgroup: Type.String(),
  tags: Type.Array(Type.String()),
  labels: Type.Record(Type.String(), Type.String()),
  cache_key: Type.String(),
  memory: Type.Boolean(),
  created_at: Type.String(),
  image: Type.String(),
  image_version: Type.String(),
  cpus: Type.Integer(),
  ram_bytes: Type.Integer(),
  size_bytes: Type.Integer(),
  forks: Type.Array(Type.String(), { description: "VMs forked from this commit that still exist" }),
});

export const CommitListQuerySchema = Type.Object({ cache_key: Type.Optional(Type.String()) });

export const ForkBodySchema = Type.Object(
  {
    tags: Type.Optional(Tags),
    ssh_keys: Type.Optional(Type.Array(Type.String({ minLength: 1 }), { maxItems: 64 })),
    /** How long the fork lives (default: its host group's `lifetime`). */
    lifetime: Type.Optional(LifetimeField),
    /** Slicer's fork-time policy (bridge and isolated groups): an absent list inherits the group's, `[]` clears it. */
    network: Type.Optional(NetworkPolicyBodySchema),
  },
  { additionalProperties: false },
);

export type CommitBody = Static<typeof CommitBodySchema>;
export type CommitView = Static<typeof CommitSchema>;
export type ForkBody = Static<typeof ForkBodySchema>;
