import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdir, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { pack } from "tar-stream";
import { BuildContext } from "../../src/daemon/builds/build-context.ts";
import { packBuildContext } from "../../src/sdk/image-build.ts";
import { CorralError } from "../../src/protocol/errors.ts";

function tarOf(files: Record<string, string>): Readable {
  const archive = pack();
  for (const [name, content] of Object.entries(files)) archive.entry({ name, mode: 0o644 }, content);
  archive.finalize();
  return Readable.from(archive);
}

async function collect(stream: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const part of stream) parts.push(part as Buffer);
  return Buffer.concat(parts);
}

describe("a build's context", () => {
  let work: string;
  before(async () => {
    work = await mkdtemp(join(tmpdir(), "corral-context-"));
  });
  after(() => rm(work, { recursive: true, force: true }));

  const receive = async (files: Record<string, string>): Promise<BuildContext> => {
    const root = await mkdtemp(join(work, "ctx-"));
    return BuildContext.receive(tarOf(files), root);
  };

  test("the daemon drops what .dockerignore names, whatever the client sent", async () => {
    const context = await receive({ ".dockerignore": "*.log\nsecret\n", Dockerfile: "FROM base\n", "a.txt": "a", "b.log": "b", "secret/key": "k" });
    assert.deepEqual(
      (await context.list()).map((e) => e.path),
      [".dockerignore", "Dockerfile", "a.txt"],
    );
    assert.equal(await context.readDockerfile("Dockerfile"), "FROM base\n");
  });

  test("sources: paths, wildcards, missing ones, and nothing outside the context", async () => {
    const context = await receive({ Dockerfile: "FROM base\n", "src/a.js": "1", "src/b.js": "2", "src/c.txt": "3" });
    assert.deepEqual(
      (await context.resolve("src", false)).map((s) => [s.path, s.kind]),
      [["src", "directory"]],
    );
    assert.deepEqual(
      (await context.resolve("./src/*.js", false)).map((s) => s.path),
      ["src/a.js", "src/b.js"],
    );
    assert.deepEqual(await context.resolve("nope.txt", false), []);
    assert.deepEqual(await context.resolve("../../etc/passwd", false), [], "'..' cannot climb out of the context");
    assert.equal(await context.readDockerfile("../Dockerfile"), "FROM base\n", "cleaned from the context's root, as Docker does");
    await assert.rejects(context.readDockerfile("Missing"), /has no Dockerfile at "Missing"/);
  });

  test("the content hash follows the bytes, not the time", async () => {
    const one = await receive({ "a.txt": "same" });
    const two = await receive({ "a.txt": "same" });
    const three = await receive({ "a.txt": "different" });
    const hash = async (context: BuildContext) => context.hash(await context.resolve("a.txt", false));
    assert.equal(await hash(one), await hash(two));
    assert.notEqual(await hash(one), await hash(three));
  });

  test("ADD recognises tar and gzip archives; xz is refused clearly", async () => {
    const tarBytes = await collect(tarOf({ "inner.txt": "x" }));
    const root = await mkdtemp(join(work, "ctx-"));
    await writeFile(join(root, "plain.tar"), tarBytes);
    await writeFile(join(root, "packed.tgz"), Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0]));
    await writeFile(join(root, "packed.txz"), Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00, 0, 0]));
    const context = new BuildContext(root);
    assert.equal((await context.resolve("plain.tar", true))[0]?.archive, "tar");
    assert.equal((await context.resolve("packed.tgz", true))[0]?.archive, "gzip");
    assert.equal((await context.resolve("plain.tar", false))[0]?.archive, undefined, "COPY never unpacks");
    await assert.rejects(context.resolve("packed.txz", true), /only plain and gzip tar archives are unpacked/);
  });

  test("a body that is not a tar is a 400", async () => {
    const root = await mkdtemp(join(work, "ctx-"));
    await assert.rejects(BuildContext.receive(Readable.from([Buffer.alloc(1024, 7)]), root), (err: unknown) => err instanceof CorralError && err.code === "invalid_request");
  });

  test("the client packs a folder minus .dockerignore, keeping the Dockerfile and .dockerignore", async () => {
    const dir = await mkdtemp(join(work, "folder-"));
    await writeFile(join(dir, ".dockerignore"), "*\n!app.js\n");
    await writeFile(join(dir, "Dockerfile"), "FROM base\n");
    await writeFile(join(dir, "app.js"), "1");
    await writeFile(join(dir, "notes.md"), "2");
    await mkdir(join(dir, "node_modules"));
    await writeFile(join(dir, "node_modules", "x.js"), "3");
    const root = await mkdtemp(join(work, "ctx-"));
    await BuildContext.receive(packBuildContext(dir), root, "Dockerfile");
    assert.deepEqual((await readdir(root)).sort(), [".dockerignore", "Dockerfile", "app.js"]);
  });
});
