// Contract of the isolated attachment (src/net/isolated-attachment.ts) against real devices, nft and a stand-in
// QEMU (`-M microvm -S`, no kernel: it makes its TAP and waits). The whole file runs again inside a throwaway
// `unshare --net` namespace that plays the host, so no device or rule ever reaches the machine's own
// namespace, and whatever a failed run leaves dies with that child. A "guest" for packet tests is a namespace
// behind a veth named tap0 (the stand-in's TAP carries no frames), and an "outside" peer namespace runs
// listeners routed through the test's host.
import assert from "node:assert/strict";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { readdirSync, readFileSync, readlinkSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { describe, test } from "node:test";
import { isProblem, parseIpv4, type EgressEntry } from "../../src/net/cidr.ts";
import { createIsolatedAttachment, type CommandRunner, type IsolatedAttachment, type IsolatedAttachmentInput } from "../../src/net/isolated-attachment.ts";
import { parseEgressList } from "../../src/net/policy.ts";
import { Reverter } from "../../src/util/reverter.ts";
import { run } from "../../src/util/run.ts";
import { until } from "../helpers/until.ts";

const INSIDE = process.env.CORRAL_ISOLATED_CONTRACT === "inside";
const CYCLES = Number(process.env.CORRAL_ISOLATED_CYCLES ?? 1000);
const MARKER = `corral-isolated-contract-${process.pid}`;

function missing(): string | false {
  if (process.getuid?.() !== 0) return "needs root (network namespaces, veths, nft)";
  for (const tool of ["unshare", "nsenter", "ip", "nft", "qemu-system-x86_64", "bash", "timeout"]) {
    if (spawnSync("sh", ["-c", `command -v ${tool}`]).status !== 0) return `needs ${tool}`;
  }
  return false;
}

if (!INSIDE) {
  // The outer run: the same file, in a network namespace of its own (the "host" of every test below).
  test("isolated attachment contract, in a private network namespace", { skip: missing(), timeout: 30 * 60_000 }, async () => {
    // NODE_TEST_CONTEXT would make the child report to a parent runner that is not listening.
    const { NODE_TEST_CONTEXT: _, ...env } = process.env;
    const child = spawn("unshare", ["--net", "--", process.execPath, "--import", "tsx", "--test-reporter=spec", new URL(import.meta.url).pathname], {
      env: { ...env, CORRAL_ISOLATED_CONTRACT: "inside" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    child.stdout.on("data", (c: Buffer) => (output += c));
    child.stderr.on("data", (c: Buffer) => (output += c));
    const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
    const summary = output
      .split("\n")
      .filter((l) => /^ℹ (tests|pass|fail|duration)/.test(l))
      .join("; ");
    process.stderr.write(`isolated attachment contract: ${summary}\n`);
    assert.equal(code, 0, output.slice(-12_000));
  });
} else {
  contract();
}

function list(entries: string[]): EgressEntry[] {
  const parsed = parseEgressList(entries, "test");
  if (isProblem(parsed)) throw new Error(parsed.problem);
  return parsed;
}

const MAC = "52:54:00:12:34:56";
let nextIndex = 0;
/** Input for the n-th VM: its own /30 in 169.254.100.0/22 and its own host link name. */
function inputFor(n: number, overrides: Partial<IsolatedAttachmentInput> = {}): IsolatedAttachmentInput {
  const network = parseIpv4("169.254.100.0")! + (n % 256) * 4;
  return {
    hostIfname: `cit0-${n}`,
    block: { network, gateway: network + 1, address: network + 2 },
    mac: MAC,
    dns: ["169.254.100.1"],
    policy: { allow: [], drop: [] },
    denyOutgoing: false,
    portMap: [{ guest: 22, host: 20022 }],
    vhost: false,
    alias: `corral:t0:sandbox:${n}`,
    ...overrides,
  };
}

/** The stand-in QEMU: through the attachment's prefix, with its netdev, stopped, no kernel. */
function startQemu(attachment: IsolatedAttachment): ChildProcess {
  assert.equal(attachment.netdev.kind, "tap");
  const ifname = attachment.netdev.kind === "tap" ? attachment.netdev.ifname : "";
  const [prefix, ...prefixArgs] = attachment.launchPrefix;
  const args = [
    ...prefixArgs,
    "qemu-system-x86_64",
    "-M",
    "microvm",
    "-S",
    "-nodefaults",
    "-display",
    "none",
    "-m",
    "64M",
    "-name",
    MARKER,
    "-netdev",
    `tap,id=net0,ifname=${ifname},script=no,downscript=no,vnet_hdr=on`,
    "-device",
    `virtio-net-device,netdev=net0,mac=${attachment.guest.mac}`,
  ];
  return spawn(prefix!, args, { stdio: "ignore" });
}

/** A process that only holds a fresh network namespace (the "guest", the "outside" peer). */
function holdNamespace(): ChildProcess {
  return spawn("unshare", ["--net", "--", "sleep", "3600"], { stdio: "ignore" });
}

async function kill(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once("exit", resolve));
  child.kill("SIGKILL");
  await exited;
}

function links(pid: number | "self" = "self"): string[] {
  return readFileSync(`/proc/${pid}/net/dev`, "utf8")
    .split("\n")
    .slice(2)
    .map((l) => l.split(":")[0]!.trim())
    .filter(Boolean)
    .sort();
}

function nsenter(pid: number, command: string, args: string[], input?: string): Promise<string> {
  return run("nsenter", [`--net=/proc/${pid}/ns/net`, "--", command, ...args], input === undefined ? {} : { input });
}

async function hostLinkGone(name: string): Promise<void> {
  await until(() => (links().includes(name) ? undefined : true), `host link "${name}" to go`, 10_000, 20);
}

/** Processes below this one (the stand-ins, nsenter, ip, nft): none may outlive a test. */
function descendants(): string[] {
  const parents = new Map<number, number>();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      parents.set(Number(entry), Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]));
    } catch {
      // exited meanwhile
    }
  }
  const below = (pid: number): boolean => {
    for (let p = parents.get(pid), hops = 0; p !== undefined && hops < 64; p = parents.get(p), hops++) if (p === process.pid) return true;
    return false;
  };
  const command = (pid: number): string => {
    try {
      return readFileSync(`/proc/${pid}/cmdline`, "utf8").replaceAll("\0", " ").trim();
    } catch {
      return "";
    }
  };
  // tsx's esbuild service is the test runner's own helper, not something a test started.
  return [...parents.keys()]
    .filter(below)
    .map(command)
    .filter((c) => c !== "" && !c.includes("esbuild"));
}

function namespaces(): Set<string> {
  const found = new Set<string>();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      found.add(readlinkSync(`/proc/${entry}/ns/net`));
    } catch {
      // exited meanwhile, or a kernel thread
    }
  }
  return found;
}

/** A TCP connect from inside a namespace: true when it connected (a dropped SYN times out, a reset refuses). */
async function connects(pid: number, address: string, port: number): Promise<boolean> {
  try {
    await nsenter(pid, "timeout", ["3", "bash", "-c", `exec 3<>/dev/tcp/${address}/${port}`]);
    return true;
  } catch {
    return false;
  }
}

function listen(port: number, address: string): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = createServer((s) => {
      s.on("error", () => undefined); // the prober closes at once: a reset is expected
      s.end("ok\n");
    });
    server.once("error", reject);
    server.listen(port, address, () => resolve(server));
  });
}

function contract(): void {
  describe("plumb", () => {
    test("veth, namespace bridge and rules are there; the VM is told its /30; QEMU's death takes it all", async () => {
      const input = inputFor(nextIndex++);
      const attachment = createIsolatedAttachment(input);
      const host = attachment.view().target_dev!;
      assert.deepEqual(attachment.launchPrefix, ["unshare", "--net", "--"]);
      assert.equal(attachment.needsPlumbing, true);
      assert.deepEqual(attachment.netdev, { kind: "tap", ifname: "tap0", vhost: false });
      const qemu = startQemu(attachment);
      try {
        const revert = new Reverter();
        await attachment.plumb(qemu.pid!, revert);
        revert.commit();
        const [hostLink] = JSON.parse(await run("ip", ["-j", "-d", "addr", "show", "dev", host])) as {
          ifalias?: string;
          operstate: string;
          addr_info: { local: string; prefixlen: number; family: string }[];
        }[];
        assert.deepEqual(
          hostLink!.addr_info.map((a) => `${a.family} ${a.local}/${a.prefixlen}`),
          [`inet ${attachment.guest.gateway}/30`],
          "only the gateway, no IPv6",
        );
        assert.equal(hostLink!.ifalias, input.alias);
        assert.equal(readFileSync(`/proc/sys/net/ipv4/conf/${host}/route_localnet`, "utf8").trim(), "1");
        assert.deepEqual(links(qemu.pid!), ["br0", "lo", "tap0", "veth0"]);
        const inside = JSON.parse(await nsenter(qemu.pid!, "ip", ["-j", "-d", "link"])) as {
          ifname: string;
          master?: string;
          operstate: string;
          linkinfo?: { info_data?: { nf_call_iptables?: number } };
        }[];
        const byName = new Map(inside.map((l) => [l.ifname, l]));
        assert.equal(byName.get("tap0")!.master, "br0");
        assert.equal(byName.get("veth0")!.master, "br0");
        assert.equal(byName.get("br0")!.linkinfo!.info_data!.nf_call_iptables, 1);
        assert.deepEqual(await attachment.inspect(qemu.pid!), { namespace: true, hostLink: true, devices: true, guard: "current", policy: "current" });
        assert.deepEqual(attachment.guest, { address: "169.254.100.2", prefixLength: 30, gateway: "169.254.100.1", dns: ["169.254.100.1"], mac: MAC });
        assert.deepEqual(attachment.view(), { mode: "isolated", mac: MAC, address: "169.254.100.2", prefix_length: 30, gateway: "169.254.100.1", bridge: null, target_dev: host });
      } finally {
        await kill(qemu);
      }
      await hostLinkGone(host);
      assert.deepEqual(links(), ["lo"]);
    });

    test("the host's `nft flush ruleset` leaves the VM's rules alone", async () => {
      const attachment = createIsolatedAttachment(inputFor(nextIndex++));
      const qemu = startQemu(attachment);
      try {
        await attachment.plumb(qemu.pid!, new Reverter());
        await run("nft", ["flush", "ruleset"]);
        assert.equal((await attachment.inspect(qemu.pid!)).policy, "current");
      } finally {
        await kill(qemu);
      }
      await hostLinkGone(attachment.view().target_dev!);
    });

    test("refuses a QEMU that shares the daemon's namespace (launched without the prefix), touching nothing", async () => {
      const attachment = createIsolatedAttachment(inputFor(nextIndex++), { readyTimeoutMs: 300 });
      const plain = spawn("sleep", ["60"], { stdio: "ignore" });
      try {
        const revert = new Reverter();
        await assert.rejects(attachment.plumb(plain.pid!, revert), /no "tap0" in its own network namespace/);
        await revert.revert();
        assert.deepEqual(links(), ["lo"]);
      } finally {
        await kill(plain);
      }
    });

    test("a QEMU that is already gone: a clear error, nothing made", async () => {
      const attachment = createIsolatedAttachment(inputFor(nextIndex++));
      const qemu = startQemu(attachment);
      await kill(qemu);
      await assert.rejects(attachment.plumb(qemu.pid!, new Reverter()), /the process exited before its TAP was made/);
      assert.deepEqual(links(), ["lo"]);
    });

    test("refuses a host link name in use by a live link", async () => {
      await run("ip", ["link", "add", "cit0-busy", "type", "bridge"]);
      const attachment = createIsolatedAttachment(inputFor(nextIndex++, { hostIfname: "cit0-busy" }));
      const qemu = startQemu(attachment);
      try {
        const revert = new Reverter();
        await assert.rejects(attachment.plumb(qemu.pid!, revert), /a link "cit0-busy" already exists on the host/);
        await revert.revert();
        assert.ok(links().includes("cit0-busy"), "someone else's link is not deleted");
      } finally {
        await kill(qemu);
        await run("ip", ["link", "del", "cit0-busy"]);
      }
    });

    test("refuses names that do not fit an interface", () => {
      assert.throws(() => createIsolatedAttachment(inputFor(0, { hostIfname: "a-name-of-16-chr" })), /as a veth name/);
      assert.throws(() => createIsolatedAttachment(inputFor(0, { hostIfname: "veth0" })), /as a veth name/);
      assert.throws(() => createIsolatedAttachment(inputFor(0, { hostIfname: "x y" })), /as a veth name/);
      assert.throws(() => createIsolatedAttachment(inputFor(0, { alias: "corral t0" })), /as an interface alias/);
    });
  });

  describe("a failure at each step leaves nothing", () => {
    // Three commands: the host's ip -batch, the namespace's nft -f, the namespace's ip -batch. Each fails once
    // before it runs and once after it ran (as a batch failing on its last line would).
    for (const step of [0, 1, 2]) {
      for (const when of ["before", "after"] as const) {
        test(`command ${step + 1} fails ${when} running; the undo steps run while QEMU lives`, async () => {
          let calls = 0;
          const failing: CommandRunner = async (file, args, input, signal) => {
            const call = calls++;
            if (call === step && when === "before") throw new Error("injected failure");
            const out = await run(file, args, { input, signal });
            if (call === step) throw new Error("injected failure");
            return out;
          };
          const attachment = createIsolatedAttachment(inputFor(nextIndex++), { run: failing });
          const qemu = startQemu(attachment);
          try {
            const revert = new Reverter((what, err) => assert.fail(`undo of ${what} failed: ${String(err)}`));
            await assert.rejects(attachment.plumb(qemu.pid!, revert), /injected failure/);
            await revert.revert();
            assert.deepEqual(links(), ["lo"], "no host link");
            assert.deepEqual(links(qemu.pid!), ["lo", "tap0"], "the namespace as QEMU made it");
            assert.equal((await nsenter(qemu.pid!, "nft", ["list", "ruleset"])).trim(), "", "no tables in the namespace");
          } finally {
            await kill(qemu);
          }
        });
      }
    }

    test("the undo steps after QEMU died are harmless (the delete path)", async () => {
      const attachment = createIsolatedAttachment(inputFor(nextIndex++));
      const qemu = startQemu(attachment);
      const revert = new Reverter((what, err) => assert.fail(`undo of ${what} failed: ${String(err)}`));
      await attachment.plumb(qemu.pid!, revert);
      await kill(qemu);
      await revert.revert();
      assert.deepEqual(links(), ["lo"]);
    });
  });

  describe("inspect and repair", () => {
    test("a table written from another policy is stale, a deleted one missing; restoreRules brings both back", async () => {
      const input = inputFor(nextIndex++);
      const attachment = createIsolatedAttachment(input);
      const qemu = startQemu(attachment);
      try {
        await attachment.plumb(qemu.pid!, new Reverter());
        // Another writer (an older daemon, a hand edit) left a table of another policy.
        await createIsolatedAttachment(input).setPolicy(qemu.pid!, { allow: [], drop: list(["10.0.0.0/8"]) }, false);
        assert.equal((await attachment.inspect(qemu.pid!)).policy, "stale");
        await nsenter(qemu.pid!, "nft", ["delete", "table", "bridge", "corral_vm"]);
        assert.equal((await attachment.inspect(qemu.pid!)).guard, "missing");
        await attachment.restoreRules(qemu.pid!);
        const fixed = await attachment.inspect(qemu.pid!);
        assert.equal(fixed.guard, "current");
        assert.equal(fixed.policy, "current");
      } finally {
        await kill(qemu);
      }
      const gone = await attachment.inspect(qemu.pid!);
      assert.equal(gone.namespace, false);
      await hostLinkGone(attachment.view().target_dev!);
    });
  });

  describe("packets: a guest behind the TAP", () => {
    test("dropped CIDR refused, allowed address:port reached, host end refused, mapped port in; setPolicy flips it", { timeout: 120_000 }, async () => {
      // The test's host forwards between the VM's veth and the outside peer (its own namespace: allowed here).
      await run("sh", ["-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"]);
      const holder = holdNamespace(); // plays QEMU: holds the VM's namespace with a "tap0"
      const guest = holdNamespace();
      const outside = holdNamespace();
      const servers: Server[] = [];
      const input = inputFor(nextIndex++, {
        policy: { drop: list(["198.18.0.0/24"]), allow: list(["198.18.0.2:7001"]) },
        portMap: [{ guest: 8022, host: 20022 }],
      });
      const attachment = createIsolatedAttachment(input);
      const host = input.hostIfname;
      try {
        await until(
          () => (links(holder.pid!).includes("lo") && links(guest.pid!).includes("lo") && links(outside.pid!).includes("lo") ? true : undefined),
          "namespaces",
          10_000,
          20,
        );
        // "tap0" in the VM's namespace is a veth whose peer is the guest's eth0, with the VM's MAC and address.
        await run("ip", ["-batch", "-"], {
          input: [
            `link add tap0 netns ${holder.pid} type veth peer name eth0 netns ${guest.pid}`,
            `link add hp0 type veth peer name pp0 netns ${outside.pid}`,
            "addr add 198.18.0.1/24 dev hp0",
            "link set dev hp0 up",
            "",
          ].join("\n"),
        });
        await nsenter(
          guest.pid!,
          "ip",
          ["-batch", "-"],
          [
            "link set dev lo up",
            `link set dev eth0 address ${MAC}`,
            `addr add ${attachment.guest.address}/30 dev eth0`,
            "link set dev eth0 up",
            `route add default via ${attachment.guest.gateway}`,
            "",
          ].join("\n"),
        );
        await nsenter(
          outside.pid!,
          "ip",
          ["-batch", "-"],
          ["link set dev lo up", "addr add 198.18.0.2/24 dev pp0", "link set dev pp0 up", "route add default via 198.18.0.1", ""].join("\n"),
        );
        await attachment.plumb(holder.pid!, new Reverter());

        // Listeners: two on the outside peer, one on the host end (the host's own service), one in the guest.
        const peer = spawn(
          "nsenter",
          [
            `--net=/proc/${outside.pid}/ns/net`,
            "--",
            process.execPath,
            "-e",
            "for (const p of [7001, 7002]) require('net').createServer((s) => { s.on('error', () => {}); s.end('ok'); }).listen(p, '198.18.0.2', () => console.log(p))",
          ],
          { stdio: ["ignore", "pipe", "ignore"] },
        );
        const inGuest = spawn(
          "nsenter",
          [
            `--net=/proc/${guest.pid}/ns/net`,
            "--",
            process.execPath,
            "-e",
            `for (const p of [8022, 8023]) require('net').createServer((s) => { s.on('error', () => {}); s.end('ok'); }).listen(p, '${attachment.guest.address}', () => console.log(p))`,
          ],
          { stdio: ["ignore", "pipe", "ignore"] },
        );
        try {
          await Promise.all(
            [peer, inGuest].map((child) => {
              let seen = "";
              child.stdout!.on("data", (c: Buffer) => (seen += c));
              return until(() => ((seen.match(/\d+/g) ?? []).length >= 2 ? true : undefined), "listeners", 30_000, 50);
            }),
          );
          servers.push(await listen(7003, attachment.guest.gateway));

          assert.equal(await connects(guest.pid!, "198.18.0.2", 7001), true, "the allowed address:port answers");
          assert.equal(await connects(guest.pid!, "198.18.0.2", 7002), false, "the rest of the dropped CIDR is refused");
          assert.equal(await connects(guest.pid!, attachment.guest.gateway, 7003), false, "the host end is not reachable");
          assert.equal(await connects(outside.pid!, attachment.guest.address, 8022), true, "the mapped guest port takes connections");
          assert.equal(await connects(outside.pid!, attachment.guest.address, 8023), false, "an unmapped guest port does not");

          await attachment.setPolicy(holder.pid!, { allow: list(["198.18.0.2:7002", `${attachment.guest.gateway}:7003`]), drop: list(["198.18.0.2"]) }, false);
          assert.equal(await connects(guest.pid!, "198.18.0.2", 7002), true, "now allowed");
          assert.equal(await connects(guest.pid!, "198.18.0.2", 7001), false, "now dropped");
          assert.equal(await connects(guest.pid!, attachment.guest.gateway, 7003), true, "an allow entry naming the host end opens it");

          await attachment.setPolicy(holder.pid!, { allow: list(["0.0.0.0/0"]), drop: [] }, true);
          assert.equal(await connects(guest.pid!, "198.18.0.2", 7002), false, "deny_outgoing: no new connection out");
          assert.equal(await connects(outside.pid!, attachment.guest.address, 8022), true, "deny_outgoing: the mapped port still answers");
          assert.equal((await attachment.inspect(holder.pid!)).policy, "current");

          // Spoofing: the guest takes another address; nothing it sends gets through.
          await attachment.setPolicy(holder.pid!, { allow: [], drop: [] }, false);
          assert.equal(await connects(guest.pid!, "198.18.0.2", 7002), true);
          const gw = attachment.guest.gateway;
          await nsenter(
            guest.pid!,
            "ip",
            ["-batch", "-"],
            `addr flush dev eth0\naddr add 10.9.9.9/32 dev eth0\nroute add ${gw}/32 dev eth0\nroute add default via ${gw} src 10.9.9.9\n`,
          );
          assert.equal(await connects(guest.pid!, "198.18.0.2", 7002), false, "a spoofed source address is dropped");
        } finally {
          await kill(peer);
          await kill(inGuest);
        }
      } finally {
        for (const s of servers) s.close();
        await Promise.all([holder, guest, outside].map(kill));
        await run("ip", ["link", "del", "hp0"]).catch(() => undefined);
      }
      await hostLinkGone(host);
    });
  });

  describe("churn", () => {
    test(`${CYCLES} attach/detach cycles (4 at a time) leave no link, process or namespace`, { timeout: 25 * 60_000 }, async () => {
      const baseline = namespaces();
      let next = 0;
      const cycle = async (n: number): Promise<void> => {
        const attachment = createIsolatedAttachment(inputFor(1000 + n));
        const qemu = startQemu(attachment);
        const revert = new Reverter((what, err) => assert.fail(`undo of ${what} failed: ${String(err)}`));
        try {
          await attachment.plumb(qemu.pid!, revert);
        } finally {
          // The delete path: QEMU ends, then the same undo list runs.
          await kill(qemu);
          await revert.revert();
        }
      };
      const worker = async (slot: number): Promise<void> => {
        // Each worker uses its own link names (slot), so a name is reused only after its last owner is gone.
        for (let i = next++; i < CYCLES; i = next++) await cycle(slot * 100 + (i % 100) + 1);
      };
      await Promise.all([0, 1, 2, 3].map(worker));
      assert.deepEqual(links(), ["lo"], "no veth left on the host");
      await until(() => (descendants().length === 0 ? true : undefined), "no process of ours", 10_000, 50).catch(() => undefined);
      const ours = [...namespaces()].filter((ns) => !baseline.has(ns));
      // Namespaces that appeared meanwhile belong to other programs on this machine: none of ours is alive.
      assert.deepEqual(descendants(), [], `namespaces that appeared meanwhile: ${ours.join(", ")}`);
    });
  });
}
