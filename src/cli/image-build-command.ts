// `corral image build NAME -f Dockerfile [CONTEXT]`: a Dockerfile build on the daemon, with progress printed
// the way `docker build` prints it. The context folder is packed (minus its .dockerignore) and streamed.
import { existsSync, statSync } from "node:fs";
import { isAbsolute, relative, resolve } from "node:path";
import type { BuildEvent } from "../sdk/index.ts";
import { packBuildContext } from "../sdk/image-build.ts";
import { clientFor, type ConnectionFlags } from "./connection.ts";

export interface DockerfileBuildFlags extends ConnectionFlags {
  file?: string;
  buildArg?: string[];
  noCache?: boolean;
  json?: boolean;
}

function parseBuildArgs(pairs: readonly string[] = []): Record<string, string> {
  const args: Record<string, string> = {};
  for (const pair of pairs) {
    const at = pair.indexOf("=");
    // Docker's `--build-arg NAME` takes the value from the environment.
    if (at < 0) {
      const value = process.env[pair];
      if (value !== undefined) args[pair] = value;
    } else if (at === 0) throw new Error(`Invalid --build-arg ${JSON.stringify(pair)}: use NAME=VALUE`);
    else args[pair.slice(0, at)] = pair.slice(at + 1);
  }
  return args;
}

/** One progress event as `docker build` would print it (null: nothing to print). */
export function formatBuildEvent(event: BuildEvent): string | null {
  switch (event.type) {
    case "step":
      return `Step ${event.step}/${event.total} : ${event.instruction}\n`;
    case "cached":
      return ` ---> Using cache (${event.commit})\n`;
    case "output":
      return event.text;
    case "committed":
      return ` ---> ${event.commit}\n`;
    case "vm":
      return event.event === "started" ? ` ---> Running in ${event.hostname}\n` : ` ---> Removed builder VM ${event.hostname}\n`;
    case "warning":
      return `[warning] ${event.message}\n`;
    case "done":
      return `Successfully built ${event.image} ${event.version}${event.reused_version ? " (unchanged: that version was already installed)" : ""} (${event.run_steps} steps run, ${event.cached_steps} from cache, ${event.vms_started} VMs booted)\n`;
    case "error":
      return null;
  }
}

export async function buildFromDockerfile(name: string, contextArg: string | undefined, flags: DockerfileBuildFlags): Promise<void> {
  const contextDir = resolve(contextArg ?? ".");
  if (!existsSync(contextDir) || !statSync(contextDir).isDirectory()) throw new Error(`The build context ${JSON.stringify(contextArg ?? ".")} is not a folder`);
  const dockerfilePath = resolve(flags.file ?? `${contextDir}/Dockerfile`);
  if (!existsSync(dockerfilePath)) throw new Error(`No Dockerfile at ${JSON.stringify(flags.file ?? `${contextArg ?? "."}/Dockerfile`)}`);
  const dockerfile = relative(contextDir, dockerfilePath);
  if (dockerfile.startsWith("..") || isAbsolute(dockerfile))
    throw new Error(`The Dockerfile ${JSON.stringify(flags.file)} must be inside the build context ${JSON.stringify(contextArg ?? ".")}`);
  const client = clientFor(flags);
  // Ctrl-C cancels the build on the daemon too: its builder VM is removed.
  const cancel = new AbortController();
  const onSignal = (): void => cancel.abort();
  process.once("SIGINT", onSignal);
  try {
    const events = client.buildImage({
      name,
      dockerfile,
      context: packBuildContext(contextDir, dockerfile),
      buildArgs: parseBuildArgs(flags.buildArg),
      noCache: flags.noCache ?? false,
      signal: cancel.signal,
    });
    for await (const event of events) {
      if (flags.json) process.stdout.write(`${JSON.stringify(event)}\n`);
      else {
        const line = formatBuildEvent(event);
        if (line !== null) (event.type === "output" && event.stream === "stderr" ? process.stderr : process.stdout).write(line);
      }
      if (event.type === "error") throw new Error(`${event.error} (${event.code})`);
    }
  } finally {
    process.off("SIGINT", onSignal);
    await client.close();
  }
}
