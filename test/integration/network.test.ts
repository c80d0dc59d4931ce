// User-mode networking: the guest reaches out through QEMU's NAT. Only the host's loopback is used: the
// guest's gateway 10.0.2.2 is the host itself, so a server on 127.0.0.1 answers it.
import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import { after, before, describe, test } from "node:test";
import { TestDaemon } from "../helpers/daemon-process.ts";

describe("guest networking", { timeout: 300_000 }, () => {
  let daemon: TestDaemon;
  let server: Server;
  let port: number;
  let hostname: string;
  const seen: string[] = [];

  before(async () => {
    server = createServer((request, response) => {
      seen.push(`${request.method} ${request.url} from ${request.socket.remoteAddress}`);
      response.end("hello from the host\n");
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    port = (server.address() as { port: number }).port;
    daemon = await TestDaemon.create();
    await daemon.start();
    hostname = (await daemon.client.createNode("sbox", {}, { wait: "agent", timeout: "120s" })).hostname;
  });

  after(async () => {
    await daemon.dispose();
    server.close();
  });

  test("the guest has its address, a default route and a resolver", async () => {
    const result = await daemon.client.execBuffered(hostname, { cmd: "sh", args: ["-c", "ip -4 addr show eth0; ip route; cat /etc/resolv.conf"] });
    assert.equal(result.exit_code, 0, result.stderr);
    assert.match(result.stdout, /inet 10\.0\.2\.15\/24/);
    assert.match(result.stdout, /default via 10\.0\.2\.2 dev eth0/);
    assert.match(result.stdout, /nameserver 10\.0\.2\.3/);
  });

  test("an outbound TCP connection from the guest goes through the NAT", async () => {
    const result = await daemon.client.execBuffered(hostname, { cmd: "wget", args: ["-q", "-O", "-", `http://10.0.2.2:${port}/from-guest`] });
    assert.equal(result.exit_code, 0, result.stderr);
    assert.equal(result.stdout, "hello from the host\n");
    assert.deepEqual(seen, ["GET /from-guest from 127.0.0.1"]);
  });
});
