// Copy throughput, host -> guest and guest -> host, for a 256 MiB file: `/vm/HOST/cp` against our own exec
// path carrying the same bytes (`cat > file` with the file as stdin; `cat file` with text stdout). The file
// is ASCII (base64 of random bytes) so the exec peer can carry it as text, without base64 inflating it.
//   node --import tsx bench/copy.ts        (boots its own daemon and VM; runCopyBench is what bench/main.ts uses)
import { createHash, randomBytes } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { pathToFileURL } from "node:url";
import type { CorralClient } from "../src/sdk/index.ts";
import { ratio, table } from "./stats.ts";

const MiB = 1024 * 1024;
const SIZE = Number(process.env.CORRAL_BENCH_COPY_MIB ?? 256) * MiB;
const ROUNDS = Number(process.env.CORRAL_BENCH_COPY_ROUNDS ?? 1);
const GUEST_FILE = "/root/corral-bench-copy.txt";

export const COPY_BENCH_HEADERS = [`copy ${SIZE / MiB} MiB (higher is better)`, "Corral cp", "exec cat (peer)", "cp/peer"] as const;

/** `size` bytes of base64 text, and their sha256. */
async function asciiFile(path: string, size: number): Promise<string> {
  const hash = createHash("sha256");
  let left = size;
  const source = new Readable({
    read() {
      if (left === 0) return void this.push(null);
      const chunk = Buffer.from(
        randomBytes(Math.ceil(Math.min(MiB, left) * 0.75))
          .toString("base64")
          .slice(0, Math.min(MiB, left)),
        "latin1",
      );
      left -= chunk.length;
      hash.update(chunk);
      this.push(chunk);
    },
  });
  await pipeline(source, createWriteStream(path));
  return hash.digest("hex");
}

function mibPerSecond(bytes: number, ms: number): number {
  return bytes / MiB / (ms / 1000);
}

async function timed(what: () => Promise<number>): Promise<number> {
  const started = performance.now();
  const bytes = await what();
  if (bytes !== SIZE) throw new Error(`The copy moved ${bytes} bytes, not ${SIZE}`);
  return mibPerSecond(bytes, performance.now() - started);
}

async function guestSize(client: CorralClient, hostname: string): Promise<number> {
  return (await client.fs.stat(hostname, GUEST_FILE))?.size ?? -1;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] as number;
}

/** Measures both directions, alternating ours and the peer each round; rows for `table()`. */
export async function runCopyBench(client: CorralClient, hostname: string, log: (line: string) => void = () => undefined): Promise<string[][]> {
  const work = await mkdtemp(join(tmpdir(), "corral-bench-copy-"));
  const local = join(work, "payload.txt");
  try {
    await asciiFile(local, SIZE);
    const result = { upOurs: [] as number[], upPeer: [] as number[], downOurs: [] as number[], downPeer: [] as number[] };
    for (let round = 0; round < ROUNDS; round++) {
      result.upOurs.push(
        await timed(async () => {
          await client.fs.writeFile(hostname, GUEST_FILE, createReadStream(local));
          return guestSize(client, hostname);
        }),
      );
      result.downOurs.push(
        await timed(async () => {
          let bytes = 0;
          for await (const chunk of (await client.fs.readFile(hostname, GUEST_FILE)).body) bytes += (chunk as Buffer).length;
          return bytes;
        }),
      );
      result.upPeer.push(
        await timed(async () => {
          for await (const frame of client.exec(hostname, { cmd: `cat > ${GUEST_FILE}`, shell: "/bin/sh", stdin: createReadStream(local) })) {
            if (frame.type === "exit" && frame.exit_code !== 0) throw new Error(`cat failed: ${frame.error ?? frame.stderr}`);
          }
          return guestSize(client, hostname);
        }),
      );
      result.downPeer.push(
        await timed(async () => {
          let bytes = 0;
          for await (const frame of client.exec(hostname, { cmd: "cat", args: [GUEST_FILE] })) if (frame.type === "stdout") bytes += frame.stdout.length;
          return bytes;
        }),
      );
      log(
        `  copy round ${round + 1}/${ROUNDS}: up ${result.upOurs.at(-1)?.toFixed(1)} vs ${result.upPeer.at(-1)?.toFixed(1)} MiB/s, ` +
          `down ${result.downOurs.at(-1)?.toFixed(1)} vs ${result.downPeer.at(-1)?.toFixed(1)} MiB/s`,
      );
    }
    await client.fs.remove(hostname, GUEST_FILE);
    const row = (label: string, ours: number[], peer: number[]): string[] => [
      label,
      `${median(ours).toFixed(1)} MiB/s`,
      `${median(peer).toFixed(1)} MiB/s`,
      ratio(median(ours), median(peer)),
    ];
    return [
      row("host -> guest (cp binary vs exec `cat > file`, stdin)", result.upOurs, result.upPeer),
      row("guest -> host (cp binary vs exec `cat file`, text stdout)", result.downOurs, result.downPeer),
    ];
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

// Run on its own: a daemon with one VM, the two rows, a table.
if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const { runSetup } = await import("../src/setup/setup.ts");
  const { silentProgress } = await import("../src/image/index.ts");
  const { TestDaemon } = await import("../test/helpers/daemon-process.ts");
  await runSetup(silentProgress);
  const daemon = await TestDaemon.create(`config:\n  host_groups:\n    - name: bench\n      image: base\n      vcpu: 1\n      ram_mb: 512\n`);
  try {
    await daemon.start();
    const info = await daemon.client.info();
    const vm = await daemon.client.createNode("bench", {}, { wait: "agent", timeout: "120s" });
    const rows = await runCopyBench(daemon.client, vm.hostname, (line) => process.stderr.write(`${line}\n`));
    process.stdout.write(`\n${table([...COPY_BENCH_HEADERS], rows)}\n\nAccelerator: ${info.accel}; 1 vCPU / 512 MiB guest\n`);
  } finally {
    await daemon.dispose();
  }
}
