// Directory trees as tar streams, both ways: the guest agent's copies and the CLI's local side of `vm cp`.
export { entrySegments, linkSegments, UnsafeEntryError } from "./entry-path.ts";
export { extractTree, MalformedArchiveError, type ExtractOptions, type ExtractResult } from "./extract-tree.ts";
export { packTree, type PackOptions } from "./pack-tree.ts";
export { DirectoryAttributes, drain, forEachTarEntry, lstatOrUndefined } from "./tar-entries.ts";
