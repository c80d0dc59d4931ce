// This build's version (package.json) and git commit, for /info and `corral --version`.
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { PACKAGE_ROOT, packagePath } from "./package-root.ts";

export function corralVersion(): string {
  const pkg = JSON.parse(readFileSync(packagePath("package.json"), "utf8")) as { version: string };
  return pkg.version;
}

export function gitCommit(): string {
  // An installed package is no git checkout (and must not report the commit of a repository around it).
  if (!existsSync(packagePath(".git"))) return "release";
  try {
    return (
      execFileSync("git", ["rev-parse", "--short", "HEAD"], { cwd: PACKAGE_ROOT, stdio: ["ignore", "pipe", "ignore"] })
        .toString()
        .trim() || "unknown"
    );
  } catch {
    return "unknown";
  }
}
