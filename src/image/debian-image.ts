// Builds the `debian` image: Debian 12 from Debian's archive with mmdebstrap (minbase plus the recipe's
// packages), systemd as PID 1, a default user with passwordless sudo, and Corral's runtime with the agent as
// a systemd unit. The version id hashes every input (packages, mirrors and their Release dates, the runtime,
// the kernel, this builder), so an unchanged host and archive rebuild nothing.
import { existsSync } from "node:fs";
import { chmod, copyFile, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { withFileLock } from "../util/file-lock.ts";
import { requireProgram, run } from "../util/run.ts";
import {
  aptListName,
  DEBIAN_DEFAULT_USER,
  DEBIAN_IMAGE,
  DEBIAN_PACKAGES,
  DEBIAN_SUITE,
  debianCommands,
  debianFiles,
  mirrorLines,
  parseAptSources,
  releaseDate,
  type AptSource,
} from "./debian-recipe.ts";
import { buildExt4 } from "./ext4.ts";
import { guestRuntimeInputs, installGuestRuntime, sha256, sha256File } from "./guest-runtime.ts";
import type { CorralHome } from "./home.ts";
import { IMAGE_FILES, ImageStore, type ImageManifest, type ImageVersion } from "./image-store.ts";
import { buildInitramfs, initramfsInit } from "./initramfs.ts";
import { resolveBootModules } from "./kernel-modules.ts";
import { ensureKernel, type KernelInfo } from "./kernel.ts";
import type { Progress } from "./progress.ts";
import { inRoot } from "./root-path.ts";
import type { EnsureImageOptions } from "./base-image.ts";

/** Bump when the builder changes in a way the inputs below do not capture. */
const BUILDER_REVISION = "1";
export const DEBIAN_ROOTFS_SIZE = "8G";
const APT_SOURCES = ["/etc/apt/sources.list", "/etc/apt/sources.list.d"];
const APT_LISTS = "/var/lib/apt/lists";

/** Debian's archive as the host's apt knows it; an error that says what to do when there is none. */
export async function hostDebianSources(): Promise<AptSource[]> {
  const files: string[] = [];
  for (const path of APT_SOURCES) {
    if (!existsSync(path)) continue;
    if (path.endsWith(".d")) {
      for (const name of (await readdir(path)).sort()) if (name.endsWith(".list") || name.endsWith(".sources")) files.push(join(path, name));
    } else files.push(path);
  }
  const sources: AptSource[] = [];
  for (const file of files) sources.push(...parseAptSources(await readFile(file, "utf8")));
  if (sources.length === 0) {
    throw new Error(
      `No Debian ${DEBIAN_SUITE} archive in this host's apt sources (${APT_SOURCES.join(", ")}): add one (e.g. "deb http://deb.debian.org/debian ${DEBIAN_SUITE} main") to build the debian image`,
    );
  }
  return sources;
}

/** When each mirror's suite last changed, as the host's last `apt-get update` saw it ("unknown" before any). */
async function releaseDates(sources: readonly AptSource[]): Promise<string> {
  const dates: string[] = [];
  for (const source of sources) {
    const list = join(APT_LISTS, aptListName(source.uri, source.suite));
    const date = existsSync(list) ? releaseDate(await readFile(list, "utf8")) : undefined;
    dates.push(`${source.suite}=${date ?? "unknown"}`);
  }
  return dates.join(";");
}

interface DebianInputs {
  kernel: KernelInfo;
  mirrors: string[];
  record: Record<string, string>;
  version: string;
}

async function collectInputs(home: CorralHome, progress: Progress, forced: boolean): Promise<DebianInputs> {
  const kernel = await ensureKernel(home, progress);
  const sources = await hostDebianSources();
  const mirrors = mirrorLines(sources);
  const record: Record<string, string> = {
    builder: BUILDER_REVISION,
    kernel_release: kernel.release,
    kernel_sha256: await sha256File(kernel.vmlinuz),
    ...(await guestRuntimeInputs()),
    suite: DEBIAN_SUITE,
    packages: DEBIAN_PACKAGES.join(","),
    mirrors: mirrors.join(";"),
    release_dates: await releaseDates(sources),
    default_user: DEBIAN_DEFAULT_USER,
    recipe_sha256: sha256(JSON.stringify([debianFiles(DEBIAN_DEFAULT_USER), debianCommands(DEBIAN_DEFAULT_USER)]) + initramfsInit([])),
    rootfs_size: DEBIAN_ROOTFS_SIZE,
  };
  if (forced) record.forced_at = new Date().toISOString();
  return { kernel, mirrors, record, version: sha256(JSON.stringify(record)).slice(0, 12) };
}

/**
 * Makes sure the current `debian` image matches its inputs; builds it when not (one to three minutes here,
 * most of it mmdebstrap fetching and unpacking packages). Needs root: mmdebstrap's root mode and chroot.
 */
export function ensureDebianImage(home: CorralHome, progress: Progress, options: EnsureImageOptions = {}): Promise<ImageVersion> {
  return withFileLock(join(home.root, "build-debian.lock"), () => ensureLocked(home, progress, options), {
    onWait: (pid) => progress.step(`waiting for another build of "${DEBIAN_IMAGE}" (pid ${pid})`),
  });
}

async function ensureLocked(home: CorralHome, progress: Progress, options: EnsureImageOptions): Promise<ImageVersion> {
  const store = new ImageStore(home.images);
  const inputs = await collectInputs(home, progress, options.force ?? false);
  const existing = options.force ? undefined : await store.reuse(DEBIAN_IMAGE, inputs.version);
  if (existing) {
    progress.skip(`image "${DEBIAN_IMAGE}" ${inputs.version} is up to date`);
    return existing;
  }
  if (process.getuid?.() !== 0) {
    // A version built earlier (by root) still boots: keep it rather than fail, and say why it is not rebuilt.
    const current = await store.resolve(DEBIAN_IMAGE).catch(() => undefined);
    if (current && !options.force) {
      progress.skip(`image "${DEBIAN_IMAGE}" ${current.version} kept: its inputs changed, but rebuilding it needs root ("sudo corral image build ${DEBIAN_IMAGE}")`);
      return current;
    }
    throw new Error(`Building the "${DEBIAN_IMAGE}" image needs root (mmdebstrap and chroot): run "sudo corral image build ${DEBIAN_IMAGE}" once`);
  }
  const mmdebstrap = requireProgram("mmdebstrap", "mmdebstrap");
  progress.step(`building image "${DEBIAN_IMAGE}" ${inputs.version} (Debian ${DEBIAN_SUITE} from ${inputs.mirrors.length} mirror lines, kernel ${inputs.kernel.release})`);
  await mkdir(home.cache, { recursive: true });
  const work = await mkdtemp(join(home.cache, "image-debian-"));
  try {
    const root = join(work, "rootfs");
    const out = join(work, "out");
    await mkdir(out);
    await run(mmdebstrap, ["--quiet", "--variant=minbase", `--include=${DEBIAN_PACKAGES.join(",")}`, DEBIAN_SUITE, root, ...inputs.mirrors], { maxStdout: 1024 * 1024 });
    await customize(root);
    await installGuestRuntime(root, {
      kernel: inputs.kernel,
      init: "systemd",
      cacheDir: home.cache,
      config: { default_user: DEBIAN_DEFAULT_USER },
    });
    await buildExt4(root, join(out, IMAGE_FILES.rootfs), DEBIAN_ROOTFS_SIZE);
    const modules = await resolveBootModules(inputs.kernel.modulesDir);
    await writeFile(join(out, IMAGE_FILES.initrd), await buildInitramfs({ busyboxPath: requireProgram("busybox", "busybox-static"), modules }));
    await copyFile(inputs.kernel.vmlinuz, join(out, IMAGE_FILES.kernel));
    const manifest: ImageManifest = {
      name: DEBIAN_IMAGE,
      version: inputs.version,
      created_at: new Date().toISOString(),
      kernel_release: inputs.kernel.release,
      rootfs_format: "raw",
      inputs: inputs.record,
      config: { default_user: DEBIAN_DEFAULT_USER },
      source: { kind: "recipe", recipe: DEBIAN_IMAGE, suite: DEBIAN_SUITE },
    };
    const image = await store.install(out, manifest);
    progress.done(`image "${DEBIAN_IMAGE}" ${inputs.version} built in ${image.dir}`);
    return image;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** The recipe's files and commands, applied in the staged root. */
async function customize(root: string): Promise<void> {
  for (const [path, file] of Object.entries(debianFiles(DEBIAN_DEFAULT_USER))) {
    const target = inRoot(root, path);
    await mkdir(dirname(target), { recursive: true });
    await rm(target, { force: true });
    await writeFile(target, file.contents);
    await chmod(target, file.mode);
  }
  for (const command of debianCommands(DEBIAN_DEFAULT_USER)) await run("chroot", [root, ...command]);
}
