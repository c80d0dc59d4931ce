// .dockerignore as Docker reads it: one pattern a line (Go's filepath.Match per segment, `**` for any number
// of segments), `#` comments, `!` re-includes, the last matching line wins, and a pattern that matches a
// directory excludes everything below it. Paths are relative to the context root, slash-separated.
import { posix } from "node:path";

interface Rule {
  regex: RegExp;
  include: boolean;
}

export class DockerIgnore {
  private readonly rules: Rule[];

  constructor(text: string) {
    this.rules = [];
    for (const rawLine of text.split(/\r?\n/)) {
      let line = rawLine.trim();
      if (line === "" || line.startsWith("#")) continue;
      const include = line.startsWith("!");
      if (include) line = line.slice(1).trim();
      // Docker cleans each pattern (filepath.Clean) and drops a leading slash.
      let pattern = posix.normalize(line).replace(/^\/+/, "").replace(/\/+$/, "");
      if (pattern === "." || pattern === "") pattern = "";
      this.rules.push({ regex: dockerignoreRegExp(pattern), include });
    }
  }

  get empty(): boolean {
    return this.rules.length === 0;
  }

  /** Whether `path` (relative to the context) is left out of the context. */
  ignores(path: string): boolean {
    const clean = path.replace(/^\.?\/+/, "").replace(/\/+$/, "");
    if (clean === "" || this.rules.length === 0) return false;
    const parts = clean.split("/");
    let ignored = false;
    for (const rule of this.rules) {
      // A rule matches the path itself or any directory above it.
      let matched = false;
      for (let depth = parts.length; depth >= 1 && !matched; depth--) matched = rule.regex.test(parts.slice(0, depth).join("/"));
      if (matched) ignored = !rule.include;
    }
    return ignored;
  }
}

/** One pattern (Go's filepath.Match per segment, `**` for any depth) as a regular expression over a whole path. */
export function dockerignoreRegExp(pattern: string): RegExp {
  let source = "";
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i] as string;
    if (c === "*" && pattern[i + 1] === "*") {
      // `**/` matches zero or more directories; a trailing `**` anything below.
      i++;
      if (pattern[i + 1] === "/") {
        i++;
        source += "(?:.*/)?";
      } else source += ".*";
    } else if (c === "*") source += "[^/]*";
    else if (c === "?") source += "[^/]";
    else if (c === "\\" && i + 1 < pattern.length) source += escapeRegExp(pattern[++i] as string);
    else if (c === "[") {
      const close = pattern.indexOf("]", i + 2);
      if (close < 0) source += "\\[";
      else {
        const body = pattern
          .slice(i + 1, close)
          .replace(/^\^/, "^")
          .replace(/^!/, "^");
        source += `[${body.replace(/[\]\\/]/g, "\\$&")}]`;
        i = close;
      }
    } else source += escapeRegExp(c);
  }
  return new RegExp(`^${source}$`, "s");
}

function escapeRegExp(c: string): string {
  return /[.*+?^${}()|[\]\\/]/.test(c) ? `\\${c}` : c;
}
