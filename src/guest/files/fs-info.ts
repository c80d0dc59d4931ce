// A file's description as Slicer's `/fs/readdir` and `/fs/stat` give it.
import type { Stats } from "node:fs";
import { formatOctalMode, type FsInfo } from "../../protocol/files.ts";

/** From lstat(2): a symlink is described as itself, not as what it points to. */
export function fsInfo(name: string, stats: Stats): FsInfo {
  return {
    name,
    type: stats.isDirectory() ? "directory" : stats.isSymbolicLink() ? "symlink" : "file",
    size: stats.size,
    mtime: stats.mtime.toISOString(),
    mode: formatOctalMode(stats.mode),
  };
}
