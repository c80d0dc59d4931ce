import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { CorralError } from "../../src/protocol/errors.ts";
import {
  assertHostgroupName,
  assertHostname,
  assertImageName,
  HOSTGROUP_PATTERN,
  HOSTNAME_PATTERN,
  IMAGE_PATTERN,
  isHostgroupName,
  isHostname,
  isImageName,
} from "../../src/protocol/names.ts";

// Names that must never reach a host path or a process argument, whatever the kind of name.
const TRAVERSAL = ["", ".", "..", "../x", "x/..", "a/b", "/etc", "/", "a\\b", "..\\x", "a\0b", "a b", " a", "a ", "a\n", "\na", "a\tb", "~", "$x", "a;b", "a:b", "*", "-"];

function throwsInvalidName(fn: () => unknown, message: string): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof CorralError);
    assert.equal(err.code, "invalid_name");
    assert.equal(err.status, 400);
    assert.equal(err.message, message);
    return true;
  });
}

describe("hostnames", () => {
  test("lower-case DNS labels are accepted", () => {
    for (const name of ["a", "0", "sbox-1", "web-12", "a1", "1a", "a-b-c", "9-9", "x".repeat(63), `a${"-".repeat(61)}b`]) {
      assert.equal(isHostname(name), true, name);
      assert.equal(assertHostname(name), name);
    }
  });

  test("traversal and separator attempts are rejected", () => {
    for (const name of TRAVERSAL) assert.equal(isHostname(name), false, JSON.stringify(name));
  });

  test("upper case, dots, underscores and non-ASCII are rejected", () => {
    for (const name of ["A", "Sbox-1", "sbox-1A", "a.b", "a_b", "café", "ａ"]) assert.equal(isHostname(name), false, name);
  });

  test("leading or trailing dash is rejected", () => {
    for (const name of ["-a", "a-", "-", "--", "-sbox-1"]) assert.equal(isHostname(name), false, name);
  });

  test("63 characters is the limit", () => {
    assert.equal(isHostname("a".repeat(63)), true);
    assert.equal(isHostname("a".repeat(64)), false);
    assert.equal(isHostname("a".repeat(200)), false);
  });

  test("a trailing newline does not slip past the end anchor", () => {
    assert.equal(isHostname("sbox-1\n"), false);
    assert.equal(isHostname("sbox-1\r\n"), false);
  });

  test("assertHostname throws invalid_name quoting the name", () => {
    throwsInvalidName(() => assertHostname("../etc"), 'Invalid hostname "../etc": use lower-case letters, digits and dashes (1-63 characters)');
    throwsInvalidName(() => assertHostname(""), 'Invalid hostname "": use lower-case letters, digits and dashes (1-63 characters)');
    throwsInvalidName(() => assertHostname("a\nb"), 'Invalid hostname "a\\nb": use lower-case letters, digits and dashes (1-63 characters)');
  });

  test("the exported pattern is the one applied", () => {
    assert.equal(HOSTNAME_PATTERN, "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$");
  });
});

describe("host group names", () => {
  test("a lower-case letter then letters, digits and dashes", () => {
    for (const name of ["a", "sbox", "web-1", "a1", "g-x-y", `a${"b".repeat(31)}`]) {
      assert.equal(isHostgroupName(name), true, name);
      assert.equal(assertHostgroupName(name), name);
    }
  });

  test("traversal and separator attempts are rejected", () => {
    for (const name of TRAVERSAL) assert.equal(isHostgroupName(name), false, JSON.stringify(name));
  });

  test("must start with a letter and not end with a dash", () => {
    for (const name of ["1a", "0", "-a", "a-", "9sbox", "_a"]) assert.equal(isHostgroupName(name), false, name);
  });

  test("upper case and other characters are rejected", () => {
    for (const name of ["Sbox", "sBox", "a.b", "a_b", "a/b"]) assert.equal(isHostgroupName(name), false, name);
  });

  test("32 characters is the limit, leaving room for a -N suffix in a hostname", () => {
    assert.equal(isHostgroupName("a".repeat(32)), true);
    assert.equal(isHostgroupName("a".repeat(33)), false);
    assert.equal(isHostgroupName("a".repeat(64)), false);
    assert.equal(isHostname(`${"a".repeat(32)}-99999`), true);
  });

  test("assertHostgroupName throws invalid_name quoting the name", () => {
    throwsInvalidName(() => assertHostgroupName("../x"), 'Invalid host group name "../x": use a lower-case letter, then letters, digits and dashes (1-32 characters)');
    throwsInvalidName(() => assertHostgroupName("1abc"), 'Invalid host group name "1abc": use a lower-case letter, then letters, digits and dashes (1-32 characters)');
  });

  test("the exported pattern is the one applied", () => {
    assert.equal(HOSTGROUP_PATTERN, "^[a-z]([a-z0-9-]{0,30}[a-z0-9])?$");
  });
});

describe("image names", () => {
  test("letters, digits, dot, dash and underscore", () => {
    for (const name of ["base", "ubuntu-24.04", "my_image", "a", "0", "a.b.c", "a-", "a_", "a.", "x".repeat(63)]) {
      assert.equal(isImageName(name), true, name);
      assert.equal(assertImageName(name), name);
    }
  });

  test("traversal and separator attempts are rejected", () => {
    for (const name of TRAVERSAL) assert.equal(isImageName(name), false, JSON.stringify(name));
  });

  test("'..' anywhere is rejected, even where the pattern alone would allow it", () => {
    for (const name of ["a..b", "a..", "base..", "x...y"]) assert.equal(isImageName(name), false, name);
  });

  test("must start with a letter or digit", () => {
    for (const name of [".hidden", "-x", "_x", ".a"]) assert.equal(isImageName(name), false, name);
  });

  test("upper case is rejected", () => {
    for (const name of ["Base", "BASE", "baSe"]) assert.equal(isImageName(name), false, name);
  });

  test("63 characters is the limit", () => {
    assert.equal(isImageName("a".repeat(63)), true);
    assert.equal(isImageName("a".repeat(64)), false);
  });

  test("assertImageName throws invalid_name quoting the name", () => {
    throwsInvalidName(() => assertImageName(".."), 'Invalid image name "..": use lower-case letters, digits, ".", "-" and "_" (1-63 characters)');
    throwsInvalidName(() => assertImageName("a/b"), 'Invalid image name "a/b": use lower-case letters, digits, ".", "-" and "_" (1-63 characters)');
    throwsInvalidName(() => assertImageName("a..b"), 'Invalid image name "a..b": use lower-case letters, digits, ".", "-" and "_" (1-63 characters)');
  });

  test("the exported pattern is the one applied (plus the '..' check)", () => {
    assert.equal(IMAGE_PATTERN, "^[a-z0-9][a-z0-9._-]{0,62}$");
  });
});
