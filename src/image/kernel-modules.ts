// Picks the kernel modules the initramfs must load and orders them so each loads after its dependencies.
// Debian's .deb ships no modules.dep (depmod makes it at install time), so dependencies are read from
// each module's own .modinfo section ("depends=a,b").
import { readdir, readFile } from "node:fs/promises";
import { basename, join } from "node:path";

/** Drivers the guest needs before its root disk is mounted; their dependencies are added automatically. */
export const BOOT_MODULES = ["virtio_mmio", "virtio_blk", "virtio_console", "virtio_net", "virtio-rng"] as const;

export interface KernelModule {
  name: string;
  path: string;
  depends: string[];
}

/** Module names are spelt with "-" or "_" interchangeably; the kernel treats them as equal. */
export function canonicalModuleName(name: string): string {
  return name.replaceAll("-", "_");
}

/** Reads "depends=" out of a module's .modinfo strings without needing modinfo(8). */
export function parseModuleDepends(contents: Buffer): string[] {
  const marker = Buffer.from("\0depends=");
  const at = contents.indexOf(marker);
  if (at < 0) return [];
  const start = at + marker.length;
  const end = contents.indexOf(0, start);
  const value = contents.subarray(start, end < 0 ? undefined : end).toString("latin1");
  return value
    .split(",")
    .map((d) => d.trim())
    .filter((d) => d.length > 0);
}

async function indexModules(modulesDir: string): Promise<Map<string, string>> {
  const index = new Map<string, string>();
  const walk = async (dir: string): Promise<void> => {
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      const full = join(dir, entry.name);
      if (entry.isDirectory()) await walk(full);
      else if (entry.name.endsWith(".ko")) index.set(canonicalModuleName(basename(entry.name, ".ko")), full);
    }
  };
  await walk(join(modulesDir, "kernel"));
  return index;
}

/** The wanted modules plus all they depend on, dependencies first. */
export async function resolveBootModules(modulesDir: string, wanted: readonly string[] = BOOT_MODULES): Promise<KernelModule[]> {
  const index = await indexModules(modulesDir);
  const ordered: KernelModule[] = [];
  const state = new Map<string, "visiting" | "done">();
  const visit = async (rawName: string, chain: string[]): Promise<void> => {
    const name = canonicalModuleName(rawName);
    if (state.get(name) === "done") return;
    if (state.get(name) === "visiting") throw new Error(`Kernel modules depend on each other in a cycle: ${[...chain, name].join(" -> ")}`);
    const path = index.get(name);
    if (!path) {
      throw new Error(`Kernel module "${rawName}" is not in ${modulesDir} (it may be built in, or compressed, which is not supported)`);
    }
    state.set(name, "visiting");
    const depends = parseModuleDepends(await readFile(path));
    for (const dep of depends) await visit(dep, [...chain, name]);
    state.set(name, "done");
    ordered.push({ name, path, depends: depends.map(canonicalModuleName) });
  };
  for (const name of wanted) await visit(name, []);
  return ordered;
}
