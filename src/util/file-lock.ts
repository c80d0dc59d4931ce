// A lock between processes: a file created exclusively, holding the owner's pid. A lock whose owner is gone
// is stale and taken over; a live owner is waited for.
import { readFileSync } from "node:fs";
import { mkdir, rm, stat, writeFile } from "node:fs/promises";
import { dirname } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { processAlive } from "./process-alive.ts";

/** Runs `work` holding the lock at `file`, waiting up to `timeoutMs` for another holder. */
export async function withFileLock<T>(file: string, work: () => Promise<T>, options: { timeoutMs?: number; onWait?: (pid: number) => void } = {}): Promise<T> {
  await mkdir(dirname(file), { recursive: true });
  const deadline = Date.now() + (options.timeoutMs ?? 15 * 60_000);
  let announced = false;
  for (;;) {
    try {
      await writeFile(file, `${process.pid}\n`, { flag: "wx" });
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      let text: string;
      try {
        text = readFileSync(file, "utf8").trim();
      } catch {
        continue; // released meanwhile
      }
      const owner = Number(text);
      // Created but not written yet: its owner is between open and write. Only a long-empty file is stale.
      if (
        text === "" &&
        Date.now() -
          (await stat(file).then(
            (s) => s.mtimeMs,
            () => 0,
          )) <
          5000
      ) {
        await sleep(20);
        continue;
      }
      if (!Number.isInteger(owner) || owner <= 0 || !processAlive(owner)) {
        await rm(file, { force: true });
        continue;
      }
      if (Date.now() > deadline) throw new Error(`Timed out waiting for the lock ${file} held by pid ${owner}`);
      if (!announced) options.onWait?.(owner);
      announced = true;
      await sleep(200);
    }
  }
  try {
    return await work();
  } finally {
    await rm(file, { force: true });
  }
}
