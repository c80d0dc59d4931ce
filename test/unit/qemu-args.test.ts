import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { AGENT_PORT, buildQemuArgs, kernelCmdline, networkOf, type QemuSpec, type UserNetwork } from "../../src/engine/qemu/qemu-args.ts";

const NET: UserNetwork = {
  guestCidr: "10.0.2.15/24",
  gateway: "10.0.2.2",
  dns: "10.0.2.3",
  mac: "52:54:00:ab:cd:ef",
  forwards: [],
  denyOutgoing: false,
};

function spec(overrides: Partial<QemuSpec> = {}): QemuSpec {
  return {
    accel: "tcg",
    cpus: 2,
    memoryMiB: 512,
    kernel: "/var/lib/corral/kernel/vmlinuz",
    initrd: "/var/lib/corral/kernel/initrd.cpio",
    cmdline: "console=ttyS0 root=/dev/vda",
    disk: { path: "/var/lib/corral/vms/sbox-1/disk.qcow2", format: "qcow2" },
    serialLog: "/var/lib/corral/vms/sbox-1/serial.log",
    qmpSocket: "/run/corral/sbox-1/qmp.sock",
    agentSocket: "/run/corral/sbox-1/agent.sock",
    pidFile: "/run/corral/sbox-1/qemu.pid",
    network: undefined,
    ...overrides,
  };
}

/** Everything after the accelerator choice, for the base spec with no network. */
const COMMON_TAIL = [
  "-smp",
  "2",
  "-m",
  "512M",
  "-nodefaults",
  "-no-user-config",
  "-display",
  "none",
  "-no-reboot",
  "-kernel",
  "/var/lib/corral/kernel/vmlinuz",
  "-initrd",
  "/var/lib/corral/kernel/initrd.cpio",
  "-append",
  "console=ttyS0 root=/dev/vda",
  "-chardev",
  "file,id=serial0,path=/var/lib/corral/vms/sbox-1/serial.log,append=on",
  "-serial",
  "chardev:serial0",
  "-drive",
  "id=root,file=/var/lib/corral/vms/sbox-1/disk.qcow2,format=qcow2,if=none,cache=writeback,discard=unmap",
  "-device",
  "virtio-blk-device,drive=root",
  "-device",
  "virtio-serial-device,max_ports=4",
  "-chardev",
  "socket,id=agent,path=/run/corral/sbox-1/agent.sock,server=on,wait=off",
  "-device",
  "virtserialport,chardev=agent,name=corral.agent",
  "-object",
  "rng-random,id=rng0,filename=/dev/urandom",
  "-device",
  "virtio-rng-device,rng=rng0",
];
const QMP_AND_PID = ["-qmp", "unix:/run/corral/sbox-1/qmp.sock,server=on,wait=off", "-pidfile", "/run/corral/sbox-1/qemu.pid"];

describe("buildQemuArgs", () => {
  test("TCG: the exact argv", () => {
    assert.deepEqual(buildQemuArgs(spec()), ["-M", "microvm,isa-serial=on,pit=on", "-accel", "tcg,thread=multi", "-cpu", "qemu64,+arat", ...COMMON_TAIL, ...QMP_AND_PID]);
  });

  test("KVM: the exact argv, with the host CPU model", () => {
    assert.deepEqual(buildQemuArgs(spec({ accel: "kvm" })), ["-M", "microvm,isa-serial=on", "-accel", "kvm", "-cpu", "host", ...COMMON_TAIL, ...QMP_AND_PID]);
    assert.deepEqual(buildQemuArgs(spec({ accel: "kvm", kvmCpu: "host" })), buildQemuArgs(spec({ accel: "kvm" })));
  });

  test("KVM with the default CPU model: no -cpu at all", () => {
    assert.deepEqual(buildQemuArgs(spec({ accel: "kvm", kvmCpu: "default" })), ["-M", "microvm,isa-serial=on", "-accel", "kvm", ...COMMON_TAIL, ...QMP_AND_PID]);
  });

  test("TCG ignores kvmCpu and always asks for an always-running APIC timer (a tickless idle guest)", () => {
    assert.deepEqual(buildQemuArgs(spec({ kvmCpu: "host" })), buildQemuArgs(spec()));
    const args = buildQemuArgs(spec({ kvmCpu: "host" }));
    assert.equal(args[args.indexOf("-cpu") + 1], "qemu64,+arat");
  });

  test("with a network: netdev and NIC come after the RNG, before QMP", () => {
    assert.deepEqual(buildQemuArgs(spec({ network: NET })), [
      "-M",
      "microvm,isa-serial=on,pit=on",
      "-accel",
      "tcg,thread=multi",
      "-cpu",
      "qemu64,+arat",
      ...COMMON_TAIL,
      "-netdev",
      "user,id=net0,net=10.0.2.0/24,host=10.0.2.2,dns=10.0.2.3",
      "-device",
      "virtio-net-device,netdev=net0,mac=52:54:00:ab:cd:ef",
      ...QMP_AND_PID,
    ]);
  });

  test("port forwards become hostfwd entries in order; denyOutgoing adds restrict=on", () => {
    const args = buildQemuArgs(
      spec({
        network: {
          ...NET,
          denyOutgoing: true,
          forwards: [
            { hostAddress: "127.0.0.1", hostPort: 2222, guestPort: 22 },
            { hostAddress: "0.0.0.0", hostPort: 8080, guestPort: 80 },
          ],
        },
      }),
    );
    const at = args.indexOf("-netdev");
    assert.equal(args[at + 1], "user,id=net0,net=10.0.2.0/24,host=10.0.2.2,dns=10.0.2.3,restrict=on,hostfwd=tcp:127.0.0.1:2222-:22,hostfwd=tcp:0.0.0.0:8080-:80");
  });

  test("forwards without denyOutgoing have no restrict", () => {
    const args = buildQemuArgs(spec({ network: { ...NET, forwards: [{ hostAddress: "127.0.0.1", hostPort: 40001, guestPort: 8080 }] } }));
    assert.equal(args[args.indexOf("-netdev") + 1], "user,id=net0,net=10.0.2.0/24,host=10.0.2.2,dns=10.0.2.3,hostfwd=tcp:127.0.0.1:40001-:8080");
  });

  test("denyOutgoing without forwards", () => {
    const args = buildQemuArgs(spec({ network: { ...NET, denyOutgoing: true } }));
    assert.equal(args[args.indexOf("-netdev") + 1], "user,id=net0,net=10.0.2.0/24,host=10.0.2.2,dns=10.0.2.3,restrict=on");
  });

  test("commas in paths inside option values are doubled", () => {
    const args = buildQemuArgs(
      spec({
        serialLog: "/data/a,b/serial.log",
        disk: { path: "/data/a,b/disk,1.raw", format: "raw" },
        agentSocket: "/run/x,y/agent.sock",
        qmpSocket: "/run/x,y/qmp,,.sock",
      }),
    );
    assert.equal(
      args.find((a) => a.startsWith("file,id=serial0")),
      "file,id=serial0,path=/data/a,,b/serial.log,append=on",
    );
    assert.equal(args[args.indexOf("-drive") + 1], "id=root,file=/data/a,,b/disk,,1.raw,format=raw,if=none,cache=writeback,discard=unmap");
    assert.equal(
      args.find((a) => a.startsWith("socket,id=agent")),
      "socket,id=agent,path=/run/x,,y/agent.sock,server=on,wait=off",
    );
    assert.equal(args[args.indexOf("-qmp") + 1], "unix:/run/x,,y/qmp,,,,.sock,server=on,wait=off");
  });

  test("stand-alone path arguments are passed through unescaped", () => {
    const args = buildQemuArgs(spec({ kernel: "/k,1/vmlinuz", initrd: "/k,1/initrd", pidFile: "/p,1/qemu.pid", cmdline: "a=1,2 b" }));
    assert.equal(args[args.indexOf("-kernel") + 1], "/k,1/vmlinuz");
    assert.equal(args[args.indexOf("-initrd") + 1], "/k,1/initrd");
    assert.equal(args[args.indexOf("-pidfile") + 1], "/p,1/qemu.pid");
    assert.equal(args[args.indexOf("-append") + 1], "a=1,2 b");
  });

  test("cpus, memory and disk format come from the spec", () => {
    const args = buildQemuArgs(spec({ cpus: 8, memoryMiB: 4096, disk: { path: "/d.raw", format: "raw" } }));
    assert.equal(args[args.indexOf("-smp") + 1], "8");
    assert.equal(args[args.indexOf("-m") + 1], "4096M");
    assert.equal(args[args.indexOf("-drive") + 1], "id=root,file=/d.raw,format=raw,if=none,cache=writeback,discard=unmap");
  });

  test("RAM in a file: the machine names the backend, shared for a template, private for a clone", () => {
    const template = buildQemuArgs(spec({ memoryFile: { path: "/t,1/ram", shared: true } }));
    assert.equal(template[template.indexOf("-M") + 1], "microvm,isa-serial=on,pit=on,memory-backend=ram");
    const backend = template.indexOf("memory-backend-file,id=ram,size=512M,mem-path=/t,,1/ram,share=on");
    assert.equal(template[backend - 1], "-object");
    const clone = buildQemuArgs(spec({ memoryFile: { path: "/t/ram", shared: false }, incoming: true }));
    assert.ok(clone.includes("memory-backend-file,id=ram,size=512M,mem-path=/t/ram,share=off"));
    assert.deepEqual(clone.slice(-2), ["-incoming", "defer"]);
    const plain = buildQemuArgs(spec());
    assert.equal(plain[plain.indexOf("-M") + 1], "microvm,isa-serial=on,pit=on");
    assert.equal(
      plain.some((a) => a.startsWith("memory-backend")),
      false,
    );
  });

  test("a TAP NIC: the exact netdev (vnet_hdr always on, no script), its MAC on the device", () => {
    assert.deepEqual(buildQemuArgs(spec({ network: { kind: "tap", ifname: "vmtap12", vhost: false, mac: "52:54:00:00:00:07" } })), [
      "-M",
      "microvm,isa-serial=on,pit=on",
      "-accel",
      "tcg,thread=multi",
      "-cpu",
      "qemu64,+arat",
      ...COMMON_TAIL,
      "-netdev",
      "tap,id=net0,ifname=vmtap12,script=no,downscript=no,vnet_hdr=on",
      "-device",
      "virtio-net-device,netdev=net0,mac=52:54:00:00:00:07",
      ...QMP_AND_PID,
    ]);
  });

  test("a TAP NIC with vhost-net adds vhost=on", () => {
    const args = buildQemuArgs(spec({ network: { kind: "tap", ifname: "tap0", vhost: true, mac: "52:54:00:00:00:08" } }));
    assert.equal(args[args.indexOf("-netdev") + 1], "tap,id=net0,ifname=tap0,script=no,downscript=no,vnet_hdr=on,vhost=on");
  });

  test("freeze starts the vCPUs stopped (-S, last); incoming already waits, so it needs no -S", () => {
    assert.deepEqual(buildQemuArgs(spec({ freeze: true })), [
      "-M",
      "microvm,isa-serial=on,pit=on",
      "-accel",
      "tcg,thread=multi",
      "-cpu",
      "qemu64,+arat",
      ...COMMON_TAIL,
      ...QMP_AND_PID,
      "-S",
    ]);
    const incoming = buildQemuArgs(spec({ freeze: true, incoming: true }));
    assert.deepEqual(incoming.slice(-2), ["-incoming", "defer"]);
    assert.equal(incoming.includes("-S"), false);
    assert.equal(buildQemuArgs(spec()).includes("-S"), false);
  });

  test("the agent port name is the one the guest looks for", () => {
    assert.equal(AGENT_PORT, "corral.agent");
  });

  test("every argument is a string and the result is a fresh array each call", () => {
    const a = buildQemuArgs(spec());
    const b = buildQemuArgs(spec());
    assert.notEqual(a, b);
    assert.ok(a.every((x) => typeof x === "string"));
  });
});

describe("kernelCmdline", () => {
  test("TCG without network adds the TSC arguments", () => {
    assert.equal(
      kernelCmdline({ accel: "tcg", hostname: "sbox-1", network: undefined, tscKhz: 2695946 }),
      "console=ttyS0 reboot=k panic=-1 pci=off quiet root=/dev/vda rw tsc_early_khz=2695946 tsc=reliable corral.hostname=sbox-1",
    );
  });

  test("the TSC rate given is the one the guest kernel is told", () => {
    assert.match(kernelCmdline({ accel: "tcg", hostname: "h", network: undefined, tscKhz: 3400000 }), / tsc_early_khz=3400000 tsc=reliable /);
  });

  test("KVM without network has no TSC arguments", () => {
    assert.equal(
      kernelCmdline({ accel: "kvm", hostname: "web-2", network: undefined, tscKhz: 2695946 }),
      "console=ttyS0 reboot=k panic=-1 pci=off quiet root=/dev/vda rw corral.hostname=web-2",
    );
  });

  test("TCG with network appends the address, gateway and DNS", () => {
    assert.equal(
      kernelCmdline({ accel: "tcg", hostname: "sbox-1", network: NET, tscKhz: 2695946 }),
      "console=ttyS0 reboot=k panic=-1 pci=off quiet root=/dev/vda rw tsc_early_khz=2695946 tsc=reliable corral.hostname=sbox-1 corral.ip=10.0.2.15/24 corral.gw=10.0.2.2 corral.dns=10.0.2.3",
    );
  });

  test("KVM with network", () => {
    assert.equal(
      kernelCmdline({ accel: "kvm", hostname: "sbox-1", network: { ...NET, guestCidr: "192.168.7.9/16", gateway: "192.168.0.1", dns: "1.1.1.1" }, tscKhz: 2695946 }),
      "console=ttyS0 reboot=k panic=-1 pci=off quiet root=/dev/vda rw corral.hostname=sbox-1 corral.ip=192.168.7.9/16 corral.gw=192.168.0.1 corral.dns=1.1.1.1",
    );
  });

  test("a disk bigger than the image asks the guest to grow its root filesystem", () => {
    assert.equal(
      kernelCmdline({ accel: "kvm", hostname: "env-1", network: undefined, tscKhz: 1, growRootfs: true }),
      "console=ttyS0 reboot=k panic=-1 pci=off quiet root=/dev/vda rw corral.hostname=env-1 corral.growfs=1",
    );
  });

  test("several DNS servers are one comma-separated corral.dns", () => {
    assert.equal(
      kernelCmdline({ accel: "kvm", hostname: "vm-1", network: { guestCidr: "192.168.137.2/24", gateway: "192.168.137.1", dns: ["192.168.137.1", "1.1.1.1"] }, tscKhz: 1 }),
      "console=ttyS0 reboot=k panic=-1 pci=off quiet root=/dev/vda rw corral.hostname=vm-1 corral.ip=192.168.137.2/24 corral.gw=192.168.137.1 corral.dns=192.168.137.1,1.1.1.1",
    );
  });

  test("forwards and denyOutgoing do not reach the kernel command line", () => {
    const plain = kernelCmdline({ accel: "kvm", hostname: "h", network: NET, tscKhz: 1 });
    const withForwards: UserNetwork = { ...NET, denyOutgoing: true, forwards: [{ hostAddress: "127.0.0.1", hostPort: 1, guestPort: 2 }] };
    const restricted = kernelCmdline({ accel: "kvm", hostname: "h", network: withForwards, tscKhz: 1 });
    assert.equal(restricted, plain);
  });
});

describe("networkOf", () => {
  test("masks the host part off", () => {
    assert.equal(networkOf("10.0.2.15/24"), "10.0.2.0/24");
    assert.equal(networkOf("192.168.100.200/16"), "192.168.0.0/16");
    assert.equal(networkOf("172.31.255.255/12"), "172.16.0.0/12");
    assert.equal(networkOf("10.1.2.3/8"), "10.0.0.0/8");
    assert.equal(networkOf("10.0.2.130/25"), "10.0.2.128/25");
    assert.equal(networkOf("10.0.2.15/30"), "10.0.2.12/30");
  });

  test("/32 keeps the address, /0 keeps nothing", () => {
    assert.equal(networkOf("10.0.2.15/32"), "10.0.2.15/32");
    assert.equal(networkOf("10.0.2.15/0"), "0.0.0.0/0");
  });

  test("addresses with the top bit set stay unsigned", () => {
    assert.equal(networkOf("255.255.255.255/24"), "255.255.255.0/24");
    assert.equal(networkOf("200.1.2.3/1"), "128.0.0.0/1");
    assert.equal(networkOf("128.0.0.1/31"), "128.0.0.0/31");
  });

  test("an address already on its network boundary is unchanged", () => {
    assert.equal(networkOf("10.0.2.0/24"), "10.0.2.0/24");
  });
});
