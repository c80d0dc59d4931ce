// Host TCP ports for a VM's forwarded guest ports (QEMU's `hostfwd`). The kernel picks free ones: each is
// bound to port 0 on the forwarding address, and all stay bound until every one is chosen, so one VM never
// gets the same port twice. They are released just before QEMU binds them; another process could take one
// in that gap, and QEMU then fails to start, which the caller reports.
import { createServer, type Server } from "node:net";

function listen(address: string, port: number): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen({ host: address, port, exclusive: true }, () => resolve(server));
  });
}

function close(server: Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

/** `count` distinct free TCP ports on `address`. */
export async function allocateHostPorts(address: string, count: number): Promise<number[]> {
  const servers: Server[] = [];
  try {
    for (let i = 0; i < count; i++) servers.push(await listen(address, 0));
    return servers.map((s) => {
      const bound = s.address();
      if (bound === null || typeof bound === "string") throw new Error(`Cannot read the port bound on ${address}`);
      return bound.port;
    });
  } finally {
    await Promise.all(servers.map(close));
  }
}

/** Whether `port` on `address` can be bound now (a VM's earlier port, before it starts again). */
export async function isPortFree(address: string, port: number): Promise<boolean> {
  try {
    await close(await listen(address, port));
    return true;
  } catch {
    return false;
  }
}
