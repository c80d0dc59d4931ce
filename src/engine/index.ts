// The engine folder's public face: QEMU command lines, processes, QMP and the acceleration choice.
export { resolveAccel, type AccelMode, type AccelVerdict, type KvmCpu } from "./accel-probe.ts";
export { buildQemuArgs, kernelCmdline, type Accel, type PortForward, type BootNetwork, type QemuNetwork, type QemuSpec, type TapNetwork, type UserNetwork } from "./qemu-args.ts";
export { QemuProcess, findProcessesWithArgument, processCommandLine, processCpuNanoseconds, processStartedAt, processStartTime, type ExitInfo } from "./qemu-process.ts";
export { QmpClient, QmpError, type QmpBlockInfo, type QmpBlockIoError, type QmpEvent, type QmpMigrationInfo, type QmpStatus } from "./qmp-client.ts";
export { startQemu, QEMU_BINARY, QemuStartError, type StartedQemu } from "./start-qemu.ts";
export { loadVmState, saveVmState, MigrationError } from "./migration.ts";
export { FALLBACK_TSC_KHZ, hostTscKhz } from "./host-tsc.ts";
