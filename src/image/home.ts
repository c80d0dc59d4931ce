// Where Corral keeps what it builds and downloads on this host (kernels, images, caches).
// One daemon's VM state lives elsewhere (its --state-dir); images are shared by every daemon on the host.
import { homedir } from "node:os";
import { join } from "node:path";

export interface CorralHome {
  root: string;
  kernels: string;
  images: string;
  cache: string;
  /** Where `corral daemon` keeps its state when no --state-dir is given. */
  defaultStateDir: string;
}

export function corralHome(env: NodeJS.ProcessEnv = process.env): CorralHome {
  const root = env.CORRAL_HOME ?? defaultRoot(env);
  return {
    root,
    kernels: join(root, "kernels"),
    images: join(root, "images"),
    cache: join(root, "cache"),
    defaultStateDir: join(root, "daemon"),
  };
}

function defaultRoot(env: NodeJS.ProcessEnv): string {
  if (process.getuid?.() === 0) return "/var/lib/corral";
  return join(env.XDG_DATA_HOME ?? join(homedir(), ".local", "share"), "corral");
}
