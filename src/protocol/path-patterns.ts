// Glob patterns as Slicer's SDKs write them for copy `exclude` and watch `patterns`: Go's path.Match per
// path segment (`*`, `?`, `[a-z]`, `[^x]`, `\` escapes), `**` for any number of segments, and a pattern
// without a slash also tried against the base name alone ("*.log" matches "a/b/c.log").

/** Trims a pattern the way the Go SDK does: spaces, a leading "./" or "/", a trailing "/". */
export function normalizePattern(pattern: string): string {
  let p = pattern.trim();
  if (p.startsWith("./")) p = p.slice(2);
  if (p.startsWith("/")) p = p.slice(1);
  if (p.endsWith("/")) p = p.slice(0, -1);
  return p;
}

const segmentCache = new Map<string, RegExp | null>();

/** One path.Match pattern as a regular expression; null when the pattern is malformed (it matches nothing). */
function segmentRegExp(pattern: string): RegExp | null {
  const cached = segmentCache.get(pattern);
  if (cached !== undefined) return cached;
  const result = translate(pattern);
  if (segmentCache.size > 1000) segmentCache.clear();
  segmentCache.set(pattern, result);
  return result;
}

function translate(pattern: string): RegExp | null {
  let source = "";
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i] as string;
    if (c === "*") source += "[^/]*";
    else if (c === "?") source += "[^/]";
    else if (c === "\\") {
      i++;
      if (i >= pattern.length) return null;
      source += escapeChar(pattern[i] as string);
    } else if (c === "[") {
      const parsed = characterClass(pattern, i);
      if (!parsed) return null;
      source += parsed.source;
      i = parsed.end;
    } else source += escapeChar(c);
  }
  return new RegExp(`^${source}$`, "su");
}

/** The class opened at `start` (`[abc]`, `[a-z]`, `[^x]`; a `]` first in the class is literal, as in Go). */
function characterClass(pattern: string, start: number): { source: string; end: number } | undefined {
  let i = start + 1;
  let source = "[";
  if (pattern[i] === "^") {
    source += "^";
    i++;
  }
  let count = 0;
  for (; i < pattern.length; i++) {
    let c = pattern[i] as string;
    if (c === "]" && count > 0) return { source: `${source}]`, end: i };
    if (c === "\\") {
      i++;
      if (i >= pattern.length) return undefined;
      c = pattern[i] as string;
      source += escapeClassChar(c);
    } else source += c === "-" && count > 0 ? "-" : escapeClassChar(c);
    count++;
  }
  return undefined;
}

const SYNTAX = new Set([..."^$\\.*+?()[]{}|/"]);

function escapeChar(c: string): string {
  return SYNTAX.has(c) ? `\\${c}` : c;
}

function escapeClassChar(c: string): string {
  return SYNTAX.has(c) || c === "-" ? `\\${c}` : c;
}

function matchSegments(patterns: readonly string[], parts: readonly string[], pi: number, si: number): boolean {
  if (pi === patterns.length) return si === parts.length;
  const pattern = patterns[pi] as string;
  if (pattern === "**") {
    for (let i = si; i <= parts.length; i++) if (matchSegments(patterns, parts, pi + 1, i)) return true;
    return false;
  }
  if (si >= parts.length) return false;
  const re = segmentRegExp(pattern);
  return re?.test(parts[si] as string) === true && matchSegments(patterns, parts, pi + 1, si + 1);
}

/** Whether `relativePath` (slash-separated, relative to the copied or watched root) matches `pattern`. */
export function matchesPattern(pattern: string, relativePath: string): boolean {
  const p = normalizePattern(pattern);
  const path = relativePath.replace(/^\/+|\/+$/g, "");
  if (p === "" || path === "") return false;
  const parts = path.split("/");
  if (matchSegments(p.split("/"), parts, 0, 0)) return true;
  if (!p.includes("/")) {
    const re = segmentRegExp(p);
    return re?.test(parts[parts.length - 1] as string) === true;
  }
  return false;
}

export function matchesAny(patterns: readonly string[], relativePath: string): boolean {
  return patterns.some((pattern) => matchesPattern(pattern, relativePath));
}
