import { test, describe, after } from "node:test";
import assert from "node:assert/strict";
import { Type } from "@sinclair/typebox";
import Fastify from "fastify";
import { installJsonBodies } from "../../src/http/body-parsers.ts";
import { describeValidation } from "../../src/http/error-handler.ts";
import { installErrorHandling } from "../../src/http/error-handler.ts";
import { installValidators } from "../../src/http/validators.ts";
import { CorralError } from "../../src/protocol/errors.ts";

type AjvError = Parameters<typeof describeValidation>[0][number];

const required = (missingProperty: string, instancePath = ""): AjvError => ({
  instancePath,
  keyword: "required",
  params: { missingProperty },
  message: `must have required property '${missingProperty}'`,
});
const additional = (additionalProperty: string, instancePath = ""): AjvError => ({
  instancePath,
  keyword: "additionalProperties",
  params: { additionalProperty },
  message: "must NOT have additional properties",
});
const pattern = (instancePath: string, p: string, description?: string): AjvError => ({
  instancePath,
  keyword: "pattern",
  params: { pattern: p },
  message: `must match pattern "${p}"`,
  ...(description === undefined ? {} : { parentSchema: { description } }),
});
const type = (instancePath: string, t: string): AjvError => ({ instancePath, keyword: "type", params: { type: t }, message: `must be ${t}` });

describe("describeValidation", { timeout: 20_000 }, () => {
  test("required: names the missing field and where it belongs", () => {
    assert.equal(describeValidation([required("name")], "body"), 'Missing body field "name"');
    assert.equal(describeValidation([required("cmd")], "querystring"), 'Missing query parameter "cmd"');
    assert.equal(describeValidation([required("hostname")], "params"), 'Missing path parameter "hostname"');
    assert.equal(describeValidation([required("x-token")], "headers"), 'Missing header "x-token"');
  });

  test("required: a missing nested field is named with its parent, as unknown fields are", () => {
    assert.equal(describeValidation([required("allow", "/network")], "body"), 'Missing body field "network.allow"');
    assert.equal(describeValidation([required("name", "/items/0")], "body"), 'Missing body field "items[0].name"');
  });

  test("additionalProperties: names the unknown field with its path", () => {
    assert.equal(describeValidation([additional("extra")], "body"), 'Unknown body field "extra"');
    assert.equal(describeValidation([additional("x", "/network")], "body"), 'Unknown body field "network.x"');
    assert.equal(describeValidation([additional("x", "/items/2")], "body"), 'Unknown body field "items[2].x"');
    assert.equal(describeValidation([additional("verbose")], "querystring"), 'Unknown query parameter "verbose"');
    assert.equal(describeValidation([additional("id")], "params"), 'Unknown path parameter "id"');
  });

  test("pattern: uses the schema's description when there is one, else the pattern", () => {
    assert.equal(describeValidation([pattern("/name", "^[a-z]+$", "a host group name")], "params"), 'Invalid path parameter "name": it must be a host group name');
    assert.equal(describeValidation([pattern("/name", "^[a-z]+$")], "params"), 'Invalid path parameter "name": it must be like ^[a-z]+$');
    assert.equal(describeValidation([pattern("/tag", "^t-")], "querystring"), 'Invalid query parameter "tag": it must be like ^t-');
    assert.equal(describeValidation([pattern("/ssh_keys/0", "^ssh-")], "body"), 'Invalid body field "ssh_keys[0]": it must be like ^ssh-');
    assert.equal(describeValidation([pattern("/0", "^a")], "body"), 'Invalid body field "[0]": it must be like ^a');
  });

  test("type: says what the value must be, in words", () => {
    assert.equal(describeValidation([type("/cpus", "integer")], "body"), 'Invalid body field "cpus": it must be an integer');
    assert.equal(describeValidation([type("/network/allow", "array")], "body"), 'Invalid body field "network.allow": it must be a list');
    assert.equal(describeValidation([type("/persistent", "boolean")], "body"), 'Invalid body field "persistent": it must be true or false');
    assert.equal(describeValidation([type("/lines", "integer")], "querystring"), 'Invalid query parameter "lines": it must be an integer');
    assert.equal(describeValidation([type("/id", "number")], "params"), 'Invalid path parameter "id": it must be a number');
    assert.equal(describeValidation([type("/v", "string,number")], "body"), 'Invalid body field "v": it must be a string or a number');
    assert.equal(describeValidation([type("/v", "null")], "body"), 'Invalid body field "v": it must be null');
  });

  test("type at the top level names the whole body or part", () => {
    assert.equal(describeValidation([type("", "object")], "body"), "Invalid request body: it must be a JSON object");
    assert.equal(describeValidation([type("", "object")], "querystring"), "Invalid query parameter: it must be a JSON object");
  });

  test("enum, empty strings and other keywords", () => {
    assert.equal(
      describeValidation(
        [{ instancePath: "/wait", keyword: "enum", params: { allowedValues: ["agent", "userdata"] }, message: "must be equal to one of the allowed values" }],
        "querystring",
      ),
      'Invalid query parameter "wait": it must be one of "agent", "userdata"',
    );
    assert.equal(
      describeValidation([{ instancePath: "/tags/1", keyword: "minLength", params: { limit: 1 }, message: "must NOT have fewer than 1 characters" }], "body"),
      'Invalid body field "tags[1]": it must not be empty',
    );
    assert.equal(
      describeValidation([{ instancePath: "/cpus", keyword: "maximum", params: { limit: 64 }, message: "must be <= 64" }], "body"),
      'Invalid body field "cpus": it must be <= 64',
    );
    assert.equal(describeValidation([{ instancePath: "/x", keyword: "not", params: {} }], "body"), 'Invalid body field "x": it is not allowed');
  });

  test("only the first error is described; no errors or an unknown context still give a sentence", () => {
    assert.equal(describeValidation([required("a"), required("b")], "body"), 'Missing body field "a"');
    assert.equal(describeValidation([], "body"), "The request is invalid");
    assert.equal(describeValidation([required("a")], undefined), 'Missing field "a"');
    assert.equal(describeValidation([type("/a", "string")], "cookies"), 'Invalid field "a": it must be a string');
  });
});

describe("installErrorHandling with real validation errors", { timeout: 20_000 }, () => {
  const app = Fastify({ logger: false });
  installValidators(app);
  installErrorHandling(app);
  installJsonBodies(app);
  const Body = Type.Object(
    {
      name: Type.String({ pattern: "^[a-z]+$" }),
      cpus: Type.Optional(Type.Integer({ minimum: 1, maximum: 64 })),
      network: Type.Optional(Type.Object({ allow: Type.Array(Type.String()) }, { additionalProperties: false })),
    },
    { additionalProperties: false },
  );
  const Query = Type.Object({ lines: Type.Optional(Type.Integer()), tag: Type.Optional(Type.String({ pattern: "^t-" })) }, { additionalProperties: false });
  const Params = Type.Object({ group: Type.String({ pattern: "^[a-z]+$", description: "a host group name" }) });
  app.post("/g/:group", { schema: { body: Body, querystring: Query, params: Params } }, async () => ({ ok: true }));
  app.get("/corral-error", async () => {
    throw new CorralError("vm_not_found", 'VM "x" does not exist');
  });
  app.get("/teapot", async () => {
    throw Object.assign(new Error("I refuse"), { statusCode: 418 });
  });
  app.get("/crash", async () => {
    throw new Error("secret internals at /var/lib/corral");
  });
  after(() => app.close());

  async function post(url: string, body: unknown): Promise<{ status: number; body: unknown }> {
    const res = await app.inject({ method: "POST", url, payload: JSON.stringify(body), headers: { "content-type": "application/json" } });
    return { status: res.statusCode, body: res.json() };
  }

  test("body errors are 400 invalid_request naming the field", async () => {
    assert.deepEqual(await post("/g/ok", {}), { status: 400, body: { error: 'Missing body field "name"', code: "invalid_request" } });
    assert.deepEqual(await post("/g/ok", { name: "a", network: {} }), { status: 400, body: { error: 'Missing body field "network.allow"', code: "invalid_request" } });
    assert.deepEqual(await post("/g/ok", { name: "a", extra: 1 }), { status: 400, body: { error: 'Unknown body field "extra"', code: "invalid_request" } });
    assert.deepEqual(await post("/g/ok", { name: "a", network: { allow: [], x: 1 } }), { status: 400, body: { error: 'Unknown body field "network.x"', code: "invalid_request" } });
    assert.deepEqual(await post("/g/ok", { name: "A" }), { status: 400, body: { error: 'Invalid body field "name": it must be like ^[a-z]+$', code: "invalid_request" } });
    assert.deepEqual(await post("/g/ok", { name: "a", cpus: "2" }), { status: 400, body: { error: 'Invalid body field "cpus": it must be an integer', code: "invalid_request" } });
    assert.deepEqual(await post("/g/ok", { name: "a", cpus: 65 }), { status: 400, body: { error: 'Invalid body field "cpus": it must be <= 64', code: "invalid_request" } });
    assert.deepEqual(await post("/g/ok", { name: "a", network: { allow: "x" } }), {
      status: 400,
      body: { error: 'Invalid body field "network.allow": it must be a list', code: "invalid_request" },
    });
    assert.deepEqual(await post("/g/ok", [1]), { status: 400, body: { error: "Invalid request body: it must be a JSON object", code: "invalid_request" } });
    assert.deepEqual(await post("/g/ok", { name: "ok" }), { status: 200, body: { ok: true } });
  });

  test("query string errors are 400 invalid_request naming the parameter", async () => {
    assert.deepEqual(await post("/g/ok?lines=many", { name: "a" }), {
      status: 400,
      body: { error: 'Invalid query parameter "lines": it must be an integer', code: "invalid_request" },
    });
    assert.deepEqual(await post("/g/ok?tag=x", { name: "a" }), { status: 400, body: { error: 'Invalid query parameter "tag": it must be like ^t-', code: "invalid_request" } });
    assert.deepEqual(await post("/g/ok?verbose=1", { name: "a" }), { status: 400, body: { error: 'Unknown query parameter "verbose"', code: "invalid_request" } });
    assert.deepEqual(await post("/g/ok?lines=5&tag=t-1", { name: "a" }), { status: 200, body: { ok: true } });
  });

  test("path parameter errors are 400 invalid_name using the schema's description", async () => {
    assert.deepEqual(await post("/g/Bad1", { name: "a" }), { status: 400, body: { error: 'Invalid path parameter "group": it must be a host group name', code: "invalid_name" } });
  });

  test("a CorralError keeps its status and code", async () => {
    const res = await app.inject({ url: "/corral-error" });
    assert.equal(res.statusCode, 404);
    assert.deepEqual(res.json(), { error: 'VM "x" does not exist', code: "vm_not_found" });
  });

  test("other 4xx errors keep their status with code invalid_request", async () => {
    const res = await app.inject({ url: "/teapot" });
    assert.equal(res.statusCode, 418);
    assert.deepEqual(res.json(), { error: "I refuse", code: "invalid_request" });
  });

  test("an unexpected error is a 500 that does not echo its message", async () => {
    const res = await app.inject({ url: "/crash" });
    assert.equal(res.statusCode, 500);
    assert.deepEqual(res.json(), { error: "Internal error: see the daemon log", code: "internal" });
    assert.ok(!res.body.includes("secret"));
  });

  test("a body that is not JSON is a 400 invalid_json; an oversized one a 413", async () => {
    const bad = await app.inject({ method: "POST", url: "/g/ok", payload: "{nope", headers: { "content-type": "application/json" } });
    assert.equal(bad.statusCode, 400);
    assert.equal((bad.json() as { code: string }).code, "invalid_json");
    const big = await app.inject({ method: "POST", url: "/g/ok", payload: `"${"x".repeat(1024 * 1024 + 10)}"`, headers: { "content-type": "application/json" } });
    assert.equal(big.statusCode, 413);
    assert.deepEqual(big.json(), { error: "The request body is too large", code: "payload_too_large" });
  });
});
