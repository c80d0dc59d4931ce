// The guest runtime alone boots a root filesystem to a ready agent: an empty folder with no shell, no init
// and no libc of its own (what a distroless OCI image is) gets only /opt/corral, the modules and
// /etc/corral/image.json, and a real VM made from it serves exec, files and identity.
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { copyFile, mkdir, mkdtemp, rm } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { buildExt4 } from "../../src/image/ext4.ts";
import { guestRuntimeInputs, installGuestRuntime, sha256 } from "../../src/image/guest-runtime.ts";
import { corralHome, findInstalledKernel, ImageStore, type CorralHome, type KernelInfo } from "../../src/image/index.ts";
import { IMAGE_FILES } from "../../src/image/image-store.ts";
import { TestDaemon } from "../helpers/daemon-process.ts";

const IMAGE = "runtime-only";
const BUSYBOX = "/opt/corral/bin/busybox";

describe("the guest runtime in an otherwise empty root filesystem", { timeout: 900_000 }, () => {
  const home = corralHome();
  let daemon: TestDaemon;
  let staged = "";

  before(async () => {
    const store = new ImageStore(home.images);
    const base = await store.resolve("base");
    const version = sha256(JSON.stringify({ base: base.version, runtime: await guestRuntimeInputs(), test: 1 })).slice(0, 12);
    await mkdir(home.cache, { recursive: true });
    const work = await mkdtemp(join(home.cache, "runtime-test-"));
    staged = join(work, "rootfs");
    await mkdir(staged);
    await installGuestRuntime(staged, {
      kernel: await installedKernel(home),
      init: "corral",
      cacheDir: home.cache,
      sshServer: false,
      config: { env: ["GREETING=hello"], labels: { purpose: "test" } },
    });
    if (!(await store.has(IMAGE, version))) {
      const out = join(work, "out");
      await mkdir(out);
      await buildExt4(staged, join(out, IMAGE_FILES.rootfs), "1G");
      await copyFile(base.kernel, join(out, IMAGE_FILES.kernel));
      await copyFile(base.initrd, join(out, IMAGE_FILES.initrd));
      await store.install(out, {
        name: IMAGE,
        version,
        created_at: new Date().toISOString(),
        kernel_release: base.manifest.kernel_release,
        rootfs_format: "raw",
        inputs: { test: "guest-runtime" },
      });
    } else await store.setCurrent(IMAGE, version);
    daemon = await TestDaemon.create(`config:
  host_groups:
    - name: bare
      vcpu: 1
      ram_mb: 512
      image: ${IMAGE}
      template: false
`);
    await daemon.start();
  });

  after(async () => {
    await daemon?.dispose();
    if (staged) await rm(join(staged, ".."), { recursive: true, force: true });
  });

  test("the staged root holds only the runtime: no shell, no init, no libc outside /opt/corral", () => {
    assert.deepEqual(readdirSync(staged).sort(), ["dev", "etc", "lib", "opt", "proc", "root", "run", "sys", "tmp", "var"]);
    for (const absent of ["bin/sh", "sbin/init", "lib64", "lib/x86_64-linux-gnu", "usr"]) assert.equal(existsSync(join(staged, absent)), false, absent);
    assert.deepEqual(readdirSync(join(staged, "lib")), ["modules"]);
    assert.equal(readFileSync(join(staged, "opt/corral/pid1"), "utf8"), "/opt/corral/init\n");
    assert.deepEqual(JSON.parse(readFileSync(join(staged, "etc/corral/image.json"), "utf8")), { env: ["GREETING=hello"], labels: { purpose: "test" } });
    const release = readdirSync(join(staged, "lib/modules"));
    assert.equal(release.length, 1);
    assert.ok(existsSync(join(staged, "lib/modules", release[0] as string, "modules.dep")), "depmod ran on the modules");
  });

  test("a VM boots from it to a ready agent and runs the runtime's programs", async () => {
    const vm = await daemon.client.createNode("bare", {}, { wait: "agent" });
    const echo = await daemon.client.execBuffered(vm.hostname, { cmd: BUSYBOX, args: ["echo", "hello from nothing"] });
    assert.equal(echo.exit_code, 0, echo.stderr);
    assert.equal(echo.stdout, "hello from nothing\n");
    const hostname = await daemon.client.execBuffered(vm.hostname, { cmd: BUSYBOX, args: ["hostname"] });
    assert.equal(hostname.stdout.trim(), vm.hostname, "the identity was applied");
    const node = await daemon.client.execBuffered(vm.hostname, { cmd: "/opt/corral/bin/node", args: ["-e", "console.log(process.version, require('os').hostname())"] });
    assert.equal(node.stdout.trim(), `${process.version} ${vm.hostname}`);
    const shell = await daemon.client.execBuffered(vm.hostname, { cmd: "sh", args: ["-c", "true"] });
    assert.notEqual(shell.exit_code, 0, "the image has no shell of its own");
    const modules = await daemon.client.execBuffered(vm.hostname, { cmd: BUSYBOX, args: ["ls", "/lib/modules"] });
    const uname = await daemon.client.execBuffered(vm.hostname, { cmd: BUSYBOX, args: ["uname", "-r"] });
    assert.equal(modules.stdout.trim(), uname.stdout.trim(), "the running kernel's modules are in the image");
  });

  test("files go in and out of it", async () => {
    const [vm] = await daemon.client.groupNodes("bare");
    assert.ok(vm);
    await daemon.client.fs.upload(vm.hostname, "/tmp/greeting.txt", Buffer.from("hi\n"), { mode: "binary" });
    const cat = await daemon.client.execBuffered(vm.hostname, { cmd: BUSYBOX, args: ["cat", "/tmp/greeting.txt"] });
    assert.equal(cat.stdout, "hi\n");
  });
});

async function installedKernel(home: CorralHome): Promise<KernelInfo> {
  const kernel = await findInstalledKernel(home);
  if (!kernel) throw new Error("The guest kernel is not installed: run the set-up step");
  return kernel;
}
