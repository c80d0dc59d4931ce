// Random bytes straight from the kernel. Node's own generator (OpenSSL's) is seeded once per process, so in
// clones of one template snapshot it would hand every clone the same "random" ids; the kernel's generator is
// rekeyed with host entropy when each clone takes its identity.
import { closeSync, openSync, readSync } from "node:fs";
import { randomBytes } from "node:crypto";

export function kernelRandomBytes(size: number): Buffer {
  const buffer = Buffer.alloc(size);
  try {
    const fd = openSync("/dev/urandom", "r");
    try {
      if (readSync(fd, buffer, 0, size, null) === size) return buffer;
    } finally {
      closeSync(fd);
    }
  } catch {
    // no /dev/urandom (a unit test on an unusual host): Node's generator is the next best
  }
  return randomBytes(size);
}
