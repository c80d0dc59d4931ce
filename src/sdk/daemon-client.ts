// A typed client for the host daemon's API, over TCP or a unix socket. The CLI and the tests use it;
// programs can too (it speaks the same wire format as Slicer's SDKs). Feature namespaces live in their own
// files and share this client's transport.
import type { Duplex, Readable } from "node:stream";
import type { Dispatcher } from "undici";
import type { BufferedExecResult, ExecFrame } from "../protocol/agent.ts";
import type { CreatedNode, CreateNodeBody, HostGroupInfo, NodeInfo } from "../protocol/slicer.ts";
import { listenForward, openForward, type ListenForwardOptions, type LocalForward } from "./forward.ts";
import type { ForwardMapping } from "./forward-spec.ts";
import { openShell, type ShellOptions, type ShellSession } from "./shell.ts";
import { queryString, Transport, type ClientOptions } from "./transport.ts";

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
}

export interface CreateOptions {
  wait?: "agent" | "userdata";
  /** A Go duration, e.g. "60s". */
  timeout?: string;
}

export interface ExecOptions {
  cmd: string;
  args?: string[];
  env?: Record<string, string> | string[];
  cwd?: string;
  uid?: number;
  gid?: number;
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

  constructor(options: ClientOptions) {
    this.transport = new Transport(options);
  }

  close(): Promise<void> {
    return this.transport.close();
  }

  private json<T>(method: Dispatcher.HttpMethod, path: string, body?: unknown, timeoutMs?: number): Promise<T> {
    return this.transport.json<T>(method, path, body, timeoutMs);
  }

  info(): Promise<DaemonInfo> {
    return this.json("GET", "/info");
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
    return this.json("POST", path, body, options.wait ? 25 * 3_600_000 : undefined);
  }

  deleteNode(group: string, hostname: string): Promise<{ message: string; disk_removed: string }> {
    return this.json("DELETE", `/hostgroup/${encodeURIComponent(group)}/nodes/${encodeURIComponent(hostname)}`);
  }

  describe(hostname: string): Promise<NodeInfo & { image: string; state: string }> {
    return this.json("GET", `/vm/${encodeURIComponent(hostname)}`);
  }

  health(hostname: string): Promise<VmHealth> {
    return this.json("GET", `/vm/${encodeURIComponent(hostname)}/health`);
  }

  logs(hostname: string, lines?: number): Promise<VmLogs> {
    return this.json("GET", `/vm/${encodeURIComponent(hostname)}/logs${queryString({ lines })}`);
  }

  execBuffered(hostname: string, options: Omit<ExecOptions, "stdin">): Promise<BufferedExecResult> {
    return this.json("POST", `/vm/${encodeURIComponent(hostname)}/exec${this.execQuery(options, { buffered: true })}`, undefined, 25 * 3_600_000);
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
    let pending = "";
    response.body.setEncoding("utf8");
    for await (const chunk of response.body as AsyncIterable<string>) {
      pending += chunk;
      let end = pending.indexOf("\n");
      while (end >= 0) {
        const line = pending.slice(0, end);
        pending = pending.slice(end + 1);
        if (line.trim()) yield JSON.parse(line) as ExecFrame;
        end = pending.indexOf("\n");
      }
    }
    if (pending.trim()) yield JSON.parse(pending) as ExecFrame;
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
      shell: options.shell,
      stdio: options.stdio,
      ...extra,
    });
  }
}
