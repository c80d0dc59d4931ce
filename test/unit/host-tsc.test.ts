import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { FALLBACK_TSC_KHZ, hostTscKhz } from "../../src/engine/qemu/host-tsc.ts";

function files(map: Record<string, string>): (path: string) => string {
  return (path) => {
    const text = map[path];
    if (text === undefined) throw Object.assign(new Error(`ENOENT: ${path}`), { code: "ENOENT" });
    return text;
  };
}

describe("hostTscKhz", () => {
  test("prefers the kernel's exported TSC frequency", () => {
    assert.equal(hostTscKhz(files({ "/sys/devices/system/cpu/cpu0/tsc_freq_khz": "2995200\n", "/proc/cpuinfo": "cpu MHz\t\t: 1200.000\n" })), 2995200);
  });

  test("falls back to the first cpu MHz line of /proc/cpuinfo", () => {
    const cpuinfo = "processor\t: 0\nmodel name\t: AMD EPYC\ncpu MHz\t\t: 2695.946\n\nprocessor\t: 1\ncpu MHz\t\t: 1800.000\n";
    assert.equal(hostTscKhz(files({ "/proc/cpuinfo": cpuinfo })), 2695946);
  });

  test("ignores nonsense and falls back to 2 GHz when nothing is usable", () => {
    assert.equal(hostTscKhz(files({ "/sys/devices/system/cpu/cpu0/tsc_freq_khz": "0", "/proc/cpuinfo": "cpu MHz : n/a\n" })), FALLBACK_TSC_KHZ);
    assert.equal(hostTscKhz(files({})), FALLBACK_TSC_KHZ);
  });

  test("reads this machine's real files", () => {
    const khz = hostTscKhz();
    assert.ok(khz >= 500_000 && khz <= 10_000_000, `a plausible TSC rate, got ${khz} kHz`);
  });
});
