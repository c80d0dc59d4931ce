// Dockerfile builds on a real daemon, FROM the busybox image `base`: the steps run in a builder VM, each
// result is cached as a commit (a rebuild boots nothing), a changed COPY source re-runs from that step on,
// the image boots with the file, the user and the workdir the Dockerfile made; a failing RUN or a refused
// instruction leaves nothing in the image store and no VM behind.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { mkdir, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { Readable } from "node:stream";
import { promisify } from "node:util";
import { gzipSync } from "node:zlib";
import { pack } from "tar-stream";
import { corralHome } from "../../src/image/home.ts";
import type { ImageManifest } from "../../src/image/image-store.ts";
import { CorralApiError, packBuildContext, type BuildEvent } from "../../src/sdk/index.ts";
import { TestDaemon, vmQemuPids } from "../helpers/daemon-process.ts";

const CORRAL = fileURLToPath(new URL("../../corral", import.meta.url));
const NAME = `df-test-${process.pid}`;

const DOCKERFILE = `# syntax=docker/dockerfile:1
FROM base
ARG GREETING=hello
ENV APP_HOME=/srv/app MODE=test
WORKDIR $APP_HOME
COPY conf/ conf/
COPY greeting.txt ./
# base's busybox has no adduser: a user is two lines.
RUN echo "app:x:1234:1234::/home/app:/bin/sh" >> /etc/passwd && echo "app:x:1234:" >> /etc/group && chown -R app $APP_HOME
RUN date +%s%N >> /var/ran.log && echo "$GREETING from $MODE"
USER app
RUN id -u > whoami && pwd > where && echo "$MODE" > mode
LABEL org.example.team=sandbox
CMD ["node", "server.js"]
`;

async function collect(stream: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const part of stream) parts.push(part as Buffer);
  return Buffer.concat(parts);
}

function imageDir(name: string): string {
  return join(corralHome().images, name);
}

function manifestOf(name: string): ImageManifest {
  return JSON.parse(readFileSync(join(imageDir(name), "current", "image.json"), "utf8")) as ImageManifest;
}

describe("images from a Dockerfile", { timeout: 1_800_000 }, () => {
  let daemon: TestDaemon;
  let context: string;

  const build = async (
    options: { dockerfile?: string; noCache?: boolean; name?: string; signal?: AbortSignal; onEvent?: (event: BuildEvent) => void } = {},
  ): Promise<BuildEvent[]> => {
    const events: BuildEvent[] = [];
    for await (const event of daemon.client.buildImage({
      name: options.name ?? NAME,
      context: packBuildContext(context, options.dockerfile ?? "Dockerfile"),
      dockerfile: options.dockerfile,
      noCache: options.noCache,
      signal: options.signal,
    })) {
      events.push(event);
      options.onEvent?.(event);
    }
    return events;
  };
  const done = (events: BuildEvent[]) => {
    const last = events.at(-1);
    assert.ok(last?.type === "done", `the build ends with done: ${JSON.stringify(events.slice(-6))}`);
    return last;
  };
  const sh = async (hostname: string, script: string): Promise<string> => {
    const result = await daemon.client.execBuffered(hostname, { cmd: "sh", args: ["-c", script] });
    assert.equal(result.exit_code, 0, `${script}: ${result.stderr}`);
    return result.stdout.trim();
  };

  before(async () => {
    context = await mkdtemp(join(tmpdir(), "corral-ctx-"));
    await writeFile(join(context, "Dockerfile"), DOCKERFILE);
    await writeFile(join(context, "greeting.txt"), "hi there\n");
    await mkdir(join(context, "conf"));
    await writeFile(join(context, "conf", "a.conf"), "a=1\n");
    await writeFile(join(context, "conf", "junk.tmp"), "junk\n");
    await writeFile(join(context, ".dockerignore"), "**/*.tmp\nsecret.txt\n");
    await writeFile(join(context, "secret.txt"), "do not send\n");
    daemon = await TestDaemon.create();
    await daemon.start();
  });

  after(async () => {
    await daemon.dispose();
    await rm(context, { recursive: true, force: true });
    await rm(imageDir(NAME), { recursive: true, force: true });
  });

  test("an unsupported instruction is a 400 naming the line, before any VM boots", async () => {
    await writeFile(join(context, "Bad.dockerfile"), "FROM base\nRUN true\nHEALTHCHECK CMD true\n");
    await assert.rejects(build({ dockerfile: "Bad.dockerfile" }), (err: unknown) => {
      return err instanceof CorralApiError && err.status === 400 && err.code === "invalid_dockerfile" && /line 3: HEALTHCHECK is not supported/.test(err.message);
    });
    assert.equal((await daemon.client.commits()).length, 0, "no step ran");
    assert.equal(existsSync(imageDir(NAME)), false);
  });

  test("a build runs RUN, COPY, ENV, WORKDIR, USER in a builder VM and installs a version", async () => {
    const events = await build();
    const last = done(events);
    assert.equal(last.run_steps, 5);
    assert.equal(last.cached_steps, 0);
    assert.equal(last.vms_started, 1);
    assert.deepEqual(
      events.filter((e) => e.type === "step").map((e) => e.type === "step" && `${e.step}/${e.total} ${e.instruction}`),
      [
        "1/12 FROM base",
        "2/12 ARG GREETING=hello",
        '3/12 ENV APP_HOME="/srv/app" MODE="test"',
        "4/12 WORKDIR /srv/app",
        "5/12 COPY conf/ /srv/app/conf/",
        "6/12 COPY greeting.txt /srv/app/",
        '7/12 RUN echo "app:x:1234:1234::/home/app:/bin/sh" >> /etc/passwd && echo "app:x:1234:" >> /etc/group && chown -R app $APP_HOME',
        '8/12 RUN date +%s%N >> /var/ran.log && echo "$GREETING from $MODE"',
        "9/12 USER app",
        '10/12 RUN id -u > whoami && pwd > where && echo "$MODE" > mode',
        '11/12 LABEL org.example.team="sandbox"',
        '12/12 CMD ["node", "server.js"]',
      ],
    );
    const output = events.map((e) => (e.type === "output" ? e.text : "")).join("");
    assert.match(output, /hello from test/, "RUN's output is streamed, with ARG and ENV in its environment");
    assert.deepEqual(vmQemuPids(daemon.stateDir), [], "the builder VM is gone");
    const manifest = manifestOf(NAME);
    assert.equal(manifest.version, last.version);
    assert.deepEqual(manifest.config?.env, ["APP_HOME=/srv/app", "MODE=test"]);
    assert.equal(manifest.config?.working_dir, "/srv/app");
    assert.equal(manifest.config?.user, "app");
    assert.deepEqual(manifest.config?.cmd, ["node", "server.js"]);
    assert.deepEqual(manifest.config?.labels, { "org.example.team": "sandbox" });
    assert.equal(manifest.source?.kind, "dockerfile");
    assert.equal(manifest.parent?.name, "base");
  });

  test("a rebuild takes every step from the cache and boots nothing (the CLI prints docker build's progress)", async () => {
    const versionBefore = manifestOf(NAME).version;
    const { stdout } = await promisify(execFile)(CORRAL, ["image", "build", NAME, "-f", join(context, "Dockerfile"), context, "--url", daemon.url], { env: process.env });
    assert.match(stdout, /^Step 1\/12 : FROM base$/m);
    assert.equal(stdout.match(/---> Using cache/g)?.length, 5, stdout);
    assert.doesNotMatch(stdout, /Running in|hello from test/, "no step ran, no VM booted");
    assert.match(stdout, new RegExp(`Successfully built ${NAME} ${versionBefore} .*0 steps run, 5 from cache, 0 VMs booted`));
    assert.equal(manifestOf(NAME).version, versionBefore);
  });

  test("--no-cache runs every step and installs a version of its own beside the cached one", async () => {
    const cached = manifestOf(NAME).version;
    const last = done(await build({ noCache: true }));
    assert.deepEqual([last.run_steps, last.cached_steps, last.reused_version], [5, 0, false]);
    assert.notEqual(last.version, cached, "never a rewrite of a version VMs may use");
    assert.ok(existsSync(join(imageDir(NAME), "versions", cached, "image.json")), "the cached build's version stays");
  });

  test("a changed COPY source re-runs from that step on", async () => {
    await writeFile(join(context, "greeting.txt"), "hi again\n");
    const events = await build();
    const last = done(events);
    assert.deepEqual(
      events.filter((e) => e.type === "cached").map((e) => e.type === "cached" && e.step),
      [5],
      "only the COPY before the changed one is cached",
    );
    assert.equal(last.run_steps, 4);
    assert.equal(last.vms_started, 1, "one VM, forked from the cached step's commit");
    assert.deepEqual(vmQemuPids(daemon.stateDir), []);
  });

  test("the image boots with what the Dockerfile made", async () => {
    const config = `config:\n  host_groups:\n    - name: app\n      count: 0\n      vcpu: 1\n      ram_mb: 512\n      image: ${NAME}\n      template: false\n`;
    await daemon.stop();
    await daemon.reconfigure(config);
    // What a build cut short by a stop leaves: the next start clears it.
    await mkdir(join(daemon.stateDir, "builds", "context-leftover"), { recursive: true });
    await writeFile(join(daemon.stateDir, "builds", "context-leftover", "Dockerfile"), "FROM base\n");
    await daemon.start();
    assert.equal(existsSync(join(daemon.stateDir, "builds", "context-leftover")), false, "a stopped build's context is cleared at start");
    const vm = (await daemon.client.createNode("app", {}, { wait: "agent", timeout: "300s" })).hostname;
    try {
      const root = async (script: string): Promise<string> => {
        const result = await daemon.client.execBuffered(vm, { cmd: "sh", args: ["-c", script], uid: 0 });
        assert.equal(result.exit_code, 0, `${script}: ${result.stderr}`);
        return result.stdout.trim();
      };
      assert.equal(await root("cat /srv/app/greeting.txt"), "hi again");
      assert.equal(await root("cat /srv/app/conf/a.conf"), "a=1");
      assert.equal(await root("ls /srv/app/conf; test -e /srv/app/secret.txt && echo leaked || true"), "a.conf", ".dockerignore kept junk.tmp and secret.txt out");
      assert.equal(await root("id -u app"), "1234");
      assert.equal(await root("cat /srv/app/whoami /srv/app/where /srv/app/mode"), "1234\n/srv/app\ntest", "the last RUN ran as app in the WORKDIR with the ENV");
      assert.equal(await root("wc -l < /var/ran.log"), "1");
      assert.equal(await root("id -u"), "0", "a request that names its uid keeps it");
      const guestConfig = JSON.parse(await root("cat /etc/corral/image.json")) as { user?: string; working_dir?: string };
      assert.equal(guestConfig.user, "app");
      assert.equal(guestConfig.working_dir, "/srv/app");
      // An exec that says nothing runs as the image's USER, in its WORKDIR, with its ENV.
      assert.equal(await sh(vm, 'id -u; pwd; echo "$MODE $APP_HOME"'), "1234\n/srv/app\ntest /srv/app");
      // A background job too.
      const job = await daemon.client.bg.exec(vm, { cmd: "sh", args: ["-c", 'test "$(id -u):$(pwd):$MODE" = "1234:/srv/app:test"'] });
      assert.equal((await daemon.client.bg.wait(vm, job.exec_id, 60)).exit_code, 0, "the background job ran as app in /srv/app with MODE");
    } finally {
      await daemon.client.deleteNode("app", vm);
    }
  });

  test("a build FROM a built image inherits its config, and its cached steps fork from commits of that image", async () => {
    const child = `${NAME}-child`;
    try {
      // ADD unpacks a local gzip tar; COPY --chown/--chmod set owner and mode; a RUN after each checks in the VM.
      const bundle = pack();
      bundle.entry({ name: "inner.txt", mode: 0o644 }, "inside");
      bundle.finalize();
      await writeFile(join(context, "bundle.tgz"), gzipSync(await collect(Readable.from(bundle))));
      await writeFile(
        join(context, "Child.dockerfile"),
        [
          `FROM ${NAME}`,
          "RUN id -u > uid-at-build",
          "ADD bundle.tgz /opt/bundle/",
          'RUN test "$(cat /opt/bundle/inner.txt)" = inside',
          "COPY --chown=app:app --chmod=0600 extra.txt ./",
          'RUN test "$(stat -c %U:%a extra.txt)" = "app:600"',
        ].join("\n"),
      );
      await writeFile(join(context, "extra.txt"), "one\n");
      const first = done(await build({ name: child, dockerfile: "Child.dockerfile" }));
      assert.equal(first.run_steps, 5);
      await writeFile(join(context, "extra.txt"), "two\n");
      const events = await build({ name: child, dockerfile: "Child.dockerfile" });
      const second = done(events);
      assert.deepEqual([second.cached_steps, second.run_steps, second.vms_started], [3, 2, 1], "the COPY ran in a fork of the last cached step's commit");
      const manifest = manifestOf(child);
      assert.deepEqual(manifest.parent, { name: NAME, version: manifestOf(NAME).version });
      assert.equal(manifest.config?.user, "app", "USER carries over from the parent image");
      assert.deepEqual(manifest.config?.cmd, ["node", "server.js"]);
      assert.deepEqual(vmQemuPids(daemon.stateDir), []);
    } finally {
      await rm(imageDir(child), { recursive: true, force: true });
    }
  });

  test("a RUN that fails names the step and its exit code; nothing is installed and no VM is left", async () => {
    const versions = await readdir(join(imageDir(NAME), "versions"));
    const current = manifestOf(NAME).version;
    await writeFile(join(context, "Failing.dockerfile"), "FROM base\nRUN echo about to fail && exit 3\n");
    const events = await build({ dockerfile: "Failing.dockerfile" });
    const last = events.at(-1);
    assert.ok(last?.type === "error", JSON.stringify(last));
    assert.equal(last.code, "build_failed");
    assert.match(last.error, /Step 2\/2 "RUN echo about to fail && exit 3" failed with exit code 3/);
    assert.match(events.map((e) => (e.type === "output" ? e.text : "")).join(""), /about to fail/);
    assert.deepEqual(await readdir(join(imageDir(NAME), "versions")), versions, "nothing new in the image store");
    assert.equal(manifestOf(NAME).version, current);
    assert.deepEqual(vmQemuPids(daemon.stateDir), [], "the builder VM is gone");
  });

  test("a client that leaves mid-build cancels it: the builder VM is removed", async () => {
    await writeFile(join(context, "Slow.dockerfile"), "FROM base\nRUN echo started-slow-step && sleep 600\n");
    const cancel = new AbortController();
    await assert.rejects(
      build({
        name: `${NAME}-slow`,
        dockerfile: "Slow.dockerfile",
        signal: cancel.signal,
        onEvent: (e) => e.type === "output" && /started-slow-step/.test(e.text) && cancel.abort(),
      }),
    );
    const deadline = Date.now() + 120_000;
    while (vmQemuPids(daemon.stateDir).length > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 500));
    assert.deepEqual(vmQemuPids(daemon.stateDir), [], "the builder VM is gone");
    assert.equal(existsSync(imageDir(`${NAME}-slow`)), false, "nothing installed");
  });
});
