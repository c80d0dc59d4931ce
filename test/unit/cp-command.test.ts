import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { parseCopyEnd } from "../../src/cli/cp-command.ts";

describe("corral vm cp arguments", () => {
  test("HOST:/path names a VM; everything else is local", () => {
    assert.deepEqual(parseCopyEnd("sbox-1:/etc/hosts"), { host: "sbox-1", path: "/etc/hosts" });
    assert.deepEqual(parseCopyEnd("web-2:relative/dir"), { host: "web-2", path: "relative/dir" });
    assert.deepEqual(parseCopyEnd("sbox-1:"), { host: "sbox-1", path: "~" }, "no path: root's home");
    assert.deepEqual(parseCopyEnd("sbox-1:/a:b"), { host: "sbox-1", path: "/a:b" });
    assert.deepEqual(parseCopyEnd("./sbox-1:/x"), { path: "./sbox-1:/x" });
    assert.deepEqual(parseCopyEnd("/tmp/a:b"), { path: "/tmp/a:b" });
    assert.deepEqual(parseCopyEnd("Upper:/x"), { path: "Upper:/x" }, "not a hostname");
    assert.deepEqual(parseCopyEnd("-"), { path: "-" });
  });
});
