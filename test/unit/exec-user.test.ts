// exec's `user` field: a name of the guest's passwd becomes its uid and gid; unknown names and a uid that
// is not the user's are refused before anything starts.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import type { ExecSpec } from "../../src/protocol/agent.ts";
import { resolveExecUser } from "../../src/guest/users.ts";

describe("resolveExecUser", () => {
  const dir = mkdtempSync(join(tmpdir(), "corral-passwd-"));
  const passwd = join(dir, "passwd");
  writeFileSync(passwd, "root:x:0:0:root:/root:/bin/bash\ndebian:x:1000:1000::/home/debian:/bin/bash\nweb:x:1001:33::/srv:/usr/sbin/nologin\n");
  after(() => rmSync(dir, { recursive: true, force: true }));
  const spec = (fields: Partial<ExecSpec>): ExecSpec => ({ cmd: "id", args: [], env: [], stdio: "text", stdin: false, ...fields });

  test("without a user the spec is unchanged", () => {
    assert.deepEqual(resolveExecUser(spec({ uid: 5 }), passwd), spec({ uid: 5 }));
  });

  test("a name becomes its uid and its primary gid", () => {
    assert.deepEqual(resolveExecUser(spec({ user: "debian" }), passwd), spec({ user: "debian", uid: 1000, gid: 1000 }));
    assert.deepEqual(resolveExecUser(spec({ user: "web" }), passwd), spec({ user: "web", uid: 1001, gid: 33 }));
  });

  test("a gid given beside the name wins; a matching uid is fine", () => {
    assert.deepEqual(resolveExecUser(spec({ user: "debian", uid: 1000, gid: 27 }), passwd), spec({ user: "debian", uid: 1000, gid: 27 }));
  });

  test("an unknown name, or a uid that is not the user's, is a 400 naming the problem", () => {
    assert.throws(() => resolveExecUser(spec({ user: "ghost" }), passwd), { status: 400, code: "invalid_request", message: 'User "ghost" does not exist in the guest' });
    assert.throws(() => resolveExecUser(spec({ user: "debian", uid: 0 }), passwd), { status: 400, message: /User "debian" has uid 1000, not 0/ });
  });
});
