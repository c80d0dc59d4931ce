import { test, describe, beforeEach, afterEach } from "node:test";
import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { BOOT_MODULES, canonicalModuleName, parseModuleDepends, resolveBootModules } from "../../src/image/kernel-modules.ts";

/** A fake .ko: some ELF-ish bytes, then a .modinfo-like run of NUL-separated strings. */
function fakeModule(name: string, depends: string | undefined): Buffer {
  const modinfo = ["license=GPL", `name=${name}`, ...(depends === undefined ? [] : [`depends=${depends}`]), "intree=Y", "vermagic=6.1.0 SMP mod_unload"];
  return Buffer.concat([Buffer.from("\x7fELF\x02\x01\x01", "latin1"), Buffer.alloc(16), Buffer.from(`\0${modinfo.join("\0")}\0`, "latin1"), Buffer.alloc(8)]);
}

describe("canonicalModuleName", () => {
  test("dashes become underscores", () => {
    assert.equal(canonicalModuleName("virtio-rng"), "virtio_rng");
    assert.equal(canonicalModuleName("a-b-c"), "a_b_c");
    assert.equal(canonicalModuleName("virtio_blk"), "virtio_blk");
  });
});

describe("parseModuleDepends", () => {
  test("reads a comma-separated list", () => {
    assert.deepEqual(parseModuleDepends(fakeModule("virtio_blk", "virtio,virtio_ring")), ["virtio", "virtio_ring"]);
  });

  test("a single dependency", () => {
    assert.deepEqual(parseModuleDepends(fakeModule("virtio_mmio", "virtio")), ["virtio"]);
  });

  test("no depends= string means no dependencies", () => {
    assert.deepEqual(parseModuleDepends(fakeModule("virtio", undefined)), []);
    assert.deepEqual(parseModuleDepends(Buffer.alloc(0)), []);
  });

  test("an empty depends= means no dependencies", () => {
    assert.deepEqual(parseModuleDepends(fakeModule("virtio", "")), []);
  });

  test("empty items and spaces are dropped", () => {
    assert.deepEqual(parseModuleDepends(Buffer.from("\0depends=a,,b, c ,\0", "latin1")), ["a", "b", "c"]);
    assert.deepEqual(parseModuleDepends(Buffer.from("\0depends=,\0", "latin1")), []);
  });

  test("the value ends at the next NUL, or at the end of the buffer", () => {
    assert.deepEqual(parseModuleDepends(Buffer.from("\0depends=a,b\0depends=z\0", "latin1")), ["a", "b"]);
    assert.deepEqual(parseModuleDepends(Buffer.from("junk\0depends=x,y", "latin1")), ["x", "y"]);
  });

  test("only a whole depends= string counts, not a longer key ending in it", () => {
    assert.deepEqual(parseModuleDepends(Buffer.from("\0softdepends=nope\0", "latin1")), []);
    assert.deepEqual(parseModuleDepends(Buffer.from("\0xdepends=nope\0depends=yes\0", "latin1")), ["yes"]);
  });

  test("names keep their spelling (dashes included)", () => {
    assert.deepEqual(parseModuleDepends(Buffer.from("\0depends=virtio-ring,crc32c_generic\0", "latin1")), ["virtio-ring", "crc32c_generic"]);
  });
});

describe("resolveBootModules", () => {
  let root = "";
  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), "corral-kmod-test-"));
  });
  afterEach(async () => {
    await rm(root, { recursive: true, force: true });
  });

  /** Writes `kernel/<rel>` with the given depends= value. */
  async function ko(rel: string, depends?: string): Promise<string> {
    const path = join(root, "kernel", rel);
    await mkdir(dirname(path), { recursive: true });
    const name = canonicalModuleName(rel.split("/").at(-1)?.replace(/\.ko$/, "") ?? "");
    await writeFile(path, fakeModule(name, depends));
    return path;
  }

  test("dependencies come before the modules that need them, each once", async () => {
    const virtio = await ko("drivers/virtio/virtio.ko", "");
    const ring = await ko("drivers/virtio/virtio_ring.ko", "virtio");
    const mmio = await ko("drivers/virtio/virtio_mmio.ko", "virtio,virtio_ring");
    const blk = await ko("drivers/block/virtio_blk.ko", "virtio_ring,virtio");
    const resolved = await resolveBootModules(root, ["virtio_mmio", "virtio_blk"]);
    assert.deepEqual(resolved, [
      { name: "virtio", path: virtio, depends: [] },
      { name: "virtio_ring", path: ring, depends: ["virtio"] },
      { name: "virtio_mmio", path: mmio, depends: ["virtio", "virtio_ring"] },
      { name: "virtio_blk", path: blk, depends: ["virtio_ring", "virtio"] },
    ]);
  });

  test("the order follows the wanted list, depth first", async () => {
    await ko("a.ko", "c");
    await ko("b.ko", "");
    await ko("c.ko", "d");
    await ko("d.ko");
    assert.deepEqual(
      (await resolveBootModules(root, ["a", "b"])).map((m) => m.name),
      ["d", "c", "a", "b"],
    );
    assert.deepEqual(
      (await resolveBootModules(root, ["b", "a"])).map((m) => m.name),
      ["b", "d", "c", "a"],
    );
  });

  test("a module wanted twice, or also a dependency, appears once", async () => {
    await ko("x.ko", "y");
    await ko("y.ko");
    assert.deepEqual(
      (await resolveBootModules(root, ["y", "x", "x"])).map((m) => m.name),
      ["y", "x"],
    );
  });

  test("'-' and '_' are the same, in wanted names, depends= and file names", async () => {
    const rng = await ko("drivers/char/hw_random/virtio-rng.ko", "virtio-ring");
    const ring = await ko("drivers/virtio/virtio_ring.ko");
    const net = await ko("drivers/net/virtio_net.ko", "net_failover,virtio_ring");
    const failover = await ko("drivers/net/net-failover.ko");
    const resolved = await resolveBootModules(root, ["virtio-rng", "virtio_net", "virtio_rng"]);
    assert.deepEqual(resolved, [
      { name: "virtio_ring", path: ring, depends: [] },
      { name: "virtio_rng", path: rng, depends: ["virtio_ring"] },
      { name: "net_failover", path: failover, depends: [] },
      { name: "virtio_net", path: net, depends: ["net_failover", "virtio_ring"] },
    ]);
  });

  test("only .ko files count; compressed modules are not found", async () => {
    await mkdir(join(root, "kernel"), { recursive: true });
    await writeFile(join(root, "kernel", "virtio_blk.ko.xz"), fakeModule("virtio_blk", ""));
    await assert.rejects(resolveBootModules(root, ["virtio_blk"]), {
      message: `Kernel module "virtio_blk" is not in ${root} (it may be built in, or compressed, which is not supported)`,
    });
  });

  test("a missing wanted module names it as written", async () => {
    await ko("virtio_blk.ko");
    await assert.rejects(resolveBootModules(root, ["virtio_blk", "virtio-rng"]), {
      message: `Kernel module "virtio-rng" is not in ${root} (it may be built in, or compressed, which is not supported)`,
    });
  });

  test("a missing dependency is an error too", async () => {
    await ko("virtio_blk.ko", "virtio_ring");
    await assert.rejects(resolveBootModules(root, ["virtio_blk"]), {
      message: `Kernel module "virtio_ring" is not in ${root} (it may be built in, or compressed, which is not supported)`,
    });
  });

  test("a cycle is an error that shows the chain", async () => {
    await ko("a.ko", "b");
    await ko("b.ko", "c");
    await ko("c.ko", "a");
    await assert.rejects(resolveBootModules(root, ["a"]), { message: "Kernel modules depend on each other in a cycle: a -> b -> c -> a" });
  });

  test("a cycle reached part-way shows only the looping chain from the wanted module", async () => {
    await ko("top.ko", "x");
    await ko("x.ko", "y");
    await ko("y.ko", "x");
    await assert.rejects(resolveBootModules(root, ["top"]), { message: "Kernel modules depend on each other in a cycle: top -> x -> y -> x" });
  });

  test("a module depending on itself is a cycle", async () => {
    await ko("self.ko", "self");
    await assert.rejects(resolveBootModules(root, ["self"]), { message: "Kernel modules depend on each other in a cycle: self -> self" });
  });

  test("a cycle spelt with dashes on one side is still found", async () => {
    await ko("a-b.ko", "c_d");
    await ko("c-d.ko", "a-b");
    await assert.rejects(resolveBootModules(root, ["a_b"]), { message: "Kernel modules depend on each other in a cycle: a_b -> c_d -> a_b" });
  });

  test("a diamond is not a cycle", async () => {
    await ko("top.ko", "left,right");
    await ko("left.ko", "base");
    await ko("right.ko", "base");
    await ko("base.ko");
    assert.deepEqual(
      (await resolveBootModules(root, ["top"])).map((m) => m.name),
      ["base", "left", "right", "top"],
    );
  });

  test("nothing wanted resolves to nothing", async () => {
    await ko("a.ko");
    assert.deepEqual(await resolveBootModules(root, []), []);
  });

  test("the default list is the virtio boot drivers", async () => {
    assert.deepEqual([...BOOT_MODULES], ["virtio_mmio", "virtio_blk", "virtio_console", "virtio_net", "virtio-rng"]);
    for (const name of ["virtio_mmio", "virtio_blk", "virtio_console", "virtio_net"]) await ko(`drivers/${name}.ko`, "virtio");
    await ko("drivers/char/virtio-rng.ko", "virtio");
    await ko("drivers/virtio.ko");
    assert.deepEqual(
      (await resolveBootModules(root)).map((m) => m.name),
      ["virtio", "virtio_mmio", "virtio_blk", "virtio_console", "virtio_net", "virtio_rng"],
    );
  });

  test("modules outside the kernel/ folder are not looked at", async () => {
    await mkdir(join(root, "kernel"), { recursive: true });
    await mkdir(join(root, "extra"), { recursive: true });
    await writeFile(join(root, "extra", "virtio_blk.ko"), fakeModule("virtio_blk", ""));
    await assert.rejects(resolveBootModules(root, ["virtio_blk"]), { message: /^Kernel module "virtio_blk" is not in / });
  });
});
