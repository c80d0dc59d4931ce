// A daemon's start with networking it cannot have (issue 14, plan §5 I5 and I6), in a namespace this test
// made: two host groups with overlapping ranges are refused at start with a message naming both paths, and
// so is a group whose subnet is already on an interface that is not the daemon's; a daemon without
// CAP_NET_ADMIN and CAP_SYS_ADMIN starts anyway, says per host group why its bridge and isolated groups are
// unavailable (GET /info, GET /hostgroup), answers 503 network_unavailable to a create in them, and still
// creates VMs in its user-mode group.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { qemuPids, TestDaemon } from "../helpers/daemon-process.ts";
import { TestNetns } from "../helpers/netns.ts";

const isRoot = process.getuid?.() === 0;
const GROUP = (name: string, network: string): string => `    - name: ${name}
      image: base
      vcpu: 1
      ram_mb: 512
      template: false
${network}`;

describe("networking the daemon cannot have is refused at start, or named per host group", { timeout: 600_000, skip: isRoot ? false : "needs root (network namespaces)" }, () => {
  let ns: TestNetns;

  before(async () => {
    ns = await TestNetns.create();
  });

  after(async () => {
    await ns?.dispose();
  });

  test("two host groups with overlapping ranges: the daemon does not start, and says which", async () => {
    const daemon = await TestDaemon.create(
      `config:
  host_groups:
${GROUP("a", "      network:\n        mode: isolated\n        range: 169.254.100.0/22\n")}
${GROUP("b", "      network:\n        mode: isolated\n        range: 169.254.100.0/23\n")}`,
      { netns: ns },
    );
    try {
      await assert.rejects(daemon.start(), (err: Error) => {
        assert.match(err.message, /The daemon exited with code [1-9]/);
        assert.ok(
          err.message.includes(
            'config.host_groups[1].network.range "169.254.100.0/23" overlaps config.host_groups[0].network.range "169.254.100.0/22": give each host group its own range',
          ),
          err.message,
        );
        return true;
      });
      // A bridge gateway inside another group's range is the same fault.
      await daemon.reconfigure(`config:
  host_groups:
${GROUP("a", "      network:\n        gateway: 10.150.0.1/16\n")}
${GROUP("b", "      network:\n        gateway: 10.150.7.1/24\n")}`);
      await assert.rejects(
        daemon.start(),
        /config\.host_groups\[1\]\.network\.gateway "10\.150\.7\.1\/24" overlaps config\.host_groups\[0\]\.network\.gateway "10\.150\.0\.1\/16"/,
      );
      assert.deepEqual(await ns.links().then((links) => links.map((l) => l.ifname)), ["lo"], "a refused start made no device");
    } finally {
      await daemon.dispose();
    }
  });

  test("a group's subnet already on an interface that is not the daemon's: refused at start, naming the interface", async () => {
    await ns.run("ip", ["link", "add", "foreign0", "type", "veth", "peer", "name", "foreign1"]);
    await ns.run("ip", ["addr", "add", "10.151.0.1/24", "dev", "foreign0"]);
    const daemon = await TestDaemon.create(`config:\n  host_groups:\n${GROUP("vm", "      network:\n        gateway: 10.151.0.1/24\n")}`, { netns: ns });
    try {
      await assert.rejects(daemon.start(), (err: Error) => {
        assert.match(err.message, /config\.host_groups\[0\]\.network\.gateway "10\.151\.0\.1\/24" overlaps 10\.151\.0\.0\/24 on interface "foreign0"/);
        return true;
      });
    } finally {
      await daemon.dispose();
      await ns.run("ip", ["link", "del", "foreign0"]);
    }
  });

  test("without CAP_NET_ADMIN and CAP_SYS_ADMIN: TAP groups unavailable with reasons, 503 on create, the user group works", async () => {
    // The wall needs the same capabilities: off here, so the user-mode group can start at all.
    const daemon = await TestDaemon.create(
      `config:
  network:
    host_isolation: false
  host_groups:
${GROUP("plain", "")}
${GROUP("br", "      network:\n        gateway: 10.152.0.1/24\n")}
${GROUP("iso", "      network:\n        mode: isolated\n        range: 169.254.124.0/22\n")}`,
      { netns: ns, wrap: ["setpriv", "--bounding-set=-net_admin,-sys_admin", "--"] },
    );
    try {
      await daemon.start();
      const info = (await daemon.request("GET", "/info")).body as {
        network?: { groups?: { name?: string; hostgroup?: string; mode: string; state: string; reason: string | null }[] };
      };
      const groups = info.network?.groups ?? [];
      const group = (name: string) => groups.find((g) => (g.name ?? g.hostgroup) === name);
      assert.equal(group("br")?.state, "unavailable", JSON.stringify(info.network));
      assert.equal(group("iso")?.state, "unavailable", JSON.stringify(info.network));
      assert.match(group("br")?.reason ?? "", /CAP_NET_ADMIN/);
      assert.match(group("iso")?.reason ?? "", /CAP_SYS_ADMIN|CAP_NET_ADMIN/);
      assert.notEqual(group("plain")?.state, "unavailable");
      const hostGroups = (await daemon.request("GET", "/hostgroup")).body as { name: string; network?: { state: string; reason: string | null } }[];
      assert.equal(hostGroups.find((g) => g.name === "iso")?.network?.state, "unavailable");
      // The log is JSON lines: the sentence's quotes are escaped in it.
      assert.match(daemon.log, /Host group \\"iso\\" \(network\.mode isolated\) is unavailable/);

      for (const name of ["br", "iso"]) {
        const refused = await daemon.request("POST", `/hostgroup/${name}/nodes`, {});
        assert.equal(refused.status, 503, refused.text);
        assert.equal((refused.body as { code: string }).code, "network_unavailable");
        assert.match((refused.body as { error: string }).error, new RegExp(`"${name}"`));
      }
      assert.deepEqual(qemuPids(daemon.stateDir), [], "no VM was started for the refused creates");
      const created = await daemon.client.createNode("plain", {}, { wait: "agent", timeout: "300s" });
      assert.equal((await daemon.client.execBuffered(created.hostname, { cmd: "echo", args: ["up"] })).stdout.trim(), "up");
    } finally {
      await daemon.dispose();
    }
  });
});
