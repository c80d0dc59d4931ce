import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { resolveImageUser, withImageDefaults } from "../../src/guest/image-defaults.ts";
import type { ExecSpec } from "../../src/protocol/agent.ts";

describe("the image's defaults for exec (/etc/corral/image.json)", () => {
  let dir: string;
  const spec = (fields: Partial<ExecSpec> = {}): ExecSpec => ({ cmd: "id", args: [], env: [], stdio: "text", stdin: false, ...fields });

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "corral-defaults-"));
    await writeFile(join(dir, "passwd"), "root:x:0:0::/root:/bin/sh\napp:x:1234:1300::/home/app:/bin/sh\n");
    await writeFile(join(dir, "group"), "root:x:0:\nstaff:x:50:\n");
    await writeFile(join(dir, "image.json"), JSON.stringify({ env: ["MODE=test", "PATH=/opt/bin:/bin"], working_dir: "/srv/app", user: "1234:50" }));
    await writeFile(join(dir, "broken.json"), "{not json");
  });
  after(() => rm(dir, { recursive: true, force: true }));

  test("fills what the request leaves unset", () => {
    const result = withImageDefaults(spec(), join(dir, "image.json"));
    assert.deepEqual(result.env, ["MODE=test", "PATH=/opt/bin:/bin"]);
    assert.equal(result.cwd, "/srv/app");
    assert.equal(result.uid, 1234);
    assert.equal(result.gid, 50);
  });

  test("what the request says wins, entry by entry", () => {
    const result = withImageDefaults(spec({ env: ["MODE=prod"], cwd: "/tmp", uid: 0 }), join(dir, "image.json"));
    assert.deepEqual(result.env, ["PATH=/opt/bin:/bin", "MODE=prod"]);
    assert.equal(result.cwd, "/tmp");
    assert.equal(result.uid, 0);
    assert.equal(result.gid, undefined, "a request naming its uid keeps its own gid rule");
  });

  test("no file, or a broken one, changes nothing", () => {
    assert.deepEqual(withImageDefaults(spec(), join(dir, "missing.json")), spec());
    assert.deepEqual(withImageDefaults(spec(), join(dir, "broken.json")), spec());
  });

  test("USER forms: name, uid, name:group, uid:gid; an unknown name resolves to nothing", () => {
    const files = { passwd: join(dir, "passwd"), group: join(dir, "group") };
    assert.deepEqual(resolveImageUser("app", files), { uid: 1234, gid: 1300 });
    assert.deepEqual(resolveImageUser("app:staff", files), { uid: 1234, gid: 50 });
    assert.deepEqual(resolveImageUser("77", files), { uid: 77, gid: 77 });
    assert.deepEqual(resolveImageUser("77:0", files), { uid: 77, gid: 0 });
    assert.equal(resolveImageUser("nobody-here", files), undefined);
    assert.equal(resolveImageUser("app:nogroup", files), undefined);
  });
});
