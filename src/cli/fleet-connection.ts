// Which controller the CLI's fleet commands (host, env, status) talk to: --controller / CORRAL_CONTROLLER,
// else the controller recorded in the default state directory (controller.json), else http://127.0.0.1:9200;
// and with which key: --api-key-file / --api-key / CORRAL_API_KEY, else the recorded controller's key file.
import { readFileSync } from "node:fs";
import type { Command } from "commander";
import { readControllerInfo } from "../controller/runtime-info.ts";
import { corralHome } from "../image/home.ts";
import { ControllerClient } from "../sdk/controller-client.ts";
import { CorralApiError } from "../sdk/transport.ts";
import { resolveSecret, warnOnStderr } from "./secret-options.ts";

export const DEFAULT_CONTROLLER_URL = "http://127.0.0.1:9200";

export interface FleetFlags {
  controller?: string;
  apiKey?: string;
  apiKeyFile?: string;
}

export interface FleetConnection {
  url: string;
  apiKey: string | undefined;
}

export function addFleetOptions(command: Command): Command {
  return command
    .option("--controller <url>", `controller URL (env CORRAL_CONTROLLER, default ${DEFAULT_CONTROLLER_URL})`)
    .option("--api-key <key>", "the controller's API key (ps shows it: prefer --api-key-file or env CORRAL_API_KEY)")
    .option("--api-key-file <file>", "read the controller's API key from FILE (mode 0600)");
}

const LOOPBACK = new Set(["127.0.0.1", "localhost", "[::1]", "0.0.0.0", "[::]"]);

/** Same scheme and port, and the same host (any loopback name counts as the same host as another). */
function sameController(a: string, b: string): boolean {
  try {
    const [x, y] = [new URL(a), new URL(b)];
    const sameHost = x.hostname === y.hostname || (LOOPBACK.has(x.hostname) && LOOPBACK.has(y.hostname));
    return x.protocol === y.protocol && x.port === y.port && sameHost;
  } catch {
    return false;
  }
}

function readKeyFile(file: string): string | undefined {
  try {
    return readFileSync(file, "utf8").trim() || undefined;
  } catch {
    // not readable by this user: the controller will answer 401 and say so
    return undefined;
  }
}

/**
 * Flags win over the environment, which wins over controller.json. The recorded key file is read only when
 * the URL is the recorded controller's: a key is never sent to a controller it was not made for.
 */
export function resolveFleetConnection(flags: FleetFlags, env: NodeJS.ProcessEnv = process.env, stateDir = corralHome(env).defaultStateDir): FleetConnection {
  const info = readControllerInfo(stateDir);
  const url = flags.controller ?? env.CORRAL_CONTROLLER ?? info?.url ?? DEFAULT_CONTROLLER_URL;
  let apiKey = resolveSecret(
    { value: flags.apiKey, file: flags.apiKeyFile, env: env.CORRAL_API_KEY, flag: "--api-key", fileFlag: "--api-key-file", envName: "CORRAL_API_KEY" },
    warnOnStderr,
  );
  if (apiKey === undefined && info?.api_key_file && sameController(url, info.url)) apiKey = readKeyFile(info.api_key_file);
  return { url, apiKey };
}

const UNREACHABLE = new Set(["ECONNREFUSED", "ENOTFOUND", "EHOSTUNREACH", "ENETUNREACH", "ETIMEDOUT", "UND_ERR_CONNECT_TIMEOUT"]);

/** Says which controller could not be reached, and what to do, instead of the daemon's hint. */
function explain(err: unknown, connection: FleetConnection): unknown {
  if (UNREACHABLE.has((err as NodeJS.ErrnoException).code ?? "")) {
    const message = `Cannot reach the controller at ${JSON.stringify(connection.url)} (${(err as Error).message}): start it with "corral controller", or name another with --controller URL or CORRAL_CONTROLLER`;
    return new Error(message, { cause: err });
  }
  if (err instanceof CorralApiError && err.status === 401) {
    const hint =
      connection.apiKey === undefined
        ? "give the controller's key with --api-key-file or CORRAL_API_KEY"
        : "check the key given (--api-key-file, --api-key, CORRAL_API_KEY or the controller's key file)";
    return new CorralApiError(err.status, err.code, `${err.message}: ${hint}`, err.method, err.path);
  }
  return err;
}

/** Runs `fn` with a client for the chosen controller and closes it after. */
export async function withController<T>(flags: FleetFlags, fn: (client: ControllerClient) => Promise<T>): Promise<T> {
  const connection = resolveFleetConnection(flags);
  const client = new ControllerClient({ url: connection.url, apiKey: connection.apiKey });
  try {
    return await fn(client);
  } catch (err) {
    throw explain(err, connection);
  } finally {
    await client.close();
  }
}
