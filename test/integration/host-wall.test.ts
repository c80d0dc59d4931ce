// The wall between guests and the host's services, on its own: the daemon's set-up code (HostIsolation, run
// by test/helpers/isolation-driver.ts) and real nftables in a network namespace this test makes, so the host's
// own table is never touched. Processes of the guests' group stand in for QEMU; the probe and the listeners
// are real sockets. network.test.ts proves the same against real guests.
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { parseAllowanceJumps } from "../../src/net/host-isolation-rules.ts";
import { run } from "../../src/util/run.ts";
import { parseProbe, REACH_PROBE, reached, type ProbeResult } from "../helpers/reach.ts";
import { until } from "../helpers/until.ts";

const DRIVER = fileURLToPath(new URL("../helpers/isolation-driver.ts", import.meta.url));

const LISTENER = `
const [kind, name, host] = process.argv.slice(-3);
if (kind === "tcp") {
  const server = require("net").createServer((s) => { s.on("error", () => {}); s.end(name + "\\n"); });
  server.listen(0, host, () => console.log(server.address().port));
} else {
  const socket = require("dgram").createSocket(host.includes(":") ? "udp6" : "udp4");
  socket.on("message", (_d, from) => socket.send(name + "\\n", from.port, from.address));
  socket.bind(0, host, () => console.log(socket.address().port));
}
`;

function firstLine(child: ChildProcess): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = "";
    let err = "";
    child.stderr?.on("data", (chunk: Buffer) => (err += chunk.toString()));
    const onData = (chunk: Buffer): void => {
      out += chunk.toString();
      if (out.includes("\n")) {
        child.stdout?.off("data", onData);
        resolve(out.split("\n")[0] as string);
      }
    };
    child.stdout?.on("data", onData);
    child.once("exit", (code) => reject(new Error(`exited (${code}) before answering: ${out}${err}`)));
  });
}

describe("the wall, in a network namespace of its own", { timeout: 180_000 }, () => {
  const id = randomBytes(3).toString("hex");
  const ns = `corral-wall-${id}`;
  const peerNs = `corral-peer-${id}`;
  // Addresses from the benchmarking range (RFC 2544), only inside the two namespaces. The namespace's end of
  // the veth stands for the host's LAN address.
  const [localExtra, peer] = ["198.18.1.1", "198.18.1.2"];
  const children: ChildProcess[] = [];
  const stateRoot = join(tmpdir(), `corral-wall-${id}`);
  let gid = -1;

  const inNs = (name: string, args: string[], options: { gid?: number } = {}): ChildProcess => {
    const child = spawn("ip", ["netns", "exec", name, ...args], { stdio: ["pipe", "pipe", "pipe"], ...options });
    children.push(child);
    return child;
  };

  async function listener(kind: "tcp" | "udp", name: string, host: string, options: { gid?: number; where?: string } = {}): Promise<number> {
    return Number(await firstLine(inNs(options.where ?? ns, [process.execPath, "-e", LISTENER, kind, name, host], { gid: options.gid })));
  }

  async function probe(kind: "tcp" | "udp", host: string, port: number, options: { gid?: number } = {}): Promise<ProbeResult> {
    const child = inNs(ns, [process.execPath, "-e", REACH_PROBE, kind, host, String(port)], options);
    child.stdin?.end();
    let out = "";
    child.stdout?.on("data", (chunk: Buffer) => (out += chunk.toString()));
    await new Promise((resolve) => child.once("exit", resolve));
    return parseProbe(out);
  }

  /** A daemon's wall set-up in the namespace; `stop()` releases its allowances as a stopping daemon does. */
  async function daemonWall(stateDir: string, entries: string[]): Promise<{ child: ChildProcess; stop(): Promise<void> }> {
    const child = inNs(ns, [process.execPath, "--import", "tsx", DRIVER, stateDir, ...entries]);
    const answer = JSON.parse(await firstLine(child)) as { gid?: number; error?: string };
    assert.equal(answer.error, undefined);
    gid = answer.gid as number;
    return {
      child,
      stop: async () => {
        const released = firstLine(child);
        child.stdin?.end();
        assert.deepEqual(JSON.parse(await released), { released: true });
      },
    };
  }

  /** A daemon's state directory (its allowances' owner), under this test's own folder. */
  const stateDir = (prefix: string): Promise<string> => mkdtemp(join(stateRoot, `${prefix}-`));

  const jumps = async (): Promise<ReturnType<typeof parseAllowanceJumps>> =>
    parseAllowanceJumps(await run("ip", ["netns", "exec", ns, "nft", "-j", "list", "chain", "inet", "corral_guard", "allow"]));

  before(async () => {
    await run("ip", ["netns", "add", ns]);
    await run("ip", ["netns", "add", peerNs]);
    const ipNs = (args: string): Promise<string> => run("ip", ["-n", ns, ...args.split(" ")]);
    await ipNs("link set lo up");
    // A machine beyond the host: a veth into a second namespace.
    await ipNs(`link add veth0 type veth peer name veth1 netns ${peerNs}`);
    await ipNs(`addr add ${localExtra}/24 dev veth0`);
    await ipNs("link set veth0 up");
    await run("ip", ["-n", peerNs, "addr", "add", `${peer}/24`, "dev", "veth1"]);
    await run("ip", ["-n", peerNs, "link", "set", "veth1", "up"]);
    await run("ip", ["-n", peerNs, "link", "set", "lo", "up"]);
    await mkdir(stateRoot);
  });

  after(async () => {
    for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    await run("ip", ["netns", "del", ns]).catch(() => undefined);
    await run("ip", ["netns", "del", peerNs]).catch(() => undefined);
    await rm(stateRoot, { recursive: true, force: true });
  });

  test("the guests' group reaches none of the host's addresses, TCP or UDP, v4 or v6; other processes do", async () => {
    const wall = await daemonWall(await stateDir("a"), []);
    const targets: ["tcp" | "udp", string, number][] = [
      ["tcp", "127.0.0.1", await listener("tcp", "loopback", "127.0.0.1")],
      ["udp", "127.0.0.1", await listener("udp", "loopback-udp", "127.0.0.1")],
      ["tcp", "::1", await listener("tcp", "loopback6", "::1")],
      ["tcp", localExtra, await listener("tcp", "any", "0.0.0.0")],
    ];
    for (const [kind, host, port] of targets) {
      const walled = await probe(kind, host, port, { gid });
      assert.ok(!reached(walled), `${kind} ${host}:${port} from the guests' group: ${JSON.stringify(walled)}`);
      if (kind === "tcp") assert.equal(walled.outcome, "refused", "refused at once, not left to time out");
      const other = await probe(kind, host, port);
      assert.equal(other.outcome, "open", `${kind} ${host}:${port} from another group: ${JSON.stringify(other)}`);
    }
    await wall.stop();
  });

  test("replies flow: a listener of the guests' group (a forwarded port) answers host clients", async () => {
    const wall = await daemonWall(await stateDir("a"), []);
    const port = await listener("tcp", "forwarded", "127.0.0.1", { gid });
    assert.deepEqual(await probe("tcp", "127.0.0.1", port), { outcome: "open", data: "forwarded" });
    await wall.stop();
  });

  test("addresses beyond the host are not walled", async () => {
    const wall = await daemonWall(await stateDir("a"), []);
    const port = await listener("tcp", "beyond", peer, { where: peerNs });
    assert.deepEqual(await probe("tcp", peer, port, { gid }), { outcome: "open", data: "beyond" });
    await wall.stop();
  });

  test("an allowance opens its service and nothing beside it; one daemon's stop leaves another's allowances", async () => {
    const [allowedA, neighbour, allowedB, udpB] = [
      await listener("tcp", "allowed-a", "127.0.0.1"),
      await listener("tcp", "neighbour", "127.0.0.1"),
      await listener("tcp", "allowed-b", "0.0.0.0"),
      await listener("udp", "allowed-b-udp", "127.0.0.1"),
    ];
    const a = await daemonWall(await stateDir("a"), [`127.0.0.1:${allowedA}`]);
    const b = await daemonWall(await stateDir("b"), [`tcp/${allowedB}`, `udp/127.0.0.1:${udpB}`]);
    assert.equal((await probe("tcp", "127.0.0.1", allowedA, { gid })).outcome, "open");
    assert.equal((await probe("tcp", "127.0.0.1", neighbour, { gid })).outcome, "refused");
    assert.equal((await probe("tcp", localExtra, allowedA, { gid })).outcome, "refused", "allowed on 127.0.0.1 only");
    assert.equal((await probe("tcp", localExtra, allowedB, { gid })).outcome, "open", "allowed on every address");
    assert.equal((await probe("udp", "127.0.0.1", udpB, { gid })).outcome, "open");
    await a.stop();
    assert.equal((await probe("tcp", "127.0.0.1", allowedA, { gid })).outcome, "refused", "A's allowance left with A");
    assert.equal((await probe("tcp", "127.0.0.1", allowedB, { gid })).outcome, "open", "B's is still there");
    await b.stop();
    assert.equal((await probe("tcp", "127.0.0.1", allowedB, { gid })).outcome, "refused");
    assert.deepEqual(await jumps(), []);
  });

  test("a wall something removed (nft flush ruleset) is put back, allowances included, and the log says so", async () => {
    const [walled, allowed] = [await listener("tcp", "walled", "127.0.0.1"), await listener("tcp", "allowed", "127.0.0.1")];
    const wall = await daemonWall(await stateDir("w"), [`127.0.0.1:${allowed}`]);
    let log = "";
    wall.child.stderr?.on("data", (chunk: Buffer) => (log += chunk.toString()));
    await run("ip", ["netns", "exec", ns, "nft", "flush", "ruleset"]);
    await until(async () => ((await probe("tcp", "127.0.0.1", walled, { gid })).outcome === "refused" ? true : undefined), "the wall to be back", 30_000, 100);
    assert.equal((await probe("tcp", "127.0.0.1", allowed, { gid })).outcome, "open", "with this daemon's allowance");
    assert.match(log, /The wall between guests and this host's services was removed/);
    await wall.stop();
  });

  test("a daemon killed and restarted with other allowances has exactly the new ones; a vanished daemon's go", async () => {
    const [first, second, orphaned] = [await listener("tcp", "first", "127.0.0.1"), await listener("tcp", "second", "127.0.0.1"), await listener("tcp", "orphaned", "127.0.0.1")];
    const dir = await stateDir("r");
    const goneDir = await stateDir("g");
    const gone = await daemonWall(goneDir, [`127.0.0.1:${orphaned}`]);
    gone.child.kill("SIGKILL");
    const killed = await daemonWall(dir, [`127.0.0.1:${first}`]);
    killed.child.kill("SIGKILL");
    assert.equal((await probe("tcp", "127.0.0.1", orphaned, { gid })).outcome, "open", "a killed daemon's allowance stays while its state directory exists");
    await rm(goneDir, { recursive: true });
    const restarted = await daemonWall(dir, [`127.0.0.1:${second}`]);
    assert.equal((await probe("tcp", "127.0.0.1", first, { gid })).outcome, "refused");
    assert.equal((await probe("tcp", "127.0.0.1", second, { gid })).outcome, "open");
    assert.equal((await probe("tcp", "127.0.0.1", orphaned, { gid })).outcome, "refused", "the vanished daemon's allowance went");
    assert.deepEqual(
      (await jumps()).map((j) => j.owner),
      [dir],
      "one jump, the restarted daemon's",
    );
    await restarted.stop();
  });
});
