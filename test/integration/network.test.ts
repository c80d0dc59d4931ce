// User-mode networking behind the wall. A guest's connections are made by its QEMU process, so 10.0.2.2 (and
// fec0::2) in the guest is the host's loopback and every host address is one hop away: the daemon walls them
// off (src/net/host-isolation.ts). Here a real guest probes the host: the daemon's own port, listeners this
// test opens on the loopback (TCP, UDP, IPv6) and on every address, a controller's port, another VM's
// forwarded port; all are refused, while a machine beyond the host (a network namespace this test makes)
// still answers, and a service allowed by config.network.host_access answers while its neighbour does not.
import assert from "node:assert/strict";
import { statSync } from "node:fs";
import { readdir } from "node:fs/promises";
import { connect } from "node:net";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { processSocketGid } from "../../src/net/guest-group.ts";
import type { AgentVm } from "../../src/protocol/ttstack-agent.ts";
import { run } from "../../src/util/run.ts";
import { TestController } from "../helpers/controller-process.ts";
import { qemuPids, TestDaemon } from "../helpers/daemon-process.ts";
import { OutsideHost } from "../helpers/outside-host.ts";
import { parseProbe, REACH_PROBE, reached, TcpListener, UdpListener, type ProbeResult } from "../helpers/reach.ts";
import { until } from "../helpers/until.ts";

/** The host's own IPv4 addresses other than loopback (as `ip -4 addr` lists them). */
async function hostAddresses(): Promise<string[]> {
  const out = await run("ip", ["-4", "-o", "addr", "show", "scope", "global"]);
  return [...out.matchAll(/inet (\d+\.\d+\.\d+\.\d+)\//g)].map((m) => m[1] as string).filter((a) => !a.startsWith("198.19."));
}

/** A listener on the port after `port` if it is free (a service's true neighbour), else on any free port. */
async function neighbourOf(port: number): Promise<TcpListener> {
  return TcpListener.open("neighbour", "127.0.0.1", port + 1).catch(() => TcpListener.open("neighbour", "127.0.0.1"));
}

describe("guest networking behind the wall", { timeout: 900_000 }, () => {
  let daemon: TestDaemon;
  let controller: TestController;
  let outside: OutsideHost;
  let hostname: string;
  let forwarded: AgentVm;
  const listeners: { loopback?: TcpListener; udp?: UdpListener; loopback6?: TcpListener; anyAddress?: TcpListener; allowed?: TcpListener; neighbour?: TcpListener } = {};

  const probe = async (kind: "tcp" | "udp", host: string, port: number): Promise<ProbeResult> => {
    const result = await daemon.client.execBuffered(hostname, { cmd: "node", args: ["-e", REACH_PROBE, kind, host, String(port)] });
    assert.equal(result.exit_code, 0, result.stderr);
    return parseProbe(result.stdout);
  };

  before(async () => {
    listeners.loopback = await TcpListener.open("loopback", "127.0.0.1");
    listeners.udp = await UdpListener.open("loopback-udp", "127.0.0.1");
    listeners.loopback6 = await TcpListener.open("loopback6", "::1");
    listeners.anyAddress = await TcpListener.open("any-address", "0.0.0.0");
    listeners.allowed = await TcpListener.open("allowed", "127.0.0.1");
    listeners.neighbour = await neighbourOf(listeners.allowed.port);
    outside = await OutsideHost.create();
    controller = await TestController.create();
    await controller.start();
    daemon = await TestDaemon.create(`config:
  network:
    host_access: ["127.0.0.1:${listeners.allowed.port}"]
  host_groups:
    - name: sbox
      image: base
      count: 0
      vcpu: 1
      ram_mb: 512
`);
    await daemon.start();
    // A clone of the group's template, so the template's QEMU (built in the background) is checked too.
    await until(async () => ((await daemon.client.templates()).find((t) => t.hostgroup === "sbox")?.state === "ready" ? true : undefined), "the template", 300_000, 500);
    hostname = (await daemon.client.createNode("sbox", {}, { wait: "agent", timeout: "180s" })).hostname;
    // Another VM with a forwarded port (its SSH server, through TTstack's agent API).
    const created = await fetch(`${daemon.url}/api/vms`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ vm_id: "fwd-1", image: "base", cpu: 1, mem: 512 }),
    });
    const answer = (await created.json()) as { data: { vm: AgentVm } };
    assert.equal(created.status, 201, JSON.stringify(answer));
    forwarded = answer.data.vm;
  });

  after(async () => {
    await daemon?.dispose();
    await controller?.dispose();
    await outside?.dispose();
    for (const listener of Object.values(listeners)) await listener?.close();
  });

  test("GET /info: the wall is on, with the allowed service; every QEMU runs in the guests' group", async () => {
    const info = (await daemon.client.info()).host_isolation;
    assert.equal(info.state, "on");
    assert.equal(info.table, "inet corral_guard");
    assert.equal(info.group, "corral-guests");
    assert.deepEqual(info.host_access, [`tcp/127.0.0.1:${listeners.allowed?.port}`]);
    assert.deepEqual(info.unwalled_vms, []);
    assert.equal(info.warning, null);
    const gid = info.gid as number;
    assert.ok(Number.isInteger(gid) && gid > 0, `the group's id: ${gid}`);
    const pids = qemuPids(daemon.stateDir);
    assert.ok(pids.length >= 2, `the sandbox's and fwd-1's QEMU: ${pids}`);
    for (const pid of pids) assert.equal(processSocketGid(pid), gid, `QEMU ${pid} runs in the guests' group`);
    // The template's QEMU is gone; the RAM file it created says which group it ran with.
    const templates = (await readdir(join(daemon.stateDir, "templates"))).filter((name) => name.startsWith("t-"));
    assert.ok(templates.length > 0, "the sandbox came from a template");
    for (const id of templates) assert.equal(statSync(join(daemon.stateDir, "templates", id, "ram")).gid, gid, `template ${id} was built in the guests' group`);
  });

  test("the guest reaches none of the host's services", async (t) => {
    const daemonPort = Number(new URL(daemon.url).port);
    const controllerPort = Number(new URL(controller.url).port);
    await until(
      async () => ((await fetch(`${daemon.url}/api/vms/fwd-1`).then((r) => r.json())) as { data: AgentVm }).data.status === "running" || undefined,
      "fwd-1 to run",
      240_000,
      500,
    );
    const sshPort = forwarded.port_map["22"] as number;
    // From the host itself, the same services answer: what the guest is refused is the wall's doing.
    const fromHost = await new Promise<string>((resolve, reject) => {
      const socket = connect(sshPort, "127.0.0.1");
      socket.once("data", (data) => {
        socket.destroy();
        resolve(String(data));
      });
      socket.once("error", reject);
    });
    assert.match(fromHost, /^SSH-2\.0-/, "fwd-1's SSH port answers the host");

    const targets: { what: string; kind: "tcp" | "udp"; host: string; port: number }[] = [
      { what: "the daemon's own port", kind: "tcp", host: "10.0.2.2", port: daemonPort },
      { what: "a TCP listener on 127.0.0.1", kind: "tcp", host: "10.0.2.2", port: listeners.loopback?.port as number },
      { what: "a UDP listener on 127.0.0.1", kind: "udp", host: "10.0.2.2", port: listeners.udp?.port as number },
      { what: "a controller's port", kind: "tcp", host: "10.0.2.2", port: controllerPort },
      { what: "another VM's forwarded port", kind: "tcp", host: "10.0.2.2", port: sshPort },
      { what: "the allowed service's neighbour", kind: "tcp", host: "10.0.2.2", port: listeners.neighbour?.port as number },
    ];
    const guestIpv6 = (await daemon.client.execBuffered(hostname, { cmd: "ip", args: ["-6", "addr", "show", "dev", "eth0", "scope", "site"] })).stdout;
    if (/inet6 fec0:/.test(guestIpv6)) {
      targets.push({ what: "a TCP listener on ::1, at the guest's IPv6 host address", kind: "tcp", host: "fec0::2", port: listeners.loopback6?.port as number });
    } else {
      t.diagnostic("QEMU gave the guest no IPv6 address: the ::1 case is skipped");
    }
    const addresses = await hostAddresses();
    for (const address of addresses)
      targets.push({ what: `a listener on 0.0.0.0, at the host's address ${address}`, kind: "tcp", host: address, port: listeners.anyAddress?.port as number });
    if (addresses.length === 0) t.diagnostic("this host has no non-loopback IPv4 address: that case is skipped");

    // Every target is probed before anything is asserted, so a failure lists every hole at once.
    const holes: string[] = [];
    for (const target of targets) {
      const result = await probe(target.kind, target.host, target.port);
      // TCP is refused at once (a reset), not left to time out; UDP gets no answer.
      const expected = target.kind === "tcp" ? "refused" : "no-reply";
      if (reached(result) || result.outcome !== expected) holes.push(`${target.what} (${target.kind} ${target.host}:${target.port}): ${JSON.stringify(result)}`);
    }
    assert.deepEqual(holes, []);
    assert.equal(listeners.loopback?.connections, 0);
    assert.equal(listeners.udp?.datagrams, 0);
    assert.equal(listeners.loopback6?.connections, 0);
    assert.equal(listeners.anyAddress?.connections, 0);
    assert.equal(listeners.neighbour?.connections, 0);
  });

  test("a service allowed by config.network.host_access answers the guest", async () => {
    assert.deepEqual(await probe("tcp", "10.0.2.2", listeners.allowed?.port as number), { outcome: "open", data: "allowed" });
    assert.equal(listeners.allowed?.connections, 1);
  });

  test("the guest still reaches a machine beyond the host", async () => {
    assert.deepEqual(await probe("tcp", outside.address, outside.port), { outcome: "open", data: outside.greeting });
  });

  test("the guest has its address, a default route and a resolver", async () => {
    const result = await daemon.client.execBuffered(hostname, { cmd: "sh", args: ["-c", "ip -4 addr show eth0; ip route; cat /etc/resolv.conf"] });
    assert.equal(result.exit_code, 0, result.stderr);
    assert.match(result.stdout, /inet 10\.0\.2\.15\/24/);
    assert.match(result.stdout, /default via 10\.0\.2\.2 dev eth0/);
    assert.match(result.stdout, /nameserver 10\.0\.2\.3/);
  });
});
