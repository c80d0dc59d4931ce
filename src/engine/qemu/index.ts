// QEMU's own pieces, for what measures or tests QEMU itself (benchmarks, unit tests); the daemon goes
// through the seam in ../index.ts.
export { resolveAccel, probeKvm, type AccelMode, type AccelVerdict, type KvmCpu } from "./accel-probe.ts";
export { buildQemuArgs, kernelCmdline, type Accel, type PortForward, type BootNetwork, type QemuNetwork, type QemuSpec, type TapNetwork, type UserNetwork } from "./qemu-args.ts";
export { QemuProcess } from "./qemu-process.ts";
export { QmpClient, QmpError, type QmpBlockInfo, type QmpBlockIoError, type QmpEvent, type QmpMigrationInfo, type QmpStatus } from "./qmp-client.ts";
export { startQemu, QEMU_BINARY, QemuStartError, type StartedQemu } from "./start-qemu.ts";
export { loadVmState, saveVmState, MigrationError } from "./migration.ts";
export { FALLBACK_TSC_KHZ, hostTscKhz } from "./host-tsc.ts";
export { QemuEngine, qemuSpecOf } from "./qemu-engine.ts";
export { QemuMachine, QEMU_CAPABILITIES, NIC_ID, exitCauseOf, machineEventOf } from "./qemu-machine.ts";
