import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { matchesAny, matchesPattern, normalizePattern } from "../../src/protocol/path-patterns.ts";

describe("path patterns (Slicer's exclude and watch globs)", () => {
  test("a pattern without a slash also matches the base name at any depth", () => {
    assert.equal(matchesPattern("*.log", "debug.log"), true);
    assert.equal(matchesPattern("*.log", "a/b/debug.log"), true);
    assert.equal(matchesPattern("*.log", "a/b/debug.txt"), false);
    assert.equal(matchesPattern("node_modules", "web/node_modules"), true);
  });

  test("a pattern with a slash matches the whole relative path, segment by segment", () => {
    assert.equal(matchesPattern("bin/*", "bin/tool"), true);
    assert.equal(matchesPattern("bin/*", "src/bin/tool"), false);
    assert.equal(matchesPattern("bin/*", "bin/a/b"), false, "* never crosses a slash");
  });

  test("** spans any number of segments, none included", () => {
    assert.equal(matchesPattern("**/*.go", "main.go"), true);
    assert.equal(matchesPattern("**/*.go", "cmd/x/main.go"), true);
    assert.equal(matchesPattern("src/**/test", "src/test"), true);
    assert.equal(matchesPattern("src/**/test", "src/a/b/test"), true);
    assert.equal(matchesPattern("src/**", "src/a/b"), true);
  });

  test("?, classes, negation and escapes follow Go's path.Match", () => {
    assert.equal(matchesPattern("file?.txt", "file1.txt"), true);
    assert.equal(matchesPattern("file?.txt", "file12.txt"), false);
    assert.equal(matchesPattern("[a-c]x", "bx"), true);
    assert.equal(matchesPattern("[a-c]x", "dx"), false);
    assert.equal(matchesPattern("[^a-c]x", "dx"), true);
    assert.equal(matchesPattern("[]]x", "]x"), true, "a ] first in a class is literal");
    assert.equal(matchesPattern("\\*star", "*star"), true);
    assert.equal(matchesPattern("\\*star", "astar"), false);
    assert.equal(matchesPattern("a.b", "axb"), false, "regular expression characters are literal");
    assert.equal(matchesPattern("(x)+", "(x)+"), true);
  });

  test("malformed patterns match nothing", () => {
    assert.equal(matchesPattern("[abc", "a"), false);
    assert.equal(matchesPattern("abc\\", "abc"), false);
  });

  test("patterns are trimmed like the Go SDK trims them", () => {
    assert.equal(normalizePattern("  ./build/ "), "build");
    assert.equal(normalizePattern("/abs"), "abs");
    assert.equal(matchesPattern("./build/", "build"), true);
    assert.equal(matchesPattern("", "anything"), false);
  });

  test("unicode names and spaces", () => {
    assert.equal(matchesPattern("*目录", "a/ünïcödé 目录"), true);
    assert.equal(matchesPattern("dir with space/*", "dir with space/f ☃.txt"), true);
    assert.equal(matchesAny(["*.tmp", "*.log"], "x/y.log"), true);
    assert.equal(matchesAny([], "x"), false);
  });
});
