import assert from "node:assert/strict";
import { test } from "node:test";
import { headerJson } from "../../src/protocol/agent.ts";

test("JSON headers to the agent are ASCII and read back exactly (Node sends header values as Latin-1)", () => {
  const value = { cwd: "/tmp/日本", shell: "/bin/sh", note: "é\u007f😀" };
  const header = headerJson(value);
  assert.match(header, /^[\x20-\x7e]*$/);
  assert.equal(header, '{"cwd":"/tmp/\\u65e5\\u672c","shell":"/bin/sh","note":"\\u00e9\\u007f\\ud83d\\ude00"}');
  assert.deepEqual(JSON.parse(header), value);
});
