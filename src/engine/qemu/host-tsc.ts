// The host's TSC frequency. Under TCG the guest's TSC ticks at the host's rate, and the guest kernel is told
// that rate (tsc_early_khz) because calibrating it under emulation often hangs the boot. A wrong value makes
// the guest's clock run fast or slow (2 GHz assumed on a 2.7 GHz host ran guest time 1.35x too fast).
import { readFileSync } from "node:fs";

/** Used when the host says nothing usable. */
export const FALLBACK_TSC_KHZ = 2_000_000;

/** From sysfs when the kernel exports it, else /proc/cpuinfo's first "cpu MHz" (the TSC rate on VMs). */
export function hostTscKhz(read: (path: string) => string = (path) => readFileSync(path, "utf8")): number {
  try {
    const khz = Number(read("/sys/devices/system/cpu/cpu0/tsc_freq_khz").trim());
    if (Number.isFinite(khz) && khz > 0) return Math.round(khz);
  } catch {
    // not exported by this kernel
  }
  try {
    const match = /^cpu MHz\s*:\s*([\d.]+)/m.exec(read("/proc/cpuinfo"));
    const mhz = Number(match?.[1]);
    if (Number.isFinite(mhz) && mhz > 0) return Math.round(mhz * 1000);
  } catch {
    // no cpuinfo
  }
  return FALLBACK_TSC_KHZ;
}
