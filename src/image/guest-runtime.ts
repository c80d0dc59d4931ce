// Corral's guest runtime: what turns any staged root filesystem (Debian with systemd, the busybox `base`, an
// OCI image on musl or a distroless one without a shell) into one that boots to a ready agent. Everything
// lives under /opt/corral and needs nothing of the image: the host's node with its own dynamic loader and
// libraries (patchelf points node at them, so it runs whatever libc the image has, or none), the agent and
// its native addons, a static busybox and tini for Corral's init. Beside it: how the agent starts (a systemd
// unit when the image boots systemd, else Corral's init), the kernel's modules and /etc/corral/image.json.
import { createHash } from "node:crypto";
import { createReadStream, existsSync } from "node:fs";
import { chmod, copyFile, mkdir, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { basename, dirname, join } from "node:path";
import { AGENT_VERSION } from "../protocol/agent.ts";
import { findProgram, requireProgram, run } from "../util/run.ts";
import { bundleGuestAgent } from "./guest-bundle.ts";
import { buildGuestNative, NATIVE_SOURCE } from "./guest-native.ts";
import {
  AGENT_GUEST_PATH,
  AGENT_UNIT,
  AGENT_UNIT_TEXT,
  CONFIGURE_PATH,
  CONFIGURE_SCRIPT,
  CONFIGURE_UNIT,
  CONFIGURE_UNIT_TEXT,
  CORRAL_BOOT,
  CORRAL_BOOT_PATH,
  CORRAL_INIT,
  CORRAL_INIT_PATH,
  IMAGE_CONFIG_GUEST_PATH,
  NATIVE_ADDON_GUEST_PATH,
  PID1_FILE,
  PTY_ADDON_GUEST_PATH,
  RUNTIME_BIN,
  RUNTIME_DIR,
  RUNTIME_LIB,
  runtimeScripts,
} from "./guest-runtime-scripts.ts";
import type { ImageConfig } from "./image-store.ts";
import type { KernelInfo } from "./kernel.ts";
import { inRoot, resolveGuestPath } from "./root-path.ts";

/** Bump when the runtime changes in a way its inputs below do not capture. */
const RUNTIME_REVISION = "1";

/**
 * How the guest starts. "systemd": the image's own /sbin/init is systemd, and the agent is a unit in it.
 * "corral": Corral's init (tini + a boot script) is PID 1, whatever init the image has.
 */
export type GuestInit = "systemd" | "corral";

export interface GuestRuntimeOptions {
  /** The kernel the image boots: its modules go to /lib/modules/RELEASE. */
  kernel: Pick<KernelInfo, "release" | "modulesDir">;
  init: GuestInit;
  /** Written to /etc/corral/image.json (an empty object when absent). */
  config?: ImageConfig;
  /** Where compiled pieces (the agent's addon, the modules tree) are cached between builds. */
  cacheDir: string;
  /** Bundle dropbear as the VM's SSH server for delivered keys. Default: with Corral's init, when the host has it. */
  sshServer?: boolean;
}

interface HostFiles {
  busybox: string;
  tini: string;
  node: string;
  ptyAddon: string;
  dropbear: string | undefined;
  resize2fs: string | undefined;
}

function hostFiles(): HostFiles {
  return {
    busybox: requireProgram("busybox", "busybox-static"),
    tini: findProgram("tini-static") ?? requireProgram("tini", "tini"),
    node: process.execPath,
    ptyAddon: ptyAddonPath(),
    dropbear: findProgram("dropbear"),
    resize2fs: findProgram("resize2fs"),
  };
}

/** node-pty's addon, built by npm for this very node (so it loads in the guest, which runs the same node). */
function ptyAddonPath(): string {
  const pkg = createRequire(import.meta.url).resolve("node-pty/package.json");
  const addon = join(dirname(pkg), "build", "Release", "pty.node");
  if (!existsSync(addon)) throw new Error(`node-pty's native addon is missing (${addon}): run "npm ci" (it compiles node-pty)`);
  return addon;
}

export async function sha256File(path: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest("hex");
}

export function sha256(data: Buffer | string): string {
  return createHash("sha256").update(data).digest("hex");
}

/**
 * What the runtime is made of, as hashes: an image records them among its inputs, so a changed agent, node
 * or script gives a new image version. The kernel is not among them: images record it themselves.
 */
export async function guestRuntimeInputs(): Promise<Record<string, string>> {
  const files = hostFiles();
  const optional = async (path: string | undefined): Promise<string> => (path ? sha256File(path) : "none");
  return {
    runtime_revision: RUNTIME_REVISION,
    busybox_sha256: await sha256File(files.busybox),
    tini_sha256: await sha256File(files.tini),
    node_version: process.version,
    node_sha256: await sha256File(files.node),
    pty_addon_sha256: await sha256File(files.ptyAddon),
    native_addon_sha256: sha256(Buffer.concat([await readFile(NATIVE_SOURCE), Buffer.from(process.version)])),
    dropbear_sha256: await optional(files.dropbear),
    resize2fs_sha256: await optional(files.resize2fs),
    agent_version: AGENT_VERSION,
    agent_sha256: sha256(await bundleGuestAgent()),
    runtime_scripts_sha256: sha256(runtimeScripts()),
  };
}

/** Which init an image's root filesystem would boot: systemd when its /sbin/init is systemd. */
export function detectGuestInit(root: string): GuestInit {
  const init = inRoot(root, "/sbin/init");
  return existsSync(init) && basename(init) === "systemd" ? "systemd" : "corral";
}

/** Puts the runtime into `root` (a staged root filesystem folder) so that it boots to a ready agent. */
export async function installGuestRuntime(root: string, options: GuestRuntimeOptions): Promise<void> {
  const files = hostFiles();
  await makeSkeleton(root);
  const bin = inRoot(root, RUNTIME_BIN);
  const lib = inRoot(root, RUNTIME_LIB);
  await copyStatic(files.busybox, join(bin, "busybox"));
  await installProgram(files.tini, join(bin, "tini"), lib);
  await installProgram(files.node, join(bin, "node"), lib);
  const sshServer = options.sshServer ?? options.init === "corral";
  if (sshServer && files.dropbear) await installProgram(files.dropbear, join(bin, "dropbear"), lib);
  if (files.resize2fs) await installProgram(files.resize2fs, join(bin, "resize2fs"), lib);

  await writeOwnFile(root, AGENT_GUEST_PATH, await bundleGuestAgent(), 0o644);
  await writeOwnFile(root, PTY_ADDON_GUEST_PATH, await readFile(files.ptyAddon), 0o755);
  await writeOwnFile(root, NATIVE_ADDON_GUEST_PATH, await readFile(await buildGuestNative(options.cacheDir)), 0o755);
  await writeOwnFile(root, CORRAL_INIT_PATH, CORRAL_INIT, 0o755);
  await writeOwnFile(root, CORRAL_BOOT_PATH, CORRAL_BOOT, 0o755);
  await writeOwnFile(root, CONFIGURE_PATH, CONFIGURE_SCRIPT, 0o755);
  await writeOwnFile(root, IMAGE_CONFIG_GUEST_PATH, `${JSON.stringify(options.config ?? {}, null, 2)}\n`, 0o644);

  if (options.init === "systemd") {
    const pid1 = resolveGuestPath(root, "/sbin/init");
    if (detectGuestInit(root) !== "systemd") throw new Error(`The image's /sbin/init (${pid1}) is not systemd: install the runtime with init "corral"`);
    await installSystemdUnits(root);
    await writeOwnFile(root, PID1_FILE, `${pid1}\n`, 0o644);
  } else {
    await writeOwnFile(root, PID1_FILE, `${CORRAL_INIT_PATH}\n`, 0o644);
  }
  await installKernelModules(root, options.kernel, options.cacheDir);
}

/** The mount points and folders the boot needs, created only where the image has none. */
async function makeSkeleton(root: string): Promise<void> {
  for (const dir of ["etc/corral", "proc", "sys", "dev", "run", "tmp", "root", "var/lib/corral", "var/log", `${RUNTIME_BIN}`, `${RUNTIME_LIB}`]) {
    await mkdir(inRoot(root, dir), { recursive: true });
  }
  await chmod(inRoot(root, "tmp"), 0o1777);
}

/** Writes a file the runtime owns, replacing whatever the image had there (a symlink is replaced, not followed). */
async function writeOwnFile(root: string, guestPath: string, contents: Buffer | string, mode: number): Promise<void> {
  const target = join(inRoot(root, dirname(guestPath)), basename(guestPath));
  await mkdir(dirname(target), { recursive: true });
  await rm(target, { force: true, recursive: true });
  await writeFile(target, contents, { mode });
  await chmod(target, mode);
}

async function copyStatic(hostPath: string, target: string): Promise<void> {
  await rm(target, { force: true });
  await copyFile(hostPath, target);
  await chmod(target, 0o755);
}

/** The libraries a dynamically linked program loads, as absolute host paths (none for a static one). */
export async function sharedLibraries(program: string): Promise<string[]> {
  let out: string;
  try {
    out = await run("ldd", [program]);
  } catch {
    return []; // "not a dynamic executable"
  }
  const libs = new Set<string>();
  for (const line of out.split("\n")) {
    const match = /(?:=>\s*)?(\/\S+)\s+\(0x/.exec(line);
    if (match?.[1]) libs.add(match[1]);
  }
  return [...libs];
}

/**
 * A host program that runs from /opt/corral whatever the image's libc: its libraries and the host's dynamic
 * loader are copied beside it into /opt/corral/lib, and patchelf points the program at them (interpreter and
 * DT_RPATH, which also covers the addons node loads later). Static programs are copied as they are.
 */
async function installProgram(hostPath: string, target: string, libDir: string): Promise<void> {
  const libs = await sharedLibraries(hostPath);
  await copyStatic(hostPath, target);
  if (libs.length === 0) return;
  let loader: string | undefined;
  for (const lib of libs) {
    const copy = join(libDir, basename(lib));
    if (!existsSync(copy)) await copyFile(lib, copy);
    await chmod(copy, 0o755);
    if (basename(lib).startsWith("ld-linux")) loader = basename(lib);
  }
  if (!loader) throw new Error(`Cannot find the dynamic loader of ${hostPath} among its libraries (${libs.join(", ")})`);
  const patchelf = requireProgram("patchelf", "patchelf");
  await run(patchelf, ["--set-interpreter", `${RUNTIME_LIB}/${loader}`, "--force-rpath", "--set-rpath", RUNTIME_LIB, target]);
}

/** The agent and the command-line unit, enabled the way `systemctl enable` would (symlinks in the wants folder). */
async function installSystemdUnits(root: string): Promise<void> {
  await writeOwnFile(root, `/etc/systemd/system/${CONFIGURE_UNIT}`, CONFIGURE_UNIT_TEXT, 0o644);
  await writeOwnFile(root, `/etc/systemd/system/${AGENT_UNIT}`, AGENT_UNIT_TEXT, 0o644);
  const wants = inRoot(root, "/etc/systemd/system/sysinit.target.wants");
  await mkdir(wants, { recursive: true });
  for (const unit of [CONFIGURE_UNIT, AGENT_UNIT]) {
    await rm(join(wants, unit), { force: true });
    await symlink(`/etc/systemd/system/${unit}`, join(wants, unit));
  }
}

/**
 * The kernel's modules at /lib/modules/RELEASE with modules.dep, so modprobe works in the guest. depmod runs
 * once per kernel on a cached copy, never inside the image's root (whose symlinks could lead out of it).
 */
async function installKernelModules(root: string, kernel: GuestRuntimeOptions["kernel"], cacheDir: string): Promise<void> {
  const prepared = join(cacheDir, `modules-${kernel.release}`);
  const tree = join(prepared, "lib", "modules", kernel.release);
  if (!existsSync(join(prepared, ".complete"))) {
    await rm(prepared, { recursive: true, force: true });
    await mkdir(dirname(tree), { recursive: true });
    await run("cp", ["-a", kernel.modulesDir, tree]);
    const depmod = findProgram("depmod");
    if (depmod) await run(depmod, ["-b", prepared, kernel.release]);
    await writeFile(join(prepared, ".complete"), "");
  }
  const target = inRoot(root, `/lib/modules/${kernel.release}`);
  await rm(target, { recursive: true, force: true });
  await mkdir(dirname(target), { recursive: true });
  await run("cp", ["-a", tree, target]);
}

export { RUNTIME_DIR };
