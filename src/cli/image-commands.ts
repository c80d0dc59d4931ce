// `corral image build`: a built-in image from its recipe on this host (`base`, `debian`; no daemon needed), or
// any image from a Dockerfile on the daemon (image-build-command.ts); and the catalogue's commands.
import type { Command } from "commander";
import { corralHome } from "../image/home.ts";
import type { ImageVersion } from "../image/image-store.ts";
import { addConnectionOptions } from "./connection.ts";
import type { DockerfileBuildFlags } from "./image-build-command.ts";
import { registerImageCatalogueCommands } from "./image-catalogue-commands.ts";
import { action, collect } from "./output.ts";

export function registerImageCommands(program: Command): void {
  const image = program.command("image").description("Build, import, pull and list VM images");

  addConnectionOptions(
    image
      .command("build")
      .description(
        'Build an image: a built-in one from its recipe ("base": busybox, minimal; "debian": Debian 12 with systemd, needs root), or NAME from a Dockerfile (-f, or a CONTEXT folder with a Dockerfile) on the daemon, in a builder VM',
      )
      .argument("[name]", 'the image to build a new version of (default "base")')
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
        const { consoleProgress } = await import("../image/progress.ts");
        const options = { force: flags.force ?? false };
        const recipe = name ?? "base";
        let built: ImageVersion;
        if (recipe === "base") built = await (await import("../image/base-image.ts")).ensureBaseImage(corralHome(), consoleProgress(), options);
        else if (recipe === "debian") built = await (await import("../image/debian-image.ts")).ensureDebianImage(corralHome(), consoleProgress(), options);
        else throw new Error(`Image ${JSON.stringify(recipe)} has no recipe ("base" and "debian" have): build it from a Dockerfile with -f`);
        process.stdout.write(`${built.name} ${built.version} ${built.dir}\n`);
      }),
    );

  // list, show, remove, prune, import, pull (image-catalogue-commands.ts).
  registerImageCatalogueCommands(image);
}
