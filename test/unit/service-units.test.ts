// Corral's servers as systemd services (src/setup/systemd-units.ts, `corral service`): the units are checked
// by systemd's own `systemd-analyze verify` (a unit systemd would warn about fails here), the choices that
// matter are pinned (VMs outlive a daemon crash; no secret on a command line), and the CLI writes, reports
// and removes them in a directory of the test's own (this machine has no running systemd: nothing starts).
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { controllerUnit, daemonUnit, execArgument } from "../../src/setup/systemd-units.ts";
import { PACKAGE_ROOT as REPO_ROOT } from "../../src/util/package-root.ts";

const LAUNCHER = join(REPO_ROOT, "corral");
const HAS_ANALYZE = spawnSync("systemd-analyze", ["--version"]).status === 0;
const dir = mkdtempSync(join(tmpdir(), "corral-units-"));
after(() => rmSync(dir, { recursive: true, force: true }));

/** What `systemd-analyze verify` says of a unit's text: "" when it has nothing to say. */
function verify(name: string, text: string): string {
  const file = join(dir, name);
  writeFileSync(file, text);
  const result = spawnSync("systemd-analyze", ["verify", file], { encoding: "utf8" });
  // Lines about other units (systemd's own, on a host without a running systemd) are not this unit's problem.
  const own = `${result.stdout}${result.stderr}`.split("\n").filter((line) => line.includes(name));
  return [result.status === 0 ? "" : `exit ${result.status}`, ...own].filter(Boolean).join("\n");
}

function directive(text: string, key: string): string[] {
  return text
    .split("\n")
    .filter((line) => line.startsWith(`${key}=`))
    .map((line) => line.slice(key.length + 1));
}

describe("systemd units", () => {
  test("the daemon's unit: systemd accepts it; only the daemon is signalled so its VMs outlive a crash; restarted on failure", {
    skip: HAS_ANALYZE ? false : "no systemd-analyze",
  }, () => {
    const text = daemonUnit({ launcher: [LAUNCHER], home: "/var/lib/corral", config: "/etc/corral/daemon.yaml" });
    assert.equal(verify("corral-daemon.service", text), "");
    assert.deepEqual(directive(text, "KillMode"), ["process"]);
    assert.deepEqual(directive(text, "Restart"), ["on-failure"]);
    assert.deepEqual(directive(text, "StateDirectory"), ["corral"]);
    assert.deepEqual(directive(text, "ExecStart"), [`${LAUNCHER} daemon --config /etc/corral/daemon.yaml`]);
  });

  test("the controller's unit: the API key is a credential read from %d, never on the command line", { skip: HAS_ANALYZE ? false : "no systemd-analyze" }, () => {
    const text = controllerUnit({ launcher: [LAUNCHER], home: "/var/lib/corral", bind: "0.0.0.0", port: 9200, apiKeyFile: "/etc/corral/controller-api-key" });
    assert.equal(verify("corral-controller.service", text), "");
    assert.deepEqual(directive(text, "LoadCredential"), ["corral-api-key:/etc/corral/controller-api-key"]);
    assert.deepEqual(directive(text, "ExecStart"), [`${LAUNCHER} controller --bind 0.0.0.0 --port 9200 --api-key-file %d/corral-api-key`]);
    assert.doesNotMatch(text, /--api-key /);
  });

  test("a database URL with a password is refused (it would be in the unit and on the command line)", () => {
    assert.throws(
      () => controllerUnit({ launcher: [LAUNCHER], home: "/var/lib/corral", bind: "127.0.0.1", port: 9200, database: "postgres://corral:s3cret@db:5432/corral" }),
      /password/,
    );
    const text = controllerUnit({ launcher: [LAUNCHER], home: "/var/lib/corral", bind: "127.0.0.1", port: 9200, database: "postgres://corral@db:5432/corral" });
    assert.match(directive(text, "ExecStart")[0] ?? "", /--database postgres:\/\/corral@db:5432\/corral$/);
  });

  test("arguments are quoted for systemd: spaces, quotes, `$` and `%` reach the program as written", { skip: HAS_ANALYZE ? false : "no systemd-analyze" }, () => {
    assert.equal(execArgument("/opt/corral/bin/corral"), "/opt/corral/bin/corral");
    assert.equal(execArgument("/etc/my configs/a$HOME%i.yaml"), '"/etc/my configs/a$$HOME%%i.yaml"');
    assert.equal(execArgument('say "hi"'), '"say \\"hi\\""');
    const text = daemonUnit({ launcher: [LAUNCHER], home: "/srv/corral 1", config: "/etc/my configs/a$HOME%i.yaml" });
    assert.equal(verify("corral-daemon.service", text), "");
    assert.deepEqual(directive(text, "StateDirectory"), [], "another home is not systemd's to make");
    assert.throws(() => daemonUnit({ launcher: [LAUNCHER], home: "/srv/a\nExecStartPre=/bin/evil", config: undefined }), /line break/);
  });
});

describe("corral service", () => {
  const units = join(dir, "units");
  const cli = (...args: string[]): { status: number | null; stdout: string; stderr: string } => spawnSync(LAUNCHER, ["service", ...args], { encoding: "utf8", timeout: 60_000 });

  test("install writes both units, status lists them, uninstall removes them and keeps the key", () => {
    const key = join(dir, "key");
    writeFileSync(key, "0123456789abcdef0123\n", { mode: 0o600 });
    const installed = cli("install", "all", "--unit-dir", units, "--api-key-file", key, "--no-setup");
    assert.equal(installed.status, 0, installed.stderr);
    const controller = readFileSync(join(units, "corral-controller.service"), "utf8");
    assert.deepEqual(directive(controller, "LoadCredential"), [`corral-api-key:${key}`]);
    assert.ok(existsSync(join(units, "corral-daemon.service")));
    assert.equal(statSync(join(units, "corral-daemon.service")).mode & 0o777, 0o644);

    const status = cli("status", "--unit-dir", units);
    assert.equal(status.status, 0, status.stderr);
    assert.match(status.stdout, /daemon\s+corral-daemon\.service\s+\S+corral-daemon\.service/);
    assert.match(status.stdout, /controller\s+corral-controller\.service/);

    const removed = cli("uninstall", "controller", "--unit-dir", units);
    assert.equal(removed.status, 0, removed.stderr);
    assert.ok(!existsSync(join(units, "corral-controller.service")));
    assert.ok(existsSync(join(units, "corral-daemon.service")));
    assert.ok(existsSync(key), "the key stays");
    assert.match(cli("status", "controller", "--unit-dir", units).stdout, /not installed/);
  });

  test("bad input: an unknown service, a key file others can read, a missing config; nothing written", () => {
    const other = join(dir, "other-units");
    const loose = join(dir, "loose-key");
    writeFileSync(loose, "0123456789abcdef0123\n", { mode: 0o644 });
    const cases: [string[], RegExp][] = [
      [["install", "everything", "--unit-dir", other, "--no-setup"], /Unknown service "everything": give daemon, controller or all/],
      [["install", "controller", "--unit-dir", other, "--api-key-file", loose], /open to other users \(mode 0644\)/],
      [["install", "controller", "--unit-dir", other, "--api-key-file", join(dir, "absent")], /no such file/],
      [["install", "daemon", "--unit-dir", other, "--config", join(dir, "absent.yaml"), "--no-setup"], /--config .*: no such file/],
      [["install", "controller", "--unit-dir", other, "--controller-port", "99999", "--open"], /is not a port number/],
    ];
    for (const [args, message] of cases) {
      const result = cli(...args);
      assert.equal(result.status, 1, args.join(" "));
      assert.match(result.stderr, message);
    }
    assert.ok(!existsSync(other));
  });
});
