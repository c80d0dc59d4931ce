// What the web dashboard needs from the controller, end to end: a real daemon (auth on) with one real VM, a
// real controller with a temporary web root. A VM's shell through the controller (Slicer's frames both ways,
// the key as ?token=, refusals answered as HTTP before the upgrade), its serial log streamed through, and
// the dashboard's files (index, client-side routes, cached assets, no way out of the root, the page shown
// before the dashboard is built).
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { mkdir, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { encodeFrame, encodeWindowSize, FRAME_TYPE, FrameDecoder } from "../../src/protocol/shell.ts";
import { TestController } from "../helpers/controller-process.ts";
import { AUTH_TEST_CONFIG, TestDaemon } from "../helpers/daemon-process.ts";
import { openAccepted, openRefused, type RawSession, type RawTarget } from "../helpers/raw-websocket.ts";
import { until } from "../helpers/until.ts";

const INDEX_HTML = "<!doctype html><title>Corral</title><div id=root></div>\n";
const ASSET = "console.log('dashboard');\n";

/** Everything the shell's data frames carried so far, as text. */
function shellText(session: RawSession): string {
  const decoder = new FrameDecoder();
  let text = "";
  for (const message of session.messages) {
    for (const frame of decoder.push(message)) if (frame.type === FRAME_TYPE.data) text += Buffer.from(frame.payload).toString("utf8");
  }
  return text;
}

/** A GET with the path sent exactly as written (fetch would resolve "..") and optional headers. */
function rawGet(
  url: string,
  path: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const req = request({ hostname, port, path, headers, method: "GET" }, (response) => {
      let body = "";
      response.setEncoding("utf8");
      response.on("data", (chunk: string) => (body += chunk));
      response.on("end", () => resolve({ status: response.statusCode ?? 0, headers: response.headers, body }));
    });
    req.once("error", reject);
    req.end();
  });
}

describe("controller: VM shell, VM logs and the dashboard's files", { timeout: 600_000 }, () => {
  let daemon: TestDaemon;
  let controller: TestController;
  let webRoot: string;
  let vm: string;
  let target: RawTarget;
  const HOST = "h1";

  before(async () => {
    webRoot = await mkdtemp(join(tmpdir(), "corral-web-"));
    await mkdir(join(webRoot, "assets"));
    await writeFile(join(webRoot, "index.html"), INDEX_HTML);
    await writeFile(join(webRoot, "assets", "app-3f2a9c.js"), ASSET);
    await writeFile(join(tmpdir(), "corral-web-outside.txt"), "outside the root\n");
    await symlink(join(tmpdir(), "corral-web-outside.txt"), join(webRoot, "assets", "escape.txt"));

    daemon = await TestDaemon.create(AUTH_TEST_CONFIG);
    controller = await TestController.create();
    await Promise.all([daemon.start(), controller.start(["--web-root", webRoot])]);
    const token = readFileSync(join(daemon.stateDir, "auth", "token"), "utf8").trim();
    const [created, registered] = await Promise.all([
      daemon.client.createNode("sbox", {}, { wait: "agent", timeout: "180s" }),
      controller.call("POST", "/api/hosts", { id: HOST, uri: daemon.url, token }),
    ]);
    assert.equal(registered.status, 201, JSON.stringify(registered.body));
    vm = created.hostname;
    target = { url: controller.url };
  });

  after(async () => {
    await controller?.dispose();
    await daemon?.dispose();
    await rm(webRoot, { recursive: true, force: true });
    await rm(join(tmpdir(), "corral-web-outside.txt"), { force: true });
  });

  test("shell: frames pass both ways with the key as ?token=; the shell's exit status reaches the browser", async () => {
    const path = `/api/hosts/${HOST}/vms/${vm}/shell`;
    const noKey = await openRefused(target, path);
    assert.deepEqual([noKey.status, noKey.body.code], [401, "unauthorized"]);
    const wrongKey = await openRefused(target, `${path}?token=not-the-key-0123456789`);
    assert.equal(wrongKey.status, 401);

    const session = await openAccepted(target, `${path}?token=${controller.apiKey}&cwd=/tmp`);
    session.ws.send(encodeWindowSize(100, 30));
    session.ws.send(encodeFrame(FRAME_TYPE.data, Buffer.from("echo hello\n")));
    await until(() => (/\r\nhello\r\n/.test(shellText(session)) ? true : undefined), `hello in ${JSON.stringify(shellText(session).slice(-300))}`, 60_000);
    session.ws.send(encodeFrame(FRAME_TYPE.data, Buffer.from("stty size; pwd\n")));
    await until(
      () => (/\r\n30 100\r\n\/tmp\r\n/.test(shellText(session)) ? true : undefined),
      `the window size and cwd in ${JSON.stringify(shellText(session).slice(-300))}`,
      30_000,
    );

    session.ws.send(encodeFrame(FRAME_TYPE.data, Buffer.from("exit 3\n")));
    assert.deepEqual(await session.closed, { code: 1000, reason: "Shell exited with code 3" });
    assert.deepEqual([...(session.messages.at(-1) as Buffer)], [FRAME_TYPE.sessionClose, 0, 0, 0, 0], "the session-close frame, unchanged");
  });

  test("shell: refusals come before the upgrade as JSON (unknown host or VM 404, plain GET 426, bad query 400)", async () => {
    const key = `token=${controller.apiKey}`;
    const unknownHost = await openRefused(target, `/api/hosts/nope/vms/${vm}/shell?${key}`);
    assert.deepEqual([unknownHost.status, unknownHost.body.code], [404, "host_not_found"]);
    const unknownVm = await openRefused(target, `/api/hosts/${HOST}/vms/sbox-99/shell?${key}`);
    assert.deepEqual([unknownVm.status, unknownVm.body.code], [404, "vm_not_found"], JSON.stringify(unknownVm.body));
    const badQuery = await openRefused(target, `/api/hosts/${HOST}/vms/${vm}/shell?${key}&uid=-1`);
    assert.deepEqual([badQuery.status, badQuery.body.code], [400, "invalid_request"]);
    const plain = await controller.call<{ error: string; code: string }>("GET", `/api/hosts/${HOST}/vms/${vm}/shell`);
    assert.deepEqual([plain.status, plain.body.code], [426, "upgrade_required"]);
  });

  test("logs: the serial console streamed from the daemon, its query passed on and checked", async () => {
    const response = await fetch(`${controller.url}/api/hosts/${HOST}/vms/${vm}/logs?lines=0`, { headers: { authorization: `Bearer ${controller.apiKey}` } });
    assert.equal(response.status, 200);
    assert.match(response.headers.get("content-type") ?? "", /^application\/json/);
    const logs = (await response.json()) as { hostname: string; lines: number; content: string };
    assert.equal(logs.hostname, vm);
    assert.match(logs.content, /corral-agent: .* serving on/);
    const two = await controller.call<{ lines: number; content: string }>("GET", `/api/hosts/${HOST}/vms/${vm}/logs?lines=2`);
    assert.equal(two.body.lines, 2);
    assert.equal(two.body.content.trimEnd().split("\n").length, 2);

    const cases: [string, number, string][] = [
      [`/api/hosts/${HOST}/vms/sbox-99/logs`, 404, "vm_not_found"],
      [`/api/hosts/nope/vms/${vm}/logs`, 404, "host_not_found"],
      [`/api/hosts/${HOST}/vms/${vm}/logs?lines=-1`, 400, "invalid_request"],
    ];
    for (const [path, status, code] of cases) {
      const answer = await controller.call<{ code: string }>("GET", path);
      assert.deepEqual([answer.status, answer.body.code], [status, code], path);
    }
    assert.equal((await controller.call("GET", `/api/hosts/${HOST}/vms/${vm}/logs?token=${controller.apiKey}`, undefined, null)).status, 401, "?token= is for WebSockets only");
  });

  test("dashboard: index, client-side routes, cached assets, nothing outside the root, a note before it is built", async () => {
    const page = { accept: "text/html,application/xhtml+xml" };
    const index = await rawGet(controller.url, "/");
    assert.deepEqual([index.status, index.body, index.headers["cache-control"]], [200, INDEX_HTML, "no-cache"]);
    assert.match(String(index.headers["content-type"]), /^text\/html/);
    const route = await rawGet(controller.url, "/envs/x", page);
    assert.deepEqual([route.status, route.body], [200, INDEX_HTML], "a client-side route is the SPA's page");
    const key = { authorization: `Bearer ${controller.apiKey}` };
    assert.equal((await rawGet(controller.url, "/envs/x", key)).status, 404, "not for a non-page request");
    assert.equal((await rawGet(controller.url, "/envs/x")).status, 401, "which, without the key, reveals nothing either");

    const asset = await rawGet(controller.url, "/assets/app-3f2a9c.js");
    assert.deepEqual([asset.status, asset.body, asset.headers["cache-control"]], [200, ASSET, "public, max-age=31536000, immutable"]);
    assert.match(String(asset.headers["content-type"]), /^text\/javascript/);
    const missing = await rawGet(controller.url, "/assets/app-000000.js", { ...page, ...key });
    assert.deepEqual([missing.status, (JSON.parse(missing.body) as { code: string }).code], [404, "not_found"]);
    assert.equal((await rawGet(controller.url, "/assets/app-000000.js", page)).status, 401);

    for (const path of ["/..%2f..%2fetc/passwd", "/assets/../../package.json", "/assets/%2e%2e/%2e%2e/package.json", "/%00index.html"]) {
      const refused = await rawGet(controller.url, path, page);
      assert.equal(refused.status, 400, `${path}: ${refused.body}`);
    }
    const escaped = await rawGet(controller.url, "/assets/escape.txt", key);
    assert.equal(escaped.status, 404, "a symbolic link out of the root is not followed");

    const api = await rawGet(controller.url, "/api/nothing-here", { ...page, ...key });
    assert.deepEqual([api.status, (JSON.parse(api.body) as { code: string }).code], [404, "not_found"], "the API's paths never get the page");
    assert.equal((await rawGet(controller.url, "/api/hosts", page)).status, 401, "the API still needs the key");

    await rm(join(webRoot, "index.html"));
    const notBuilt = await rawGet(controller.url, "/");
    assert.equal(notBuilt.status, 200);
    assert.match(notBuilt.body, /not built.*npm run build:web/s);
  });
});
