// The engine folder's public face: the seam (Engine, Machine and their words), what /proc says about any
// machine's process, and the QEMU engine with the acceleration choice it is started with.
export type {
  DiskError,
  Engine,
  ExitCause,
  ExitInfo,
  Machine,
  MachineCapabilities,
  MachineEvent,
  MachineEventType,
  MachineExit,
  MachineFiles,
  MachineNic,
  MachineSpec,
  RecordedMachine,
  RunState,
  SaveStateOptions,
  StartOptions,
} from "./machine.ts";
export { findProcessesWithArgument, processCommandLine, processCpuNanoseconds, processStartedAt, processStartTime } from "./process-info.ts";
export { QemuEngine } from "./qemu/qemu-engine.ts";
export { ksmPagesSharing, mergeAllMemoryPrefix, probeMemoryMerge, startKsm, type MemoryMergeSupport } from "./qemu/memory-merge.ts";
export { resolveAccel, type AccelMode, type AccelVerdict, type KvmCpu } from "./qemu/accel-probe.ts";
export { kernelCmdline, type Accel, type PortForward, type BootNetwork } from "./qemu/qemu-args.ts";
export { QEMU_BINARY, QemuStartError } from "./qemu/start-qemu.ts";
export { MigrationError } from "./qemu/migration.ts";
export { FALLBACK_TSC_KHZ, hostTscKhz } from "./qemu/host-tsc.ts";
