import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { Type } from "@sinclair/typebox";
import { describeSchemaErrors, displayPath } from "../../src/util/schema-errors.ts";

describe("displayPath", () => {
  test("object keys join with dots, array indexes use brackets", () => {
    assert.equal(displayPath("/config/host_groups/1/vcpu"), "config.host_groups[1].vcpu");
    assert.equal(displayPath("/a/0/1/b"), "a[0][1].b");
  });

  test("a root prefixes the path", () => {
    assert.equal(displayPath("/host_groups/0", "config"), "config.host_groups[0]");
    assert.equal(displayPath("/0/x", "list"), "list[0].x");
  });

  test("the empty pointer is the top level, or the root when given", () => {
    assert.equal(displayPath(""), "(top level)");
    assert.equal(displayPath("", "body"), "body");
  });

  test("JSON pointer escapes are undone (~1 is '/', ~0 is '~')", () => {
    assert.equal(displayPath("/a~1b/c~0d"), "a/b.c~d");
    assert.equal(displayPath("/~01"), "~1");
  });

  test("an index at the top level has no leading dot", () => {
    assert.equal(displayPath("/3"), "[3]");
    assert.equal(displayPath("/3/name"), "[3].name");
  });
});

describe("describeSchemaErrors", () => {
  const Schema = Type.Object(
    {
      count: Type.Integer({ minimum: 1, maximum: 5 }),
      ratio: Type.Optional(Type.Number({ minimum: 0.5, maximum: 2 })),
      mode: Type.Optional(Type.Union([Type.Literal("auto"), Type.Literal("kvm"), Type.Literal(3)])),
      either: Type.Optional(Type.Union([Type.String(), Type.Number()])),
      slug: Type.Optional(Type.String({ pattern: "^[a-z]+$", description: "lower-case letters" })),
      code: Type.Optional(Type.String({ pattern: "^[0-9]+$" })),
      label: Type.Optional(Type.String({ minLength: 1, maxLength: 3 })),
      enabled: Type.Optional(Type.Boolean()),
      tags: Type.Optional(Type.Array(Type.String())),
      nested: Type.Optional(Type.Object({ port: Type.Integer() }, { additionalProperties: false })),
    },
    { additionalProperties: false },
  );

  test("a valid value has no problems", () => {
    assert.deepEqual(describeSchemaErrors(Schema, { count: 3 }), []);
    assert.deepEqual(describeSchemaErrors(Schema, { count: 1, ratio: 2, mode: 3, either: "x", slug: "ab", label: "abc", tags: [], nested: { port: 1 } }), []);
  });

  test("unknown keys are named without their value", () => {
    assert.deepEqual(describeSchemaErrors(Schema, { count: 1, colour: "red", size: 3 }, "config"), ["config.colour is not a known setting", "config.size is not a known setting"]);
    assert.deepEqual(describeSchemaErrors(Schema, { count: 1, nested: { port: 1, host: "x" } }), ["nested.host is not a known setting"]);
  });

  test("missing required keys are named without a value", () => {
    assert.deepEqual(describeSchemaErrors(Schema, {}, "body"), ["body.count is required"]);
    assert.deepEqual(describeSchemaErrors(Schema, { count: 1, nested: {} }), ["nested.port is required"]);
  });

  test("wrong types say what was expected and what was given", () => {
    assert.deepEqual(describeSchemaErrors(Schema, { count: "two" }, "config"), ['config.count must be an integer, got "two"']);
    assert.deepEqual(describeSchemaErrors(Schema, { count: 1.5 }), ["count must be an integer, got 1.5"]);
    assert.deepEqual(describeSchemaErrors(Schema, { count: 1, ratio: "1" }), ['ratio must be a number, got "1"']);
    assert.deepEqual(describeSchemaErrors(Schema, { count: 1, slug: 7 }), ["slug must be a string, got 7"]);
    assert.deepEqual(describeSchemaErrors(Schema, { count: 1, enabled: "yes" }), ['enabled must be true or false, got "yes"']);
    assert.deepEqual(describeSchemaErrors(Schema, { count: 1, tags: "a,b" }), ['tags must be a list, got "a,b"']);
    assert.deepEqual(describeSchemaErrors(Schema, { count: 1, nested: [1] }), ["nested must be a mapping, got [1]"]);
    assert.deepEqual(describeSchemaErrors(Schema, { count: 1, nested: null }), ["nested must be a mapping, got null"]);
  });

  test("a value of the wrong type at the top level", () => {
    assert.deepEqual(describeSchemaErrors(Schema, "hello"), ['(top level) must be a mapping, got "hello"']);
    assert.deepEqual(describeSchemaErrors(Schema, null, "config"), ["config must be a mapping, got null"]);
    assert.deepEqual(describeSchemaErrors(Schema, [1, 2]), ["(top level) must be a mapping, got [1,2]"]);
  });

  test("bounds quote the schema's limit", () => {
    assert.deepEqual(describeSchemaErrors(Schema, { count: 0 }), ["count must be at least 1, got 0"]);
    assert.deepEqual(describeSchemaErrors(Schema, { count: 6 }), ["count must be at most 5, got 6"]);
    assert.deepEqual(describeSchemaErrors(Schema, { count: 1, ratio: 0.25 }), ["ratio must be at least 0.5, got 0.25"]);
    assert.deepEqual(describeSchemaErrors(Schema, { count: 1, ratio: 3 }), ["ratio must be at most 2, got 3"]);
  });

  test("a union of literals lists the allowed values", () => {
    assert.deepEqual(describeSchemaErrors(Schema, { count: 1, mode: "fast" }, "config"), ['config.mode must be one of "auto", "kvm", 3, got "fast"']);
  });

  test("a union of types reports one sentence for the path, not one per branch", () => {
    assert.deepEqual(describeSchemaErrors(Schema, { count: 1, either: true }), ["either has the wrong type, got true"]);
  });

  test("a pattern with a description uses the description", () => {
    assert.deepEqual(describeSchemaErrors(Schema, { count: 1, slug: "ABC" }), ['slug must be lower-case letters, got "ABC"']);
  });

  test("a pattern without a description shows the pattern", () => {
    assert.deepEqual(describeSchemaErrors(Schema, { count: 1, code: "12a" }), ['code must match ^[0-9]+$, got "12a"']);
  });

  test("string lengths", () => {
    assert.deepEqual(describeSchemaErrors(Schema, { count: 1, label: "" }), ['label must not be empty, got ""']);
    assert.deepEqual(describeSchemaErrors(Schema, { count: 1, label: "abcd" }), ['label must be at most 3 characters, got "abcd"']);
  });

  test("array items are named by index", () => {
    assert.deepEqual(describeSchemaErrors(Schema, { count: 1, tags: ["ok", 2, "ok", false] }, "config"), [
      "config.tags[1] must be a string, got 2",
      "config.tags[3] must be a string, got false",
    ]);
  });

  test("several problems are all reported, in document order", () => {
    assert.deepEqual(describeSchemaErrors(Schema, { count: "x", extra: 1, slug: "A" }, "c"), [
      "c.extra is not a known setting",
      'c.count must be an integer, got "x"',
      'c.slug must be lower-case letters, got "A"',
    ]);
  });

  test("an error type without its own sentence falls back to TypeBox's message, lower-cased", () => {
    const Multiple = Type.Number({ multipleOf: 5 });
    assert.deepEqual(describeSchemaErrors(Multiple, 7, "n"), ["n expected number to be a multiple of 5, got 7"]);
  });

  test("values that JSON cannot show are not reported as null", () => {
    const [message] = describeSchemaErrors(Type.Number({ maximum: 5 }), Number.POSITIVE_INFINITY, "n");
    assert.ok(message !== undefined);
    assert.doesNotMatch(message, /got null$/);
  });
});
