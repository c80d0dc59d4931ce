// The web dashboard as a person uses it: `./corral up` (a real daemon and controller, the dashboard built by
// the set-up step) driven by Debian's Chromium through playwright-core. The API key prompt; an environment
// created through the form and seen in the table without a reload; its VM's page with the live graphs
// drawing points and a terminal that answers `echo`; the environment deleted through the confirm dialog; the
// host removed and added back by its address, after an address that does not answer was refused.
// Screenshots go to test-artifacts/dashboard/ (ignored by git) for a person to look at.
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import type { Page } from "playwright-core";
import { allocateHostPorts } from "../../src/net/host-ports.ts";
import { launchBrowser, type TestBrowser } from "../helpers/browser.ts";
import { CORRAL } from "../helpers/cli-process.ts";
import { until } from "../helpers/until.ts";

const API_KEY = "dashboard-test-key-0123456789";
const ARTIFACTS = join("test-artifacts", "dashboard");
// No warm pool and no sandboxes at start: the only VM this test boots is the environment's.
const CONFIG = `config:
  host_groups:
    - name: sbox
      image: base
      vcpu: 1
      ram_mb: 512
      warm_pool: 0
`;

/** `./corral up` in the background, until it prints that it is up; the controller's URL. */
async function corralUp(stateDir: string, configFile: string): Promise<{ child: ChildProcess; url: string; daemonAddr: string; output: () => string }> {
  const [daemonPort, controllerPort] = await allocateHostPorts("127.0.0.1", 2);
  const child = spawn(CORRAL, ["up", "-c", configFile, "--state-dir", stateDir, "--port", String(daemonPort), "--controller-port", String(controllerPort), "--api-key", API_KEY], {
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
    env: { ...process.env, CORRAL_LOG_LEVEL: "warn" },
  });
  let output = "";
  child.stdout?.on("data", (c: Buffer) => (output += c.toString()));
  child.stderr?.on("data", (c: Buffer) => (output += c.toString()));
  const url = await until(
    async () => {
      if (child.exitCode !== null) throw new Error(`corral up exited with ${child.exitCode}:\n${output}`);
      return /controller\s+(http:\/\/\S+)/.exec(output)?.[1];
    },
    "corral up to print the controller's URL",
    600_000,
    250,
  );
  const daemonAddr = new URL(/daemon\s+(http:\/\/\S+)/.exec(output)?.[1] ?? `http://127.0.0.1:${daemonPort}`).host;
  return { child, url, daemonAddr, output: () => output };
}

async function stopGroup(child: ChildProcess | undefined): Promise<void> {
  if (!child?.pid || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  process.kill(-child.pid, "SIGTERM");
  const timer = setTimeout(() => child.pid && process.kill(-child.pid, "SIGKILL"), 30_000);
  await exited;
  clearTimeout(timer);
}

describe("the web dashboard in Chromium, on ./corral up", { timeout: 900_000 }, () => {
  let stateDir: string;
  let up: Awaited<ReturnType<typeof corralUp>> | undefined;
  let browser: TestBrowser;
  let page: Page;
  const consoleErrors: string[] = [];

  const shot = async (name: string, width = 1280): Promise<void> => {
    await page.setViewportSize({ width, height: 900 });
    await page.screenshot({ path: join(ARTIFACTS, `${name}-${width}.png`), fullPage: true });
  };

  before(async () => {
    await mkdir(ARTIFACTS, { recursive: true });
    stateDir = await mkdtemp(join(tmpdir(), "corral-dashboard-"));
    const configFile = join(stateDir, "config.yaml");
    await writeFile(configFile, CONFIG);
    [up, browser] = await Promise.all([corralUp(stateDir, configFile), launchBrowser()]);
    page = await browser.browser.newPage({ viewport: { width: 1280, height: 900 } });
    page.on("console", (message) => {
      // The 401s before the key is given (the API's and /ws's) are expected; any other error is not.
      if (message.type() === "error" && !/401|Authentication failed/.test(message.text())) consoleErrors.push(message.text());
    });
  });

  after(async () => {
    await browser?.dispose();
    await stopGroup(up?.child);
    await rm(stateDir, { recursive: true, force: true });
  });

  test("the page loads, asks for the API key after a 401, and keeps it for the session", async () => {
    const started = performance.now();
    await page.goto(up!.url, { waitUntil: "load" });
    const loadMs = performance.now() - started;
    const dialog = page.getByRole("dialog", { name: "Sign in to this controller" });
    await dialog.waitFor();
    await shot("api-key-prompt");
    await dialog.getByLabel("API key").fill("wrong-key");
    await dialog.getByRole("button", { name: "Save" }).click();
    // A wrong key is refused again: the prompt stays, saying so.
    await dialog
      .getByText(/wrong|refused|401|not accepted/i)
      .first()
      .waitFor();
    await dialog.getByLabel("API key").fill(API_KEY);
    await dialog.getByRole("button", { name: "Save" }).click();
    await dialog.waitFor({ state: "hidden" });
    await page.getByText("Live", { exact: true }).waitFor();
    await page.reload();
    await page.getByText("Live", { exact: true }).waitFor();
    assert.equal(await page.getByRole("dialog", { name: "Sign in to this controller" }).count(), 0, "the key survives a reload");
    await shot("overview");
    await shot("overview", 390);
    process.stderr.write(`dashboard: first load of ${up!.url} took ${loadMs.toFixed(0)} ms\n`);
  });

  test("an environment created through the form appears in the table without a reload", async () => {
    await page.getByRole("link", { name: "Environments" }).first().click();
    await page.getByRole("button", { name: "New environment" }).click();
    await page.getByLabel("Environment ID").fill("team");
    await page.getByLabel("Owner").fill("alice");
    const vm1 = page.getByRole("group", { name: "VM 1" });
    await vm1.getByLabel("vCPUs").fill("1");
    await vm1.getByLabel("Memory (MiB)").fill("512");
    await vm1.getByLabel("Ports").fill("8080");
    await page.getByLabel("SSH public keys").fill("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ0dashboard0test0key0000000000000000000000 test@corral");
    await shot("create-form");
    // Bad input is refused where it was typed, and nothing is sent.
    await vm1.getByLabel("vCPUs").fill("0");
    await page.getByRole("button", { name: "Create environment" }).click();
    await page.getByText(/vCPUs/i).first().waitFor();
    await vm1.getByLabel("vCPUs").fill("1");
    const navigations: string[] = [];
    page.on("framenavigated", (frame) => frame === page.mainFrame() && navigations.push(frame.url()));
    await page.getByRole("button", { name: "Create environment" }).click();
    const row = page.getByRole("row").filter({ has: page.getByRole("link", { name: "team", exact: true }) });
    await row.waitFor({ timeout: 300_000 });
    await row.getByText("running").waitFor({ timeout: 300_000 });
    assert.equal(await row.getByText("alice").count(), 1);
    assert.match((await row.textContent()) ?? "", /\d+m \d{2}s|\d+h \d{2}m/, "a countdown to expiry");
    assert.deepEqual(
      navigations.filter((u) => !u.startsWith(up!.url)),
      [],
      "no full page load",
    );
    await shot("envs");
    await shot("envs", 390);
  });

  test("the VM page shows the port map, graphs that draw points, and a terminal that answers", async () => {
    await page.getByRole("link", { name: "team", exact: true }).click();
    await page.getByRole("link", { name: "team-1" }).first().click();
    await page
      .getByText(/ssh .*-p \d+/)
      .first()
      .waitFor();
    // The NIC as the daemon describes it: a user-mode VM's address, the guest device, its egress policy.
    const networks = page.getByRole("table", { name: "Networks" });
    await networks.getByRole("cell", { name: "user", exact: true }).waitFor();
    await networks.getByText(/^10\.0\.2\.15\/24 via 10\.0\.2\.2$/).waitFor();
    await networks.getByRole("cell", { name: "eth0", exact: true }).waitFor();
    await page.getByText("its host group", { exact: true }).waitFor();
    const points = async (id: string): Promise<number> => Number((await page.getByTestId(id).locator("path[data-points]").first().getAttribute("data-points")) ?? 0);
    for (const chart of ["chart-cpu", "chart-mem", "chart-disk", "chart-net"]) {
      await until(async () => ((await points(chart)) >= 2 ? true : undefined), `${chart} to draw points`, 120_000, 500);
    }
    await page.getByRole("button", { name: "Open terminal" }).click();
    const terminal = page.getByTestId("terminal");
    await terminal.waitFor();
    await page.getByText("Connected", { exact: true }).waitFor({ timeout: 60_000 });
    await terminal.click();
    await page.keyboard.type("echo hello-$((6*7))\n");
    await until(async () => ((await terminal.textContent())?.includes("hello-42") ? true : undefined), "the terminal to print hello-42", 60_000, 250);
    await page
      .getByLabel("Serial log")
      .getByText(/Linux version|corral|init/i)
      .first()
      .waitFor({ timeout: 60_000 });
    // A hard power action asks first; Cancel leaves the VM as it was.
    await page.getByRole("group", { name: "Power" }).getByRole("button", { name: "Reset" }).click();
    const confirm = page.getByRole("dialog", { name: "Reset this VM?" });
    await confirm.getByText(/what the guest has not written to its disk is lost/).waitFor();
    await confirm.getByRole("button", { name: "Cancel" }).click();
    await confirm.waitFor({ state: "hidden" });
    assert.match((await terminal.textContent()) ?? "", /hello-42/, "the VM was not reset");
    await shot("vm");
    await shot("vm", 390);
  });

  test("the environment is deleted through the confirm dialog, and leaves the table", async () => {
    await page.getByRole("link", { name: "Environments" }).first().click();
    await page.getByRole("button", { name: "Delete team" }).click();
    const confirm = page.getByRole("dialog");
    await confirm.getByText(/Delete environment "team"\?/).waitFor();
    await shot("delete-confirm");
    await confirm.getByRole("button", { name: "Delete", exact: true }).click();
    await page.getByRole("link", { name: "team", exact: true }).waitFor({ state: "detached", timeout: 120_000 });
  });

  test("a host is removed, and added back by its address; one that does not answer is refused in the form", async () => {
    await page.getByRole("link", { name: "Hosts" }).first().click();
    const removeButtons = page.getByRole("button", { name: /^Remove host / });
    await removeButtons.first().waitFor();
    assert.equal(await removeButtons.count(), 1);

    const errorsBefore = consoleErrors.length;
    await page.getByLabel("Address").fill("127.0.0.1:1");
    await page.getByRole("button", { name: "Add host" }).click();
    await page.getByText(/Could not add the host/).waitFor({ timeout: 60_000 });
    // The browser logs the refused request (502) itself; that one is expected.
    consoleErrors.push(...consoleErrors.splice(errorsBefore).filter((text) => !/status of 502/.test(text)));
    assert.equal(await removeButtons.count(), 1, "nothing was added");

    await removeButtons.first().click();
    await page.getByRole("dialog").getByRole("button", { name: "Remove", exact: true }).click();
    await removeButtons.first().waitFor({ state: "detached", timeout: 60_000 });

    await page.getByLabel("Address").fill(up!.daemonAddr);
    await page.getByRole("button", { name: "Add host" }).click();
    await removeButtons.first().waitFor({ timeout: 60_000 });
    const row = page.getByRole("row").filter({ has: removeButtons.first() });
    await row.getByText("online").waitFor({ timeout: 60_000 });
    await shot("hosts");
    assert.deepEqual(consoleErrors, [], "no errors in the page's console");
  });
});
