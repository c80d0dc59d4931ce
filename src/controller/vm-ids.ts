// A VM's id in the controller is its name on its host, and on a Corral daemon a name is a hostname (a DNS
// label: it becomes a host path and the guest's hostname). TTstack's environment ids allow more (upper case,
// "_", ".", up to 128 characters), so a VM's id is `ENV-N` when the environment's id is a short DNS label,
// and otherwise a DNS label made from it with a hash of the whole id, so that two ids that read alike
// ("team_a", "team.a", "Team-A") never share VM names.
import { createHash } from "node:crypto";
import { isHostname } from "../protocol/names.ts";

/** Room for "-N" (up to 64 VMs per environment) within a hostname's 63 characters. */
const PLAIN_ID_MAX = 59;
const SLUG_MAX = 40;

/** The id of the environment's `position`-th VM (1-based). */
export function vmIdOf(envId: string, position: number): string {
  if (envId.length <= PLAIN_ID_MAX && isHostname(envId)) return `${envId}-${position}`;
  const slug =
    envId
      .toLowerCase()
      .replace(/[^a-z0-9-]+/g, "-")
      .replace(/-+/g, "-")
      .slice(0, SLUG_MAX)
      .replace(/^-+|-+$/g, "") || "env";
  const hash = createHash("sha256").update(envId).digest("hex").slice(0, 6);
  return `${slug}-${hash}-${position}`;
}
