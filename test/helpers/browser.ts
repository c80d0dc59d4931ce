// A headless Chromium for tests that look at the web dashboard: Debian's `chromium` package, installed on
// first use (playwright-core brings no browser of its own), driven through playwright-core. We run as root,
// hence --no-sandbox.
import { existsSync } from "node:fs";
import { chromium, type Browser } from "playwright-core";
import { aptInstall } from "./apt.ts";

export const CHROMIUM = "/usr/bin/chromium";

export interface TestBrowser {
  browser: Browser;
  dispose(): Promise<void>;
}

/** Installs Chromium when it is missing, then launches it headless. */
export async function launchBrowser(): Promise<TestBrowser> {
  if (!existsSync(CHROMIUM)) {
    await aptInstall(["chromium"]);
    if (!existsSync(CHROMIUM)) throw new Error(`Installed the chromium package but found no ${CHROMIUM}`);
  }
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"], headless: true });
  return {
    browser,
    dispose: async () => {
      await browser.close().catch(() => undefined);
    },
  };
}
