// The `corral` command line as a user runs it: ./corral from the repository, against a real daemon.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import { corral, CORRAL } from "../helpers/cli-process.ts";
import { TestDaemon } from "../helpers/daemon-process.ts";

const run = promisify(execFile);

describe("corral CLI", { timeout: 600_000 }, () => {
  let daemon: TestDaemon;
  let env: NodeJS.ProcessEnv;

  before(async () => {
    daemon = await TestDaemon.create();
    await daemon.start();
    env = { CORRAL_URL: daemon.url };
  });

  after(async () => {
    await daemon.dispose();
  });

  test("vm add creates a sandbox and prints its name; --json prints the create answer", async () => {
    const added = await corral(["vm", "add", "--tag", "cli"], env);
    assert.equal(added.code, 0, added.stderr);
    assert.equal(added.stdout, "sbox-1\n");
    assert.match(added.stderr, /Created sbox-1 in [\d.]+s\. Try: corral vm exec sbox-1 -- uname -a/);
    const json = await corral(["vm", "add", "--json", "--ram", "256M"], env);
    assert.equal(json.code, 0, json.stderr);
    const created = JSON.parse(json.stdout) as { hostname: string; hostgroup: string };
    assert.equal(created.hostname, "sbox-2");
    assert.equal(created.hostgroup, "sbox");
  });

  test("vm list shows a table, and JSON with --json", async () => {
    const table = await corral(["vm", "list"], env);
    assert.equal(table.code, 0, table.stderr);
    const lines = table.stdout.trimEnd().split("\n");
    assert.match(lines[0] ?? "", /^HOSTNAME\s+GROUP\s+STATUS\s+HEALTH\s+CPUS\s+RAM\s+IP\s+AGE\s+EXPIRES\s+TAGS$/);
    assert.match(lines[1] ?? "", /^sbox-1\s+sbox\s+Running\s+(starting|ok)\s+1\s+512 MiB\s+10\.0\.2\.15\s+\d+[smhd]\s+-\s+cli$/);
    assert.match(lines[2] ?? "", /^sbox-2\s+sbox\s+Running\s+(starting|ok)\s+1\s+256 MiB/);
    const json = JSON.parse((await corral(["vm", "list", "--json", "--tag", "cli"], env)).stdout) as { hostname: string }[];
    assert.deepEqual(
      json.map((n) => n.hostname),
      ["sbox-1"],
    );
  });

  test("vm exec streams output and exits with the command's exit code", async () => {
    const ok = await corral(["vm", "exec", "sbox-1", "--", "cat", "/etc/os-release"], env);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /^NAME="Corral base"\nID=corral\n/);
    const failing = await corral(["vm", "exec", "sbox-1", "--", "sh", "-c", "echo to-stderr >&2; exit 7"], env);
    assert.equal(failing.code, 7);
    assert.equal(failing.stderr, "to-stderr\n");
    const missing = await corral(["vm", "exec", "sbox-1", "--", "no-such-cmd"], env);
    assert.equal(missing.code, 127);
    assert.match(missing.stderr, /Command not found: "no-such-cmd"/);
  });

  test("a reader that goes away ends vm exec quietly, with SIGPIPE's status", async () => {
    // `head` leaves after its first line while the guest is still writing: the CLI's next write fails.
    const pipeline = `set -o pipefail; "${CORRAL}" vm exec sbox-1 -- sh -c 'while true; do echo line; done' | head -n 1`;
    const result = await run("bash", ["-c", pipeline], { env: { ...process.env, ...env } }).then(
      (out) => ({ code: 0, ...out }),
      (err: { code: number; stdout: string; stderr: string }) => err,
    );
    assert.equal(result.stdout, "line\n");
    assert.equal(result.code, 141, result.stderr);
    assert.equal(result.stderr, "", "no stack trace");
  });

  test("vm exec -i sends stdin; --env and --cwd apply", async () => {
    const upper = await corral(["vm", "exec", "-i", "sbox-1", "--", "tr", "a-z", "A-Z"], env, "shout\n");
    assert.equal(upper.stdout, "SHOUT\n");
    const where = await corral(["vm", "exec", "--cwd", "/tmp", "-e", "X=1", "sbox-1", "--", "sh", "-c", "echo $X $(pwd)"], env);
    assert.equal(where.stdout, "1 /tmp\n");
  });

  test("vm logs, vm health", async () => {
    const logs = await corral(["vm", "logs", "sbox-1", "-n", "50"], env);
    assert.equal(logs.code, 0, logs.stderr);
    assert.match(logs.stdout, /corral-agent: .* serving on/);
    const health = await corral(["vm", "health", "sbox-1"], env);
    assert.match(health.stdout, /^sbox-1: agent \d+\.\d+\.\d+ up [\d.]+s, system up [\d.]+s, userdata ran\n$/);
    const healthJson = JSON.parse((await corral(["vm", "health", "sbox-1", "--json"], env)).stdout) as { userdata_ran: boolean };
    assert.equal(healthJson.userdata_ran, true);
  });

  test("errors are one line on stderr with a non-zero exit", async () => {
    const unknown = await corral(["vm", "exec", "nope-1", "--", "true"], env);
    assert.equal(unknown.code, 1);
    assert.equal(unknown.stderr, 'corral: VM "nope-1" does not exist (404 vm_not_found)\n');
    const unreachable = await corral(["vm", "list"], { CORRAL_URL: "http://127.0.0.1:9" });
    assert.equal(unreachable.code, 1);
    assert.match(unreachable.stderr, /cannot reach the daemon .*ECONNREFUSED.*Start it with \.\/corral up/);
  });

  test("vm delete removes VMs, looking up their group", async () => {
    const deleted = await corral(["vm", "delete", "sbox-1", "sbox-2"], env);
    assert.equal(deleted.code, 0, deleted.stderr);
    assert.equal(deleted.stdout, "Deleted sbox-1\nDeleted sbox-2\n");
    assert.equal((await corral(["vm", "list"], env)).stdout, "No VMs. Create one with: corral vm add\n");
  });

  test("image list shows the default image", async () => {
    const images = await corral(["image", "list"]);
    assert.equal(images.code, 0, images.stderr);
    assert.match(images.stdout, /^NAME\s+VERSION\s+KERNEL/);
    assert.match(images.stdout, /\nbase\s+[0-9a-f]{12}\s+\S+-cloud-amd64\s+4 GiB/);
  });

  test("the daemon refuses a bad configuration, naming each problem's path", async () => {
    const bad = join(daemon.stateDir, "bad.yaml");
    await writeFile(bad, "config:\n  api:\n    prot: 1\n  host_groups:\n    - name: sbox\n      image: base\n      vcpu: two\n");
    const result = await corral(["daemon", "--config", bad, "--state-dir", join(daemon.stateDir, "other")]);
    assert.equal(result.code, 2);
    assert.match(result.stderr, /Invalid configuration in .*bad\.yaml:/);
    assert.match(result.stderr, /config\.api\.prot is not a known setting/);
    assert.match(result.stderr, /config\.host_groups\[0\]\.vcpu must be an integer, got "two"/);
  });

  test("--version prints the package version", async () => {
    const { stdout } = await run(CORRAL, ["--version"]);
    assert.match(stdout, /^\d+\.\d+\.\d+\n$/);
  });
});
