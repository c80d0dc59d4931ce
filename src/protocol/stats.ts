// A guest's resource snapshot, in the shape (camelCase keys) of Slicer's /nodes/stats.
export interface VmSnapshot {
  hostname: string;
  arch: string;
  timestamp: string;
  /** A Go duration, e.g. "6m53s". */
  uptime: string;
  totalCpus: number;
  totalMemory: number;
  memoryUsed: number;
  memoryAvailable: number;
  memoryUsedPercent: number;
  loadAvg1: number;
  loadAvg5: number;
  loadAvg15: number;
  diskReadTotal: number;
  diskWriteTotal: number;
  networkReadTotal: number;
  networkWriteTotal: number;
  diskIOInflight: number;
  openConnections: number;
  openFiles: number;
  entropy: number;
  diskSpaceTotal: number;
  diskSpaceUsed: number;
  diskSpaceFree: number;
  diskSpaceUsedPercent: number;
}

export const STATS_PATH = "/v1/stats";
