// OCI's image config (Env, WorkingDir, User, Entrypoint, Cmd, Labels) in the manifest's snake_case shape.
import type { ImageConfig } from "../image-store.ts";
import type { OciImageConfig } from "./layout.ts";

function strings(value: unknown): string[] | undefined {
  return Array.isArray(value) && value.every((v) => typeof v === "string") ? (value as string[]) : undefined;
}

export function imageConfigFromOci(oci: OciImageConfig): ImageConfig {
  const c = oci.config ?? {};
  const config: ImageConfig = {};
  const env = strings(c.Env)?.filter((e) => e.includes("="));
  if (env && env.length > 0) config.env = env;
  if (typeof c.WorkingDir === "string" && c.WorkingDir !== "") config.working_dir = c.WorkingDir;
  if (typeof c.User === "string" && c.User !== "") config.user = c.User;
  const entrypoint = strings(c.Entrypoint);
  if (entrypoint && entrypoint.length > 0) config.entrypoint = entrypoint;
  const cmd = strings(c.Cmd);
  if (cmd && cmd.length > 0) config.cmd = cmd;
  if (c.Labels && typeof c.Labels === "object") {
    const labels = Object.fromEntries(Object.entries(c.Labels).filter((e): e is [string, string] => typeof e[1] === "string"));
    if (Object.keys(labels).length > 0) config.labels = labels;
  }
  return config;
}
