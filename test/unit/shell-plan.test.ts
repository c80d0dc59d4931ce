import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { AgentRouteError } from "../../src/guest/http.ts";
import { planShell, resolveShell, validateShellSpec } from "../../src/guest/shell-plan.ts";

describe("shell plans (what a shell request starts)", () => {
  let dir: string;
  let passwd: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "corral-shell-plan-"));
    passwd = join(dir, "passwd");
    await writeFile(passwd, ["root:x:0:0:root:/root:/bin/sh", "nobody:x:65534:65534:nobody:/nonexistent:/bin/false", `dev:x:1000:1001:dev:${dir}:/bin/sh`, ""].join("\n"));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  test("root by default: the login shell with -l, in its home, with a terminal environment", () => {
    const plan = planShell({}, passwd);
    assert.equal(plan.file, "/bin/sh");
    assert.deepEqual(plan.args, ["-l"]);
    assert.equal(plan.cwd, "/root");
    assert.equal(plan.user, undefined, "no user switch for root");
    assert.equal(plan.env.TERM, "xterm-256color");
    assert.equal(plan.env.HOME, "/root");
    assert.equal(plan.env.SHELL, "/bin/sh");
    assert.deepEqual([plan.cols, plan.rows], [80, 24]);
  });

  test("another user gets their group, home and shell", () => {
    const plan = planShell({ uid: 1000, cols: 120, rows: 40 }, passwd);
    assert.deepEqual(plan.user, { uid: 1000, gid: 1001 });
    assert.equal(plan.cwd, dir);
    assert.deepEqual([plan.cols, plan.rows], [120, 40]);
    assert.deepEqual(planShell({ uid: 1000, gid: 5 }, passwd).user, { uid: 1000, gid: 5 });
    assert.deepEqual(planShell({ uid: 4242 }, passwd).user, { uid: 4242, gid: 4242 }, "an unknown uid: its own number as group");
  });

  test("a user whose login shell refuses logins gets /bin/sh; a missing home gives /", () => {
    const plan = planShell({ uid: 65534 }, passwd);
    assert.equal(plan.file, "/bin/sh");
    assert.equal(plan.cwd, "/");
  });

  test("shells are found on PATH; only known shells get -l", () => {
    assert.match(resolveShell("sh") ?? "", /^\/.*\/sh$/);
    const cat = planShell({ shell: "cat" }, passwd);
    assert.match(cat.file, /\/cat$/);
    assert.deepEqual(cat.args, []);
  });

  test("a missing shell or working directory is a 400 before anything starts", () => {
    const refuses = (spec: Parameters<typeof planShell>[0], message: RegExp): void => {
      assert.throws(
        () => planShell(spec, passwd),
        (err: unknown) => err instanceof AgentRouteError && err.status === 400 && message.test(err.message),
      );
    };
    refuses({ shell: "/bin/no-such-shell" }, /Shell "\/bin\/no-such-shell" does not exist/);
    refuses({ shell: "no-such-shell" }, /does not exist/);
    refuses({ shell: "bin/sh" }, /does not exist/);
    refuses({ shell: "/etc" }, /does not exist/);
    refuses({ cwd: "/no/such/dir" }, /Working directory "\/no\/such\/dir" does not exist/);
    refuses({ cwd: "tmp" }, /must be an absolute path/);
  });

  test("malformed specs are refused", () => {
    for (const spec of [null, "x", { uid: -1 }, { uid: 1.5 }, { gid: "0" }, { cols: 0 }, { rows: 70000 }, { shell: "" }, { cwd: "/a\0b" }]) {
      assert.throws(() => validateShellSpec(spec), /malformed/, JSON.stringify(spec));
    }
    assert.deepEqual(validateShellSpec({ uid: 0, cwd: "/" }), { uid: 0, cwd: "/" });
  });
});
