// Keystroke echo latency of `GET /vm/HOST/shell`, and its peer in the same run: the same one-byte echo
// through a forwarded TCP connection (`GET /vm/HOST/forward`) to an echo server in the guest.
//
// Why this peer: both go the same way (WebSocket -> daemon -> HTTP/2 over virtio-serial -> agent and
// back), so the gap between the two rows is what the terminal layer costs (pty, line discipline, the
// shell's line editor, frame parsing on both ends). SSH would be the user's alternative, but a user-mode
// networked guest is only reachable through our own forward, so an SSH row would measure OpenSSH and
// dropbear stacked on top of the forward row, not us.
//
// Run alone: node --import tsx bench/shell.ts (boots one VM); bench/main.ts runs it too.
import { pathToFileURL } from "node:url";
import type { Duplex } from "node:stream";
import type { CorralClient, ShellSession } from "../src/sdk/index.ts";
import { ms, percentile, ratio, table } from "./stats.ts";

const ECHO_PORT = 7007;
const ECHO_SERVER = `require("net").createServer((s) => { s.setNoDelay(true); s.on("error", () => {}); s.pipe(s); }).listen(${ECHO_PORT});`;
const BACKSPACE = "\x7f";

export interface ShellBenchResult {
  keystrokes: number;
  shell: number[];
  forward: number[];
  rows: string[][];
}

/** Resolves with the time until `predicate` holds for data arriving after the call. */
function nextData(subscribe: (listener: (chunk: Buffer) => void) => () => void, predicate: (seen: string) => boolean, timeoutMs = 30_000): Promise<number> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    let seen = "";
    const timer = setTimeout(() => {
      stop();
      reject(new Error(`No echo within ${timeoutMs} ms (got ${JSON.stringify(seen)})`));
    }, timeoutMs);
    const stop = subscribe((chunk) => {
      seen += chunk.toString("latin1");
      if (!predicate(seen)) return;
      clearTimeout(timer);
      stop();
      resolve(performance.now() - started);
    });
  });
}

function quiet(session: ShellSession, forMs: number): Promise<void> {
  return new Promise((resolve) => {
    let timer = setTimeout(done, forMs);
    const stop = session.onData(() => {
      clearTimeout(timer);
      timer = setTimeout(done, forMs);
    });
    function done(): void {
      stop();
      resolve();
    }
  });
}

/** One keystroke at the prompt: time until it is echoed; then erase it so the line stays short. */
async function shellKeystroke(session: ShellSession): Promise<number> {
  const echoed = nextData(
    (l) => session.onData(l),
    (seen) => seen.includes("x"),
  );
  session.write("x");
  const elapsed = await echoed;
  const erased = nextData(
    (l) => session.onData(l),
    () => true,
  );
  session.write(BACKSPACE);
  await erased;
  return elapsed;
}

async function forwardByte(conn: Duplex): Promise<number> {
  const subscribe = (listener: (chunk: Buffer) => void): (() => void) => {
    conn.on("data", listener);
    return () => conn.off("data", listener);
  };
  const echoed = nextData(subscribe, (seen) => seen.length >= 1);
  conn.write("x");
  return echoed;
}

export async function runShellBench(client: CorralClient, hostname: string, keystrokes = Number(process.env.CORRAL_BENCH_KEYSTROKES ?? 200)): Promise<ShellBenchResult> {
  await client.execBuffered(hostname, {
    cmd: "sh",
    args: ["-c", `cat > /tmp/bench-echo.js <<'EOF'\n${ECHO_SERVER}\nEOF\nsetsid node /tmp/bench-echo.js </dev/null >/dev/null 2>&1 &`],
  });
  for (let attempt = 0; ; attempt++) {
    const listening = await client.execBuffered(hostname, { cmd: "sh", args: ["-c", `netstat -ltn | grep -q ':${ECHO_PORT} '`] });
    if (listening.exit_code === 0) break;
    if (attempt > 100) throw new Error("The benchmark's echo server did not start in the guest");
    await new Promise((resolve) => setTimeout(resolve, 100));
  }

  const session = await client.shell(hostname, { cols: 200, rows: 50 });
  const conn = await client.forward(hostname, `127.0.0.1:${ECHO_PORT}`);
  const shell: number[] = [];
  const forward: number[] = [];
  try {
    await quiet(session, 500); // the banner and the prompt
    for (let i = 0; i < 10; i++) {
      await shellKeystroke(session);
      await forwardByte(conn);
    }
    // Alternating blocks, so noise on this shared machine hits both alike.
    for (let block = 0; block < keystrokes / 20; block++) {
      for (let i = 0; i < 20; i++) shell.push(await shellKeystroke(session));
      for (let i = 0; i < 20; i++) forward.push(await forwardByte(conn));
    }
  } finally {
    conn.destroy();
    session.close();
    await session.exit;
    await client.execBuffered(hostname, { cmd: "pkill", args: ["-f", "bench-echo.js"] }).catch(() => undefined);
  }

  const rows = [
    ["keystroke echo, p50", ms(percentile(shell, 50)), ms(percentile(forward, 50)), ratio(percentile(shell, 50), percentile(forward, 50))],
    ["keystroke echo, p99", ms(percentile(shell, 99)), ms(percentile(forward, 99)), ratio(percentile(shell, 99), percentile(forward, 99))],
  ];
  return { keystrokes: shell.length, shell, forward, rows };
}

export const SHELL_BENCH_HEADERS = ["interactive, 1 byte round trip", "shell (pty)", "forward (TCP echo)", "shell/forward"] as const;

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const { runSetup } = await import("../src/setup/setup.ts");
  const { silentProgress } = await import("../src/image/index.ts");
  const { TestDaemon } = await import("../test/helpers/daemon-process.ts");
  await runSetup(silentProgress);
  const daemon = await TestDaemon.create(`config:\n  host_groups:\n    - name: bench\n      image: base\n      vcpu: 1\n      ram_mb: 512\n`);
  await daemon.start();
  try {
    const info = await daemon.client.info();
    const vm = await daemon.client.createNode("bench", {}, { wait: "agent", timeout: "120s" });
    const result = await runShellBench(daemon.client, vm.hostname);
    process.stdout.write(`\n${table([...SHELL_BENCH_HEADERS], result.rows)}\n\n${result.keystrokes} keystrokes each; accelerator: ${info.accel}\n`);
  } finally {
    await daemon.dispose();
  }
}
