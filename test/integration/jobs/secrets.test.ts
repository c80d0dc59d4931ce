// Secrets end to end: stored by a real daemon in 0600 files, delivered into a real VM's
// /run/corral/secrets at boot, live on every change, and again after a daemon restart.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { readdirSync, statSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { request } from "undici";
import { TestDaemon } from "../../helpers/daemon-process.ts";

const CORRAL = fileURLToPath(new URL("../../../corral", import.meta.url));
const DIR = "/run/corral/secrets";

interface Answer {
  status: number;
  body: Record<string, unknown> & { error?: string; code?: string };
}

async function call(url: string, method: string, path: string, body?: unknown): Promise<Answer> {
  const payload = body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body);
  const response = await request(`${url}${path}`, { method: method as "GET", body: payload, headers: payload === undefined ? {} : { "content-type": "application/json" } });
  const text = await response.body.text();
  return { status: response.statusCode, body: text ? (JSON.parse(text) as Answer["body"]) : {} };
}

function assertError(answer: Answer, status: number, code: string, message?: RegExp): void {
  assert.equal(answer.status, status, JSON.stringify(answer.body));
  assert.equal(answer.body.code, code);
  assert.equal(typeof answer.body.error, "string");
  if (message) assert.match(answer.body.error ?? "", message);
}

const b64 = (text: string | Buffer): string => Buffer.from(text).toString("base64");

function corral(args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(CORRAL, args, { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (c: Buffer) => (stdout += c.toString()));
    child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
    child.on("close", (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

// Distinctive values, so the test can be sure none of them ever reaches the daemon's log.
const EARLY = `early-${randomBytes(8).toString("hex")}`;
const LIVE = `live-${randomBytes(8).toString("hex")}`;
const CHANGED = `changed-${randomBytes(8).toString("hex")}`;

describe("secrets", { timeout: 900_000 }, () => {
  let daemon: TestDaemon;
  let host: string;

  const guest = async (script: string): Promise<string> => {
    const result = await daemon.client.execBuffered(host, { cmd: "sh", args: ["-c", script] });
    assert.equal(result.exit_code, 0, `${script}: ${result.stderr}`);
    return result.stdout;
  };

  /** Polls the guest until `script` prints `expected` (live delivery is asynchronous). */
  const eventually = async (script: string, expected: string): Promise<void> => {
    const deadline = Date.now() + 30_000;
    let last = "";
    while (Date.now() < deadline) {
      const result = await daemon.client.execBuffered(host, { cmd: "sh", args: ["-c", script] });
      last = result.stdout;
      if (last === expected) return;
      await sleep(100);
    }
    assert.equal(last, expected, `${script} never printed what was expected`);
  };

  before(async () => {
    daemon = await TestDaemon.create();
    await daemon.start();
    // Created before any VM exists: it must be there when the VM boots.
    const created = await call(daemon.url, "POST", "/secrets", { name: "early", data: b64(EARLY), permissions: "0640", uid: 65534, gid: 65534 });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    host = (await daemon.client.createNode("sbox", {}, { wait: "agent", timeout: "120s" })).hostname;
  });

  after(async () => {
    await daemon.dispose();
  });

  test("a secret created before the VM booted is there when its agent is ready, with its mode and owner, on a tmpfs", async () => {
    assert.equal(await guest(`cat ${DIR}/early`), EARLY);
    assert.equal(await guest(`stat -c '%a %u %g' ${DIR}/early`), "640 65534 65534\n");
    assert.equal(await guest("stat -f -c %T /run/corral/secrets"), "tmpfs\n", "never on the VM's disk");
    assert.equal(await guest(`ls -A ${DIR}`), "early\n", "no temporary files left");
  });

  test("POST answers 201 with the metadata (modified_at and mod_time), never the data; the host keeps 0600 files in a 0700 folder", async () => {
    const answer = await call(daemon.url, "POST", "/secrets", { name: "api.token_v2", data: b64("t0k3n") });
    assert.equal(answer.status, 201);
    assert.deepEqual(Object.keys(answer.body).sort(), ["gid", "mod_time", "modified_at", "name", "permissions", "size", "uid"]);
    assert.equal(answer.body.size, 5);
    assert.equal(answer.body.permissions, "0600", "the default mode");
    assert.equal(answer.body.modified_at, answer.body.mod_time);
    const list = await daemon.client.secrets.list();
    assert.deepEqual(
      list.map((s) => s.name),
      ["api.token_v2", "early"],
    );
    assert.equal(JSON.stringify(list).includes(EARLY), false);
    const folder = join(daemon.stateDir, "secrets");
    assert.equal(statSync(folder).mode & 0o777, 0o700);
    assert.deepEqual(readdirSync(folder).sort(), ["api.token_v2", "early"]);
    for (const name of readdirSync(folder)) assert.equal(statSync(join(folder, name)).mode & 0o777, 0o600, name);
    await eventually(`cat ${DIR}/api.token_v2`, "t0k3n");
    await daemon.client.secrets.remove("api.token_v2");
  });

  test("a duplicate name is 409 and the stored secret is unchanged", async () => {
    assertError(await call(daemon.url, "POST", "/secrets", { name: "early", data: b64("other") }), 409, "secret_exists", /"early" already exists/);
    assert.equal(await guest(`cat ${DIR}/early`), EARLY);
    assert.equal((await daemon.client.secrets.list()).find((s) => s.name === "early")?.size, EARLY.length);
  });

  test("bad input is a 400 (or 413) naming the problem, and nothing stored is lost", async () => {
    const before = await daemon.client.secrets.list();
    const post = (body: unknown): Promise<Answer> => call(daemon.url, "POST", "/secrets", body);
    assertError(await post({ name: "x", data: "not base64!" }), 400, "invalid_request", /"data".*base64/);
    assertError(await post({ name: "x", data: b64("v"), permissions: "999" }), 400, "invalid_request", /permissions "999"/);
    assertError(await post({ name: "x", data: b64("v"), permissions: "abc" }), 400, "invalid_request", /permissions "abc"/);
    assertError(await post({ name: "../x", data: b64("v") }), 400, "invalid_request", /"name"/);
    assertError(await post({ name: "a..b", data: b64("v") }), 400, "invalid_name", /Invalid secret name "a\.\.b"/);
    assertError(await post({ name: ".hidden", data: b64("v") }), 400, "invalid_request", /"name"/);
    assertError(await post({ data: b64("v") }), 400, "invalid_request", /Missing body field "name"/);
    assertError(await post({ name: "x" }), 400, "invalid_request", /Missing body field "data"/);
    assertError(await post({ name: "x", data: b64("v"), owner: "me" }), 400, "invalid_request", /Unknown body field "owner"/);
    assertError(await post({ name: "x", data: b64("v"), uid: -1 }), 400, "invalid_request", /"uid"/);
    assertError(await post({ name: "x", data: b64("v"), uid: "0" }), 400, "invalid_request", /"uid"/);
    assertError(await post("{broken"), 400, "invalid_json");
    assertError(await post(undefined), 400, "invalid_request");
    assertError(await post({ name: "x", data: Buffer.alloc(4 * 1024 * 1024 + 3).toString("base64") }), 413, "payload_too_large", /4194304/);
    assertError(await post({ name: "x", data: "A".repeat(7 * 1024 * 1024) }), 413, "payload_too_large");
    assertError(await call(daemon.url, "PATCH", "/secrets/..%2Fx", { data: b64("v") }), 400, "invalid_name", /secret name/);
    assertError(await call(daemon.url, "DELETE", "/secrets/..%2F..%2Fcorral.db"), 400, "invalid_name");
    assertError(await call(daemon.url, "PATCH", "/secrets/early", { data: "%%%" }), 400, "invalid_request", /base64/);
    assertError(await call(daemon.url, "PATCH", "/secrets/early", { permissions: "0999" }), 400, "invalid_request", /permissions/);
    assertError(await call(daemon.url, "PATCH", "/secrets/nope", { data: b64("v") }), 404, "secret_not_found");
    assertError(await call(daemon.url, "DELETE", "/secrets/nope"), 404, "secret_not_found");
    assert.deepEqual(await daemon.client.secrets.list(), before, "nothing changed");
    assert.equal(await guest(`cat ${DIR}/early`), EARLY);
    assert.deepEqual(readdirSync(join(daemon.stateDir, "secrets")), ["early"], "no stray files on the host");
  });

  test("created, updated and deleted while the VM runs: the guest follows live", async () => {
    const created = await daemon.client.secrets.create("live", { data: LIVE });
    assert.equal(created.size, LIVE.length);
    await eventually(`cat ${DIR}/live`, LIVE);

    const updated = await daemon.client.secrets.update("live", { data: CHANGED });
    assert.ok(Date.parse(updated.modified_at) >= Date.parse(created.modified_at));
    await eventually(`cat ${DIR}/live`, CHANGED);

    await daemon.client.secrets.update("live", { permissions: "0444", uid: 65534, gid: 65534 });
    await eventually(`stat -c '%a %u %g' ${DIR}/live; cat ${DIR}/live`, `444 65534 65534\n${CHANGED}`);

    // Slicer's Go SDK always sends "data"; an empty one keeps the content.
    const goStyle = await call(daemon.url, "PATCH", "/secrets/live", { data: "", permissions: "0600" });
    assert.equal(goStyle.status, 200);
    assert.equal(goStyle.body.size, CHANGED.length);
    await eventually(`stat -c '%a' ${DIR}/live; cat ${DIR}/live`, `600\n${CHANGED}`);

    const deleted = await call(daemon.url, "DELETE", "/secrets/live");
    assert.equal(deleted.status, 200);
    await eventually(`ls -A ${DIR}`, "early\n");
    assertError(await call(daemon.url, "DELETE", "/secrets/live"), 404, "secret_not_found");
  });

  test("a 4 MiB binary secret arrives whole", async () => {
    const data = randomBytes(4 * 1024 * 1024);
    await daemon.client.secrets.create("big.bin", { data });
    const digest = createHash("sha256").update(data).digest("hex");
    await eventually(`sha256sum ${DIR}/big.bin | cut -d' ' -f1`, `${digest}\n`);
    await daemon.client.secrets.remove("big.bin");
    await eventually(`ls -A ${DIR}`, "early\n");
  });

  test("after a daemon kill -9 and restart the VM's secrets are brought back in line", async () => {
    await daemon.client.secrets.create("restart", { data: "before" });
    await eventually(`cat ${DIR}/restart`, "before");
    // Damage the guest's copy; the reconnect must repair it.
    await guest(`rm ${DIR}/restart; echo tampered > ${DIR}/early; echo stray > ${DIR}/stray`);
    await daemon.kill9();
    await daemon.start();
    await eventually(`ls -A ${DIR}; cat ${DIR}/early ${DIR}/restart`, `early\nrestart\n${EARLY}before`);
    await daemon.client.secrets.remove("restart");
    await eventually(`ls -A ${DIR}`, "early\n");
  });

  test("the CLI: secret create, list, update, remove", async () => {
    const env = { CORRAL_URL: daemon.url };
    const file = join(daemon.stateDir, "cli-secret.txt");
    await writeFile(file, "from a file\n");
    const created = await corral(["secret", "create", "cli-secret", "--from-literal", "lit3ral", "--mode", "0644", "--uid", "65534"], env);
    assert.equal(created.code, 0, created.stderr);
    assert.match(created.stdout, /^Created secret cli-secret \(7 bytes, 0644, uid 65534, gid 0\)\n$/);
    const duplicate = await corral(["secret", "create", "cli-secret", "--from-literal", "x"], env);
    assert.equal(duplicate.code, 1);
    assert.match(duplicate.stderr, /^corral: Secret "cli-secret" already exists.*\(409 secret_exists\)\n$/);
    const badMode = await corral(["secret", "create", "other", "--from-literal", "x", "--mode", "999"], env);
    assert.match(badMode.stderr, /^corral: Invalid permissions "999".*\(400 invalid_request\)\n$/);
    const list = await corral(["secret", "list", "--json"], env);
    assert.deepEqual(
      (JSON.parse(list.stdout) as { name: string }[]).map((s) => s.name),
      ["cli-secret", "early"],
    );
    const table = await corral(["secret", "list"], env);
    assert.match(table.stdout, /^NAME\s+SIZE\s+MODE\s+UID\s+GID\s+MODIFIED\ncli-secret\s+7 B\s+0644\s+65534\s+0 /);
    const updated = await corral(["secret", "update", "cli-secret", "--from-file", file], env);
    assert.equal(updated.code, 0, updated.stderr);
    await eventually(`cat ${DIR}/cli-secret`, "from a file\n");
    const removed = await corral(["secret", "remove", "cli-secret"], env);
    assert.equal(removed.code, 0, removed.stderr);
    await eventually(`ls -A ${DIR}`, "early\n");
  });

  test("no secret value ever reaches the daemon's log", async () => {
    assert.ok(daemon.log.includes("VM agent ready"), "the log was captured");
    for (const value of [EARLY, LIVE, CHANGED, "t0k3n", "lit3ral", "from a file"]) {
      assert.equal(daemon.log.includes(value), false, `${value} is in the log`);
      assert.equal(daemon.log.includes(b64(value)), false, `${value} (base64) is in the log`);
    }
  });
});
