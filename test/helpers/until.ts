// Polls until a probe returns a value (not undefined), with a deadline: how tests wait for something that
// happens in the background (a template build, a pool refill, a server in a guest).
import { setTimeout as sleep } from "node:timers/promises";

export async function until<T>(probe: () => Promise<T | undefined> | T | undefined, what: string, timeoutMs = 20_000, intervalMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}`);
    await sleep(intervalMs);
  }
}
