// A key-only SSH server for tests that reach libvirt through `qemu+ssh://`: OpenSSH's sshd on 127.0.0.1 and a
// free port, with its own host key and config in a temporary directory, no passwords, root by key only, and
// one authorized key made by the test. libvirt 9 runs `virt-ssh-helper` on the far side (its netcat stand-in),
// which is installed with libvirt here.
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer, connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { makeSshKey, type SshKey } from "./ssh.ts";
import { until } from "./until.ts";

const exec = promisify(execFile);

export interface Sshd {
  port: number;
  /** The client's key, authorized for root. */
  key: SshKey;
  /** `qemu+ssh://root@127.0.0.1:PORT/system?keyfile=KEY&no_verify=1`: the host key is this test's own. */
  libvirtUri(): string;
  stop(): Promise<void>;
}

/** A port nothing listens on now (the kernel's pick, released at once). */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === "string") throw new Error("No port from the kernel");
  return address.port;
}

export async function startSshd(): Promise<Sshd> {
  const dir = await mkdtemp(join(tmpdir(), "corral-sshd-"));
  const key = await makeSshKey("corral-libvirt-test");
  const hostKey = join(dir, "host_ed25519");
  await exec("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", hostKey]);
  await writeFile(join(dir, "authorized_keys"), `${key.publicKey}\n`, { mode: 0o600 });
  // sshd's privilege separation directory (made by the service on a systemd host).
  await mkdir("/run/sshd", { recursive: true, mode: 0o755 });
  const port = await freePort();
  const config = join(dir, "sshd_config");
  await writeFile(
    config,
    [
      `Port ${port}`,
      "ListenAddress 127.0.0.1",
      `HostKey ${hostKey}`,
      `PidFile ${join(dir, "sshd.pid")}`,
      `AuthorizedKeysFile ${join(dir, "authorized_keys")}`,
      "PubkeyAuthentication yes",
      "PasswordAuthentication no",
      "KbdInteractiveAuthentication no",
      "PermitRootLogin prohibit-password",
      "UsePAM no",
      // The directory is mkdtemp's, under /tmp: sshd's ownership checks of the key's path would refuse it.
      "StrictModes no",
      "X11Forwarding no",
      "AllowTcpForwarding no",
      "PrintMotd no",
      "LogLevel ERROR",
      "",
    ].join("\n"),
  );
  const child: ChildProcess = spawn("/usr/sbin/sshd", ["-D", "-e", "-f", config], { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  child.stderr?.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  await until(
    async () => {
      if (child.exitCode !== null) throw new Error(`sshd exited (${child.exitCode}): ${stderr}`);
      return (await accepts(port)) ? true : undefined;
    },
    `sshd on 127.0.0.1:${port}`,
    30_000,
    100,
  );
  return {
    port,
    key,
    libvirtUri: () => `qemu+ssh://root@127.0.0.1:${port}/system?keyfile=${key.privateKeyFile}&no_verify=1`,
    stop: async () => {
      if (child.exitCode === null) {
        child.kill("SIGTERM");
        await exited;
      }
      await key.dispose();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, "127.0.0.1");
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}
