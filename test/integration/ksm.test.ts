// Memory merging (config `ksm: true`, src/engine/qemu/memory-merge.ts): off by default, QEMU's memory is not
// offered to KSM beyond the guest RAM QEMU marks itself; on, the daemon starts ksmd when it is stopped and,
// where the kernel lets the flag survive exec, launches every QEMU with all its memory mergeable; ksmd then
// really merges pages of the clones (the kernel's own per-process count says so), the VMs keep working, and
// /metrics reports what KSM saves. The host's KSM setting is put back as it was.
import assert from "node:assert/strict";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { after, before, describe, test } from "node:test";
import { KSM_DIR, probeMemoryMerge } from "../../src/engine/qemu/memory-merge.ts";
import { TEST_CONFIG, TestDaemon, vmQemuPids } from "../helpers/daemon-process.ts";
import { parsePrometheusText, sampleValue } from "../helpers/prometheus-text.ts";
import { until } from "../helpers/until.ts";

const KSM_CONFIG = TEST_CONFIG.replace("config:\n", "config:\n  ksm: true\n");

/** A field of /proc/PID/ksm_stat ("ksm_merge_any: yes", "ksm_merging_pages 12"); undefined on kernels without it. */
function ksmStat(pid: number, field: string): string | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/ksm_stat`, "utf8");
  } catch {
    return undefined;
  }
  return new RegExp(`^${field}:?\\s+(\\S+)`, "m").exec(text)?.[1];
}

/** Linux 6.7 or later: PR_SET_MEMORY_MERGE survives exec, so the launcher must make QEMU's memory mergeable. */
function kernelKeepsMergeAcrossExec(): boolean {
  const [major = 0, minor = 0] = readFileSync("/proc/sys/kernel/osrelease", "utf8").split(".").map(Number);
  return major > 6 || (major === 6 && minor >= 7);
}

describe("memory merging (ksm)", { timeout: 900_000, skip: existsSync(`${KSM_DIR}/run`) ? false : "this kernel has no KSM" }, () => {
  let daemon: TestDaemon;
  let ksmRunBefore: string;

  const createTwo = async (): Promise<string[]> => {
    const names: string[] = [];
    for (let i = 0; i < 2; i++) names.push((await daemon.client.createNode("sbox", {}, { wait: "agent", timeout: "120s" })).hostname);
    return names;
  };

  before(async () => {
    ksmRunBefore = readFileSync(`${KSM_DIR}/run`, "utf8").trim();
    // Stopped, so that the test sees the daemon start it.
    writeFileSync(`${KSM_DIR}/run`, "0");
    daemon = await TestDaemon.create();
    await daemon.start();
  });

  after(async () => {
    await daemon?.dispose();
    // 2 would unmerge every page on the host: put back exactly what was there.
    writeFileSync(`${KSM_DIR}/run`, ksmRunBefore);
  });

  test("off by default: ksmd is left stopped and QEMU's own memory is not offered for merging", async () => {
    const names = await createTwo();
    const pids = vmQemuPids(daemon.stateDir);
    assert.equal(pids.length, 2);
    for (const pid of pids) assert.notEqual(ksmStat(pid, "ksm_merge_any"), "yes");
    assert.equal(readFileSync(`${KSM_DIR}/run`, "utf8").trim(), "0");
    for (const name of names) await daemon.client.deleteNode("sbox", name);
  });

  test("ksm: true starts ksmd, launches QEMU with all memory mergeable, and ksmd merges the clones' pages", async () => {
    await daemon.stop();
    await daemon.reconfigure(KSM_CONFIG);
    await daemon.start();
    assert.equal(readFileSync(`${KSM_DIR}/run`, "utf8").trim(), "1", "the daemon started ksmd");
    assert.match(daemon.log, /Started KSM/);
    const names = await createTwo();
    const pids = vmQemuPids(daemon.stateDir);
    assert.equal(pids.length, 2);
    const wholeProcess = probeMemoryMerge().wholeProcess;
    // Not only the probe's word for it: on a kernel new enough, the flag must be there.
    if (kernelKeepsMergeAcrossExec()) assert.ok(wholeProcess, "the probe finds whole-process merging on Linux >= 6.7");
    assert.match(daemon.log, wholeProcess ? /all of each QEMU process's memory is mergeable/ : /QEMU's own memory is not/);
    for (const pid of pids) {
      // The launcher exec'd QEMU itself: same pid, QEMU's command line.
      assert.match(readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0")[0] ?? "", /qemu-system/);
      assert.equal(ksmStat(pid, "ksm_merge_any") ?? "no", wholeProcess ? "yes" : "no");
    }
    // ksmd needs two passes over a page before it merges it: wait for the kernel's count, not a clock.
    const merged = await until(
      () => {
        const counts = pids.map((pid) => Number(ksmStat(pid, "ksm_merging_pages") ?? 0));
        return counts.every((count) => count > 0) ? counts : undefined;
      },
      "ksmd to merge pages of both clones",
      240_000,
      1000,
    );
    assert.ok(merged.every((count) => count > 0));
    const families = parsePrometheusText(await daemon.client.metrics());
    assert.ok(sampleValue(families, "corral_host_ksm_sharing_bytes") > 0, "/metrics reports the memory KSM saves");
    // Merged pages are copied again on write: the guests still run commands and write files.
    for (const name of names) {
      const result = await daemon.client.execBuffered(name, { cmd: "sh", args: ["-c", "echo merged > /tmp/f && cat /tmp/f && hostname"] });
      assert.equal(result.exit_code, 0, result.stderr);
      assert.equal(result.stdout, `merged\n${name}\n`);
    }
  });
});
