// Throwaway PostgreSQL servers for tests: initdb in a temporary directory, started on a free port of
// 127.0.0.1 with fsync off, as the `postgres` user when we run as root (the server refuses root). A watchdog
// process stops the server and removes its directory as soon as the test process goes away, however it goes
// (a failed test, a crash, kill -9), so no server outlives its tests.
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import { chown, mkdtemp } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { run } from "../../src/util/run.ts";
import { aptInstall } from "./apt.ts";

export interface TestPostgres {
  /** postgres://postgres@127.0.0.1:PORT/DBNAME */
  url: string;
  stop(): Promise<void>;
}

const PG_ROOT = "/usr/lib/postgresql";
const SERVER_USER = "postgres";
const isRoot = process.getuid?.() === 0;

/** The newest installed server's bin directory (Debian keeps one per major version). */
function findServerBin(): string | undefined {
  if (!existsSync(PG_ROOT)) return undefined;
  const version = readdirSync(PG_ROOT)
    .filter((v) => existsSync(join(PG_ROOT, v, "bin", "initdb")))
    .sort((a, b) => Number(b) - Number(a))[0];
  return version === undefined ? undefined : join(PG_ROOT, version, "bin");
}

async function installServer(): Promise<string> {
  await aptInstall(["postgresql"]);
  const bin = findServerBin();
  if (bin === undefined) throw new Error(`Installed postgresql but found no initdb under ${PG_ROOT}/*/bin`);
  return bin;
}

/** Runs a server program as the `postgres` user when we are root. */
function asServerUser(program: string, args: string[], cwd: string): Promise<string> {
  return isRoot ? run("runuser", ["-u", SERVER_USER, "--", program, ...args], { cwd }) : run(program, args, { cwd });
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => (typeof address === "object" && address ? resolve(address.port) : reject(new Error("No port"))));
    });
  });
}

/**
 * A shell that waits for its stdin to close (our stop(), or this process ending in any way), then stops the
 * server and removes its directory. Detached: a Ctrl-C to the test's process group does not kill it first.
 */
function startWatchdog(bin: string, dir: string): ChildProcess {
  const stop = [join(bin, "pg_ctl"), "stop", "-D", join(dir, "data"), "-m", "immediate"];
  const command = isRoot ? ["runuser", "-u", SERVER_USER, "--", ...stop] : stop;
  const watchdog = spawn("sh", ["-c", 'read _ignored; cd /; "$@" >/dev/null 2>&1; rm -rf -- "$CORRAL_PG_DIR"', "corral-pg-watchdog", ...command], {
    stdio: ["pipe", "ignore", "ignore"],
    detached: true,
    env: { ...process.env, CORRAL_PG_DIR: dir },
  });
  watchdog.unref();
  (watchdog.stdin as unknown as { unref?: () => void }).unref?.();
  return watchdog;
}

async function startServer(bin: string, dir: string): Promise<number> {
  const data = join(dir, "data");
  await asServerUser(join(bin, "initdb"), ["-D", data, "-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C", "--no-sync"], dir);
  // Another process may take the free port before the server does: try a few.
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const settings = `-c listen_addresses=127.0.0.1 -p ${port} -c unix_socket_directories=${dir} -c fsync=off -c synchronous_commit=off -c full_page_writes=off`;
    try {
      await asServerUser(join(bin, "pg_ctl"), ["start", "-D", data, "-w", "-t", "60", "-l", join(dir, "server.log"), "-o", settings], dir);
      return port;
    } catch (err) {
      if (attempt >= 3) throw err;
    }
  }
}

/** A fresh server with an empty database; installs Debian's postgresql first if it is missing. */
export async function startPostgres(): Promise<TestPostgres> {
  const bin = findServerBin() ?? (await installServer());
  const dir = await mkdtemp(join(tmpdir(), "corral-pg-"));
  const watchdog = startWatchdog(bin, dir);
  const stop = async (): Promise<void> => {
    if (watchdog.exitCode !== null || watchdog.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => watchdog.once("exit", () => resolve()));
    watchdog.ref();
    watchdog.stdin?.end();
    await exited;
  };
  try {
    if (isRoot) {
      const [uid, gid] = await Promise.all([run("id", ["-u", SERVER_USER]), run("id", ["-g", SERVER_USER])]);
      await chown(dir, Number(uid.trim()), Number(gid.trim()));
    }
    const port = await startServer(bin, dir);
    const server = `postgres://postgres@127.0.0.1:${port}`;
    const url = await createDatabase(`${server}/postgres`, "corral_test");
    return { url, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

let counter = 0;

/** Creates an empty database on the server of `url`; returns its URL. */
export async function createDatabase(url: string, name = `corral_${process.pid}_${++counter}`): Promise<string> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(`CREATE DATABASE ${pg.escapeIdentifier(name)}`);
  } finally {
    await client.end();
  }
  const created = new URL(url);
  created.pathname = `/${name}`;
  return created.toString();
}

let shared: Promise<TestPostgres> | undefined;

/** One server for the whole test file (started on first use, stopped when the process ends or by stopSharedPostgres). */
export function sharedPostgres(): Promise<TestPostgres> {
  shared ??= startPostgres();
  return shared;
}

/** A new empty database on the shared server: each test gets its own. */
export async function freshPostgresDatabase(): Promise<string> {
  return createDatabase((await sharedPostgres()).url);
}

export async function stopSharedPostgres(): Promise<void> {
  const server = shared;
  shared = undefined;
  await (await server?.catch(() => undefined))?.stop();
}
