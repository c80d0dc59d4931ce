// Names of tar entries, checked before anything touches the disk: an archive may only write below the
// directory it is unpacked into.

export class UnsafeEntryError extends Error {
  constructor(
    readonly entryName: string,
    reason: string,
  ) {
    super(`Cannot unpack tar entry ${JSON.stringify(entryName)}: ${reason}`);
    this.name = "UnsafeEntryError";
  }
}

/**
 * The path segments of a tar entry name, relative to the destination. "./a//b/" gives ["a", "b"]; the
 * archive's root ("." or "./") gives []. Absolute names, ".." segments and NUL bytes are refused.
 */
export function entrySegments(name: string): string[] {
  if (name.includes("\0")) throw new UnsafeEntryError(name, "its name contains a NUL byte");
  if (name.startsWith("/")) throw new UnsafeEntryError(name, "absolute paths are not allowed");
  const segments = name.split("/").filter((segment) => segment !== "" && segment !== ".");
  if (segments.includes("..")) throw new UnsafeEntryError(name, '".." may not appear in a path');
  return segments;
}

/** The target of a hard link entry: like an entry name, and never the archive's root. */
export function linkSegments(entryName: string, linkname: string): string[] {
  if (linkname.startsWith("/") || linkname.includes("\0") || linkname.split("/").includes("..")) {
    throw new UnsafeEntryError(entryName, `its hard link target ${JSON.stringify(linkname)} is outside the destination`);
  }
  const segments = linkname.split("/").filter((segment) => segment !== "" && segment !== ".");
  if (segments.length === 0) throw new UnsafeEntryError(entryName, "its hard link has no target");
  return segments;
}
