// Changes below a set of paths, from inotify through fs.watch (one watch per directory; no polling, so an
// idle watch costs nothing). fs.watch only says "rename" or "change", so each event is classified by
// looking at the path: appeared (create), vanished (remove), content (write) or metadata (chmod), and a path
// that vanished while another appeared with its inode in the same batch of events was renamed.
import { lstatSync, watch, type FSWatcher, type Stats } from "node:fs";
import { lstat, readdir, stat } from "node:fs/promises";
import { basename, join } from "node:path";
import type { WatchEventType } from "../../protocol/files.ts";

export interface RawWatchEvent {
  type: WatchEventType;
  path: string;
  /** The watched path this event was found under. */
  root: string;
  size: number;
  isDir: boolean;
}

/** More directories than this in one watch is refused: each costs an inotify watch. */
export const MAX_WATCHED_DIRECTORIES = 8192;
/** Names one watch keeps track of (it must know what exists to tell a creation from a removal). */
export const MAX_WATCHED_NAMES = 200_000;

export class WatchLimitError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "WatchLimitError";
  }
}

interface Vanished {
  path: string;
  root: string;
  ino: number;
  isDir: boolean;
}

function lstatOrUndefined(path: string): Stats | undefined {
  try {
    return lstatSync(path);
  } catch {
    return undefined;
  }
}

export class TreeWatch {
  private readonly watchers = new Map<string, FSWatcher>();
  /** Names this watch knows exist, with their inode when it was seen (for renames). */
  private readonly inodes = new Map<string, number | undefined>();
  private vanished: Vanished[] = [];
  private flushScheduled = false;
  private closed = false;

  constructor(
    private readonly roots: readonly string[],
    private readonly recursive: boolean,
    private readonly emit: (event: RawWatchEvent) => void,
  ) {}

  /** Installs the watches; rejects (with the fs error) when a root does not exist. */
  async start(): Promise<void> {
    for (const root of this.roots) {
      const stats = await stat(root);
      if (stats.isDirectory()) await this.watchDirectory(root, root, false);
      else this.addWatcher(root, root, "file");
    }
  }

  close(): void {
    this.closed = true;
    for (const watcher of this.watchers.values()) watcher.close();
    this.watchers.clear();
    this.inodes.clear();
  }

  private addWatcher(path: string, root: string, kind: "file" | "directory"): void {
    if (this.watchers.has(path) || this.closed) return;
    if (this.watchers.size >= MAX_WATCHED_DIRECTORIES) throw new WatchLimitError(`Cannot watch more than ${MAX_WATCHED_DIRECTORIES} directories at once`);
    let watcher: FSWatcher;
    try {
      watcher = watch(path, { persistent: false }, (eventType, filename) => this.onEvent(path, root, kind, eventType, filename));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOSPC") throw new WatchLimitError("The guest's inotify watch limit is reached: watch fewer directories");
      throw err;
    }
    watcher.on("error", () => this.unwatchTree(path));
    this.watchers.set(path, watcher);
  }

  /**
   * Watches `dir` and remembers its entries' inodes; with `recursive`, its subdirectories too. `announce`
   * reports what is found as created (a directory that just appeared may have been filled before its watch).
   */
  private async watchDirectory(dir: string, root: string, announce: boolean): Promise<void> {
    this.addWatcher(dir, root, "directory");
    let names: string[];
    try {
      names = await readdir(dir);
    } catch {
      return; // gone meanwhile: its parent reports that
    }
    if (this.inodes.size + names.length > MAX_WATCHED_NAMES) throw new WatchLimitError(`Cannot watch more than ${MAX_WATCHED_NAMES} files at once`);
    for (const name of names) {
      const path = join(dir, name);
      let stats: Stats;
      try {
        stats = await lstat(path);
      } catch {
        continue;
      }
      this.remember(path, stats.ino);
      if (announce) this.emit({ type: "create", path, root, size: stats.size, isDir: stats.isDirectory() });
      if (this.recursive && stats.isDirectory()) await this.watchDirectory(path, root, announce);
    }
  }

  private remember(path: string, ino: number | undefined): void {
    this.inodes.set(path, ino);
  }

  private onEvent(watched: string, root: string, kind: "file" | "directory", eventType: string, filename: string | Buffer | null): void {
    if (this.closed) return;
    if (kind === "file") return this.onFileEvent(watched, eventType);
    if (filename === null) return;
    let path = join(watched, filename.toString());
    let stats = lstatOrUndefined(path);
    if (!stats && filename.toString() === basename(watched) && !lstatOrUndefined(watched)) {
      // The watched directory itself went away: its parent reports that, unless it is a root.
      if (watched !== root) return;
      path = watched;
      stats = undefined;
    }
    if (eventType === "change") return this.changed(path, root, stats);
    this.renamed(path, root, stats);
  }

  /** Content or metadata changed. Gone already: its removal is reported by the event that follows. */
  private changed(path: string, root: string, stats: Stats | undefined): void {
    if (!stats) return;
    this.remember(path, stats.ino);
    // A write sets mtime and ctime together; chmod, chown and friends move only ctime.
    this.emit({ type: stats.ctimeMs > stats.mtimeMs ? "chmod" : "write", path, root, size: stats.size, isDir: stats.isDirectory() });
  }

  /**
   * A name appeared or went away. Events may be handled well after they happened (a busy or emulated guest),
   * so what the path looks like now is not enough: a name this watch knows went away, one it does not know
   * appeared (even if it is gone again: its removal is the next event).
   */
  private renamed(path: string, root: string, stats: Stats | undefined): void {
    const movedFrom = stats ? this.vanished.findIndex((v) => v.ino === stats.ino && v.path !== path) : -1;
    if (movedFrom >= 0) {
      const [from] = this.vanished.splice(movedFrom, 1) as [Vanished];
      this.emit({ type: "rename", path: from.path, root: from.root, size: stats?.size ?? 0, isDir: from.isDir });
      return this.appeared(path, root, stats, false);
    }
    if (this.inodes.has(path)) return this.disappeared(path, root);
    const replaced = this.vanished.findIndex((v) => v.path === path);
    if (replaced >= 0) {
      const [old] = this.vanished.splice(replaced, 1) as [Vanished];
      this.emit({ type: "remove", path, root: old.root, size: 0, isDir: old.isDir });
    }
    this.appeared(path, root, stats, true);
  }

  private appeared(path: string, root: string, stats: Stats | undefined, announceContents: boolean): void {
    this.remember(path, stats?.ino);
    this.emit({ type: "create", path, root, size: stats?.size ?? 0, isDir: stats?.isDirectory() ?? false });
    if (this.recursive && stats?.isDirectory()) {
      // A new directory may have been filled before its watch existed: report what is in it. A renamed one
      // only changed its name.
      this.watchDirectory(path, root, announceContents).catch(() => undefined);
    }
  }

  private disappeared(path: string, root: string): void {
    const ino = this.inodes.get(path);
    this.inodes.delete(path);
    const isDir = this.watchers.has(path);
    this.unwatchTree(path);
    if (ino === undefined) {
      this.emit({ type: "remove", path, root, size: 0, isDir });
      return;
    }
    // It may reappear under another name in this batch of events (a rename): wait for the batch's end.
    this.vanished.push({ path, root, ino, isDir });
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => this.flushVanished());
    }
  }

  /** Vanished names nobody claimed were removed, or replaced in one step (renamed over: there again now). */
  private flushVanished(): void {
    this.flushScheduled = false;
    const vanished = this.vanished;
    this.vanished = [];
    if (this.closed) return;
    for (const v of vanished) {
      const now = lstatOrUndefined(v.path);
      if (now) this.appeared(v.path, v.root, now, false);
      else this.emit({ type: "remove", path: v.path, root: v.root, size: 0, isDir: v.isDir });
    }
  }

  /**
   * A watched file (a root). inotify watches its inode: when the name is removed or replaced (editors save by
   * renaming a new file over the old), the watch moves to the new file, and the change counts as a write.
   */
  private onFileEvent(path: string, eventType: string): void {
    const stats = lstatOrUndefined(path);
    if (eventType === "change") return this.changed(path, path, stats);
    this.watchers.get(path)?.close();
    this.watchers.delete(path);
    if (!stats) {
      this.inodes.delete(path);
      this.emit({ type: "remove", path, root: path, size: 0, isDir: false });
      return;
    }
    this.remember(path, stats.ino);
    this.emit({ type: "write", path, root: path, size: stats.size, isDir: false });
    try {
      this.addWatcher(path, path, "file");
    } catch {
      // out of watches: this file is no longer followed
    }
  }

  private unwatchTree(path: string): void {
    for (const [watchedPath, watcher] of this.watchers) {
      if (watchedPath === path || watchedPath.startsWith(`${path}/`)) {
        watcher.close();
        this.watchers.delete(watchedPath);
      }
    }
  }
}
