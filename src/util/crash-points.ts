// Named places in multi-step operations where a test can make the process die as `kill -9` would, to prove
// that what a crash leaves half-done is recovered. Armed only by the CORRAL_CRASH_AT environment variable
// (comma-separated names, read once at start); unarmed, a crash point is one Set lookup.

const armed = new Set(
  (process.env.CORRAL_CRASH_AT ?? "")
    .split(",")
    .map((name) => name.trim())
    .filter((name) => name !== ""),
);

/**
 * Dies at once with SIGKILL when `name` is armed: no exit handlers, no flushing, nothing cleaned up, exactly
 * like a crash or `kill -9` at this point. Names are `area.step`, e.g. `create.after-insert`.
 */
export function crashPoint(name: string): void {
  if (armed.size === 0 || !armed.has(name)) return;
  process.stderr.write(`corral: crash point "${name}" reached: dying with SIGKILL\n`);
  process.kill(process.pid, "SIGKILL");
}
