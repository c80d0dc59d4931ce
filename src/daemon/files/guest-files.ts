// The file service: copies and filesystem operations in a VM, carried out by its agent. Request and response
// bodies are streams handed through untouched, so a copy's size never shows in the daemon's memory.
import type { ClientHttp2Stream, IncomingHttpHeaders } from "node:http2";
import type { Readable } from "node:stream";
import { headerJson } from "../../protocol/agent.ts";
import {
  AGENT_FILE_PATHS,
  COPY_SPEC_HEADER,
  WATCH_SPEC_HEADER,
  type DownloadSpec,
  type FsInfo,
  type FsMkdirBody,
  type UploadResult,
  type UploadSpec,
  type WatchSpec,
} from "../../protocol/files.ts";
import { CorralError } from "../../protocol/errors.ts";
import { AgentError, type AgentClient } from "../agent/agent-client.ts";
import type { VmManager } from "../vm/vm-manager.ts";

export interface GuestDownload {
  headers: IncomingHttpHeaders;
  /** The body, unread; destroying it cancels the copy in the guest. */
  stream: ClientHttp2Stream;
}

function query(params: Record<string, string>): string {
  return `?${new URLSearchParams(params).toString()}`;
}

export class GuestFiles {
  constructor(private readonly manager: VmManager) {}

  /** Streams `body` into the guest; resolves once it is written. */
  upload(hostname: string, spec: UploadSpec, body: Readable, signal: AbortSignal): Promise<UploadResult> {
    return this.withAgent(hostname, signal, (agent) =>
      agent.callJson<UploadResult>("POST", AGENT_FILE_PATHS.upload, { headers: { [COPY_SPEC_HEADER]: headerJson(spec) }, body, signal }),
    );
  }

  /** Starts a download; resolves with the guest's headers once it has found the source. */
  download(hostname: string, spec: DownloadSpec, signal: AbortSignal): Promise<GuestDownload> {
    return this.withAgent(hostname, signal, async (agent) => {
      const { headers, stream } = await agent.call("GET", AGENT_FILE_PATHS.download, { headers: { [COPY_SPEC_HEADER]: headerJson(spec) }, signal });
      return { headers, stream };
    });
  }

  readdir(hostname: string, path: string, signal: AbortSignal): Promise<FsInfo[]> {
    return this.withAgent(hostname, signal, (agent) => agent.callJson<FsInfo[]>("GET", `${AGENT_FILE_PATHS.readdir}${query({ path })}`, { signal }));
  }

  stat(hostname: string, path: string, signal: AbortSignal): Promise<FsInfo> {
    return this.withAgent(hostname, signal, (agent) => agent.callJson<FsInfo>("GET", `${AGENT_FILE_PATHS.stat}${query({ path })}`, { signal }));
  }

  mkdir(hostname: string, request: FsMkdirBody, signal: AbortSignal): Promise<{ path: string; created: boolean }> {
    return this.withAgent(hostname, signal, (agent) => agent.callJson("POST", AGENT_FILE_PATHS.mkdir, { body: { ...request }, signal }));
  }

  remove(hostname: string, path: string, recursive: boolean, signal: AbortSignal): Promise<{ path: string; removed: boolean }> {
    return this.withAgent(hostname, signal, (agent) => agent.callJson("DELETE", `${AGENT_FILE_PATHS.remove}${query({ path, recursive: String(recursive) })}`, { signal }));
  }

  /** Starts a watch; resolves with the guest's event stream (SSE text) once the watches are in place. */
  watch(hostname: string, spec: WatchSpec, signal: AbortSignal): Promise<ClientHttp2Stream> {
    return this.withAgent(hostname, signal, async (agent) => {
      const { stream } = await agent.call("GET", AGENT_FILE_PATHS.watch, { headers: { [WATCH_SPEC_HEADER]: headerJson(spec) }, signal });
      return stream;
    });
  }

  /** The manager maps the agent's 4xx answers; a full guest disk (507) is ours to keep too. */
  private withAgent<T>(hostname: string, signal: AbortSignal, call: (agent: AgentClient) => Promise<T>): Promise<T> {
    return this.manager.withAgent(hostname, signal, async (agent) => {
      try {
        return await call(agent);
      } catch (err) {
        if (err instanceof AgentError && err.status === 507) throw new CorralError("insufficient_storage", err.message, { cause: err });
        throw err;
      }
    });
  }
}
