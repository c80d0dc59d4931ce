// Dockerfile builds: the first build (boots a builder VM, runs every step), rebuilds with a full step cache
// (should boot nothing), and a rebuild after a changed COPY source (re-runs from that step on). The built
// image's version folder is removed afterwards.
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { corralHome } from "../src/image/index.ts";
import { packBuildContext, type BuildEvent, type CorralClient } from "../src/sdk/index.ts";
import { ms, percentile } from "./stats.ts";

export const DOCKERFILE_BENCH_HEADERS = ["Dockerfile build (FROM base, 2 COPY + 2 RUN)", "time", "steps run", "VMs booted"] as const;

const DOCKERFILE = `FROM base
ENV APP=/srv/app
WORKDIR $APP
COPY conf/ conf/
RUN mkdir -p data && echo built > data/stamp
COPY app.txt ./
RUN wc -c app.txt > size
CMD ["cat", "/srv/app/size"]
`;

async function timedBuild(client: CorralClient, name: string, context: string): Promise<{ ms: number; done: Extract<BuildEvent, { type: "done" }> }> {
  const started = performance.now();
  let last: BuildEvent | undefined;
  for await (const event of client.buildImage({ name, context: packBuildContext(context) })) last = event;
  if (last?.type !== "done") throw new Error(`The bench build failed: ${JSON.stringify(last)}`);
  return { ms: performance.now() - started, done: last };
}

export async function runDockerfileBench(client: CorralClient, rebuilds: number, log: (line: string) => void): Promise<{ rows: string[][]; samples: Record<string, number[]> }> {
  const context = await mkdtemp(join(tmpdir(), "corral-bench-ctx-"));
  const name = `bench-dockerfile-${process.pid}`;
  try {
    await writeFile(join(context, "Dockerfile"), DOCKERFILE);
    await mkdir(join(context, "conf"));
    await writeFile(join(context, "conf", "a.conf"), "a=1\n");
    await writeFile(join(context, "app.txt"), "first\n");
    const first = await timedBuild(client, name, context);
    log(`  dockerfile: first build ${ms(first.ms)}`);
    const cached: number[] = [];
    let cachedDone = first.done;
    for (let i = 0; i < rebuilds; i++) {
      const run = await timedBuild(client, name, context);
      cached.push(run.ms);
      cachedDone = run.done;
    }
    log(`  dockerfile: full-cache rebuild p50 ${ms(percentile(cached, 50))}`);
    await writeFile(join(context, "app.txt"), "changed\n");
    const changed = await timedBuild(client, name, context);
    const rows = [
      ["first build", ms(first.ms), String(first.done.run_steps), String(first.done.vms_started)],
      [`rebuild, full cache, p50 of ${rebuilds}`, ms(percentile(cached, 50)), String(cachedDone.run_steps), String(cachedDone.vms_started)],
      ["rebuild after a changed COPY source", ms(changed.ms), String(changed.done.run_steps), String(changed.done.vms_started)],
    ];
    return { rows, samples: { first: [first.ms], cached, changed: [changed.ms] } };
  } finally {
    await rm(context, { recursive: true, force: true });
    await rm(join(corralHome().images, name), { recursive: true, force: true });
  }
}
