// Paths inside a staged image resolve as the guest sees them and never lead out of the staged root.
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { inRoot, resolveGuestPath } from "../../src/image/root-path.ts";

describe("inRoot", () => {
  const root = mkdtempSync(join(tmpdir(), "corral-root-path-"));
  mkdirSync(join(root, "usr/lib"), { recursive: true });
  mkdirSync(join(root, "usr/sbin"), { recursive: true });
  symlinkSync("usr/lib", join(root, "lib"));
  symlinkSync("/usr/sbin", join(root, "sbin"));
  symlinkSync("/../../../../etc", join(root, "escape"));
  symlinkSync("../../../../../etc", join(root, "usr/escape"));
  symlinkSync("loop-b", join(root, "loop-a"));
  symlinkSync("loop-a", join(root, "loop-b"));
  after(() => rmSync(root, { recursive: true, force: true }));

  test("plain paths and paths that do not exist yet stay as they are", () => {
    assert.equal(inRoot(root, "/opt/corral/bin"), join(root, "opt/corral/bin"));
    assert.equal(inRoot(root, "etc/corral/image.json"), join(root, "etc/corral/image.json"));
  });

  test("relative and absolute symlinks resolve inside the root", () => {
    assert.equal(inRoot(root, "/lib/modules/6.1"), join(root, "usr/lib/modules/6.1"));
    assert.equal(inRoot(root, "/sbin/init"), join(root, "usr/sbin/init"));
    assert.equal(resolveGuestPath(root, "/lib/modules"), "/usr/lib/modules");
  });

  test("symlinks and .. that climb out of the root stop at the root", () => {
    assert.equal(inRoot(root, "/escape/passwd"), join(root, "etc/passwd"));
    assert.equal(inRoot(root, "/usr/escape/passwd"), join(root, "etc/passwd"));
    assert.equal(inRoot(root, "/../../etc/shadow"), join(root, "etc/shadow"));
  });

  test("a symlink loop is an error, not a hang", () => {
    assert.throws(() => inRoot(root, "/loop-a/x"), /Too many symbolic links/);
  });
});
