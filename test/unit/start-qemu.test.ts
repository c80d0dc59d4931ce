// QEMU spawned through an argv prefix: `unshare --net --` execs QEMU, so the pid the daemon keeps (and
// recovery's orphan check) is QEMU's, and QEMU's transient TAP lives in that private namespace. Uses a
// stand-in QEMU (microvm, -S, no kernel: it waits and costs no CPU). QmpClient.setLink on a real NIC.
import { test, describe, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { processCommandLine } from "../../src/engine/process-info.ts";
import { QemuProcess } from "../../src/engine/qemu/qemu-process.ts";
import { QmpClient } from "../../src/engine/qemu/qmp-client.ts";
import { QEMU_BINARY, qemuCommand } from "../../src/engine/qemu/start-qemu.ts";

describe("qemuCommand", () => {
  test("no prefix: QEMU itself", () => {
    assert.deepEqual(qemuCommand("qemu-system-x86_64", ["-M", "microvm"], []), ["qemu-system-x86_64", ["-M", "microvm"]]);
  });

  test("a prefix: its first word is spawned, QEMU and its argv follow the rest", () => {
    assert.deepEqual(qemuCommand("/usr/bin/qemu", ["-S"], ["unshare", "--net", "--"]), ["unshare", ["--net", "--", "/usr/bin/qemu", "-S"]]);
  });
});

const root = process.getuid?.() === 0;

describe("QEMU under unshare --net (stand-in QEMU)", { skip: root ? false : "needs root (unshare --net, a TAP)" }, () => {
  const procs: QemuProcess[] = [];
  let dir = "";
  after(async () => {
    for (const p of procs) {
      p.kill();
      await p.exited;
    }
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test("the pid is QEMU's, its TAP is in its own namespace, set_link answers", async (t) => {
    // QemuProcess unrefs its child (a daemon outlives nothing): this timer keeps the test's loop alive.
    const keepAlive = setInterval(() => undefined, 1000);
    t.after(() => clearInterval(keepAlive));
    dir = await mkdtemp(join(tmpdir(), "corral-start-qemu-"));
    const qmpSocket = join(dir, "qmp.sock");
    const args = [
      "-M",
      "microvm",
      "-S",
      "-nodefaults",
      "-nographic",
      "-m",
      "64M",
      "-netdev",
      "tap,id=net0,ifname=tap0,script=no,downscript=no,vnet_hdr=on",
      "-device",
      "virtio-net-device,netdev=net0,mac=52:54:00:00:00:42",
      "-qmp",
      `unix:${qmpSocket},server=on,wait=off`,
    ];
    const [command, argv] = qemuCommand(QEMU_BINARY, args, ["unshare", "--net", "--"]);
    const logFile = join(dir, "qemu.log");
    const proc = await QemuProcess.spawn(command, argv, logFile);
    procs.push(proc);
    // What QEMU said goes with any failure below: a CI run once failed here and printed only the test's name.
    const qemuSaid = (): string => `QEMU's log: ${existsSync(logFile) ? readFileSync(logFile, "utf8") || "(empty)" : "(none)"}`;
    t.diagnostic(`started ${command} ${argv.slice(0, 3).join(" ")} …, pid ${proc.pid}`);
    // A loaded machine (unit tests run two at a time) can take seconds to get QEMU to its socket.
    for (let i = 0; i < 1500 && !existsSync(qmpSocket) && proc.running; i++) await sleep(20);
    assert.ok(existsSync(qmpSocket), `QEMU opened its QMP socket; ${qemuSaid()}`);
    // After the exec the process is QEMU: recovery's orphan check looks at argv[0].
    assert.match(processCommandLine(proc.pid)?.[0] ?? "", /qemu/);
    assert.notEqual(execFileSync("readlink", [`/proc/${proc.pid}/ns/net`], { encoding: "utf8" }), execFileSync("readlink", ["/proc/self/ns/net"], { encoding: "utf8" }));
    const links = execFileSync("nsenter", [`--net=/proc/${proc.pid}/ns/net`, "ip", "-o", "link", "show", "tap0"], { encoding: "utf8" });
    assert.match(links, /tap0/);
    const qmp = await QmpClient.connect(qmpSocket, { timeoutMs: 30_000 }).catch((err: Error) => {
      throw new Error(`${err.message}; ${qemuSaid()}`);
    });
    try {
      await qmp.setLink("net0", false);
      await qmp.setLink("net0", true);
      await assert.rejects(qmp.setLink("nope", true));
    } finally {
      qmp.close();
    }
    proc.kill();
    await proc.exited;
  });
});
