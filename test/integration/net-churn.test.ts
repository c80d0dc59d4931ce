// Creates and deletes leave nothing behind (issue 14, plan §5 I7): real template clones in a bridge group and
// an isolated group, created and deleted two at a time, in a namespace this test made. Afterwards there is
// no TAP, veth or bridge port left, no process (hence no per-VM namespace) of the daemon's VMs, the host
// tables hold exactly what they held before the first VM, and every address is free again. 50 per mode in
// every run; CORRAL_LONG_TESTS=1 runs the 1,000 (about 10 minutes a mode on this machine).
import assert from "node:assert/strict";
import { readlinkSync } from "node:fs";
import { after, before, describe, test } from "node:test";
import { findProcessesWithArgument } from "../../src/engine/index.ts";
import { qemuPids, TestDaemon } from "../helpers/daemon-process.ts";
import { netTableName, nftSummary, templateReady, TestNetns } from "../helpers/netns.ts";
import { until } from "../helpers/until.ts";

const CYCLES = process.env.CORRAL_LONG_TESTS === "1" ? 1000 : Number(process.env.CORRAL_NET_CHURN ?? 50);
const CONCURRENCY = 2;
const BRIDGE = "brchurn0";

const CONFIG = `config:
  host_groups:
    - name: br
      image: base
      vcpu: 1
      ram_mb: 512
      network:
        bridge: ${BRIDGE}
        gateway: 10.143.0.1/24
    - name: iso
      image: base
      vcpu: 1
      ram_mb: 512
      network:
        mode: isolated
        range: 169.254.128.0/22
`;

const isRoot = process.getuid?.() === 0;

type Snapshot = { tables: Record<string, Awaited<ReturnType<typeof nftSummary>>>; free: Record<string, number | undefined> };

describe(`${CYCLES} creates and deletes per TAP mode leave nothing behind`, { timeout: 3_600_000, skip: isRoot ? false : "needs root (network namespaces, bridges, TAPs)" }, () => {
  let ns: TestNetns;
  let daemon: TestDaemon;
  let baseline: Snapshot;

  const snapshot = async (): Promise<Snapshot> => {
    const tables: Snapshot["tables"] = {};
    for (const [family, prefix] of [
      ["inet", "corral_net_"],
      ["bridge", "corral_br_"],
    ] as const) {
      const name = await netTableName(ns, family, prefix);
      if (name) tables[`${family} ${name}`] = await nftSummary(ns, family, name);
    }
    const groups = (await daemon.request("GET", "/hostgroup")).body as { name: string; network?: { free_addresses?: number } }[];
    return { tables, free: Object.fromEntries(groups.map((g) => [g.name, g.network?.free_addresses])) };
  };

  before(async () => {
    ns = await TestNetns.create();
    daemon = await TestDaemon.create(CONFIG, { netns: ns });
    await daemon.start();
    await templateReady(daemon, "br");
    await templateReady(daemon, "iso");
    baseline = await snapshot();
  });

  after(async () => {
    if (daemon) {
      const lines = daemon.log.split("\n");
      // A delete racing a clone's bring-up is expected to cut the agent off: its errors are not news.
      const errors = lines.filter((l) => l.includes('"level":50') && !l.includes("VM agent never answered")).slice(0, 10);
      process.stderr.write(`net-churn: the daemon's errors:\n${errors.join("\n")}\nits log ends with:\n${lines.slice(-10).join("\n")}\n`);
    }
    await ns?.dispose();
  });

  for (const group of ["br", "iso"]) {
    test(`${CYCLES} clones created and deleted in "${group}", ${CONCURRENCY} at a time`, async () => {
      let next = 0;
      const seen = new Set<string>();
      const worker = async (): Promise<void> => {
        while (next < CYCLES) {
          next++;
          const created = await daemon.client.createNode(group, {}, { timeout: "300s" });
          seen.add(created.ip);
          await daemon.client.deleteNode(group, created.hostname);
        }
      };
      await Promise.all(Array.from({ length: CONCURRENCY }, worker));
      assert.ok(seen.size > 1, `addresses handed out: ${[...seen].join(", ")}`);
      assert.deepEqual(qemuPids(daemon.stateDir), []);
    });
  }

  test("afterwards: no TAP, veth or bridge port, no VM process or namespace, the same tables, every address free", async () => {
    // The kernel destroys a namespace (and the veth end it held) in a work queue after its last process
    // exits: a device of the last VMs may take a moment to go. One still there after 30 s is a leak.
    const leftover = async (): Promise<string[]> =>
      (await ns.links()).filter((l) => l.kind === "tun" || l.kind === "veth" || l.master !== undefined).map((l) => `${l.ifname} (${l.kind})`);
    const gone = await until(async () => ((await leftover()).length === 0 ? true : undefined), "the last VMs' devices to go", 30_000, 500).catch(() => false);
    if (!gone) assert.deepEqual(await leftover(), []);
    // Each isolated VM's namespace lives as long as a process holds it: no process of this daemon's state
    // directory but the daemon itself, and that one is in the test's namespace.
    const daemonPid = daemon.current.child.pid;
    const processes = findProcessesWithArgument(daemon.stateDir).filter((p) => p.pid !== daemonPid);
    assert.deepEqual(
      processes.map((p) => `${p.pid} ${p.args.slice(0, 3).join(" ")}`),
      [],
    );
    assert.equal(readlinkSync(`/proc/${daemonPid}/ns/net`), `net:[${ns.inode}]`);
    // GET /hostgroup counts each TAP group's free addresses: without them "no lease left" proves nothing.
    assert.ok(baseline.free.br !== undefined && baseline.free.iso !== undefined, `free addresses in GET /hostgroup: ${JSON.stringify(baseline.free)}`);
    assert.deepEqual(await snapshot(), baseline);
  });
});
