// What a libvirt host costs the controller per call (docs/controller.md, "The libvirt driver"): one virsh call
// (`list --all --name`) through the driver's runner, and one heartbeat (the driver's info() and vms() at once,
// as heartbeat.ts asks them), to this machine's libvirtd by its socket (qemu:///system) and through a key-only
// sshd on 127.0.0.1 (qemu+ssh://): each ssh call is a connection of its own. Heartbeats after the first share
// what the driver keeps (libvirt/recent.ts), so they are shown apart.
//   node --import tsx bench/libvirt-calls.ts        CORRAL_BENCH_LIBVIRT_CALLS (20)
import { setTimeout as sleep } from "node:timers/promises";
import { LibvirtDriver, parseLibvirtUri } from "../src/controller/drivers/libvirt-driver.ts";
import { Virsh } from "../src/controller/drivers/libvirt/virsh.ts";
import { ensureLibvirtd, SYSTEM_URI } from "../test/helpers/libvirt.ts";
import { startSshd } from "../test/helpers/sshd.ts";
import { ms, percentile, table } from "./stats.ts";

const CALLS = Number(process.env.CORRAL_BENCH_LIBVIRT_CALLS ?? 20);

async function timed(times: number, call: () => Promise<unknown>, pauseMs = 0): Promise<number[]> {
  const samples: number[] = [];
  for (let i = 0; i < times; i++) {
    const started = performance.now();
    await call();
    samples.push(performance.now() - started);
    if (pauseMs > 0) await sleep(pauseMs);
  }
  return samples;
}

export async function runLibvirtCallsBench(): Promise<string> {
  await ensureLibvirtd();
  const sshd = await startSshd();
  try {
    const rows: string[][] = [];
    for (const [label, uri] of [
      ["qemu:///system", SYSTEM_URI],
      ["qemu+ssh://127.0.0.1", sshd.libvirtUri()],
    ] as const) {
      const parsed = parseLibvirtUri(uri);
      if ("problem" in parsed) throw new Error(parsed.problem);
      const virsh = new Virsh("bench", parsed.connectUri);
      const calls = await timed(CALLS, () => virsh.run(["list", "--all", "--name"]));
      const driver = new LibvirtDriver("bench", { uri });
      const beat = () => Promise.all([driver.info(), driver.vms()]);
      const [cold = 0] = await timed(1, beat);
      // 1.1 s apart: each beat's domain stats are read again, the slower-changing answers are kept.
      const warm = await timed(Math.max(3, Math.floor(CALLS / 4)), beat, 1_100);
      for (const [what, samples] of [
        ["one virsh call", calls],
        ["heartbeat, kept answers", warm],
      ] as const)
        rows.push([label, what, ms(percentile(samples, 50)), ms(percentile(samples, 99)), String(samples.length)]);
      rows.push([label, "first heartbeat", ms(cold), ms(cold), "1"]);
    }
    return table(["uri", "what", "p50", "p99", "n"], rows);
  } finally {
    await sshd.stop();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  console.log(await runLibvirtCallsBench());
}
