import { describe, test } from "node:test";
import assert from "node:assert/strict";
import type { VmStats } from "../../src/protocol/ttstack-agent.ts";
import { addSample, DEFAULT_MAX_GAP_MS, DEFAULT_WINDOW_MS, emptyWindow, statsPoints, trimWindow, type StatsWindow } from "../../web/src/lib/stats-window.ts";

const T0 = 1_700_000_000_000;

function stats(cpuNs: number, opts: Partial<{ disk: [number, number][]; net: [number, number][]; vcpu: number; memory: number }> = {}): VmStats {
  return {
    state: 1,
    memory: opts.memory ?? 256 * 1024,
    max_mem: 512 * 1024,
    vcpu: opts.vcpu ?? 1,
    cpu_time: cpuNs,
    disk_stats: (opts.disk ?? [[0, 0]]).map(([read_bytes, write_bytes], i) => ({ device: `vd${"abc"[i]}`, read_bytes, write_bytes })),
    net_stats: (opts.net ?? [[0, 0]]).map(([read_bytes, write_bytes], i) => ({ device: `eth${i}`, read_bytes, write_bytes })),
  };
}

function windowOf(samples: [number, VmStats][]): StatsWindow {
  return samples.reduce((w, [at, s]) => addSample(w, { at, stats: s }), emptyWindow());
}

describe("stats window", () => {
  test("the first sample has no rates; the next has CPU % and bytes/s from the deltas", () => {
    const w = windowOf([
      [T0, stats(1e9, { disk: [[1000, 2000]], net: [[500, 100]] })],
      [T0 + 2000, stats(1.5e9, { disk: [[5000, 2000]], net: [[2500, 300]] })],
    ]);
    const [first, second] = statsPoints(w);
    assert.equal(first?.cpuPercent, null);
    assert.equal(first?.diskReadBps, null);
    assert.equal(first?.netRxBps, null);
    assert.equal(second?.cpuPercent, 25); // 0.5 s of CPU in 2 s, one vCPU
    assert.equal(second?.diskReadBps, 2000);
    assert.equal(second?.diskWriteBps, 0);
    assert.equal(second?.netRxBps, 1000);
    assert.equal(second?.netTxBps, 100);
  });

  test("CPU % is of all the VM's vCPUs", () => {
    const w = windowOf([
      [T0, stats(0, { vcpu: 4 })],
      [T0 + 1000, stats(2e9, { vcpu: 4 })],
    ]);
    assert.equal(statsPoints(w)[1]?.cpuPercent, 50);
  });

  test("disks and network interfaces are summed", () => {
    const w = windowOf([
      [
        T0,
        stats(0, {
          disk: [
            [0, 0],
            [0, 0],
          ],
          net: [
            [0, 0],
            [0, 0],
          ],
        }),
      ],
      [
        T0 + 1000,
        stats(0, {
          disk: [
            [100, 10],
            [300, 30],
          ],
          net: [
            [7, 1],
            [3, 1],
          ],
        }),
      ],
    ]);
    const p = statsPoints(w)[1];
    assert.equal(p?.diskReadBps, 400);
    assert.equal(p?.diskWriteBps, 40);
    assert.equal(p?.netRxBps, 10);
    assert.equal(p?.netTxBps, 2);
  });

  test("a counter that went back (the VM restarted) gives no rate, and the next sample counts from it", () => {
    const w = windowOf([
      [T0, stats(50e9, { disk: [[1e6, 1e6]] })],
      [T0 + 2000, stats(0.2e9, { disk: [[100, 0]] })],
      [T0 + 4000, stats(0.6e9, { disk: [[300, 0]] })],
    ]);
    const [, reset, after] = statsPoints(w);
    assert.equal(reset?.cpuPercent, null);
    assert.equal(reset?.diskReadBps, null);
    assert.equal(reset?.diskWriteBps, null);
    assert.equal(after?.cpuPercent, 20);
    assert.equal(after?.diskReadBps, 100);
  });

  test("samples further apart than the gap limit are not joined", () => {
    const w = windowOf([
      [T0, stats(0)],
      [T0 + DEFAULT_MAX_GAP_MS + 1, stats(1e9)],
      [T0 + DEFAULT_MAX_GAP_MS + 2001, stats(2e9)],
    ]);
    const points = statsPoints(w);
    assert.equal(points[1]?.cpuPercent, null);
    assert.equal(points[2]?.cpuPercent, 50);
    const atLimit = windowOf([
      [T0, stats(0)],
      [T0 + DEFAULT_MAX_GAP_MS, stats(1.5e9)],
    ]);
    assert.equal(statsPoints(atLimit)[1]?.cpuPercent, 10);
  });

  test("memory is shown in MiB, with the total", () => {
    const p = statsPoints(windowOf([[T0, stats(0, { memory: 300 * 1024 })]]))[0];
    assert.equal(p?.memUsedMiB, 300);
    assert.equal(p?.memTotalMiB, 512);
  });

  test("keeps five minutes: older samples drop as new ones arrive", () => {
    let w = emptyWindow();
    for (let i = 0; i <= 200; i++) w = addSample(w, { at: T0 + i * 2000, stats: stats(i * 1e8) });
    const last = T0 + 200 * 2000;
    assert.equal(w.samples.at(-1)?.at, last);
    assert.ok(w.samples.every((s) => s.at >= last - DEFAULT_WINDOW_MS));
    assert.equal(w.samples[0]?.at, last - DEFAULT_WINDOW_MS);
    assert.equal(w.samples.length, DEFAULT_WINDOW_MS / 2000 + 1);
  });

  test("a sample after a long silence empties the window", () => {
    const w = windowOf([
      [T0, stats(0)],
      [T0 + 2000, stats(1)],
      [T0 + DEFAULT_WINDOW_MS + 10_000, stats(2)],
    ]);
    assert.deepEqual(
      w.samples.map((s) => s.at),
      [T0 + DEFAULT_WINDOW_MS + 10_000],
    );
  });

  test("out-of-order samples are ignored; one at the same time replaces the last", () => {
    const w = windowOf([
      [T0, stats(0)],
      [T0 + 2000, stats(1e9)],
      [T0 + 1000, stats(5e9)],
      [T0 + 2000, stats(0.5e9)],
    ]);
    assert.deepEqual(
      w.samples.map((s) => [s.at, s.stats.cpu_time]),
      [
        [T0, 0],
        [T0 + 2000, 0.5e9],
      ],
    );
  });

  test("trimWindow drops what fell out of the window without a new sample", () => {
    const w = windowOf([
      [T0, stats(0)],
      [T0 + 60_000, stats(1)],
    ]);
    assert.equal(trimWindow(w, T0 + DEFAULT_WINDOW_MS), w);
    assert.deepEqual(
      trimWindow(w, T0 + DEFAULT_WINDOW_MS + 1).samples.map((s) => s.at),
      [T0 + 60_000],
    );
    assert.deepEqual(trimWindow(w, T0 + 10 * DEFAULT_WINDOW_MS).samples, []);
  });

  test("an empty window has no points", () => {
    assert.deepEqual(statsPoints(emptyWindow()), []);
  });
});
