// Runs the daemon's wall set-up (HostIsolation) on its own, for tests that run it inside a network namespace
// they made: `node --import tsx isolation-driver.ts STATE_DIR [ENTRY...]` sets the wall up with those
// host_access entries, prints {"gid": N} (or {"error": message}), watches the wall every 200 ms (a daemon
// does every few seconds), and releases this "daemon's" allowances when its stdin closes, then prints
// {"released": true}.
import { parseHostAccess, type HostAccess } from "../../src/net/host-access.ts";
import { HostIsolation } from "../../src/net/host-isolation.ts";
import { createLogger } from "../../src/util/log.ts";

const [stateDir = "", ...entries] = process.argv.slice(2);
const hostAccess = entries.map((entry): HostAccess => {
  const parsed = parseHostAccess(entry);
  if ("problem" in parsed) throw new Error(parsed.problem);
  return parsed;
});
const log = createLogger({ level: "warn", destination: process.stderr, readable: true });
try {
  const isolation = await HostIsolation.setUp({ config: { enabled: true, hostAccess }, stateDir, log });
  isolation.watch(200);
  console.log(JSON.stringify({ gid: isolation.gid }));
  process.stdin.resume();
  process.stdin.on("end", () => {
    void isolation.release().then(() => console.log(JSON.stringify({ released: true })));
  });
} catch (err) {
  console.log(JSON.stringify({ error: (err as Error).message }));
}
