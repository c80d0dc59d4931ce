// Fuzzing both servers with requests generated from their route tables (test/helpers/fuzz-requests.ts), a
// fixed seed (FUZZ_SEED overrides it), bounded in count and in time: a real daemon (auth on) with one running
// VM, so that VM routes reach real handlers, and a real controller with that daemon registered. Every answer
// must be below 500 (but for the upstream failures listed below), every error a JSON {error, code} of
// strings (on Virtumancer's /api/v1, Go's text error with the code in a header), no request may hang; afterwards both servers answer /healthz and nothing stored before was lost:
// the VM (still running), a secret (still in the guest), the registered host.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { Agent, request } from "undici";
import type { RouteEntry } from "../../src/http/route-table.ts";
import { ERROR_CODE_HEADER } from "../../src/http/text-errors.ts";
import { isErrorCode } from "../../src/protocol/errors.ts";
import { VIRTUMANCER_PREFIX } from "../../src/protocol/virtumancer.ts";
import { TestController } from "../helpers/controller-process.ts";
import { AUTH_TEST_CONFIG, TestDaemon } from "../helpers/daemon-process.ts";
import { FuzzGenerator, type FuzzRequest } from "../helpers/fuzz-requests.ts";
import { startInProcess } from "../helpers/in-process.ts";

const SEED = Number(process.env.FUZZ_SEED ?? 20261206);
const MAX_REQUESTS = Number(process.env.FUZZ_COUNT ?? 6000);
const MAX_SECONDS = Number(process.env.FUZZ_SECONDS ?? 90);
/** No answer (status line and headers) within this: a hang. */
const HEADERS_DEADLINE_MS = 30_000;
/** A 2xx body still streaming after this is a stream (a log follow, a watch): cut, not a failure. */
const STREAM_READ_MS = 2000;

const CONFIG = AUTH_TEST_CONFIG.replace("ram_mb: 512\n", "ram_mb: 512\n      template: false\n");

/**
 * The 5xx answers that are documented upstream failures, not the server's own (docs/api.md): a host that
 * does not answer the controller, a guest agent that does not answer the daemon, a full guest disk.
 */
const UPSTREAM_FAILURES: Record<string, readonly string[]> = {
  daemon: ["agent_unavailable", "insufficient_storage"],
  controller: ["host_unreachable", "agent_unavailable"],
};

interface Answer {
  status: number;
  contentType: string;
  /** The catalogue's code of an error answered as text (Virtumancer's /api/v1). */
  errorCode: string;
  body: string;
  streamed: boolean;
}

async function send(dispatcher: Agent, base: string, req: FuzzRequest): Promise<Answer> {
  const response = await request(`${base}${req.path}`, {
    method: req.method as "GET",
    headers: req.headers,
    body: req.body,
    dispatcher,
    headersTimeout: HEADERS_DEADLINE_MS,
    bodyTimeout: 0,
  });
  const chunks: Buffer[] = [];
  let size = 0;
  let streamed = false;
  const reading = (async () => {
    for await (const chunk of response.body) {
      size += (chunk as Buffer).length;
      if (size <= 65_536) chunks.push(chunk as Buffer);
    }
  })();
  const timer = new Promise<"late">((resolve) => setTimeout(() => resolve("late"), response.statusCode < 400 ? STREAM_READ_MS : HEADERS_DEADLINE_MS).unref());
  if ((await Promise.race([reading.then(() => "done" as const), timer])) === "late") {
    streamed = true;
    response.body.destroy();
    await reading.catch(() => undefined);
  }
  return {
    status: response.statusCode,
    contentType: String(response.headers["content-type"] ?? ""),
    errorCode: String(response.headers[ERROR_CODE_HEADER] ?? ""),
    body: Buffer.concat(chunks).toString("utf8"),
    streamed,
  };
}

/** Why an answer is wrong, or undefined. */
function problem(server: string, route: RouteEntry, req: FuzzRequest, answer: Answer): string | undefined {
  if (answer.streamed && answer.status >= 400) return "an error answer that never ended";
  if (answer.status < 400) return undefined;
  if (req.method === "HEAD") return answer.status >= 500 ? `HEAD answered ${answer.status}` : undefined;
  let body: { error?: unknown; code?: unknown };
  // Virtumancer's routes answer Go's http.Error (one line of text, the code in a header); what reached no route
  // (another method, a path the router cannot take) is answered by the router, in JSON, as everywhere.
  if (route.url.startsWith(`${VIRTUMANCER_PREFIX}/`) && answer.contentType.startsWith("text/plain")) {
    if (!answer.body.endsWith("\n")) return `${answer.status} not as Go's http.Error: ${JSON.stringify(answer.body.slice(0, 200))}`;
    body = { error: answer.body.trimEnd(), code: answer.errorCode };
    if (!isErrorCode(body.code)) return `${answer.status} with the code ${JSON.stringify(body.code)}, not one of the catalogue`;
  } else {
    try {
      body = JSON.parse(answer.body) as typeof body;
    } catch {
      return `${answer.status} with a body that is not JSON: ${JSON.stringify(answer.body.slice(0, 200))}`;
    }
  }
  if (typeof body.error !== "string" || typeof body.code !== "string") return `${answer.status} without {error, code} strings: ${answer.body.slice(0, 200)}`;
  if (answer.status >= 500 && !(UPSTREAM_FAILURES[server] ?? []).includes(body.code)) return `${answer.status} ${answer.body.slice(0, 300)}`;
  // Without the token only a public route (the dashboard, which refuses paths it cannot serve) may answer.
  if (!req.authorized && route.access !== "public" && answer.status !== 401) return `no token, yet ${answer.status} ${body.code}`;
  return undefined;
}

describe("fuzzing both servers from their route tables", { timeout: 900_000 }, () => {
  let daemon: TestDaemon;
  let controller: TestController;
  let token: string;
  let vm: string;
  let hostId: string;
  const routes: Record<"daemon" | "controller", RouteEntry[]> = { daemon: [], controller: [] };

  before(async () => {
    // The route tables of the same code, read from apps built in this process.
    const tables = await startInProcess();
    routes.daemon = [...tables.daemon.app.routeTable];
    routes.controller = [...tables.controller.app.routeTable];
    await tables.stop();

    daemon = await TestDaemon.create(CONFIG);
    await daemon.start();
    token = readFileSync(join(daemon.stateDir, "auth", "token"), "utf8").trim();
    vm = (await daemon.client.createNode("sbox", {}, { wait: "agent", timeout: "300s" })).hostname;
    await daemon.client.secrets.create("fuzz-kept", { data: "kept-value" });

    controller = await TestController.create();
    await controller.start();
    const registered = await controller.call<{ id: string }>("POST", "/api/hosts", { uri: daemon.url, token });
    assert.equal(registered.status, 201, JSON.stringify(registered.body));
    hostId = registered.body.id;
  });

  after(async () => {
    await controller?.dispose();
    await daemon?.dispose();
  });

  test(`seed ${SEED}: no 5xx but upstream failures, every error {error, code}, no hang, nothing lost`, async () => {
    const dispatcher = new Agent({ connections: 4, keepAliveTimeout: 1000 });
    const targets = [
      { name: "daemon", base: daemon.url, token, routes: routes.daemon, fuzz: new FuzzGenerator(SEED, { hostname: vm, id: vm }) },
      { name: "controller", base: controller.url, token: controller.apiKey, routes: routes.controller, fuzz: new FuzzGenerator(SEED + 1, { id: hostId, hostId, vmName: vm }) },
    ];
    const failures: string[] = [];
    const counts: Record<string, number> = {};
    const started = performance.now();
    let sent = 0;
    try {
      for (; sent < MAX_REQUESTS && performance.now() - started < MAX_SECONDS * 1000 && failures.length < 20; sent++) {
        const target = targets[sent % targets.length]!;
        const route = target.routes[Math.floor((sent / targets.length) * 7919) % target.routes.length]!;
        const req = target.fuzz.next(route, target.token);
        let answer: Answer;
        try {
          answer = await send(dispatcher, target.base, req);
        } catch (err) {
          failures.push(`seed ${SEED}, request ${sent} to the ${target.name}: ${(err as Error).message}\n    ${req.recipe.join("\n    ")}`);
          continue;
        }
        counts[`${target.name} ${Math.floor(answer.status / 100)}xx`] = (counts[`${target.name} ${Math.floor(answer.status / 100)}xx`] ?? 0) + 1;
        if (process.env.FUZZ_VERBOSE) {
          let code = "";
          try {
            code = (JSON.parse(answer.body) as { code?: string }).code ?? "";
          } catch {
            // not JSON: a 2xx stream or file
          }
          process.stdout.write(
            `fuzz-answer\t${target.name}\t${req.method === route.method ? route.method : `${req.method}(${route.method})`} ${route.url}\t${answer.status}\t${code}\t${req.path.slice(0, 160)}\n`,
          );
        }
        const wrong = problem(target.name, route, req, answer);
        if (wrong) failures.push(`seed ${SEED}, request ${sent} to the ${target.name}: ${wrong}\n    ${req.recipe.join("\n    ")}`);
      }
    } finally {
      await dispatcher.close();
    }
    process.stdout.write(`fuzz: seed ${SEED}, ${sent} requests in ${((performance.now() - started) / 1000).toFixed(0)} s: ${JSON.stringify(counts)}\n`);
    assert.deepEqual(failures, [], `Fuzzing with seed ${SEED} (FUZZ_SEED=${SEED} to replay) found:\n${failures.join("\n")}`);

    // Both still up, and nothing lost.
    assert.equal((await fetch(`${daemon.url}/healthz`)).status, 200);
    assert.equal((await fetch(`${controller.url}/healthz`)).status, 200);
    const node = await daemon.client.describe(vm);
    assert.equal(node.state, "running", `the VM survived: ${JSON.stringify(node)}`);
    const secret = await daemon.client.execBuffered(vm, { cmd: "cat", args: ["/run/corral/secrets/fuzz-kept"] });
    assert.equal(secret.stdout, "kept-value");
    const hosts = await controller.call<{ id: string; state: string }[]>("GET", "/api/hosts");
    assert.deepEqual(
      hosts.body.map((h) => [h.id, h.state]),
      [[hostId, "online"]],
    );
  });
});
