// The `debian` image end to end: systemd as PID 1, bash, python3, sudo for the default user, apt-get from
// Debian's archive through user-mode networking, clones of one template that are machines of their own, and
// a daemon restart that re-attaches a running Debian VM. One daemon and one template serve every test.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { setTimeout as sleep } from "node:timers/promises";
import { after, before, describe, test } from "node:test";
import { ensureDebianImage } from "../../src/image/debian-image.ts";
import { DEBIAN_DEFAULT_USER } from "../../src/image/debian-recipe.ts";
import { corralHome, consoleProgress } from "../../src/image/index.ts";
import type { CorralApiError as ApiError, TemplateInfo } from "../../src/sdk/index.ts";
import { TestDaemon } from "../helpers/daemon-process.ts";
import { makeSshKey } from "../helpers/ssh.ts";
import { until } from "../helpers/until.ts";

const runFile = promisify(execFile);

const CONFIG = `config:
  host_groups:
    - name: deb
      count: 0
      vcpu: 1
      ram_mb: 1024
      image: debian
`;

describe("the debian image", { timeout: 1_800_000 }, () => {
  let daemon: TestDaemon;
  let first = "";

  const run = async (hostname: string, cmd: string, args: string[], options: { uid?: number; gid?: number } = {}) => {
    const result = await daemon.client.execBuffered(hostname, { cmd, args, ...options });
    return { ...result, stdout: result.stdout.trim() };
  };
  const bash = async (hostname: string, script: string, options: { uid?: number; gid?: number } = {}): Promise<string> => {
    const result = await run(hostname, "/bin/bash", ["-c", script], options);
    assert.equal(result.exit_code, 0, `${script}: ${result.stderr}`);
    return result.stdout;
  };
  const readyTemplate = (): Promise<TemplateInfo> =>
    until(async () => (await daemon.client.templates()).find((t) => t.hostgroup === "deb" && t.state === "ready"), "a ready debian template", 600_000);

  before(async () => {
    // Built by the set-up step; this only checks it is current.
    await ensureDebianImage(corralHome(), consoleProgress());
    daemon = await TestDaemon.create(CONFIG);
    await daemon.start();
  });

  after(async () => {
    await daemon?.dispose();
  });

  test("a sandbox boots systemd as PID 1 with the agent as a unit, and runs bash and python3", async () => {
    first = (await daemon.client.createNode("deb", {}, { wait: "agent" })).hostname;
    assert.equal(await bash(first, "cat /proc/1/comm"), "systemd");
    assert.equal(await bash(first, "echo $BASH_VERSION | cut -d. -f1"), "5");
    assert.equal(await bash(first, "systemctl is-active corral-agent.service"), "active");
    const python = await run(first, "python3", ["-c", "import sys, json; print(json.dumps([sys.version_info[0], 6 * 7]))"]);
    assert.equal(python.exit_code, 0, python.stderr);
    assert.equal(python.stdout, "[3, 42]");
    assert.equal(await bash(first, "hostname"), first, "the hostname from the kernel command line and the identity");
    assert.equal(await bash(first, ". /etc/os-release; echo $ID $VERSION_ID"), "debian 12");
  });

  test("systemctl is-system-running says running (or degraded, with the failed units named)", async () => {
    const state = await until(
      async () => {
        const r = await run(first, "systemctl", ["is-system-running"]);
        return r.stdout === "starting" || r.stdout === "initializing" ? undefined : r.stdout;
      },
      "systemd to finish starting",
      300_000,
    );
    // For the record (never asserted: timings here depend on the machine's load): where boot time went.
    const analyze = await run(first, "/bin/bash", ["-c", "systemd-analyze; systemd-analyze critical-chain corral-agent.service | tail -n +3"]);
    console.log(`systemd-analyze in the guest:\n${analyze.stdout}`);
    if (state !== "running") {
      const failed = await run(first, "systemctl", ["--failed", "--no-legend", "--plain"]);
      console.log(`systemd is ${state}; failed units:\n${failed.stdout}`);
      assert.equal(state, "degraded", `unexpected state ${state}`);
    }
  });

  test("the default user has uid 1000 and passwordless sudo; exec runs as any uid", async () => {
    assert.equal(
      await bash(first, `sudo -u ${DEBIAN_DEFAULT_USER} id`),
      `uid=1000(${DEBIAN_DEFAULT_USER}) gid=1000(${DEBIAN_DEFAULT_USER}) groups=1000(${DEBIAN_DEFAULT_USER}),27(sudo)`,
    );
    assert.equal(await bash(first, "id -un; echo $HOME", { uid: 1000 }), `${DEBIAN_DEFAULT_USER}\n/home/${DEBIAN_DEFAULT_USER}`);
    assert.equal(await bash(first, "sudo -n id -u", { uid: 1000 }), "0", "sudo needs no password");
    assert.equal(await bash(first, "id -u"), "0", "without uid, exec runs as root (as Slicer's does)");
  });

  test("exec's user field runs as a guest user by name; an unknown name is a 400", async () => {
    const byName = await daemon.client.execBuffered(first, { cmd: "/bin/bash", args: ["-c", "echo $(id -u) $(id -g) $HOME"], user: DEBIAN_DEFAULT_USER });
    assert.equal(byName.stdout.trim(), `1000 1000 /home/${DEBIAN_DEFAULT_USER}`);
    await assert.rejects(
      daemon.client.execBuffered(first, { cmd: "id", user: "ghost" }),
      (err: ApiError) => err.status === 400 && err.code === "invalid_request" && /User "ghost" does not exist in the guest/.test(err.message),
    );
    await assert.rejects(daemon.client.execBuffered(first, { cmd: "id", user: "Not A Name" }), (err: ApiError) => err.status === 400 && /user/.test(err.message));
    const job = await daemon.client.bg.exec(first, { cmd: "id -un", shell: "/bin/bash", user: DEBIAN_DEFAULT_USER });
    assert.equal((await daemon.client.bg.wait(first, job.exec_id, 60)).exit_code, 0);
    assert.equal((await daemon.client.bg.info(first, job.exec_id)).uid, 1000);
  });

  test("a Slicer-style background job with shell /bin/bash runs", async () => {
    const job = await daemon.client.bg.exec(first, { cmd: 'for i in 1 2 3; do echo "tick $i"; done; [[ -n "$BASH_VERSION" ]] && echo bash', shell: "/bin/bash" });
    const waited = await daemon.client.bg.wait(first, job.exec_id, 60);
    assert.equal(waited.exit_code, 0);
    let output = "";
    for await (const frame of daemon.client.bg.logs(first, job.exec_id))
      if (frame.type === "stdout") output += frame.encoding === "base64" ? Buffer.from(frame.stdout, "base64").toString() : frame.stdout;
    assert.equal(output, "tick 1\ntick 2\ntick 3\nbash\n");
  });

  test("apt-get installs a package from Debian's archive", async () => {
    await bash(first, "apt-get update -q >/tmp/apt-update.log 2>&1 || { tail -20 /tmp/apt-update.log; exit 1; }");
    await bash(first, "DEBIAN_FRONTEND=noninteractive apt-get install -y -q hello >/tmp/apt-install.log 2>&1 || { tail -20 /tmp/apt-install.log; exit 1; }");
    assert.match(await bash(first, "hello"), /^Hello, world!$/);
  });

  test("a second sandbox is a clone of the template, with its own hostname, machine id and SSH host keys", async () => {
    await readyTemplate();
    const key = await makeSshKey();
    const second = (await daemon.client.createNode("deb", { ssh_keys: [key.publicKey], import_user: DEBIAN_DEFAULT_USER }, { wait: "agent" })).hostname;
    assert.match(daemon.log, new RegExp(`"vm":"${second}"[^\\n]*"msg":"VM cloned from its template"`));
    assert.equal(await bash(second, "hostname"), second);
    assert.equal(await bash(second, "cat /etc/hostname"), second);
    const state = await run(second, "systemctl", ["is-system-running"]);
    assert.match(state.stdout, /^(running|degraded)$/, "the template was snapshotted after systemd finished booting");
    const ids = [await bash(first, "cat /etc/machine-id"), await bash(second, "cat /etc/machine-id")];
    assert.match(ids[1] ?? "", /^[0-9a-f]{32}$/);
    assert.notEqual(ids[0], ids[1]);
    assert.equal(await bash(second, "command -v hello || echo none"), "none", "the clone has the template's disk, not the first sandbox's");
    assert.equal(await bash(second, "systemctl is-active corral-agent.service"), "active");
    // The VM's key reaches the default user, through OpenSSH's sshd started for the connection.
    const forward = await daemon.client.listenForward(second, "0:127.0.0.1:22");
    try {
      const port = Number(forward.address.split(":").pop());
      const options = ["StrictHostKeyChecking=no", "UserKnownHostsFile=/dev/null", "BatchMode=yes", "ConnectTimeout=60", "LogLevel=ERROR"].flatMap((o) => ["-o", o]);
      const { stdout } = await runFile("ssh", ["-i", key.privateKeyFile, "-p", String(port), ...options, `${DEBIAN_DEFAULT_USER}@127.0.0.1`, "id -un; sudo -n id -u"], {
        timeout: 180_000,
      });
      assert.equal(stdout, `${DEBIAN_DEFAULT_USER}\n0\n`);
    } finally {
      await forward.close();
      await key.dispose();
    }
    assert.match(await bash(second, "ls /etc/ssh/ssh_host_ed25519_key.pub"), /ssh_host_ed25519_key\.pub/, "host keys were made at the first connection");
  });

  test("suspend/restore keeps systemd and the agent's unit running; a memory commit forks into its own machine", async () => {
    const vm = (await daemon.client.createNode("deb", {}, { wait: "agent" })).hostname;
    await bash(vm, "echo kept > /root/kept; systemd-run --unit corral-test-sleeper sleep 100000");
    await daemon.client.suspend(vm);
    await daemon.client.restore(vm, { wait: "agent", timeout: "300s" });
    assert.equal(await bash(vm, "systemctl is-active corral-test-sleeper.service corral-agent.service | sort -u"), "active");
    const commit = await daemon.client.commit(vm, { memory: true });
    const fork = (await daemon.client.fork(commit.commit_id, {}, { wait: "agent", timeout: "300s" })).hostname;
    assert.equal(await bash(fork, "cat /root/kept; systemctl is-active corral-test-sleeper.service"), "kept\nactive", "the fork has the disk and the running unit");
    assert.equal(await bash(fork, "hostname"), fork);
    assert.notEqual(await bash(fork, "cat /etc/machine-id"), await bash(vm, "cat /etc/machine-id"));
    for (const name of [fork, vm]) await daemon.client.deleteNode("deb", name);
    await daemon.client.deleteCommit(commit.commit_id);
  });

  test("a daemon restart (kill -9) re-attaches the running Debian sandbox without a reboot", async () => {
    const uptime = Number((await bash(first, "cut -d' ' -f1 /proc/uptime")).trim());
    await daemon.kill9();
    await daemon.start();
    const after = await until(
      async () => {
        try {
          return await bash(first, "cut -d' ' -f1 /proc/uptime");
        } catch {
          await sleep(250);
          return undefined;
        }
      },
      "the re-attached sandbox to answer",
      120_000,
    );
    assert.ok(Number(after) > uptime, "the guest kept running");
    assert.equal(await bash(first, "hello"), "Hello, world!");
  });
});
