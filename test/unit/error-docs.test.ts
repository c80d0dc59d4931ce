// The error catalogue (src/protocol/errors.ts) and docs/api.md's table of codes say the same: every code is
// in the table, with its status.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { ERROR_STATUS } from "../../src/protocol/errors.ts";

test("every error code is in docs/api.md's table with its status", () => {
  const doc = readFileSync(new URL("../../docs/api.md", import.meta.url), "utf8");
  const documented = new Map<string, number>();
  for (const line of doc.split("\n")) {
    const row = /^\| (.+?) \| (\d{3}) \|/.exec(line);
    if (!row) continue;
    for (const code of row[1]!.matchAll(/`([a-z_]+)`/g)) documented.set(code[1]!, Number(row[2]));
  }
  const wrong = Object.entries(ERROR_STATUS)
    .filter(([code, status]) => documented.get(code) !== status)
    .map(([code, status]) => `${code} (${status}): ${documented.has(code) ? `documented as ${documented.get(code)}` : "missing"}`);
  assert.deepEqual(wrong, []);
});
