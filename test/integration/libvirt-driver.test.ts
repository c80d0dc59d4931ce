// The controller's driver for libvirt hosts (src/controller/drivers/libvirt-driver.ts) against the real
// libvirtd of this machine, reached two ways: its own socket (qemu:///system) and through a key-only SSH
// server started here (qemu+ssh://root@127.0.0.1:PORT/system). Through each: a domain defined by the test is
// listed with libvirt's own numbers (compared with `virsh dominfo`) in the controller's units, its hardware is
// read from its XML, the host's resources from nodeinfo; each of libvirt's five power actions changes the
// domain as libvirt then reports it (the guest, a busybox init, powers off on ACPI's power button and says on
// its serial port each time it has booted); its stats show CPU time growing; a bad or unknown domain name is
// a 4xx; and a URI where nothing answers is `host_unreachable` at once.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createServer, type AddressInfo, type Socket } from "node:net";
import { after, before, describe, test } from "node:test";
import { LibvirtDriver } from "../../src/controller/drivers/libvirt-driver.ts";
import type { HostDriver } from "../../src/controller/host-driver.ts";
import { CorralError } from "../../src/protocol/errors.ts";
import { defineTestDomain, ensureLibvirtd, SYSTEM_URI, TEST_DISK_MIB, TEST_MAC, virsh, type TestDomain } from "../helpers/libvirt.ts";
import { freePort, startSshd, type Sshd } from "../helpers/sshd.ts";
import { until } from "../helpers/until.ts";

const MEMORY_MIB = 160;

function rejectsWith(code: string, status: number) {
  return (err: unknown) => {
    assert.ok(err instanceof CorralError, `not a CorralError: ${String(err)}`);
    assert.equal(err.code, code, err.message);
    assert.equal(err.status, status);
    return true;
  };
}

/** `virsh dominfo`'s "Label: value" lines. */
async function dominfo(name: string): Promise<Map<string, string>> {
  const out = await virsh(["dominfo", "--domain", name]);
  return new Map(
    out.split("\n").flatMap((line) => (/^([^:]+):\s*(.*)$/.exec(line) ? [[line.split(":")[0]?.trim() ?? "", line.slice(line.indexOf(":") + 1).trim()] as [string, string]] : [])),
  );
}

describe("libvirt driver", { timeout: 1_200_000 }, () => {
  let sshd: Sshd;
  const domains: TestDomain[] = [];

  before(async () => {
    await ensureLibvirtd();
    sshd = await startSshd();
  });

  after(async () => {
    await Promise.all(domains.map((domain) => domain.remove()));
    await sshd?.stop();
  });

  for (const transport of ["local", "ssh"] as const) {
    describe(`through ${transport === "local" ? SYSTEM_URI : "qemu+ssh://root@127.0.0.1:PORT/system"}`, () => {
      let driver: HostDriver;
      let domain: TestDomain;

      before(async () => {
        driver = new LibvirtDriver(`libvirt-${transport}`, { uri: transport === "local" ? SYSTEM_URI : sshd.libvirtUri() }, { shutdownWaitMs: 120_000 });
        domain = await defineTestDomain({ memoryMiB: MEMORY_MIB });
        domains.push(domain);
      });

      test("a defined domain is listed, shut off, with libvirt's numbers in the controller's units", async () => {
        const vms = await driver.vms();
        const vm = vms.find((v) => v.id === domain.name);
        assert.ok(vm, `${domain.name} not among ${vms.map((v) => v.id).join(", ")}`);
        const info = await dominfo(domain.name);
        assert.equal(vm.state, "stopped");
        assert.equal(info.get("State"), "shut off");
        assert.equal(vm.cpu, Number(info.get("CPU(s)")));
        assert.equal(`${vm.mem * 1024} KiB`, info.get("Max memory"));
        assert.equal(vm.mem, MEMORY_MIB);
        assert.equal(vm.disk, TEST_DISK_MIB);
        assert.equal(vm.uuid, info.get("UUID"));
        assert.equal(vm.started_at, null);
        assert.equal(vm.engine, "qemu");
        assert.equal(vm.env_id, null);
      });

      test("a domain defined after a listing is listed at the next one, with its own UUID", async () => {
        await driver.vms();
        const other = await defineTestDomain({ memoryMiB: 128 });
        domains.push(other);
        const listed = await until(async () => (await driver.vms()).find((v) => v.id === other.name), `${other.name} to be listed`, 30_000, 250);
        assert.equal(listed.uuid, (await dominfo(other.name)).get("UUID"));
        assert.equal(listed.mem, 128);
        await other.remove();
        await until(async () => ((await driver.vms()).some((v) => v.id === other.name) ? undefined : true), `${other.name} to leave the list`, 30_000, 250);
      });

      test("the host's resources come from nodeinfo", async () => {
        const report = await driver.info();
        const nodeinfo = await virsh(["nodeinfo"]);
        assert.equal(report.cpu_total, Number(/^CPU\(s\):\s*(\d+)/m.exec(nodeinfo)?.[1]));
        assert.equal(report.mem_total, Math.floor(Number(/^Memory size:\s*(\d+) KiB/m.exec(nodeinfo)?.[1]) / 1024));
        assert.equal(report.hostname, (await virsh(["hostname"])).trim());
        assert.deepEqual(report.engines, ["qemu"]);
        assert.ok(report.vm_count >= 1);
      });

      test("start: the domain runs, with its hardware read from its XML; a second start is 409 conflict", async () => {
        const started = await driver.startVm(domain.name);
        assert.equal(started.state, "running");
        assert.equal(await domain.state(), "running");
        if (transport === "local") assert.ok(started.started_at && Date.now() - Date.parse(started.started_at) < 600_000, `started_at ${started.started_at}`);
        await assert.rejects(driver.startVm(domain.name), rejectsWith("conflict", 409));
        const detail = await driver.vm(domain.name);
        assert.equal(detail.state, "running");
        assert.equal(detail.mac, TEST_MAC);
        assert.deepEqual(detail.hardware.disks, [
          { type: "file", device: "disk", driver: { driver_name: "qemu", type: "qcow2" }, path: domain.disk, target: { dev: "vda", bus: "virtio" }, size_mib: TEST_DISK_MIB },
        ]);
        assert.deepEqual(detail.hardware.networks, [{ type: "user", mac: { address: TEST_MAC }, source: { mode: "user" }, model: { model_type: "virtio" } }]);
        await domain.waitForBoots(1);
      });

      test("stats: libvirt's numbers, CPU time growing between two samples", async () => {
        const first = await driver.stats(domain.name);
        assert.equal(first.state, 1);
        assert.equal(first.max_mem, MEMORY_MIB * 1024);
        assert.equal(first.vcpu, 1);
        assert.ok(first.cpu_time > 0);
        assert.deepEqual(
          first.disk_stats.map((d) => d.device),
          ["vda"],
        );
        const later = await until(
          async () => {
            const now = await driver.stats(domain.name);
            return now.cpu_time > first.cpu_time ? now : undefined;
          },
          "the domain's CPU time to grow",
          60_000,
          500,
        );
        assert.ok(later.cpu_time > first.cpu_time);
      });

      test("reboot (through the guest) and forced reset (forcereset) boot the guest again; the domain runs on", async () => {
        const rebooted = await driver.rebootVm(domain.name);
        assert.equal(rebooted.state, "running");
        await domain.waitForBoots(2);
        const reset = await driver.rebootVm(domain.name, { force: true });
        assert.equal(reset.state, "running");
        await domain.waitForBoots(3);
        assert.equal(await domain.state(), "running");
      });

      test("shutdown: the guest powers off and the domain is shut off; a second one is 409 conflict", async () => {
        const stopped = await driver.stopVm(domain.name);
        assert.equal(stopped.state, "stopped");
        assert.equal(stopped.started_at, null);
        assert.equal(await domain.state(), "shut off");
        await assert.rejects(driver.stopVm(domain.name), rejectsWith("conflict", 409));
        await assert.rejects(driver.rebootVm(domain.name), rejectsWith("conflict", 409));
        const stats = await driver.stats(domain.name);
        assert.deepEqual({ state: stats.state, memory: stats.memory, cpu_time: stats.cpu_time }, { state: 5, memory: 0, cpu_time: 0 });
      });

      test("forceoff (destroy) ends a running domain at once", async () => {
        await driver.startVm(domain.name);
        const destroyed = await driver.stopVm(domain.name, { force: true });
        assert.equal(destroyed.state, "stopped");
        assert.equal(await domain.state(), "shut off");
      });

      test("bad and unknown domain names are 4xx; what a libvirt host cannot do is unsupported_by_host", async () => {
        for (const bad of ["-c", "a/b", "a\0b", ""]) await assert.rejects(driver.vm(bad), rejectsWith("invalid_name", 400), JSON.stringify(bad));
        await assert.rejects(driver.startVm("--domain"), rejectsWith("invalid_name", 400));
        await assert.rejects(driver.vm("corral-t-none"), rejectsWith("vm_not_found", 404));
        await assert.rejects(driver.startVm("corral-t-none"), rejectsWith("vm_not_found", 404));
        await assert.rejects(driver.stats("corral-t-none"), rejectsWith("vm_not_found", 404));
        await assert.rejects(driver.deleteVm(domain.name), (err: unknown) => err instanceof CorralError && err.code === "unsupported_by_host" && /libvirt-/.test(err.message));
        await assert.rejects(driver.createVm({ vm_id: "x", image: "base" }), (err: unknown) => err instanceof CorralError && err.code === "unsupported_by_host");
      });
    });
  }

  test("a URI where nothing answers is host_unreachable with libvirt's reason (no prompt, no wait for the deadline)", async () => {
    const port = await freePort();
    for (const uri of [`qemu+ssh://root@127.0.0.1:${port}/system?keyfile=${sshd.key.privateKeyFile}&no_verify=1`, `qemu+tcp://127.0.0.1:${port}/system`]) {
      const driver = new LibvirtDriver("gone", { uri });
      // libvirt's own sentence (the connection was refused), not the runner's deadline passing.
      await assert.rejects(
        driver.vms(),
        (err: unknown) => rejectsWith("host_unreachable", 502)(err) && /Connection refused/.test((err as Error).message) && !/did not answer virsh/.test((err as Error).message),
      );
      await assert.rejects(driver.info(), rejectsWith("host_unreachable", 502));
    }
  });

  test("a host that accepts the connection and then says nothing is host_unreachable at the deadline, and the ssh virsh started is ended with it", async () => {
    // Holds every connection open without a word (no SSH banner).
    const held: Socket[] = [];
    const silent = createServer((socket) => void held.push(socket));
    await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
    const port = (silent.address() as AddressInfo).port;
    try {
      const driver = new LibvirtDriver("silent", { uri: `qemu+ssh://root@127.0.0.1:${port}/system?keyfile=${sshd.key.privateKeyFile}&no_verify=1` }, { timeoutMs: 3_000 });
      await assert.rejects(driver.vms(), (err: unknown) => rejectsWith("host_unreachable", 502)(err) && /did not answer virsh domstats in 3 s/.test((err as Error).message));
      const left = await until(
        async () => {
          const ps = await new Promise<string>((resolve) => execFile("pgrep", ["-af", `-p ${port} `], (_err, stdout) => resolve(stdout)));
          return ps.trim() === "" ? true : undefined;
        },
        `no ssh to port ${port} left`,
        10_000,
        200,
      );
      assert.equal(left, true);
    } finally {
      for (const socket of held) socket.destroy();
      await new Promise<void>((resolve) => silent.close(() => resolve()));
    }
  });

  test("an ssh key the server does not know is host_unreachable, not a password prompt", async () => {
    const uri = `qemu+ssh://root@127.0.0.1:${sshd.port}/system?keyfile=/nonexistent/key&no_verify=1`;
    await assert.rejects(new LibvirtDriver("stranger", { uri }).vms(), rejectsWith("host_unreachable", 502));
  });

  test("a refused URI never reaches virsh: every call is 400 with the reason", async () => {
    const driver = new LibvirtDriver("evil", { uri: "qemu+ssh://h/system?command=/bin/touch" });
    await assert.rejects(driver.vms(), (err: unknown) => err instanceof CorralError && err.status === 400 && /"command" is refused/.test(err.message));
  });
});
