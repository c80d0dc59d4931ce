// Worker threads for the benches that run part of themselves beside the code they measure (the simulated
// hosts, the controller's clients): the worker runs a TypeScript file of this checkout.
import { Worker } from "node:worker_threads";

/** A worker thread running `moduleUrl` (a .ts file: tsx's loader is registered there first) with `data`. */
export function tsxWorker(moduleUrl: string, data: Record<string, unknown>): Worker {
  // A worker does not inherit tsx's loader: register it there before importing the file.
  const boot = `import(${JSON.stringify(import.meta.resolve("tsx/esm/api"))}).then((tsx) => { tsx.register(); return import(${JSON.stringify(moduleUrl)}); });`;
  return new Worker(boot, { eval: true, workerData: data });
}
