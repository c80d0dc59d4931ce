// `corral image build|list`: images on this host (no daemon needed).
import type { Command } from "commander";
import { corralHome } from "../image/home.ts";
import { ImageStore } from "../image/image-store.ts";
import { addConnectionOptions } from "./connection.ts";
import type { DockerfileBuildFlags } from "./image-build-command.ts";
import { action, collect, formatBytes, printJson, printTable } from "./output.ts";

export function registerImageCommands(program: Command): void {
  const image = program.command("image").description("Build and list VM images");

  addConnectionOptions(
    image
      .command("build")
      .description('Build an image: "base" from its recipe, or NAME from a Dockerfile (-f, or a CONTEXT folder with a Dockerfile) on the daemon, in a builder VM')
      .argument("[name]", "the image to build a new version of")
      .argument("[context]", "the build context folder for a Dockerfile build (default: the current folder)"),
  )
    .option("--force", "recipe builds: build a new version even if the current one is up to date")
    .option("-f, --file <path>", "the Dockerfile (default: CONTEXT/Dockerfile)")
    .option("--build-arg <name=value>", "a value for an ARG of the Dockerfile (repeatable)", collect)
    .option("--no-cache", "run every step, even those the step cache has")
    .option("--json", "Dockerfile builds: print the progress events as JSON lines")
    .action(
      action(async (name: string | undefined, context: string | undefined, flags: DockerfileBuildFlags & { force?: boolean; cache?: boolean }) => {
        if (flags.file !== undefined || context !== undefined) {
          if (name === undefined) throw new Error("Name the image to build: corral image build NAME -f Dockerfile [CONTEXT]");
          const { buildFromDockerfile } = await import("./image-build-command.ts");
          // commander spells --no-cache as cache=false.
          return buildFromDockerfile(name, context, { ...flags, noCache: flags.cache === false });
        }
        if (name !== undefined && name !== "base") throw new Error(`Image ${JSON.stringify(name)} has no recipe: build it from a Dockerfile with -f`);
        const { ensureBaseImage } = await import("../image/base-image.ts");
        const { consoleProgress } = await import("../image/progress.ts");
        const built = await ensureBaseImage(corralHome(), consoleProgress(), { force: flags.force ?? false });
        process.stdout.write(`${built.name} ${built.version} ${built.dir}\n`);
      }),
    );

  image
    .command("list")
    .alias("ls")
    .description("List images")
    .option("--json", "print JSON")
    .action(
      action(async (flags: { json?: boolean }) => {
        const images = await new ImageStore(corralHome().images).list();
        if (flags.json) return printJson(images);
        if (images.length === 0) {
          process.stdout.write("No images. Build the default one with: corral image build\n");
          return;
        }
        printTable(
          ["NAME", "VERSION", "KERNEL", "DISK", "ON HOST", "BUILT", "VERSIONS"],
          images.map((i) => [i.name, i.version, i.kernel_release, formatBytes(i.disk_size_bytes), formatBytes(i.disk_usage_bytes), i.created_at.slice(0, 19).replace("T", " "), String(i.versions)]),
        );
      }),
    );
}
