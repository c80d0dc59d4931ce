// The dashboard's environments page reads GET /api/envs a page at a time: with more environments than one
// page holds, the first page shows 100 rows and Next the rest, an environment created meanwhile appears on
// the page shown after its event (only that page is read again, never the whole list), its actions still
// work, and Previous goes back. A real controller (SQLite) serving the dashboard built from this checkout;
// the hosts are the TTstack agent simulation (test/helpers/ttstack-agent-sim.ts), so no VM boots: 105
// environments are placed in seconds. Chromium through playwright-core; screenshots go to
// test-artifacts/dashboard/ (ignored by git) for a person to look at.
import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import type { Page } from "playwright-core";
import type { Host } from "../../src/protocol/controller.ts";
import { run } from "../../src/util/run.ts";
import { ENV_PAGE_SIZE } from "../../web/src/lib/env-pages.ts";
import { launchBrowser, type TestBrowser } from "../helpers/browser.ts";
import { TestController } from "../helpers/controller-process.ts";
import { TTstackAgentSim } from "../helpers/ttstack-agent-sim.ts";

const ARTIFACTS = join("test-artifacts", "dashboard");
const ENVS = ENV_PAGE_SIZE + 5;
const envId = (n: number) => `env-${String(n).padStart(3, "0")}`;

describe("the dashboard's environments page, a page at a time", { timeout: 600_000 }, () => {
  let webRoot: string;
  let controller: TestController;
  const sims: TTstackAgentSim[] = [];
  let browser: TestBrowser;
  let page: Page;
  const envReads: string[] = [];
  const consoleErrors: string[] = [];

  const shot = async (name: string, width = 1280): Promise<void> => {
    await page.setViewportSize({ width, height: 900 });
    await page.screenshot({ path: join(ARTIFACTS, `${name}-${width}.png`), fullPage: width !== 1280 });
  };
  const rows = () => page.locator("tbody tr");
  const create = async (n: number) => {
    const created = await controller.call("POST", "/api/envs", { id: envId(n), owner: n % 2 ? "alice" : "bob", vms: [{ image: "base", cpu: 1, mem: 128, disk: 1024 }] });
    assert.equal(created.status, 201, JSON.stringify(created.raw));
  };

  before(async () => {
    await mkdir(ARTIFACTS, { recursive: true });
    webRoot = await mkdtemp(join(tmpdir(), "corral-web-pages-"));
    controller = await TestController.create();
    // The dashboard as this checkout's sources build it, beside the controller starting.
    [, , browser] = await Promise.all([
      run("npx", ["vite", "build", "web", "--outDir", webRoot, "--emptyOutDir", "--logLevel", "warn"]),
      controller.start(["--web-root", webRoot]),
      launchBrowser(),
    ]);
    // Two hosts of 64 one-vCPU VMs each (TTstack's agent's 16 CPUs, the controller's 4x overcommit).
    for (const hostId of ["sim-a", "sim-b"]) {
      const sim = await new TTstackAgentSim({ apiKey: controller.apiKey, hostId }).start();
      sims.push(sim);
      const added = await controller.call<Host>("POST", "/api/hosts", { addr: sim.addr });
      assert.equal(added.status, 201, JSON.stringify(added.raw));
    }
    for (let n = 1; n <= ENVS; n++) await create(n);

    page = await browser.browser.newPage({ viewport: { width: 1280, height: 900 } });
    // Signed in for the session, as the API key prompt leaves it (dashboard.test.ts drives the prompt itself).
    await page.addInitScript(`window.sessionStorage.setItem("corral-api-key", ${JSON.stringify(controller.apiKey)})`);
    page.on("console", (message) => message.type() === "error" && consoleErrors.push(message.text()));
    page.on("request", (request) => {
      const url = new URL(request.url());
      if (url.pathname === "/api/envs" && request.method() === "GET") envReads.push(url.search);
    });
  });

  after(async () => {
    await browser?.dispose();
    await controller?.dispose();
    await Promise.all(sims.map((s) => s.stop()));
    if (webRoot) await rm(webRoot, { recursive: true, force: true });
  });

  test(`the first page shows ${ENV_PAGE_SIZE} rows; Next shows the rest; Previous goes back`, async () => {
    await page.goto(`${controller.url}/envs`, { waitUntil: "load" });
    await page.getByRole("link", { name: envId(1), exact: true }).waitFor();
    assert.equal(await rows().count(), ENV_PAGE_SIZE);
    assert.equal(await rows().last().getByRole("link").textContent(), envId(ENV_PAGE_SIZE), "oldest first, as GET /api/envs orders them");
    const pager = page.getByRole("navigation", { name: "Environment pages (top)" });
    const range = pager.getByText(/^Environments /);
    assert.match((await range.textContent()) ?? "", /Environments 1–100, 100 a page/);
    const previous = pager.getByRole("button", { name: "Previous" });
    const next = pager.getByRole("button", { name: "Next" });
    const bottom = page.getByRole("navigation", { name: "Environment pages (bottom)" });
    assert.equal(await bottom.getByRole("button", { name: "Next" }).isDisabled(), false, "the same pager under the table");
    assert.equal(await previous.isDisabled(), true);
    assert.equal(await next.isDisabled(), false);
    assert.equal(
      await page
        .getByRole("row")
        .filter({ hasText: envId(1) })
        .getByText("alice")
        .count(),
      1,
      "the owner column",
    );
    await shot("envs-page-1");

    await next.click();
    await page.getByRole("link", { name: envId(ENV_PAGE_SIZE + 1), exact: true }).waitFor();
    assert.equal(await rows().count(), ENVS - ENV_PAGE_SIZE);
    assert.match((await range.textContent()) ?? "", /Environments 101–105/);
    assert.equal(await next.isDisabled(), true, "the last page");
    assert.equal(await previous.isDisabled(), false);
    await shot("envs-page-2");
    await shot("envs-page-2", 390);

    await previous.click();
    await page.getByRole("link", { name: envId(1), exact: true }).waitFor();
    assert.equal(await rows().count(), ENV_PAGE_SIZE);
    assert.ok(envReads.length > 0 && envReads.every((search) => /^\?limit=100(&after=[A-Za-z0-9_-]+)?$/.test(search)), `pages only: ${envReads.join(" ")}`);
  });

  test("a change re-reads the page shown only: a new environment appears on the last page, a deleted one leaves", async () => {
    await page.getByRole("navigation", { name: "Environment pages (bottom)" }).getByRole("button", { name: "Next" }).click();
    await page.getByRole("link", { name: envId(ENV_PAGE_SIZE + 1), exact: true }).waitFor();
    envReads.length = 0;
    await create(ENVS + 1);
    await page.getByRole("link", { name: envId(ENVS + 1), exact: true }).waitFor({ timeout: 30_000 });
    assert.equal(await rows().count(), ENVS + 1 - ENV_PAGE_SIZE);
    assert.ok(envReads.length > 0, "read again after the event");
    assert.ok(
      envReads.every((search) => /^\?limit=100&after=[A-Za-z0-9_-]+$/.test(search)),
      `only the page shown was read again: ${envReads.join(" ")}`,
    );

    await page.getByRole("button", { name: `Delete ${envId(ENVS + 1)}` }).click();
    const confirm = page.getByRole("dialog");
    await confirm.getByText(`Delete environment "${envId(ENVS + 1)}"?`).waitFor();
    await confirm.getByRole("button", { name: "Delete", exact: true }).click();
    await page.getByRole("link", { name: envId(ENVS + 1), exact: true }).waitFor({ state: "detached", timeout: 30_000 });
    assert.equal(await rows().count(), ENVS - ENV_PAGE_SIZE);

    await page.getByRole("link", { name: envId(ENVS), exact: true }).click();
    await page.getByRole("heading", { name: `Environment ${envId(ENVS)}` }).waitFor();
    assert.deepEqual(consoleErrors, []);
  });
});
