// The launcher `ksm: true` puts before QEMU: it must hand the command line over exactly (QEMU's -append holds
// spaces and quotes), keep the exit status, fail loudly on a program that is not there, and on a kernel
// that keeps PR_SET_MEMORY_MERGE across exec, leave the program with all its memory mergeable.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { describe, test } from "node:test";
import { mergeAllMemoryPrefix, probeMemoryMerge } from "../../src/engine/qemu/memory-merge.ts";

function launch(args: readonly string[]): ReturnType<typeof spawnSync> {
  const prefix = mergeAllMemoryPrefix();
  assert.ok(prefix, "x64 and arm64 have a launcher");
  return spawnSync(prefix[0] as string, [...prefix.slice(1), ...args], { encoding: "utf8" });
}

describe("memory merge launcher", () => {
  test("passes every argument through unchanged, options and quotes included, and keeps the exit status", () => {
    const args = ["-append", 'console=ttyS0 quiet corral.hostname="a b"', "--", "-e", "$HOME", "*", ""];
    const run = launch(["node", "-e", "process.stdout.write(JSON.stringify(process.argv.slice(1))); process.exit(7)", "--", ...args]);
    assert.equal(run.status, 7, String(run.stderr));
    assert.deepEqual(JSON.parse(String(run.stdout)), args);
  });

  test("a program that is not there fails with a message naming it", () => {
    const run = launch(["/nonexistent/qemu-system-x86_64", "-version"]);
    assert.notEqual(run.status, 0);
    assert.match(String(run.stderr), /cannot run \/nonexistent\/qemu-system-x86_64/);
  });

  test("the exec'd program has all its memory mergeable where the kernel keeps the flag, and the probe agrees", {
    skip: !existsSync("/proc/self/ksm_stat") && "no ksm_stat",
  }, () => {
    const run = launch(["cat", "/proc/self/ksm_stat"]);
    assert.equal(run.status, 0, String(run.stderr));
    const mergeAny = /^ksm_merge_any:\s+(\S+)/m.exec(String(run.stdout))?.[1];
    assert.equal(mergeAny === "yes", probeMemoryMerge().wholeProcess);
    // Without the launcher a process starts with nothing mergeable.
    assert.match(readFileSync("/proc/self/ksm_stat", "utf8"), /^ksm_merge_any:\s+no/m);
  });
});
