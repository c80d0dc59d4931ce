// Dashboard components rendered to HTML with react-dom/server (no DOM here): what they show and the names
// and test ids the browser tests rely on. (tsx applies the root tsconfig only to the files it includes, so
// each .tsx file of web/src names its JSX runtime in a pragma.)
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { createElement, type ReactNode } from "react";
import { renderToString } from "react-dom/server";
import type { Env } from "../../src/protocol/controller.ts";
import { App } from "../../web/src/app.tsx";
import { ApiKeyDialog } from "../../web/src/components/api-key-dialog.tsx";
import { Countdown } from "../../web/src/components/countdown.tsx";
import { LineChart } from "../../web/src/components/line-chart.tsx";
import { ApiError, createApiClient, unwrap, type ApiClient, type KeyStore } from "../../web/src/lib/api.ts";
import { chartPath, niceMax } from "../../web/src/lib/chart-path.ts";
import { LiveConnection } from "../../web/src/lib/live.ts";
import { ServicesContext } from "../../web/src/lib/services.tsx";
import { EnvTable } from "../../web/src/pages/envs.tsx";
import { logText } from "../../web/src/pages/vm-log.tsx";

const NOW = Date.parse("2025-01-01T12:00:00Z");

const api: ApiClient = {
  get: () => new Promise(() => undefined),
  text: () => new Promise(() => undefined),
  post: () => new Promise(() => undefined),
  delete: () => new Promise(() => undefined),
  socketUrl: (path) => `ws://controller${path}`,
};
const keys: KeyStore = { get: () => undefined, set: () => undefined };

function withServices(node: ReactNode): string {
  const live = new LiveConnection(() => "ws://controller/ws");
  return renderToString(createElement(ServicesContext.Provider, { value: { api, live, keyVersion: 0 } }, node));
}

function env(id: string, status: Env["status"], secondsLeft: number): Env {
  return {
    id,
    owner: "alice",
    vm_ids: [`${id}-1`],
    created_at: Math.floor((NOW - 1000) / 1000),
    expires_at: Math.floor((NOW + secondsLeft * 1000) / 1000),
    state: status === "stopped" ? "stopped" : "active",
    status,
    ssh_keys: [],
    lifetime: 3600,
  };
}

describe("Countdown", () => {
  test("shows the time left with the expiry as its machine-readable time", () => {
    const html = renderToString(createElement(Countdown, { expiresAt: "2025-01-01T13:02:30.000Z", now: NOW }));
    assert.match(html, /<time class="countdown countdown-ok" dateTime="2025-01-01T13:02:30.000Z"[^>]*>1h 02m<\/time>/);
  });

  test("takes TTstack's Unix seconds too", () => {
    const html = renderToString(createElement(Countdown, { expiresAt: Date.parse("2025-01-01T13:02:30.000Z") / 1000, now: NOW }));
    assert.match(html, /<time class="countdown countdown-ok" dateTime="2025-01-01T13:02:30.000Z"[^>]*>1h 02m<\/time>/);
  });

  test("marks the last minutes and the past", () => {
    assert.match(renderToString(createElement(Countdown, { expiresAt: new Date(NOW + 245_000).toISOString(), now: NOW })), /countdown-soon[^>]*>4m 05s</);
    assert.match(renderToString(createElement(Countdown, { expiresAt: new Date(NOW - 5000).toISOString(), now: NOW })), /countdown-expired[^>]*>expired</);
  });
});

describe("LineChart", () => {
  test("draws each series with the number of points, breaking at nulls", () => {
    const html = renderToString(
      createElement(LineChart, {
        id: "disk",
        title: "Disk",
        times: [NOW - 4000, NOW - 2000, NOW],
        series: [
          { label: "read", values: [null, 1024, 2048], tone: "a" },
          { label: "write", values: [null, null, null], tone: "b" },
        ],
        from: NOW - 300_000,
        to: NOW,
        format: (v) => String(v),
      }),
    );
    assert.match(html, /data-testid="chart-disk"/);
    assert.match(html, /class="line line-a" d="M[^"]+L[^"]+" data-points="2"/);
    assert.match(html, /class="line line-b" d="" data-points="0"/);
    assert.match(html, /read 2048/);
  });

  test("chartPath maps time to x, value to y, and lifts the pen at gaps", () => {
    const frame = { from: 0, to: 100, yMax: 10, width: 200, height: 50 };
    assert.deepEqual(chartPath([0, 50, 100], [0, 5, 10], frame), { d: "M0.0 50.0L100.0 25.0L200.0 0.0", points: 3 });
    assert.deepEqual(chartPath([0, 25, 50, 100], [1, null, 2, 20], frame), { d: "M0.0 45.0M100.0 40.0L200.0 0.0", points: 3 });
    assert.deepEqual(chartPath([-10, 50], [1, 1], frame), { d: "M100.0 45.0", points: 1 });
  });

  test("niceMax rounds up to 1, 2 or 5 times a power of ten", () => {
    assert.equal(niceMax([], 100), 100);
    assert.equal(niceMax([null, 130]), 200);
    assert.equal(niceMax([3.2]), 5);
    assert.equal(niceMax([0.3]), 1);
    assert.equal(niceMax([7000], 1024), 10000);
  });
});

describe("pages", () => {
  test("the environment table: a row per environment with its link, state, countdown and actions", () => {
    const html = withServices(createElement(EnvTable, { envs: [env("team", "running", 3700), env("old", "stopped", 30)], onChanged: () => undefined }));
    assert.match(html, /<table>/);
    assert.match(html, /<a href="\/envs\/team">team<\/a>/);
    assert.match(html, /aria-label="Stop team"[^>]*>Stop</);
    assert.match(html, /aria-label="Start old"[^>]*>Start</);
    assert.match(html, /aria-label="Delete old"[^>]*>Delete</);
    assert.match(html, /badge-good">running</, "Corral's state (`status`), not TTstack's `active`");
  });

  test("the API key prompt labels its field", () => {
    const html = renderToString(createElement(ApiKeyDialog, { hadKey: false, onSave: () => undefined }));
    const id = /<label for="([^"]+)">API key<\/label>/.exec(html)?.[1];
    assert.ok(id, "a label reading API key");
    assert.match(html, new RegExp(`<input id="${id}" type="password"`));
    assert.match(html, /<dialog[^>]*aria-labelledby=/);
  });

  test("the app frame renders the navigation and the overview while it loads", () => {
    const live = new LiveConnection(() => "ws://controller/ws");
    const html = renderToString(createElement(App, { api, live, keys, unauthorized: new EventTarget() }));
    assert.match(html, /<nav aria-label="Main">/);
    assert.match(html, /aria-current="page"[^>]*>Overview</);
    assert.match(html, /<h1>Overview<\/h1>/);
    assert.match(html, /Loading…/);
  });
});

describe("API client", () => {
  test("TTstack's envelope is unwrapped to its data; other answers stay as they are; envelope errors are ApiErrors", async () => {
    assert.deepEqual(unwrap({ ok: true, data: [{ id: "h1" }] }), [{ id: "h1" }]);
    assert.equal(unwrap({ ok: true }), undefined);
    assert.deepEqual(unwrap({ hostname: "h", cpu: 2 }), { hostname: "h", cpu: 2 }, "Virtumancer's shapes are not envelopes");
    assert.deepEqual(unwrap([1, 2]), [1, 2]);
    const answers: Record<string, [number, unknown]> = {
      "/api/hosts": [200, { ok: true, data: [{ id: "h1" }] }],
      "/api/envs/x": [404, { ok: false, error: 'Environment "x" not found', code: "env_not_found" }],
      "/api/hosts/h1/info": [200, { hostname: "h1", cpu: 2 }],
    };
    const client = createApiClient({
      keys,
      onUnauthorized: () => undefined,
      origin: "http://controller",
      fetch: async (input) => {
        const [status, body] = answers[String(input)] ?? [500, {}];
        return new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json" } });
      },
    });
    assert.deepEqual(await client.get("/api/hosts"), [{ id: "h1" }]);
    assert.deepEqual(await client.get("/api/hosts/h1/info"), { hostname: "h1", cpu: 2 });
    await assert.rejects(
      client.get("/api/envs/x"),
      (err: unknown) => err instanceof ApiError && err.status === 404 && err.code === "env_not_found" && /not found/.test(err.message),
    );
  });
});

describe("serial log", () => {
  test("takes the daemon's JSON answer's content, or plain text as it is", () => {
    assert.equal(logText(JSON.stringify({ hostname: "team-1", lines: 2, content: "a\nb\n" })), "a\nb\n");
    assert.equal(logText("[    0.1] booting\n"), "[    0.1] booting\n");
    assert.equal(logText('{"other": 1}'), '{"other": 1}');
  });
});
