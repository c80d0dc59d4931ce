import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { placeVms, type PlacementHost, type PlacementSpec } from "../../src/controller/db/index.ts";
import { placeInTurn } from "../../src/controller/db/placement.ts";

/** An online host with `cpu` threads, `mem` and `disk` MiB, the qemu engine and the base image. */
function host(id: string, cpu: number, mem: number, disk: number, more: Partial<PlacementHost> & { engines?: string[]; images?: string[] } = {}): PlacementHost {
  const { engines = ["qemu"], images = ["base"], ...rest } = more;
  return {
    id,
    state: "online",
    info: { cpu_total: cpu, mem_total: mem, disk_total: disk, engines, images },
    reserved: { cpu: 0, mem: 0, disk: 0 },
    ...rest,
  };
}

function vm(cpu: number, mem: number, disk: number, more: Partial<PlacementSpec> = {}): PlacementSpec {
  return { cpu, mem, disk, image: "base", engine: "qemu", ...more };
}

describe("placeVms", () => {
  test("best fit: the host the VM leaves with the least free room", () => {
    const big = host("big", 32, 65536, 1_000_000);
    const small = host("small", 4, 8192, 100_000);
    assert.deepEqual(placeVms([big, small], [vm(2, 1024, 10240)]), { ok: true, hostIds: ["small"] });
    // The same two hosts, but the small one is nearly full: the VM no longer fits there.
    const fullSmall = { ...small, reserved: { cpu: 15, mem: 7680, disk: 0 } };
    assert.deepEqual(placeVms([big, fullSmall], [vm(2, 1024, 10240)]), { ok: true, hostIds: ["big"] });
    // Fit counts every resource, each as a share of the host's capacity: b is tighter on memory and disk.
    const a = host("a", 8, 16384, 200_000);
    const b = host("b", 16, 4096, 50_000);
    assert.deepEqual(placeVms([a, b], [vm(1, 1024, 10240)]), { ok: true, hostIds: ["b"] });
  });

  test("equal fits go to the host with the smaller id", () => {
    assert.deepEqual(placeVms([host("h2", 4, 8192, 100_000), host("h1", 4, 8192, 100_000)], [vm(1, 512, 2048)]), { ok: true, hostIds: ["h1"] });
  });

  test("a request spans hosts, counting what its earlier VMs took", () => {
    // Each host has room for one 4 GiB VM.
    const hosts = [host("a", 8, 6144, 100_000), host("b", 8, 5120, 100_000)];
    assert.deepEqual(placeVms(hosts, [vm(1, 4096, 1024), vm(1, 4096, 1024)]), { ok: true, hostIds: ["b", "a"] });
    const third = placeVms(hosts, [vm(1, 4096, 1024), vm(1, 4096, 1024), vm(1, 4096, 1024)]);
    assert.deepEqual(third, {
      ok: false,
      reason: 'No host can take VM 3 (cpu 1, mem 4096 MiB, disk 1024 MiB, image "base", engine "qemu"): 2 online hosts lack memory (at most 2048 MiB free)',
    });
    // Small VMs pack onto the tightest host first.
    assert.deepEqual(placeVms(hosts, [vm(1, 1024, 1024), vm(1, 1024, 1024), vm(1, 1024, 1024)]), { ok: true, hostIds: ["b", "b", "b"] });
  });

  test("only hosts that have the engine and the image", () => {
    const noImage = host("a-tight", 2, 2048, 10_000, { images: ["other"] });
    const noEngine = host("b-tight", 2, 2048, 10_000, { engines: ["firecracker"] });
    const roomy = host("c-roomy", 64, 262144, 1_000_000);
    assert.deepEqual(placeVms([noImage, noEngine, roomy], [vm(1, 1024, 2048)]), { ok: true, hostIds: ["c-roomy"] });
    assert.deepEqual(placeVms([noImage, noEngine], [vm(1, 1024, 2048)]), {
      ok: false,
      reason: 'No host can take VM 1 (cpu 1, mem 1024 MiB, disk 2048 MiB, image "base", engine "qemu"): 1 online host lacks image "base", 1 online host lacks engine "qemu"',
    });
  });

  test("a docker VM needs no image on its host (Docker keeps its own images), as TTstack's scheduler has it", () => {
    const agent = host("ttstack-agent", 16, 32_768, 400_000, { engines: ["qemu", "docker"], images: ["alpine-cloud"] });
    assert.deepEqual(placeVms([agent], [vm(1, 1024, 2048, { engine: "docker", image: "nginx" })]), { ok: true, hostIds: ["ttstack-agent"] });
    assert.equal(placeVms([agent], [vm(1, 1024, 2048, { engine: "qemu", image: "nginx" })]).ok, false, "a qemu VM still needs its image there");
  });

  test("a libvirt daemon takes no environment, however large, and the reason says so", () => {
    const libvirt = host("virt", 64, 262144, 1_000_000, { kind: "libvirt" });
    const corral = host("corral", 4, 8192, 100_000, { kind: "corral" });
    assert.deepEqual(placeVms([libvirt, corral], [vm(1, 1024, 2048)]), { ok: true, hostIds: ["corral"] });
    assert.deepEqual(placeVms([libvirt, corral], [vm(32, 1024, 2048)]), {
      ok: false,
      reason:
        'No host can take VM 1 (cpu 32, mem 1024 MiB, disk 2048 MiB, image "base", engine "qemu"): 1 online host lacks CPU (at most 16 free), 1 host is a libvirt daemon, which takes no environments',
    });
    assert.deepEqual(placeVms([libvirt, { ...libvirt, id: "virt2" }], [vm(1, 1024, 2048)]), {
      ok: false,
      reason: 'No host can take VM 1 (cpu 1, mem 1024 MiB, disk 2048 MiB, image "base", engine "qemu"): 2 hosts are libvirt daemons, which take no environments',
    });
  });

  test("offline hosts and hosts that never reported are skipped", () => {
    const offline = host("a", 64, 262144, 1_000_000, { state: "offline" });
    const silent: PlacementHost = { ...host("b", 0, 0, 0), info: null };
    const small = host("c", 2, 2048, 10_000);
    assert.deepEqual(placeVms([offline, silent, small], [vm(1, 1024, 2048)]), { ok: true, hostIds: ["c"] });
    assert.deepEqual(placeVms([offline, silent, offline], [vm(1, 1024, 2048)]), {
      ok: false,
      reason: 'No host can take VM 1 (cpu 1, mem 1024 MiB, disk 2048 MiB, image "base", engine "qemu"): 1 online host has not reported its resources yet, 2 hosts are offline',
    });
  });

  test("vCPUs are overcommitted 4 to 1 by default, memory and disk not at all", () => {
    const h = host("a", 2, 4096, 10_000);
    assert.deepEqual(placeVms([h], [vm(8, 1024, 1024)]), { ok: true, hostIds: ["a"] });
    assert.equal(placeVms([h], [vm(9, 1024, 1024)]).ok, false);
    assert.equal(placeVms([h], [vm(4, 4096, 1024)]).ok, true);
    assert.equal(placeVms([h], [vm(4, 4097, 1024)]).ok, false);
    assert.equal(placeVms([h], [vm(4, 1024, 10_001)]).ok, false);
    // Other ratios.
    assert.deepEqual(placeVms([h], [vm(3, 1024, 1024)], { cpu: 1, mem: 1, disk: 1 }), {
      ok: false,
      reason: 'No host can take VM 1 (cpu 3, mem 1024 MiB, disk 1024 MiB, image "base", engine "qemu"): 1 online host lacks CPU (at most 2 free)',
    });
    assert.deepEqual(placeVms([h], [vm(1, 6144, 1024)], { cpu: 4, mem: 1.5, disk: 1 }), { ok: true, hostIds: ["a"] });
    // Reservations count against the overcommitted capacity.
    const busy = { ...h, reserved: { cpu: 7, mem: 0, disk: 0 } };
    assert.deepEqual(placeVms([busy], [vm(1, 512, 1024)]), { ok: true, hostIds: ["a"] });
    assert.equal(placeVms([busy], [vm(2, 512, 1024)]).ok, false);
  });

  test("the reason names the VM, what it asked for and why each kind of host failed", () => {
    const hosts = [host("a", 8, 65536, 500_000), host("b", 4, 65536, 500_000), host("c", 64, 262144, 1_000_000, { state: "offline" })];
    const result = placeVms(hosts, [vm(2, 1024, 10240), vm(64, 2048, 40960)]);
    assert.deepEqual(result, {
      ok: false,
      reason: 'No host can take VM 2 (cpu 64, mem 2048 MiB, disk 40960 MiB, image "base", engine "qemu"): 2 online hosts lack CPU (at most 32 free), 1 host is offline',
    });
    assert.deepEqual(placeVms([host("a", 4, 1024, 500_000), host("b", 4, 8192, 1024)], [vm(1, 2048, 2048)]), {
      ok: false,
      reason:
        'No host can take VM 1 (cpu 1, mem 2048 MiB, disk 2048 MiB, image "base", engine "qemu"): 1 online host lacks memory (at most 1024 MiB free), 1 online host lacks disk (at most 1024 MiB free)',
    });
    assert.deepEqual(placeVms([], [vm(1, 1024, 1024)]), {
      ok: false,
      reason: 'No host can take VM 1 (cpu 1, mem 1024 MiB, disk 1024 MiB, image "base", engine "qemu"): no hosts are registered',
    });
  });

  test("an empty request places nothing; the hosts given are not changed", () => {
    const h = host("a", 4, 8192, 100_000);
    const before = structuredClone(h);
    assert.deepEqual(placeVms([h], []), { ok: true, hostIds: [] });
    placeVms([h], [vm(1, 1024, 1024), vm(1, 1024, 1024)]);
    assert.deepEqual(h, before);
  });
});

describe("placeInTurn", () => {
  const place = (hosts: PlacementHost[], specs: PlacementSpec[]) => placeVms(hosts, specs);

  test("each create is placed on the room the ones before it left; one that fits nowhere is refused alone", () => {
    // a: 4 vCPUs of room (1 thread, overcommit 4); b: 8.
    const hosts = [host("a", 1, 65536, 1_000_000), host("b", 2, 65536, 1_000_000)];
    const placements = placeInTurn(hosts, [
      { specs: [vm(2, 1024, 10240)], place },
      { specs: [vm(2, 1024, 10240), vm(2, 1024, 10240)], place },
      { specs: [vm(16, 1024, 10240)], place },
      { specs: [vm(4, 1024, 10240)], place },
      { specs: [vm(4, 1024, 10240)], place },
    ]);
    assert.deepEqual(placements.slice(0, 2), [
      { ok: true, hostIds: ["a"] },
      { ok: true, hostIds: ["a", "b"] },
    ]);
    assert.equal(placements[2]?.ok, false);
    assert.match(placements[2]?.ok === false ? placements[2].reason : "", /^No host can take VM 1 \(cpu 16/);
    assert.deepEqual(placements[3], { ok: true, hostIds: ["b"] });
    assert.equal(placements[4]?.ok, false, "b has 2 vCPUs left, a none");
    assert.deepEqual(hosts[0]?.reserved, { cpu: 0, mem: 0, disk: 0 }, "the hosts given are left as they were");
  });

  test("one create alone is placeVms", () => {
    const hosts = [host("a", 1, 4096, 100_000)];
    assert.deepEqual(placeInTurn(hosts, [{ specs: [vm(2, 1024, 10240)], place }]), [placeVms(hosts, [vm(2, 1024, 10240)])]);
  });
});
