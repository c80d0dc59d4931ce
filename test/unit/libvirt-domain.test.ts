// What the libvirt driver reads from virsh (src/controller/drivers/libvirt/): a domain's XML in the shapes
// libvirt 9 writes (`virsh dumpxml`, written here by hand) into vCPUs, KiB and Virtumancer's hardware; `domstats
// --raw` into the numbers and VmStats; the list, nodeinfo and pool-info; and virsh's failures into the
// controller's error codes.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { domainNameProblem } from "../../src/controller/drivers/libvirt-driver.ts";
import { DomainXmlError, parseDomainXml } from "../../src/controller/drivers/libvirt/domain-xml.ts";
import { domainStateName, parseDomainList, parseDomStats, parseNodeInfo, parsePoolInfo, vmStatsOf } from "../../src/controller/drivers/libvirt/virsh-output.ts";
import { Recent } from "../../src/controller/drivers/libvirt/recent.ts";
import { libvirtSentence, VirshFailure, virshError } from "../../src/controller/drivers/libvirt/virsh.ts";

const RUNNING_XML = `<domain type='kvm' id='7'>
  <name>web-1</name>
  <uuid>0f8c1c1e-5b0e-4c4e-9a51-3f1f2c3d4e5f</uuid>
  <memory unit='KiB'>2097152</memory>
  <currentMemory unit='KiB'>1048576</currentMemory>
  <vcpu placement='static' current='2'>4</vcpu>
  <os><type arch='x86_64' machine='pc-q35-7.2'>hvm</type><boot dev='hd'/></os>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2' discard='unmap'/>
      <source file='/var/lib/libvirt/images/web-1.qcow2' index='2'/>
      <backingStore/>
      <target dev='vda' bus='virtio'/>
      <alias name='virtio-disk0'/>
    </disk>
    <disk type='block' device='disk'>
      <driver name='qemu' type='raw' cache='none'/>
      <source dev='/dev/vg0/data' index='1'/>
      <target dev='sdb' bus='scsi'/>
    </disk>
    <disk type='file' device='cdrom'>
      <driver name='qemu' type='raw'/>
      <target dev='sdc' bus='sata'/>
      <readonly/>
    </disk>
    <interface type='network'>
      <mac address='52:54:00:aa:bb:01'/>
      <source network='default' portid='4c1b7e55-0000-4000-8000-000000000001' bridge='virbr0'/>
      <target dev='vnet3'/>
      <model type='virtio'/>
      <alias name='net0'/>
    </interface>
    <interface type='bridge'>
      <mac address='52:54:00:aa:bb:02'/>
      <source bridge='br0'/>
      <target dev='vnet4'/>
      <model type='e1000e'/>
    </interface>
    <interface type='direct'>
      <mac address='52:54:00:aa:bb:03'/>
      <source dev='eth1' mode='vepa'/>
      <target dev='macvtap0'/>
      <model type='virtio'/>
    </interface>
  </devices>
</domain>
`;

const STOPPED_XML = `<domain type='qemu'>
  <name>tiny &amp; old</name>
  <uuid>11111111-2222-4333-8444-555555555555</uuid>
  <memory unit='GiB'>1</memory>
  <vcpu>1</vcpu>
  <devices>
    <interface type='user'>
      <mac address='52:54:00:12:34:56'/>
      <model type='virtio'/>
    </interface>
  </devices>
</domain>`;

describe("a domain's XML", () => {
  test("a running domain: vCPUs in use, memory in KiB, every disk and NIC in Virtumancer's shape", () => {
    const domain = parseDomainXml(RUNNING_XML);
    assert.equal(domain.name, "web-1");
    assert.equal(domain.uuid, "0f8c1c1e-5b0e-4c4e-9a51-3f1f2c3d4e5f");
    assert.equal(domain.type, "kvm");
    assert.equal(domain.vcpus, 2);
    assert.equal(domain.memoryKiB, 2097152);
    assert.equal(domain.currentMemoryKiB, 1048576);
    assert.deepEqual(domain.disks, [
      { type: "file", device: "disk", driver: { driver_name: "qemu", type: "qcow2" }, path: "/var/lib/libvirt/images/web-1.qcow2", target: { dev: "vda", bus: "virtio" } },
      { type: "block", device: "disk", driver: { driver_name: "qemu", type: "raw" }, path: "/dev/vg0/data", target: { dev: "sdb", bus: "scsi" } },
      { type: "file", device: "cdrom", driver: { driver_name: "qemu", type: "raw" }, path: "", target: { dev: "sdc", bus: "sata" } },
    ]);
    assert.deepEqual(domain.networks, [
      {
        type: "network",
        mac: { address: "52:54:00:aa:bb:01" },
        source: { mode: "network", bridge: "virbr0", network: "default" },
        model: { model_type: "virtio" },
        target: { dev: "vnet3" },
      },
      { type: "bridge", mac: { address: "52:54:00:aa:bb:02" }, source: { mode: "bridge", bridge: "br0" }, model: { model_type: "e1000e" }, target: { dev: "vnet4" } },
      { type: "direct", mac: { address: "52:54:00:aa:bb:03" }, source: { mode: "vepa" }, model: { model_type: "virtio" }, target: { dev: "macvtap0" } },
    ]);
  });

  test("a defined domain: units converted, entities read, no target for a NIC without a host device", () => {
    const domain = parseDomainXml(STOPPED_XML);
    assert.equal(domain.name, "tiny & old");
    assert.equal(domain.vcpus, 1);
    assert.equal(domain.memoryKiB, 1024 * 1024);
    assert.equal(domain.currentMemoryKiB, 1024 * 1024);
    assert.deepEqual(domain.disks, []);
    assert.deepEqual(domain.networks, [{ type: "user", mac: { address: "52:54:00:12:34:56" }, source: { mode: "user" }, model: { model_type: "virtio" } }]);
  });

  test("what is not a domain's XML is a DomainXmlError saying why", () => {
    const bad: [string, RegExp][] = [
      ["<domain><name>x</name><vcpu>1</vcpu></domain>", /no <memory>/],
      ["<domain><name>x</name><memory unit='parsecs'>1</memory><vcpu>1</vcpu></domain>", /unknown unit "parsecs"/],
      ["<domain><name>x</name><memory>1</memory><vcpu>many</vcpu></domain>", /<vcpu> is not a whole number/],
      ["<domain><memory>1</memory><vcpu>1</vcpu></domain>", /no <name>/],
      ["<network><name>default</name></network>", /no <domain>/],
      ["<domain><name>x</name>", /not well-formed/],
      [`<!DOCTYPE d [<!ENTITY a "aaaa">]><domain><name>&a;</name></domain>`, /no DOCTYPE/],
    ];
    for (const [xml, why] of bad)
      assert.throws(
        () => parseDomainXml(xml),
        (err: unknown) => err instanceof DomainXmlError && why.test(err.message),
        xml,
      );
  });
});

const DOMSTATS = `Domain: 'web-1'
  state.state=1
  state.reason=1
  cpu.time=11375216000
  cpu.user=10776684000
  balloon.current=1048576
  balloon.maximum=2097152
  balloon.rss=364600
  vcpu.current=2
  vcpu.maximum=4
  net.count=2
  net.0.name=vnet3
  net.0.rx.bytes=1000
  net.0.tx.bytes=2000
  block.count=2
  block.0.name=vda
  block.0.path=/var/lib/libvirt/images/web-1.qcow2
  block.0.rd.bytes=2560
  block.0.wr.bytes=512
  block.0.capacity=10737418240
  block.1.name=sdb
  block.1.capacity=1048576

Domain: 'tiny & old'
  state.state=5
  state.reason=2
  cpu.time=1550000000
  balloon.current=1048576
  balloon.maximum=1048576
  vcpu.current=1
  vcpu.maximum=1
  block.count=0
`;

describe("virsh's text", () => {
  test("domstats: one block per domain; VmStats of a running domain carry its counters", () => {
    const [web, tiny] = parseDomStats(DOMSTATS);
    assert.equal(web?.name, "web-1");
    assert.equal(web?.state, 1);
    assert.deepEqual(web && vmStatsOf(web), {
      state: 1,
      memory: 1048576,
      max_mem: 2097152,
      vcpu: 2,
      cpu_time: 11375216000,
      disk_stats: [
        { device: "vda", read_bytes: 2560, write_bytes: 512 },
        { device: "sdb", read_bytes: 0, write_bytes: 0 },
      ],
      // net.1 has no name (a user-mode NIC): libvirt cannot count it.
      net_stats: [{ device: "vnet3", read_bytes: 1000, write_bytes: 2000 }],
    });
    // A domain that does not run: zeros, as Virtumancer's connector answers (its stale cpu.time is not passed on).
    assert.deepEqual(tiny && vmStatsOf(tiny), { state: 5, memory: 0, max_mem: 1048576, vcpu: 1, cpu_time: 0, disk_stats: [], net_stats: [] });
  });

  test("memory in use is what the guest's balloon says it uses, when it says", () => {
    const [stats] = parseDomStats("Domain: 'a'\n  state.state=1\n  balloon.current=1048576\n  balloon.maximum=1048576\n  balloon.available=1000000\n  balloon.unused=600000\n");
    assert.equal(stats && vmStatsOf(stats).memory, 400000);
  });

  test("libvirt's states in the controller's names", () => {
    assert.deepEqual([0, 1, 2, 3, 4, 5, 6, 7].map(domainStateName), ["creating", "running", "running", "paused", "stopping", "stopped", "failed", "suspended"]);
  });

  test("list, nodeinfo and pool-info", () => {
    assert.deepEqual(parseDomainList("6505be9e-b440-47b3-96a4-d73db9d011d1 3 corral-t-a\n11111111-2222-4333-8444-555555555555 - tiny & old\n\n"), [
      { uuid: "6505be9e-b440-47b3-96a4-d73db9d011d1", id: 3, name: "corral-t-a" },
      { uuid: "11111111-2222-4333-8444-555555555555", id: null, name: "tiny & old" },
    ]);
    const nodeinfo =
      "CPU model:           x86_64\nCPU(s):              8\nCPU frequency:       2596 MHz\nCPU socket(s):       1\nCore(s) per socket:  4\nThread(s) per core:  2\nNUMA cell(s):        1\nMemory size:         24683784 KiB\n";
    assert.deepEqual(parseNodeInfo(nodeinfo), { cpus: 8, threadsPerCore: 2, memoryKiB: 24683784 });
    assert.deepEqual(parsePoolInfo("Name:           default\nState:          running\nCapacity:       270553174016\nAllocation:     37679144960\nAvailable:      232874029056\n"), {
      capacity: 270553174016,
      allocation: 37679144960,
    });
  });
});

describe("virsh's failures", () => {
  const failure = (stderr: string, args = ["start", "--domain", "web-1"]) => new VirshFailure(args, 1, stderr);

  test("libvirt's reason is the last error line", () => {
    assert.equal(
      libvirtSentence("error: Failed to start domain 'web-1'\nerror: Requested operation is not valid: domain is already running\n"),
      "Requested operation is not valid: domain is already running",
    );
  });

  test("each failure gets the code a caller can act on", () => {
    const unreachable = virshError("h", failure("error: failed to connect to the hypervisor\nerror: unable to connect to server at '127.0.0.1:1': Connection refused\n"), "web-1");
    assert.equal(unreachable.code, "host_unreachable");
    assert.match(unreachable.message, /Host "h" did not answer \(libvirt: unable to connect to server at '127.0.0.1:1': Connection refused\)/);
    // libvirtd gone: its socket, locally; the helper on the far side of ssh; a key the server refuses.
    for (const stderr of [
      "error: failed to connect to the hypervisor\nerror: Failed to connect socket to '/var/run/libvirt/libvirt-sock': No such file or directory\n",
      "error: failed to connect to the hypervisor\nerror: End of file while reading data: virt-ssh-helper: cannot connect to 'qemu:///system': Failed to connect socket: Connection refused: Input/output error\n",
      "error: failed to connect to the hypervisor\nerror: Cannot recv data: root@127.0.0.1: Permission denied (publickey).: Connection reset by peer\n",
    ])
      assert.equal(virshError("h", failure(stderr, ["list"])).code, "host_unreachable", stderr);
    const missing = virshError("h", failure("error: failed to get domain 'nosuch'\n"), "nosuch");
    assert.equal(missing.code, "vm_not_found");
    assert.equal(missing.status, 404);
    const conflict = virshError("h", failure("error: Failed to start domain 'web-1'\nerror: Requested operation is not valid: domain is already running\n"), "web-1");
    assert.equal(conflict.code, "conflict");
    assert.equal(conflict.status, 409);
    assert.match(conflict.message, /Cannot start VM "web-1" on host "h": Requested operation is not valid: domain is already running/);
    const other = virshError("h", failure("error: internal error: something odd\n"), "web-1");
    assert.equal(other.code, "host_bad_answer");
    assert.match(other.message, /something odd/);
  });

  test("domain names virsh must not see", () => {
    assert.equal(domainNameProblem("web-1"), null);
    assert.equal(domainNameProblem("tiny & old"), null);
    assert.match(domainNameProblem("-c") ?? "", /starts with '-'/);
    assert.match(domainNameProblem("a/b") ?? "", /'\/'/);
    assert.match(domainNameProblem("a\0b") ?? "", /control characters/);
    assert.match(domainNameProblem("") ?? "", /empty/);
  });
});

describe("answers shared for a while", () => {
  test("callers within the time share one call; after it, or after a failure or forget, the call is made again", async () => {
    let now = 0;
    const recent = new Recent(() => now);
    let calls = 0;
    const load = async () => ++calls;
    assert.deepEqual(await Promise.all([recent.get("k", 1000, load), recent.get("k", 1000, load)]), [1, 1]);
    now = 999;
    assert.equal(await recent.get("k", 1000, load), 1);
    now = 1000;
    assert.equal(await recent.get("k", 1000, load), 2);
    recent.forget("k");
    assert.equal(await recent.get("k", 1000, load), 3);
    await assert.rejects(
      recent.get("f", 1000, async () => Promise.reject(new Error("down"))),
      /down/,
    );
    assert.equal(await recent.get("f", 1000, async () => "up"), "up");
  });
});
