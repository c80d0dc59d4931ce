// The whole environment list (GET /api/envs without limit) streamed a page at a time: one JSON document equal
// to the list read at once, every environment once, and the event loop given a turn between pages.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { EnvPosition, EnvRecord } from "../../src/controller/db/index.ts";
import { envView } from "../../src/controller/env-views.ts";
import { type EnvPageReader, wholeEnvListJson } from "../../src/controller/whole-env-list.ts";

function env(i: number): EnvRecord {
  const created = Date.UTC(2030, 0, 1, 0, 0, i);
  return {
    id: `env-${String(i).padStart(4, "0")}`,
    owner: i % 2 ? "alice" : "",
    sshKeys: i % 3 ? [] : ["ssh-ed25519 AAAA test"],
    lifetime: 3600,
    state: "running",
    createdAt: new Date(created).toISOString(),
    expiresAt: new Date(created + 3_600_000).toISOString(),
    operation: null,
    vms: [],
  };
}

/** Pages over `all` by (created_at, id), as the store's keyset does. */
function reader(all: readonly EnvRecord[], calls: number[]): EnvPageReader {
  return async (limit, after) => {
    calls.push(limit);
    const start = after === undefined ? 0 : all.findIndex((e) => e.id === after.id) + 1;
    const envs = all.slice(start, start + limit);
    const last = envs.at(-1);
    const more = start + limit < all.length;
    const next: EnvPosition | undefined = more && last ? { createdAt: last.createdAt, id: last.id } : undefined;
    return { envs, next };
  };
}

async function collect(chunks: AsyncIterable<string>): Promise<{ text: string; chunks: number }> {
  let text = "";
  let count = 0;
  for await (const chunk of chunks) {
    text += chunk;
    count++;
  }
  return { text, chunks: count };
}

describe("whole environment list, streamed", () => {
  test("is one JSON document with every environment once, in the list's order, read in pages", async () => {
    const all = Array.from({ length: 23 }, (_, i) => env(i));
    const calls: number[] = [];
    const { text } = await collect(wholeEnvListJson(reader(all, calls), 5));
    assert.deepEqual(JSON.parse(text), { ok: true, data: all.map(envView) });
    assert.deepEqual(calls, [5, 5, 5, 5, 5]);
  });

  test("an empty fleet and a list that fills its last page exactly are still valid documents", async () => {
    assert.deepEqual(JSON.parse((await collect(wholeEnvListJson(reader([], []), 5))).text), { ok: true, data: [] });
    const ten = Array.from({ length: 10 }, (_, i) => env(i));
    assert.deepEqual(JSON.parse((await collect(wholeEnvListJson(reader(ten, []), 5))).text).data.length, 10);
  });

  test("gives the event loop a turn between pages (other work runs while a long list is read)", async () => {
    const all = Array.from({ length: 40 }, (_, i) => env(i));
    let turns = 0;
    let reading = true;
    const spin = (): void => {
      turns++;
      if (reading) setImmediate(spin);
    };
    setImmediate(spin);
    // A reader that answers without ever leaving the microtask queue: only the list's own yields let `spin` run.
    const calls: number[] = [];
    const { chunks } = await collect(wholeEnvListJson(reader(all, calls), 4));
    reading = false;
    assert.equal(chunks, 12, "the opening, one chunk per page, the closing");
    assert.ok(turns >= calls.length - 1, `the loop ran ${turns} turns over ${calls.length} pages`);
  });
});
