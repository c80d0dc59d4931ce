// A typed client for the host daemon's API, over TCP or a unix socket. The CLI and the tests use it;
// programs can too (it speaks the same wire format as Slicer's SDKs). Feature namespaces live in their own
// files and share this client's transport.
import type { Duplex, Readable } from "node:stream";
import type { BufferedExecResult, ExecFrame } from "../protocol/agent.ts";
import type { CommitBody, CommitView, ForkBody } from "../protocol/commits-api.ts";
import type { HostIsolationInfo } from "../protocol/host-isolation.ts";
import type { NetworkPatchBody, VmNetworkDescription } from "../protocol/net.ts";
import type { BuildEvent } from "../protocol/image-build.ts";
import type { TemplateInfoBody as TemplateInfo } from "../protocol/templates-api.ts";
import type { CreatedNode, CreateNodeBody, GroupNetworkInfo, HostGroupInfo, NodeInfo, NodeStat } from "../protocol/slicer.ts";
import { BackgroundExecApi } from "./background.ts";
import { FilesApi } from "./files.ts";
import { ImagesApi } from "./images.ts";
import type { BuildImageOptions } from "./image-build.ts";
import { ndjson } from "./ndjson.ts";
import { SecretsApi } from "./secrets.ts";
import { listenForward, openForward, type ListenForwardOptions, type LocalForward } from "./forward.ts";
import type { ForwardMapping } from "./forward-spec.ts";
import { openShell, type ShellOptions, type ShellSession } from "./shell.ts";
import { type ClientOptions, type HttpMethod, queryString, Transport } from "./transport.ts";

export interface VmHealth {
  hostname: string;
  agent_uptime: number;
  agent_version: string;
  system_uptime: number;
  userdata_ran: boolean;
  userdata_exit_code?: number;
  ip: string;
}

export interface VmLogs {
  hostname: string;
  lines: number;
  content: string;
}

export interface DaemonInfo {
  version: string;
  git_commit: string;
  platform: string;
  arch: string;
  accel: string;
  accel_reason: string;
  accel_decided_at: string;
  images: { name: string; version: string; kernel_release: string; created_at: string }[];
  templates: TemplateInfo[];
  /** The wall between guests and the host's services. */
  host_isolation: HostIsolationInfo;
  /** Each host group's network: mode, whether it could be set up, and why not. */
  network: { groups: GroupNetworkInfo[] };
}

export interface CreateOptions {
  wait?: "agent" | "userdata";
  /** A Go duration, e.g. "60s". */
  timeout?: string;
  /**
   * Gives up on the create: the daemon removes the VM (a create is all or nothing: abandoned before its
   * answer arrives, it leaves no VM behind).
   */
  signal?: AbortSignal;
}

/** GET /vm/HOST: the node, its image and state, and its network (Slicer's Go SDK's `network` fields and Corral's). */
export type DescribedNode = NodeInfo & { image: string; state: string; network: VmNetworkDescription };

export interface ExecOptions {
  cmd: string;
  args?: string[];
  env?: Record<string, string> | string[];
  cwd?: string;
  uid?: number;
  gid?: number;
  /** A user of the guest by name (e.g. the image's default user, "debian"). */
  user?: string;
  shell?: string;
  stdio?: "text" | "base64";
  /** Sent as the command's standard input, streamed. */
  stdin?: Readable | Buffer | string;
  signal?: AbortSignal;
}

export interface NodeFilter {
  tag?: string;
  tagPrefix?: string;
}

export class CorralClient {
  readonly transport: Transport;
  /** Background exec: jobs that outlive the request (exec, list, info, logs, kill, wait, remove). */
  readonly bg: BackgroundExecApi;
  /** Secrets delivered into every VM under /run/corral/secrets (list, create, update, remove). */
  readonly secrets: SecretsApi;
  /** Files in VMs: copies, listings, watches. */
  readonly fs: FilesApi;
  /** The host's images: catalogue, removal, pruning, OCI import and registry pull. */
  readonly images: ImagesApi;

  constructor(options: ClientOptions) {
    this.transport = new Transport(options);
    this.bg = new BackgroundExecApi(this.transport);
    this.secrets = new SecretsApi(this.transport);
    this.fs = new FilesApi(this.transport);
    this.images = new ImagesApi(this.transport);
  }

  close(): Promise<void> {
    return this.transport.close();
  }

  private json<T>(method: HttpMethod, path: string, body?: unknown, timeoutMs?: number, signal?: AbortSignal): Promise<T> {
    return this.transport.json<T>(method, path, body, timeoutMs, signal);
  }

  info(): Promise<DaemonInfo> {
    return this.json("GET", "/info");
  }

  /** The template snapshot of each host group (new sandboxes are clones of it). */
  templates(): Promise<TemplateInfo[]> {
    return this.json("GET", "/templates");
  }

  /** Starts building a fresh template for the group; VMs cloned from the old one keep running. */
  rebuildTemplate(hostgroup: string): Promise<TemplateInfo> {
    return this.json("POST", `/templates/${encodeURIComponent(hostgroup)}/rebuild`);
  }

  healthz(): Promise<{ status: string }> {
    return this.json("GET", "/healthz");
  }

  hostGroups(): Promise<HostGroupInfo[]> {
    return this.json("GET", "/hostgroup");
  }

  nodes(filter: NodeFilter = {}): Promise<NodeInfo[]> {
    return this.json("GET", `/nodes${queryString({ tag: filter.tag, tag_prefix: filter.tagPrefix })}`);
  }

  groupNodes(group: string, filter: NodeFilter = {}): Promise<NodeInfo[]> {
    return this.json("GET", `/hostgroup/${encodeURIComponent(group)}/nodes${queryString({ tag: filter.tag, tag_prefix: filter.tagPrefix })}`);
  }

  createNode(group: string, body: CreateNodeBody = {}, options: CreateOptions = {}): Promise<CreatedNode> {
    const path = `/hostgroup/${encodeURIComponent(group)}/nodes${queryString({ wait: options.wait, timeout: options.timeout })}`;
    // A create that waits may take as long as its own timeout; give the HTTP request room beyond it.
    return this.json("POST", path, body, options.wait ? 25 * 3_600_000 : undefined, options.signal);
  }

  deleteNode(group: string, hostname: string): Promise<{ message: string; disk_removed: string }> {
    return this.json("DELETE", `/hostgroup/${encodeURIComponent(group)}/nodes/${encodeURIComponent(hostname)}`);
  }

  /** Saves the VM's disk (and with `memory`, its memory and devices) as a commit; the VM runs on. */
  commit(hostname: string, body: CommitBody = {}): Promise<CommitView> {
    return this.json("POST", `/vm/${encodeURIComponent(hostname)}/commit`, body, 30 * 60_000);
  }

  commits(filter: { cacheKey?: string } = {}): Promise<CommitView[]> {
    return this.json("GET", `/vm/commits${queryString({ cache_key: filter.cacheKey })}`);
  }

  getCommit(commitId: string): Promise<CommitView> {
    return this.json("GET", `/vm/commits/${encodeURIComponent(commitId)}`);
  }

  deleteCommit(commitId: string): Promise<{ message: string }> {
    return this.json("DELETE", `/vm/commits/${encodeURIComponent(commitId)}`);
  }

  /** A new sandbox from a commit (resumed where the VM was, for a memory commit), answered like a create. */
  fork(commitId: string, body: ForkBody = {}, options: CreateOptions = {}): Promise<CreatedNode> {
    const path = `/vm/commits/${encodeURIComponent(commitId)}/fork${queryString({ wait: options.wait, timeout: options.timeout })}`;
    return this.json("POST", path, body, options.wait ? 25 * 3_600_000 : undefined, options.signal);
  }

  describe(hostname: string): Promise<DescribedNode> {
    return this.json("GET", `/vm/${encodeURIComponent(hostname)}`);
  }

  /**
   * Sets the VM to expire `lifetime` from now: a Go duration ("1h") or seconds; null for no end (refused
   * when its host group has a max_lifetime). Answers with the VM, `expires_at` updated.
   */
  setLifetime(hostname: string, lifetime: string | number | null): Promise<DescribedNode> {
    return this.json("PATCH", `/vm/${encodeURIComponent(hostname)}`, { lifetime });
  }

  /**
   * Changes a running VM's egress policy: `allow`/`drop` replace its lists (null: back to its host group's,
   * `[]`: none), `deny_outgoing` stops or lets it open connections. Bridge and isolated groups; a user-mode
   * VM's policy is fixed at start (409). Answers with the VM's network as GET /vm/HOST shows it.
   */
  patchNetwork(hostname: string, body: NetworkPatchBody): Promise<VmNetworkDescription> {
    return this.json("PATCH", `/vm/${encodeURIComponent(hostname)}/network`, body);
  }

  health(hostname: string): Promise<VmHealth> {
    return this.json("GET", `/vm/${encodeURIComponent(hostname)}/health`);
  }

  logs(hostname: string, lines?: number): Promise<VmLogs> {
    return this.json("GET", `/vm/${encodeURIComponent(hostname)}/logs${queryString({ lines })}`);
  }

  // ---- power ----

  pause(hostname: string): Promise<string> {
    return this.action(hostname, "pause");
  }

  resume(hostname: string): Promise<string> {
    return this.action(hostname, "resume");
  }

  /** Powers the VM off (action "shutdown", the default) or reboots it in place ("reboot"). */
  shutdown(hostname: string, action: "shutdown" | "reboot" = "shutdown"): Promise<string> {
    return this.action(hostname, "shutdown", { action });
  }

  /** Boots a stopped persistent VM again on its own disk. */
  relaunch(hostname: string, options: CreateOptions = {}): Promise<CreatedNode> {
    return this.json(
      "POST",
      `/vm/${encodeURIComponent(hostname)}/relaunch${queryString({ wait: options.wait, timeout: options.timeout })}`,
      undefined,
      options.wait ? 25 * 3_600_000 : undefined,
    );
  }

  /** Saves the VM's memory to disk and stops its QEMU process. */
  suspend(hostname: string): Promise<string> {
    return this.action(hostname, "suspend");
  }

  restore(hostname: string, options: CreateOptions = {}): Promise<string> {
    return this.action(hostname, "restore", { wait: options.wait, timeout: options.timeout });
  }

  private async action(hostname: string, name: string, query: Record<string, string | undefined> = {}): Promise<string> {
    const response = await this.transport.send("POST", `/vm/${encodeURIComponent(hostname)}/${name}${queryString(query)}`, { timeoutMs: 25 * 3_600_000 });
    return response.body.text();
  }

  // ---- stats ----

  /** Every VM's resource snapshot (null, with `error`, for VMs whose agent cannot answer). */
  stats(): Promise<NodeStat[]> {
    return this.json("GET", "/nodes/stats");
  }

  async nodeStats(hostname: string): Promise<NodeStat> {
    const list = await this.json<NodeStat[]>("GET", `/node/${encodeURIComponent(hostname)}/stats`);
    return list[0] as NodeStat;
  }

  /** The daemon's Prometheus metrics, as text. */
  async metrics(): Promise<string> {
    return (await this.transport.send("GET", "/metrics", {})).body.text();
  }

  // ---- tags ----

  tags(hostname: string): Promise<{ hostname: string; tags: string[] }> {
    return this.json("GET", `/vm/${encodeURIComponent(hostname)}/tags`);
  }

  /** One change per call: { add }, { remove } or { replace } (replace: [] clears). */
  updateTags(hostname: string, change: { add?: string[]; remove?: string[]; replace?: string[] }): Promise<{ hostname: string; tags: string[] }> {
    return this.json("PATCH", `/vm/${encodeURIComponent(hostname)}/tags`, change);
  }

  execBuffered(hostname: string, options: Omit<ExecOptions, "stdin">): Promise<BufferedExecResult> {
    return this.json("POST", `/vm/${encodeURIComponent(hostname)}/exec${this.execQuery(options, { buffered: true })}`, undefined, 25 * 3_600_000);
  }

  /** Builds a new version of an image from a Dockerfile on the daemon; yields progress, ending in `done` or `error`. */
  async *buildImage(options: BuildImageOptions): AsyncGenerator<BuildEvent> {
    // Loaded on first use: packing a build context brings the tar writer, which other calls do not need.
    const { buildImage } = await import("./image-build.ts");
    yield* buildImage(this.transport, options);
  }

  /** Streams the command's frames as they come; the last one is the `exit` frame. */
  async *exec(hostname: string, options: ExecOptions): AsyncGenerator<ExecFrame> {
    const hasStdin = options.stdin !== undefined;
    const response = await this.transport.send("POST", `/vm/${encodeURIComponent(hostname)}/exec${this.execQuery(options, { stdin: hasStdin || undefined })}`, {
      body: options.stdin,
      contentType: hasStdin ? "application/octet-stream" : undefined,
      signal: options.signal,
      timeoutMs: 0,
    });
    yield* ndjson<ExecFrame>(response.body);
  }

  /** An interactive shell (WebSocket): write keystrokes, read output, resize, then await `exit`. */
  shell(hostname: string, options: ShellOptions = {}): Promise<ShellSession> {
    return openShell(this.transport.options, hostname, options);
  }

  /** One forwarded connection to HOST:PORT or unix:/path inside the VM, as a Duplex stream. */
  forward(hostname: string, target: string, signal?: AbortSignal): Promise<Duplex> {
    return openForward(this.transport.options, hostname, target, signal);
  }

  /** Listens on this host (a `-L` spec such as "8080:80") and forwards each connection into the VM. */
  listenForward(hostname: string, spec: string | ForwardMapping, options: ListenForwardOptions = {}): Promise<LocalForward> {
    return listenForward(this.transport.options, hostname, spec, options);
  }

  private execQuery(options: ExecOptions, extra: Record<string, boolean | undefined>): string {
    const env = Array.isArray(options.env) ? options.env : Object.entries(options.env ?? {}).map(([k, v]) => `${k}=${v}`);
    return queryString({
      cmd: options.cmd,
      args: options.args,
      env,
      cwd: options.cwd,
      uid: options.uid,
      gid: options.gid,
      user: options.user,
      shell: options.shell,
      stdio: options.stdio,
      ...extra,
    });
  }
}
