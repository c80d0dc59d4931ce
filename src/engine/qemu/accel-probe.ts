// Chooses KVM or TCG. /dev/kvm existing is not proof that KVM works: on nested hosts it can exist and still
// hang a Linux guest forever. So `auto` boots the real kernel with the image's initramfs in probe mode under
// KVM with a short deadline; only a guest that prints the probe marker counts. The verdict is cached per
// host kernel, QEMU build and guest kernel, and the fallback to TCG is always reported, never silent.
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { constants, existsSync } from "node:fs";
import { access, mkdir, readFile, stat, writeFile } from "node:fs/promises";
import { release } from "node:os";
import { dirname } from "node:path";
import { PROBE_ARGUMENT, PROBE_MARKER } from "../../protocol/boot.ts";
import type { Accel } from "./qemu-args.ts";

export type AccelMode = "auto" | Accel;
export type KvmCpu = "host" | "default";

export interface AccelVerdict {
  accel: Accel;
  /** CPU model for KVM guests: "host" normally; QEMU's default when the host model failed the probe. */
  kvmCpu?: KvmCpu;
  mode: AccelMode;
  /** Why this accelerator was chosen, in words for the log and /info. */
  reason: string;
  /** When the verdict was reached (a cached verdict keeps its original time). */
  decided_at: string;
  cached: boolean;
}

export interface ProbeInput {
  qemuBinary: string;
  kernel: string;
  initrd: string;
  cacheFile: string;
  /** How long a working KVM may take to boot the probe; a hung guest is killed after this. */
  deadlineMs?: number;
}

async function kvmAccessible(): Promise<boolean> {
  try {
    await access("/dev/kvm", constants.R_OK | constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

/** Host kernel, QEMU build and guest kernel contents: image rebuilds with the same kernel keep the verdict. */
async function cacheKey(input: ProbeInput): Promise<string> {
  const qemu = await stat(input.qemuBinary);
  const kernelHash = createHash("sha256")
    .update(await readFile(input.kernel))
    .digest("hex")
    .slice(0, 16);
  return [release(), input.qemuBinary, qemu.size, qemu.mtimeMs, kernelHash].join("|");
}

export async function resolveAccel(mode: AccelMode, input: ProbeInput): Promise<AccelVerdict> {
  const now = new Date().toISOString();
  if (mode === "tcg") return { accel: "tcg", mode, reason: "TCG (software emulation) chosen by the configuration", decided_at: now, cached: false };
  if (mode === "kvm") {
    if (!(await kvmAccessible())) {
      throw new Error('The configuration asks for accel "kvm", but /dev/kvm is missing or not readable and writable by this user');
    }
    return { accel: "kvm", kvmCpu: "host", mode, reason: "KVM chosen by the configuration (not probed)", decided_at: now, cached: false };
  }
  if (!(await kvmAccessible())) {
    return { accel: "tcg", mode, reason: "/dev/kvm is missing or not accessible: using TCG (software emulation)", decided_at: now, cached: false };
  }
  const key = await cacheKey(input);
  const cached = await readCache(input.cacheFile, key);
  if (cached) return { ...cached, mode, cached: true };
  const verdict = await probeKvm(input);
  await mkdir(dirname(input.cacheFile), { recursive: true });
  await writeFile(input.cacheFile, JSON.stringify({ key, verdict }, null, 2));
  return verdict;
}

async function readCache(file: string, key: string): Promise<AccelVerdict | undefined> {
  if (!existsSync(file)) return undefined;
  try {
    const parsed = JSON.parse(await readFile(file, "utf8")) as { key: string; verdict: AccelVerdict };
    return parsed.key === key ? parsed.verdict : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Boots the kernel under KVM in probe mode, first with the host CPU model, then (on nested hosts that cannot
 * set some host MSRs) with QEMU's default model, sharing one deadline.
 */
export async function probeKvm(input: ProbeInput): Promise<AccelVerdict> {
  const deadline = performance.now() + (input.deadlineMs ?? 10_000);
  const failures: string[] = [];
  for (const cpu of ["host", "default"] as const) {
    const remaining = deadline - performance.now();
    if (remaining <= 0) break;
    const outcome = await bootProbe(input, cpu, remaining);
    if (outcome.works) {
      return {
        accel: "kvm",
        kvmCpu: cpu,
        mode: "auto",
        reason: `KVM booted the guest kernel in ${outcome.seconds}s with the ${cpu} CPU model: using KVM`,
        decided_at: new Date().toISOString(),
        cached: false,
      };
    }
    failures.push(`${cpu} CPU model: ${outcome.why}`);
  }
  return {
    accel: "tcg",
    mode: "auto",
    reason: `KVM did not boot the guest kernel (${failures.join("; ")}): falling back to TCG (software emulation)`,
    decided_at: new Date().toISOString(),
    cached: false,
  };
}

interface ProbeOutcome {
  works: boolean;
  why: string;
  seconds: string;
}

function bootProbe(input: ProbeInput, cpu: KvmCpu, deadlineMs: number): Promise<ProbeOutcome> {
  const started = performance.now();
  const args = [
    "-M",
    "microvm,isa-serial=on",
    "-accel",
    "kvm",
    ...(cpu === "host" ? ["-cpu", "host"] : []),
    "-m",
    "256",
    "-smp",
    "1",
    "-nodefaults",
    "-no-user-config",
    "-display",
    "none",
    "-no-reboot",
    "-kernel",
    input.kernel,
    "-initrd",
    input.initrd,
    "-append",
    `console=ttyS0 panic=-1 reboot=k quiet ${PROBE_ARGUMENT}`,
    "-serial",
    "stdio",
  ];
  return new Promise((resolve) => {
    // Under timeout(1): a hung probe is killed at its deadline even if this daemon dies first.
    const hardLimit = String(Math.ceil(deadlineMs / 1000) + 1);
    const child = spawn("timeout", ["-s", "KILL", hardLimit, input.qemuBinary, ...args], { stdio: ["ignore", "pipe", "pipe"], detached: true });
    let output = "";
    let done = false;
    const finish = (works: boolean, why: string): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      try {
        if (child.pid !== undefined) process.kill(-child.pid, "SIGKILL"); // timeout and QEMU together
      } catch {
        // already gone
      }
      resolve({ works, why, seconds: ((performance.now() - started) / 1000).toFixed(1) });
    };
    const timer = setTimeout(() => finish(false, `no sign of life within ${(deadlineMs / 1000).toFixed(1)}s`), deadlineMs);
    const onOutput = (chunk: Buffer): void => {
      output = (output + chunk.toString("latin1")).slice(-8192);
      if (output.includes(PROBE_MARKER)) finish(true, "");
    };
    child.stdout.on("data", onOutput);
    child.stderr.on("data", onOutput);
    child.on("error", (err) => finish(false, `cannot start QEMU: ${err.message}`));
    child.on("exit", (code, signal) => {
      const lastLine =
        output
          .trim()
          .split("\n")
          .filter((l) => l.trim())
          .pop() ?? "";
      finish(output.includes(PROBE_MARKER), `QEMU exited (${code ?? signal})${lastLine ? `: ${lastLine.slice(0, 160)}` : ""}`);
    });
  });
}
