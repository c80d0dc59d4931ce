// Dockerfile builds on this daemon. `prepare` checks everything that can be checked without a VM (the
// Dockerfile, the FROM image, the COPY sources) and computes each step's cache key like Docker's: a hash of
// the parent's key, the instruction after substitution (with the environment, directory and user it runs
// with) and, for COPY/ADD, the content of what it copies. `run` then carries the steps out in a builder VM,
// saving each RUN/COPY/ADD result as a disk commit tagged with its key: a later build finds it and neither
// runs the step nor boots a VM for it. The result is flattened into a new image version (see finish-image.ts).
import { createHash, randomBytes } from "node:crypto";
import type { ClientHttp2Stream } from "node:http2";
import { posix } from "node:path";
import { createReadStream } from "node:fs";
import { createGunzip } from "node:zlib";
import type { FastifyBaseLogger } from "fastify";
import { packTree } from "../../archive/index.ts";
import { imageSizeMiB, type ImageStore, type ImageVersion } from "../../image/index.ts";
import { parseDockerfile } from "../../image/dockerfile/parse.ts";
import { fromImage, planBuild, type BuildPlan, type BuildStep, type StepContext } from "../../image/dockerfile/plan.ts";
import type { ExecFrame, ExecSpec } from "../../protocol/agent.ts";
import { CorralError } from "../../protocol/errors.ts";
import type { BuildEvent } from "../../protocol/image-build.ts";
import { collectExec } from "../exec/collect-exec.ts";
import { GuestFiles } from "../files/guest-files.ts";
import type { VmManager } from "../vm/vm-manager.ts";
import type { BuildContext, ContextSource } from "./build-context.ts";
import { installBuiltImage } from "./finish-image.ts";

export interface BuildRequest {
  name: string;
  dockerfile: string;
  buildArgs: Record<string, string>;
  noCache: boolean;
}

interface PreparedStep {
  step: BuildStep;
  key: string;
  /** COPY/ADD: what each source names in the context. */
  sources?: ContextSource[];
}

export interface PreparedBuild {
  request: BuildRequest;
  parent: ImageVersion;
  plan: BuildPlan;
  steps: PreparedStep[];
  total: number;
  context: BuildContext;
}

/** Where a build's disk stands: the FROM image, or a step's commit. */
type DiskState = { kind: "image" } | { kind: "commit"; id: string };

const CACHE_KEY_PREFIX = "dockerfile:";
/** The builder VM's size: enough for package installs; its disk is the image's plus this much room. */
const BUILDER_CPUS = 2;
const BUILDER_RAM_BYTES = 1024 * 1024 * 1024;
const BUILDER_EXTRA_DISK_MIB = 2048;
/** Boot under TCG on a loaded host can take a while; a build that cannot get a VM fails rather than hangs. */
const BOOT_DEADLINE_MS = 5 * 60_000;

function sha256(text: string): string {
  return createHash("sha256").update(text).digest("hex");
}

/** Hands a progress event to the client; resolves when it may take more (a RUN's output waits for a slow client). */
export type BuildEmitter = (event: BuildEvent) => void | Promise<void>;

export interface ImageBuilderDeps {
  manager: VmManager;
  images: ImageStore;
  log: FastifyBaseLogger;
}

export class ImageBuilder {
  private readonly files: GuestFiles;

  constructor(private readonly deps: ImageBuilderDeps) {
    this.files = new GuestFiles(deps.manager);
  }

  /** Everything a build needs that can fail without a VM: a bad Dockerfile is a 400 before anything boots. */
  async prepare(request: BuildRequest, context: BuildContext): Promise<PreparedBuild> {
    const dockerfile = parseDockerfile(await context.readDockerfile(request.dockerfile));
    const parent = await this.deps.images.resolve(fromImage(dockerfile, request.buildArgs));
    const plan = planBuild(dockerfile, { buildArgs: request.buildArgs, parentConfig: parent.manifest.config });
    let key = sha256(`corral-dockerfile-v1\0${parent.name}\0${parent.version}`);
    const steps: PreparedStep[] = [];
    for (const step of plan.steps) {
      const { number: _number, line: _line, ...what } = step;
      let sources: ContextSource[] | undefined;
      let contentHash = "";
      if (step.kind === "copy") {
        sources = [];
        for (const source of step.sources) {
          const found = await context.resolve(source, step.add);
          if (found.length === 0)
            throw new CorralError("build_failed", `Step ${step.number} (line ${step.line}) "${step.display}": ${JSON.stringify(source)} is not in the build context`);
          sources.push(...found);
        }
        contentHash = await context.hash(sources);
      }
      key = sha256(`${key}\0${JSON.stringify(what)}\0${contentHash}`);
      steps.push({ step, key, ...(sources ? { sources } : {}) });
    }
    return { request, parent, plan, steps, total: dockerfile.instructions.length, context };
  }

  /** Carries the steps out, emitting progress; resolves with the installed version. The builder VM never outlives it. */
  async run(build: PreparedBuild, emit: BuildEmitter, signal: AbortSignal): Promise<ImageVersion> {
    const session = new BuilderSession(this.deps.manager, this.files, build, emit, signal);
    let disk: DiskState = { kind: "image" };
    let cached = 0;
    let ran = 0;
    for (const warning of build.plan.unusedArgs) emit({ type: "warning", message: `Build argument ${JSON.stringify(warning)} was not consumed by any ARG` });
    try {
      for (const prepared of build.steps) {
        const { step } = prepared;
        emit({ type: "step", step: step.number, total: build.total, instruction: step.display });
        if (step.kind === "meta") continue;
        const hit = build.request.noCache ? undefined : (await this.deps.manager.commits.list({ cacheKey: CACHE_KEY_PREFIX + prepared.key }))[0];
        if (hit) {
          // A cached step after a step that ran: the running VM's disk is not that commit's, so it goes.
          await session.removeVm();
          disk = { kind: "commit", id: hit.commit_id };
          cached++;
          emit({ type: "cached", step: step.number, commit: hit.commit_id });
          continue;
        }
        await session.ensureVm(disk);
        if (step.kind === "run") await session.runStep(step);
        else await session.copyStep(step, prepared.sources ?? []);
        ran++;
        const commit = await session.commit(CACHE_KEY_PREFIX + prepared.key, step);
        disk = { kind: "commit", id: commit };
        emit({ type: "committed", step: step.number, commit });
      }
      await session.removeVm();
      const finalKey = build.steps.at(-1)?.key ?? sha256(`${build.parent.name}\0${build.parent.version}`);
      const { image, reused } = await installBuiltImage({
        images: this.deps.images,
        name: build.request.name,
        parent: build.parent,
        disk: disk.kind === "image" ? { kind: "image" } : { kind: "commit", path: await this.deps.manager.commits.diskPath(disk.id) },
        key: finalKey,
        config: build.plan.config,
        source: {
          kind: "dockerfile",
          dockerfile: build.request.dockerfile,
          exposed: build.plan.exposed,
          ...(Object.keys(build.request.buildArgs).length > 0 ? { build_args: Object.keys(build.request.buildArgs) } : {}),
        },
        force: build.request.noCache,
        signal,
      });
      emit({ type: "done", image: image.name, version: image.version, cached_steps: cached, run_steps: ran, vms_started: session.vmsStarted, reused_version: reused });
      return image;
    } finally {
      await session.removeVm().catch((err: unknown) => this.deps.log.error({ err }, "Cannot remove a builder VM"));
    }
  }
}

/** The builder VM of one build: booted when a step needs it, from the image or from a step's commit. */
class BuilderSession {
  private hostname: string | undefined;
  private record: Awaited<ReturnType<VmManager["createApiVm"]>> | undefined;
  private readonly users = new Map<string, { uid: number; gid: number }>();
  private readonly id = randomBytes(4).toString("hex");
  vmsStarted = 0;

  constructor(
    private readonly manager: VmManager,
    private readonly files: GuestFiles,
    private readonly build: PreparedBuild,
    private readonly emit: BuildEmitter,
    private readonly signal: AbortSignal,
  ) {}

  async ensureVm(disk: DiskState): Promise<void> {
    if (this.hostname) return;
    const tags = [`corral-build=${this.id}`];
    const { parent } = this.build;
    const record =
      disk.kind === "image"
        ? await this.manager.createApiVm(
            {
              hostname: `build-${this.id}-${this.vmsStarted + 1}`,
              envId: null,
              image: parent.name,
              cpus: BUILDER_CPUS,
              ramBytes: BUILDER_RAM_BYTES,
              diskMiB: (await imageSizeMiB(parent)) + BUILDER_EXTRA_DISK_MIB,
              ports: [],
              denyOutgoing: false,
              sshKeys: [],
              tags,
            },
            { signal: this.signal },
          )
        : await this.manager.commits.fork(disk.id, { tags }, this.signal);
    this.record = record;
    this.hostname = record.hostname;
    this.users.clear();
    this.vmsStarted++;
    this.emit({ type: "vm", hostname: record.hostname, event: "started" });
    if (record.imageVersion !== parent.version) {
      throw new CorralError(
        "conflict",
        `Image ${JSON.stringify(parent.name)} changed to version ${record.imageVersion} during the build (it started from ${parent.version}): build again`,
      );
    }
    await this.manager.waitReady(record.hostname, "agent", AbortSignal.any([this.signal, AbortSignal.timeout(BOOT_DEADLINE_MS)]));
  }

  async removeVm(): Promise<void> {
    const record = this.record;
    if (!record) return;
    this.record = undefined;
    this.hostname = undefined;
    await this.manager.rollBackCreate(record, new Error("the build no longer needs its builder VM"));
    this.emit({ type: "vm", hostname: record.hostname, event: "removed" });
  }

  async commit(cacheKey: string, step: BuildStep): Promise<string> {
    const info = await this.manager.commits.commit(this.vm(), {
      memory: false,
      tags: ["corral-build"],
      labels: { "corral.image": this.build.request.name, "corral.step": String(step.number) },
      cacheKey,
    });
    return info.commit_id;
  }

  async runStep(step: Extract<BuildStep, { kind: "run" }>): Promise<void> {
    const ids = await this.prepareContext(step.context);
    const [cmd = "", ...args] = step.argv;
    const spec: ExecSpec = { cmd, args, env: step.context.env, cwd: step.context.workdir, ...ids, stdio: "text", stdin: false };
    const frames = await this.exec(spec);
    let exit: ExecFrame | undefined;
    try {
      for await (const frame of readFrames(frames)) {
        if (frame.type === "stdout" && frame.stdout) await this.emit({ type: "output", step: step.number, stream: "stdout", text: frame.stdout });
        else if (frame.type === "stderr" && frame.stderr) await this.emit({ type: "output", step: step.number, stream: "stderr", text: frame.stderr });
        else if (frame.type === "exit") exit = frame;
      }
    } catch (err) {
      this.signal.throwIfAborted();
      throw err;
    }
    this.signal.throwIfAborted();
    if (!exit)
      throw new CorralError("build_failed", `Step ${step.number}/${this.build.total} "${step.display}": the connection to the builder VM's agent ended before the command did`);
    if (exit.exit_code !== 0) {
      const why = exit.error ? `: ${exit.error}` : "";
      throw new CorralError("build_failed", `Step ${step.number}/${this.build.total} "${step.display}" failed with exit code ${exit.exit_code}${why}`);
    }
  }

  async copyStep(step: Extract<BuildStep, { kind: "copy" }>, sources: ContextSource[]): Promise<void> {
    await this.prepareContext(step.context);
    // COPY writes files as root unless --chown says otherwise (USER does not apply, as in Docker).
    const owner = step.chown === undefined ? { uid: 0, gid: 0 } : await this.ids(step.chown, step);
    const intoDirectory = step.dest.endsWith("/") || sources.length > 1 || sources.some((s) => s.kind === "directory" || s.archive) || (await this.isDirectory(step.dest));
    const dest = step.dest.replace(/(.)\/$/, "$1");
    const permissions = step.chmod === undefined ? {} : { permissions: Number.parseInt(step.chmod, 8) };
    for (const source of sources) {
      const base = { placement: "exact" as const, exclude: [], ...owner };
      if (source.kind === "directory" || source.archive) {
        const body =
          source.kind === "directory"
            ? packTree(source.absolute)
            : source.archive === "gzip"
              ? createReadStream(source.absolute).pipe(createGunzip())
              : createReadStream(source.absolute);
        await this.files.upload(this.vm(), { ...base, path: dest, format: "tar" }, body, this.signal);
      } else {
        const target = intoDirectory ? posix.join(dest, posix.basename(source.path)) : dest;
        await this.files.upload(this.vm(), { ...base, ...permissions, path: target, format: "file" }, createReadStream(source.absolute), this.signal);
      }
    }
  }

  private vm(): string {
    if (!this.hostname) throw new Error("The builder VM is not running");
    return this.hostname;
  }

  /** The step's user as ids, and its WORKDIR made (Docker creates it, owned by that user). */
  private async prepareContext(context: StepContext): Promise<{ uid: number; gid: number }> {
    // Root is said outright: the agent would otherwise run the step as the parent image's USER.
    const ids = context.user === "" ? { uid: 0, gid: 0 } : await this.ids(context.user);
    const made = await this.shell('[ -d "$1" ] || { mkdir -p "$1" && chown "$2" "$1"; }', [context.workdir, `${ids.uid}:${ids.gid}`]);
    if (made.exit_code !== 0)
      throw new CorralError("build_failed", `Cannot create the working directory ${JSON.stringify(context.workdir)} in the builder VM: ${made.stderr.trim()}`);
    return ids;
  }

  /** A USER or --chown value (name, uid, name:group, uid:gid) as numeric ids, looked up in the builder VM. */
  private async ids(user: string, step?: BuildStep): Promise<{ uid: number; gid: number }> {
    const known = this.users.get(user);
    if (known) return known;
    const [name = "", group = ""] = user.split(":", 2);
    const script = [
      'case "$1" in *[!0-9]*) uid=$(id -u "$1") || exit 3 ;; *) uid=$1 ;; esac',
      'if [ -n "$2" ]; then case "$2" in *[!0-9]*) gid=$(awk -F: -v g="$2" \'$1==g{print $3}\' /etc/group); [ -n "$gid" ] || exit 4 ;; *) gid=$2 ;; esac',
      'else gid=$(id -g "$1" 2>/dev/null) || gid=$uid; fi',
      'echo "$uid $gid"',
    ].join("\n");
    const result = await this.shell(script, [name, group]);
    const match = /^(\d+) (\d+)$/.exec(result.stdout.trim());
    if (result.exit_code !== 0 || !match) {
      const what = result.exit_code === 4 ? `group ${JSON.stringify(group)}` : `user ${JSON.stringify(name)}`;
      const where = step ? `Step ${step.number}/${this.build.total} "${step.display}"` : `USER ${user}`;
      throw new CorralError("build_failed", `${where}: the ${what} does not exist in the image`);
    }
    const ids = { uid: Number(match[1]), gid: Number(match[2]) };
    this.users.set(user, ids);
    return ids;
  }

  /** A command in the builder VM; the build's cancellation kills it (the agent kills a command whose stream goes). */
  private async exec(spec: ExecSpec): Promise<ClientHttp2Stream> {
    const { stream: frames } = await this.manager.exec(this.vm(), spec, undefined, this.signal);
    const stop = (): void => void frames.destroy();
    if (this.signal.aborted) stop();
    else {
      this.signal.addEventListener("abort", stop, { once: true });
      frames.once("close", () => this.signal.removeEventListener("abort", stop));
    }
    return frames;
  }

  private async isDirectory(path: string): Promise<boolean> {
    return (await this.shell('[ -d "$1" ]', [path])).exit_code === 0;
  }

  /** A small script as root in the builder VM, its output collected. */
  private async shell(script: string, args: string[]): Promise<{ exit_code: number; stdout: string; stderr: string }> {
    const frames = await this.exec({ cmd: "/bin/sh", args: ["-c", script, "sh", ...args], env: [], cwd: "/", uid: 0, gid: 0, stdio: "text", stdin: false });
    return collectExec(frames, "text");
  }
}

async function* readFrames(stream: ClientHttp2Stream): AsyncGenerator<ExecFrame> {
  let pending = "";
  stream.setEncoding("utf8");
  for await (const chunk of stream as AsyncIterable<string>) {
    pending += chunk;
    let end = pending.indexOf("\n");
    while (end >= 0) {
      const line = pending.slice(0, end).trim();
      pending = pending.slice(end + 1);
      if (line) yield JSON.parse(line) as ExecFrame;
      end = pending.indexOf("\n");
    }
  }
  if (pending.trim()) yield JSON.parse(pending) as ExecFrame;
}
