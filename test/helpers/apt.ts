// Installing a Debian package a test needs on first use: apt-get as root, else through sudo -n; on a
// failure (an old package list), apt-get update and once more.
import { run } from "../../src/util/run.ts";

const isRoot = process.getuid?.() === 0;

function apt(args: string[]): Promise<string> {
  const command = ["DEBIAN_FRONTEND=noninteractive", "apt-get", ...args];
  return isRoot ? run("env", command) : run("sudo", ["-n", "env", ...command]);
}

export async function aptInstall(packages: readonly string[]): Promise<void> {
  const install = ["install", "-y", "-q", "--no-install-recommends", ...packages];
  await apt(install).catch(async () => {
    await apt(["update", "-q"]);
    await apt(install);
  });
}
