// OCI images and the catalogue, for real: images written by the test's own code (busybox in two layers, a
// whiteout, an opaque directory, Env/WorkingDir/User/Cmd) imported as a `docker save` tarball and as an OCI
// layout (through the CLI, with progress), pulled from a local registry (Debian's docker-registry on
// 127.0.0.1, with and without auth), booted in a sandbox and checked from inside; bad input answered with a
// clear 4xx and nothing half-written in the store; list/show/remove/prune with a VM on an old version.
import assert from "node:assert/strict";
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import { mkdtemp, readFile, rm, unlink, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Readable } from "node:stream";
import { promisify } from "node:util";
import { after, before, describe, test } from "node:test";
import { CorralApiError, type ImportedImage } from "../../src/sdk/index.ts";
import { corralHome } from "../../src/image/home.ts";
import { TestController } from "../helpers/controller-process.ts";
import { TestDaemon } from "../helpers/daemon-process.ts";
import { dockerArchive, tarDirectory, testImage, writeOciLayout, type FixtureImage } from "../helpers/oci-fixtures.ts";
import { until } from "../helpers/until.ts";

const CORRAL = fileURLToPath(new URL("../../corral", import.meta.url));
const run = promisify(execFile);

function rejectsWith(status: number, code: string, message?: RegExp): (err: unknown) => boolean {
  return (err: unknown) => {
    assert.ok(err instanceof CorralApiError, String(err));
    assert.equal(err.status, status, err.message);
    assert.equal(err.code, code, err.message);
    if (message) assert.match(err.message, message);
    return true;
  };
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** Debian's docker-registry on 127.0.0.1, with a config the test writes; optionally with one htpasswd user. */
async function startRegistry(dir: string, auth?: { user: string; password: string }): Promise<{ address: string; child: ChildProcess }> {
  const port = await freePort();
  let authBlock = "";
  if (auth) {
    // bcrypt, as the registry's htpasswd wants, from Python's crypt (glibc's blowfish).
    const { stdout } = await run("python3", ["-W", "ignore", "-c", "import crypt,sys; print(crypt.crypt(sys.argv[1], crypt.mksalt(crypt.METHOD_BLOWFISH)))", auth.password]);
    await writeFile(join(dir, "htpasswd"), `${auth.user}:${stdout.trim()}\n`);
    authBlock = `auth:\n  htpasswd:\n    realm: corral-test\n    path: ${join(dir, "htpasswd")}\n`;
  }
  await writeFile(
    join(dir, "config.yml"),
    `version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: ${join(dir, "data")}\nhttp:\n  addr: 127.0.0.1:${port}\n  secret: corral-test\n${authBlock}`,
  );
  const child = spawn("docker-registry", ["serve", join(dir, "config.yml")], { stdio: "ignore" });
  const address = `127.0.0.1:${port}`;
  await until(
    async () =>
      (await fetch(`http://${address}/v2/`)
        .then((r) => r.status)
        .catch(() => undefined)) ?? undefined,
    `the registry on ${address}`,
    30_000,
    100,
  );
  return { address, child };
}

async function push(layout: string, target: string, auth?: { user: string; password: string }, work?: string): Promise<void> {
  const policy = join(work ?? tmpdir(), "policy.json");
  await writeFile(policy, JSON.stringify({ default: [{ type: "insecureAcceptAnything" }] }));
  const creds = auth ? ["--dest-creds", `${auth.user}:${auth.password}`] : [];
  await run("skopeo", ["--policy", policy, "copy", "--quiet", "--dest-tls-verify=false", ...creds, `oci:${layout}`, `docker://${target}`]);
}

describe("OCI images and the catalogue", { timeout: 1_500_000 }, () => {
  let daemon: TestDaemon;
  let work: string;
  let image: FixtureImage;
  let layout: string;
  const registries: ChildProcess[] = [];
  const imagesDir = corralHome().images;
  const cacheDir = corralHome().cache;

  /** What an import must leave behind when it fails: the same image folders, and no work folder. */
  const storeSnapshot = (): string =>
    JSON.stringify([
      readdirSync(imagesDir)
        .filter((n) => !n.startsWith("."))
        .sort(),
      existsSync(cacheDir) ? readdirSync(cacheDir).filter((n) => n.startsWith("import-")) : [],
    ]);

  before(async () => {
    work = await mkdtemp(join(tmpdir(), "corral-oci-"));
    image = await testImage();
    layout = join(work, "layout");
    await writeOciLayout(image, layout);
    daemon = await TestDaemon.create();
    await daemon.start();
  });

  after(async () => {
    for (const child of registries) child.kill("SIGTERM");
    await daemon?.dispose();
    await rm(work, { recursive: true, force: true });
  });

  let fromDocker: ImportedImage;

  test("a `docker save` tarball imports: 201 with the new version, its source and OCI's config kept", async () => {
    fromDocker = await daemon.client.images.import("t-docker", await dockerArchive(image));
    assert.equal(fromDocker.name, "t-docker");
    assert.match(fromDocker.version, /^[0-9a-f]{12}$/);
    assert.equal(fromDocker.current, true);
    assert.equal(fromDocker.source?.kind, "oci");
    assert.equal((fromDocker.source as Record<string, unknown>).format, "docker-archive");
    assert.deepEqual(fromDocker.config, {
      env: ["PATH=/usr/local/bin:/usr/bin:/bin", "GREETING=hello-oci"],
      working_dir: "/srv/app",
      user: "1000:1000",
      cmd: ["sh", "-c", "echo started"],
      labels: { "org.example.purpose": "corral-test" },
    });
    assert.ok(fromDocker.disk_size_bytes >= 1024 * 1024 * 1024 && fromDocker.disk_usage_bytes > 0, JSON.stringify(fromDocker));
    // Importing the same image again makes no new version.
    const again = await daemon.client.images.import("t-docker", await dockerArchive(image));
    assert.equal(again.version, fromDocker.version);
    assert.equal((await daemon.client.images.show("t-docker")).versions.length, 1);
  });

  test("an OCI layout folder imports through the CLI, with progress on the terminal", async () => {
    const { stdout, stderr } = await run(CORRAL, ["image", "import", layout, "--name", "t-layout"], { env: { ...process.env, CORRAL_URL: daemon.url }, timeout: 600_000 });
    assert.match(stdout, /^t-layout [0-9a-f]{12} \(/);
    assert.match(stderr, /applying layer 1\/2/);
    assert.match(stderr, /applying layer 2\/2/);
    assert.match(stderr, /root filesystem built/);
    const shown = await daemon.client.images.show("t-layout");
    assert.equal((shown.versions[0]?.source as Record<string, unknown> | undefined)?.format, "oci-archive");
    const list = await run(CORRAL, ["image", "list"], { env: { ...process.env, CORRAL_URL: daemon.url } });
    assert.match(list.stdout, /\nt-layout\s+[0-9a-f]{12}\s+\S+-cloud-amd64\s+/);
  });

  test("the imported image boots: layers applied with whiteouts, Env and WorkingDir apply to exec; TTstack's API names it", async () => {
    const images = (await (await fetch(`${daemon.url}/api/images`)).json()) as { data: string[] };
    assert.ok(images.data.includes("t-docker"), JSON.stringify(images));
    assert.ok(
      (await daemon.client.info()).images.some((i) => i.name === "t-docker" && i.version === fromDocker.version),
      "GET /info lists it (fleet controllers read it there)",
    );
    const created = await fetch(`${daemon.url}/api/vms`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ vm_id: "oci-1", image: "t-docker", cpu: 1, mem: 512, disk: 1024, ports: [] }),
    });
    assert.equal(created.status, 201, await created.text());
    const sh = async (script: string): Promise<string> => {
      const result = await daemon.client.execBuffered("oci-1", { cmd: "sh", args: ["-c", script] });
      assert.equal(result.exit_code, 0, `${script}: ${result.stderr}`);
      return result.stdout.trim();
    };
    await until(
      () =>
        daemon.client.execBuffered("oci-1", { cmd: "true" }).then(
          () => true,
          () => undefined,
        ),
      "the agent of oci-1",
      300_000,
      1000,
    );
    assert.equal(await sh("test -e /etc/gone.txt && echo present || echo absent"), "absent", "the whiteout removed the lower layer's file");
    assert.equal(await sh("ls /data"), "new.txt", "the opaque directory kept only its own layer's entries");
    assert.equal(await sh("cat /srv/app/hello.txt"), "hello from the image");
    const inGuest = JSON.parse(await sh("cat /etc/corral/image.json")) as Record<string, unknown>;
    assert.deepEqual(inGuest, fromDocker.config, "the image's config is in the guest for the agent");
    assert.equal(await sh("pwd"), "/srv/app", "WorkingDir is exec's default directory");
    assert.equal(await sh('echo "$GREETING"'), "hello-oci", "Env applies to exec");
    assert.equal(await sh("id -u"), "1000", "User applies to exec");
    assert.equal(await sh("cd /tmp && pwd"), "/tmp");
    const asked = await daemon.client.execBuffered("oci-1", { cmd: "sh", args: ["-c", "pwd; echo $GREETING; id -u"], cwd: "/", env: { GREETING: "mine" }, uid: 0 });
    assert.deepEqual(asked.stdout.trim().split("\n"), ["/", "mine", "0"], "what a request asks for wins over the image's defaults");
  });

  test("a fleet controller lists an imported image (TTstack's /api/images, from the host's report)", async () => {
    const controller = await TestController.create();
    try {
      await controller.start();
      const headers = { authorization: `Bearer ${controller.apiKey}`, "content-type": "application/json" };
      const added = await fetch(`${controller.url}/api/v1/hosts`, { method: "POST", headers, body: JSON.stringify({ id: "h-images", uri: daemon.url }) });
      assert.equal(added.status, 201, await added.text());
      const listed = async (): Promise<Array<{ name: string; host_id: string }>> =>
        ((await (await fetch(`${controller.url}/api/images`, { headers })).json()) as { data: Array<{ name: string; host_id: string }> }).data;
      assert.ok(
        (await listed()).some((i) => i.name === "t-docker"),
        JSON.stringify(await listed()),
      );
      // An image imported after the host joined shows up with the next report.
      await daemon.client.images.import("t-later", await dockerArchive(image));
      await until(async () => ((await listed()).some((i) => i.name === "t-later") ? true : undefined), "t-later in the controller's images", 120_000, 500);
      await daemon.client.images.remove("t-later");
    } finally {
      await controller.dispose();
    }
  });

  describe("bad input: a clear 4xx, nothing half-written in the store", () => {
    test("bytes that are no archive, and a truncated tarball", async () => {
      const before = storeSnapshot();
      await assert.rejects(daemon.client.images.import("t-bad", Buffer.from("this is not a tar archive at all\n".repeat(100))), rejectsWith(400, "invalid_image_archive"));
      const tarball = await dockerArchive(image);
      await assert.rejects(
        daemon.client.images.import("t-bad", tarball.subarray(0, Math.floor(tarball.length / 2))),
        rejectsWith(400, "invalid_image_archive", /truncated|tar|unexpected|EOF/i),
      );
      await assert.rejects(daemon.client.images.import("t-bad", Buffer.alloc(0)), rejectsWith(400, "invalid_image_archive"));
      assert.equal(storeSnapshot(), before);
    });

    test("an upload cut off by its client leaves nothing; a CLI import of a broken file says why and fails", async () => {
      const before = storeSnapshot();
      const tarball = await dockerArchive(image);
      const cancel = new AbortController();
      // Half the archive, then the client goes away without ending the body.
      const body = new Readable({ read() {} });
      body.push(tarball.subarray(0, Math.floor(tarball.length / 2)));
      const answer = daemon.client.images.import("t-cut", body, { signal: cancel.signal });
      setTimeout(() => cancel.abort(), 1000);
      await assert.rejects(answer);
      await until(() => (storeSnapshot() === before ? true : undefined), "the cut-off import's work folder to go", 60_000, 200);
      assert.equal(existsSync(join(imagesDir, "t-cut")), false);

      const broken = join(work, "broken.tar");
      await writeFile(broken, tarball.subarray(0, 3000));
      const cli = await run(CORRAL, ["image", "import", broken], { env: { ...process.env, CORRAL_URL: daemon.url } }).then(
        () => assert.fail("the import should fail"),
        (err: { code: number; stderr: string }) => err,
      );
      assert.equal(cli.code, 1);
      assert.match(cli.stderr, /\(400 invalid_image_archive\)/);
      assert.equal(storeSnapshot(), before);
    });

    test("an OCI archive with a missing layer blob, and one whose blob does not match its digest", async () => {
      const before = storeSnapshot();
      const manifest = JSON.parse(await readFile(join(layout, "index.json"), "utf8")) as { manifests: Array<{ digest: string }> };
      const manifestBlob = JSON.parse(await readFile(join(layout, "blobs", "sha256", manifest.manifests[0]!.digest.slice(7)), "utf8")) as { layers: Array<{ digest: string }> };
      const layerFile = (i: number): string => join(layout, "blobs", "sha256", manifestBlob.layers[i]!.digest.slice(7));

      const broken = join(work, "broken");
      await run("cp", ["-a", layout, broken]);
      await unlink(join(broken, "blobs", "sha256", manifestBlob.layers[1]!.digest.slice(7)));
      await assert.rejects(daemon.client.images.import("t-bad", await tarDirectory(broken)), rejectsWith(400, "invalid_image_archive", /sha256:|blob|no such file/i));

      const tampered = join(work, "tampered");
      await run("cp", ["-a", layout, tampered]);
      const original = await readFile(layerFile(0));
      const changed = Buffer.from(original);
      changed[changed.length - 2000] = (changed[changed.length - 2000] ?? 0) ^ 0xff;
      await writeFile(join(tampered, "blobs", "sha256", manifestBlob.layers[0]!.digest.slice(7)), changed);
      await assert.rejects(daemon.client.images.import("t-bad", await tarDirectory(tampered)), rejectsWith(400, "invalid_image_archive", /digest/i));
      assert.equal(storeSnapshot(), before);
    });

    test("a name that fails the pattern, an unknown reference, a malformed reference", async () => {
      const before = storeSnapshot();
      for (const name of ["Bad Name", "../x", ".hidden", "a".repeat(64)]) {
        const response = await fetch(`${daemon.url}/images/import?name=${encodeURIComponent(name)}`, {
          method: "POST",
          body: await dockerArchive(image),
          duplex: "half",
        } as RequestInit);
        assert.equal(response.status, 400, name);
        assert.equal(((await response.json()) as { code: string }).code, "invalid_request", name);
      }
      await assert.rejects(daemon.client.images.pull({ reference: "127.0.0.1:1/x:1", name: "Bad/Name" }), rejectsWith(400, "invalid_request", /name/));
      await assert.rejects(daemon.client.images.pull({ reference: "NOT A REF" }), rejectsWith(400, "invalid_reference", /NOT A REF/));
      await assert.rejects(daemon.client.images.import("base", await dockerArchive(image)), rejectsWith(409, "conflict", /another name/));
      const registry = await startRegistry(await mkdtemp(join(work, "reg-")));
      registries.push(registry.child);
      await assert.rejects(daemon.client.images.pull({ reference: `${registry.address}/no/such:1`, insecure: true }), rejectsWith(404, "image_reference_not_found", /no\/such/));
      assert.equal(storeSnapshot(), before);
    });
  });

  describe("pull from a local registry", () => {
    test("without auth: insecure is needed for plain HTTP, then the image is pulled and recorded", async () => {
      const registry = await startRegistry(await mkdtemp(join(work, "reg-")));
      registries.push(registry.child);
      await push(layout, `${registry.address}/team/tiny:1`, undefined, work);
      await assert.rejects(daemon.client.images.pull({ reference: `${registry.address}/team/tiny:1` }), rejectsWith(502, "registry_unreachable", /insecure/));
      const lines: string[] = [];
      const pulled = await daemon.client.images.pull({ reference: `${registry.address}/team/tiny:1`, insecure: true }, { onProgress: (p) => lines.push(p.message) });
      assert.equal(pulled.name, "tiny");
      assert.equal((pulled.source as Record<string, unknown>).reference, `${registry.address}/team/tiny:1`);
      assert.equal(pulled.config.working_dir, "/srv/app");
      assert.ok(
        lines.some((l) => /applying layer 2\/2/.test(l)),
        lines.join("\n"),
      );
    });

    test("with auth: refused without or with wrong credentials, pulled with the right ones (CLI, password from a file)", async () => {
      const auth = { user: "tester", password: "s3cret-pw" };
      const registry = await startRegistry(await mkdtemp(join(work, "reg-")), auth);
      registries.push(registry.child);
      await push(layout, `${registry.address}/team/locked:2`, auth, work);
      const ref = `${registry.address}/team/locked:2`;
      await assert.rejects(daemon.client.images.pull({ reference: ref, insecure: true }), rejectsWith(403, "registry_auth_failed"));
      await assert.rejects(daemon.client.images.pull({ reference: ref, insecure: true, username: "tester", password: "wrong" }), rejectsWith(403, "registry_auth_failed"));
      const passwordFile = join(work, "registry-password");
      await writeFile(passwordFile, `${auth.password}\n`, { mode: 0o600 });
      const { stdout, stderr } = await run(CORRAL, ["image", "pull", ref, "--name", "t-locked", "--username", "tester", "--password-file", passwordFile, "--insecure", "--json"], {
        env: { ...process.env, CORRAL_URL: daemon.url },
        timeout: 600_000,
      });
      assert.equal((JSON.parse(stdout) as ImportedImage).name, "t-locked");
      assert.match(stderr, /applying layer/);
      assert.doesNotMatch(JSON.stringify(await daemon.client.images.show("t-locked")), /s3cret/, "the password is stored nowhere");
    });
  });

  describe("the catalogue", () => {
    test("a VM keeps its version while the image moves on; prune keeps a used version while the VM lives and removes it after", async () => {
      // oci-1 (booted above) runs on t-docker's first version. A changed image makes a second one.
      const v1 = fromDocker.version;
      const changed = await testImage({ extraEntries: [{ name: "srv/app/hello.txt", body: "hello from version 2\n" }] });
      const v2 = (await daemon.client.images.import("t-docker", await dockerArchive(changed))).version;
      assert.notEqual(v2, v1);
      let shown = await daemon.client.images.show("t-docker");
      assert.equal(shown.version, v2);
      const old = shown.versions.find((v) => v.version === v1);
      assert.deepEqual(
        old?.used_by.map((u) => [u.kind, u.id, u.state_dir]),
        [["vm", "oci-1", daemon.stateDir]],
      );
      assert.deepEqual(shown.versions.find((v) => v.version === v2)?.used_by, []);
      const stillOld = await daemon.client.execBuffered("oci-1", { cmd: "cat", args: ["/srv/app/hello.txt"] });
      assert.equal(stillOld.stdout, "hello from the image\n", "the VM still boots from its own version");

      const list = await daemon.client.images.list();
      assert.ok(
        list.some((i) => i.name === "base" && i.version !== null),
        "base is listed too",
      );
      const pruned = await daemon.client.images.prune();
      assert.ok(!pruned.removed.some((r) => r.name === "t-docker"), JSON.stringify(pruned));
      await assert.rejects(daemon.client.images.remove("t-docker"), rejectsWith(409, "image_in_use", /oci-1/));

      const removed = await fetch(`${daemon.url}/api/vms/oci-1`, { method: "DELETE" });
      assert.equal(removed.status, 200);
      const prunedAfter = await daemon.client.images.prune();
      assert.ok(
        prunedAfter.removed.some((r) => r.name === "t-docker" && r.version === v1),
        JSON.stringify(prunedAfter),
      );
      assert.ok(prunedAfter.reclaimed_bytes > 0);
      shown = await daemon.client.images.show("t-docker");
      assert.deepEqual(
        shown.versions.map((v) => v.version),
        [v2],
        "the current version stays",
      );

      const cli = await run(CORRAL, ["image", "remove", "t-docker"], { env: { ...process.env, CORRAL_URL: daemon.url } });
      assert.match(cli.stdout, /Removed image t-docker/);
      await assert.rejects(daemon.client.images.show("t-docker"), rejectsWith(404, "image_not_found"));
      assert.equal(existsSync(join(imagesDir, "t-docker")), false);
    });

    test("a host group's image: may name an imported image; another daemon's template and VM keep its version", async () => {
      // A second daemon sharing the store, with a group whose image is t-layout: its template and its VM
      // boot from t-layout's version, and the first daemon sees them as users.
      const other = await TestDaemon.create(`config:\n  host_groups:\n    - name: oci\n      vcpu: 1\n      ram_mb: 512\n      image: t-layout\n`);
      try {
        await other.start();
        const node = await other.client.createNode("oci", {}, { wait: "agent", timeout: "300s" });
        const hello = await other.client.execBuffered(node.hostname, { cmd: "sh", args: ["-c", "cat hello.txt; echo $GREETING"] });
        assert.equal(hello.stdout, "hello from the image\nhello-oci\n", "booted from the imported image, in its WorkingDir with its Env");
        const users = await until(
          async () => {
            const used = (await daemon.client.images.show("t-layout")).versions[0]?.used_by ?? [];
            return used.some((u) => u.kind === "template" && !u.in_making) && used.some((u) => u.kind === "vm") ? used : undefined;
          },
          "the other daemon's template and VM to use t-layout",
          300_000,
          1000,
        );
        assert.ok(
          users.every((u) => u.state_dir === other.stateDir),
          JSON.stringify(users),
        );
        assert.ok(
          users.some((u) => u.kind === "vm" && u.id === node.hostname),
          JSON.stringify(users),
        );
        await assert.rejects(daemon.client.images.remove("t-layout"), rejectsWith(409, "image_in_use", new RegExp(node.hostname)));
        assert.ok(!(await daemon.client.images.prune()).removed.some((r) => r.name === "t-layout"));
      } finally {
        await other.dispose();
      }
      // Its state folder is gone: the registration is dangling and dropped, and nothing uses the image.
      assert.deepEqual((await daemon.client.images.show("t-layout")).versions[0]?.used_by, []);
      await daemon.client.images.remove("t-layout");
      for (const name of ["tiny", "t-locked"]) await daemon.client.images.remove(name).catch(() => undefined);
    });
  });
});
