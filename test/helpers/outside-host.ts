// A machine beyond this host, for tests that prove a guest's outbound traffic still works without using the
// internet: a network namespace the test makes, joined to the host by a veth pair on a /30 of the
// benchmarking range (RFC 2544, 198.18.0.0/15), with a TCP server in it that greets each connection. The
// host's end of the link gets the first address; the route to the second is the link's own.
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes, randomInt } from "node:crypto";
import { run } from "../../src/util/run.ts";

const SERVER = `
const [address, port, greeting] = process.argv.slice(-3);
const server = require("net").createServer((s) => { s.on("error", () => {}); s.end(greeting + "\\n"); });
server.listen(Number(port), address, () => console.log("listening"));
`;

export class OutsideHost {
  private constructor(
    private readonly ns: string,
    private readonly server: ChildProcess,
    /** The outside machine's address, reachable from the host (and from guests, through QEMU's NAT). */
    readonly address: string,
    readonly port: number,
    /** What the server says to each connection. */
    readonly greeting: string,
  ) {}

  static async create(greeting = "hello from outside"): Promise<OutsideHost> {
    const id = randomBytes(3).toString("hex");
    const ns = `corral-out-${id}`;
    // 198.19.X.Y/30 with X, Y random: concurrent tests (and other helpers' namespaces) rarely collide.
    const prefix = `198.19.${randomInt(0, 256)}`;
    const subnet = randomInt(0, 64) * 4;
    const [hostEnd, outside] = [`${prefix}.${subnet + 1}`, `${prefix}.${subnet + 2}`];
    const [hostIf, nsIf] = [`co${id}h`, `co${id}n`];
    await run("ip", ["netns", "add", ns]);
    try {
      await run("ip", ["link", "add", hostIf, "type", "veth", "peer", "name", nsIf, "netns", ns]);
      await run("ip", ["addr", "add", `${hostEnd}/30`, "dev", hostIf]);
      await run("ip", ["link", "set", hostIf, "up"]);
      await run("ip", ["-n", ns, "addr", "add", `${outside}/30`, "dev", nsIf]);
      await run("ip", ["-n", ns, "link", "set", nsIf, "up"]);
      await run("ip", ["-n", ns, "link", "set", "lo", "up"]);
      const port = 8000 + randomInt(0, 1000);
      const server = spawn("ip", ["netns", "exec", ns, process.execPath, "-e", SERVER, outside, String(port), greeting], { stdio: ["ignore", "pipe", "pipe"] });
      await new Promise<void>((resolve, reject) => {
        let output = "";
        server.stdout.on("data", (chunk: Buffer) => {
          output += chunk.toString();
          if (output.includes("listening")) resolve();
        });
        server.stderr.on("data", (chunk: Buffer) => (output += chunk.toString()));
        server.once("exit", (code) => reject(new Error(`The outside server exited (${code}): ${output}`)));
      });
      return new OutsideHost(ns, server, outside, port, greeting);
    } catch (err) {
      await run("ip", ["netns", "del", ns]).catch(() => undefined);
      throw err;
    }
  }

  /** Stops the server and removes the namespace (which takes both ends of the veth with it). */
  async dispose(): Promise<void> {
    if (this.server.exitCode === null && this.server.signalCode === null) {
      const exited = new Promise((resolve) => this.server.once("exit", resolve));
      this.server.kill("SIGKILL");
      await exited;
    }
    await run("ip", ["netns", "del", this.ns]).catch(() => undefined);
  }
}
