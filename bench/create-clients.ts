// The controller scale bench's clients, on a worker thread: CLIENTS at once creating environments through
// POST /api/envs, each timed. On the controller's own thread they shared its event loop, so the loop delay
// measured while placing was the clients' JSON and HTTP as much as the controller's (real clients run
// elsewhere); here the controller's loop carries only the controller.
import { isMainThread, parentPort, workerData } from "node:worker_threads";
import type { VmSpec } from "../src/protocol/controller.ts";
import { ControllerClient } from "../src/sdk/controller-client.ts";
import { tsxWorker } from "./tsx-worker.ts";

export interface CreateClientsOptions {
  url: string;
  envs: number;
  clients: number;
  vm: VmSpec;
  sshKey: string;
  /** Environment ids are PREFIX-000001 and on. */
  idPrefix: string;
  /**
   * Send at this steady rate instead of as fast as answers come: a create every 1/rate s whether or not the
   * earlier ones were answered (at most `clients` × 8 under way). Unset: `clients` loops, each sending its
   * next create when its last was answered.
   */
  ratePerSecond?: number;
}

export interface CreateClientsResult {
  /** Each create's time, by environment; NaN where it failed. */
  createMs: number[];
  failures: number;
  /** From the first create sent to the last answered. */
  seconds: number;
}

type FromWorker = { type: "progress"; done: number } | { type: "failed"; index: number; message: string } | { type: "done"; result: CreateClientsResult };

const WORKER_KEY = "corralCreateClients";

/** Runs `task(0 … total-1)` with at most `workers` of them under way at once. */
export async function inParallel(total: number, workers: number, task: (index: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(workers, total) }, async () => {
      while (next < total) await task(next++);
    }),
  );
}

/** Starts `task(i)` at start + i/rate seconds (late when `limit` are under way), then waits for all of them. */
async function paced(total: number, ratePerSecond: number, limit: number, task: (index: number) => Promise<void>): Promise<void> {
  const started = performance.now();
  const running = new Set<Promise<void>>();
  for (let i = 0; i < total; i++) {
    const wait = started + (i * 1000) / ratePerSecond - performance.now();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    while (running.size >= limit) await Promise.race(running);
    const run: Promise<void> = task(i).finally(() => running.delete(run));
    running.add(run);
  }
  await Promise.all(running);
}

/** Creates the environments from a worker thread; `onProgress` hears every `step` answers. */
export function createFromWorker(
  options: CreateClientsOptions,
  onProgress: (done: number) => void,
  onFailure: (index: number, message: string) => void,
): Promise<CreateClientsResult> {
  const worker = tsxWorker(import.meta.url, { [WORKER_KEY]: options });
  return new Promise<CreateClientsResult>((resolve, reject) => {
    worker.on("message", (message: FromWorker) => {
      if (message.type === "progress") onProgress(message.done);
      else if (message.type === "failed") onFailure(message.index, message.message);
      else resolve(message.result);
    });
    worker.once("error", reject);
    worker.once("exit", (code) => reject(new Error(`The create clients' thread exited (${code}) before it answered`)));
  }).finally(() => void worker.terminate());
}

const asWorker = isMainThread ? undefined : ((workerData as Record<string, unknown> | null)?.[WORKER_KEY] as CreateClientsOptions | undefined);
if (asWorker && parentPort) {
  const port = parentPort;
  const { url, envs, clients, vm, sshKey, idPrefix, ratePerSecond } = asWorker;
  const client = new ControllerClient({ url, timeoutMs: 120_000 });
  const createMs = new Array<number>(envs).fill(Number.NaN);
  const step = Math.max(1, Math.floor(envs / 10));
  let failures = 0;
  let done = 0;
  const started = performance.now();
  const create = async (i: number): Promise<void> => {
    const t0 = performance.now();
    try {
      await client.envs.create({ id: `${idPrefix}-${String(i + 1).padStart(6, "0")}`, owner: "bench", ssh_keys: [sshKey], vms: [vm] });
      createMs[i] = performance.now() - t0;
    } catch (err) {
      if (++failures <= 3) port.postMessage({ type: "failed", index: i, message: err instanceof Error ? err.message : String(err) } satisfies FromWorker);
    }
    if (++done % step === 0) port.postMessage({ type: "progress", done } satisfies FromWorker);
  };
  if (ratePerSecond === undefined) await inParallel(envs, clients, create);
  else await paced(envs, ratePerSecond, clients * 8, create);
  const seconds = (performance.now() - started) / 1000;
  await client.close();
  port.postMessage({ type: "done", result: { createMs, failures, seconds } } satisfies FromWorker);
}
