// `corral image build [base|debian]` (built-in images, on this host; no daemon needed) and the catalogue's commands.
import type { Command } from "commander";
import { corralHome } from "../image/home.ts";
import { registerImageCatalogueCommands } from "./image-catalogue-commands.ts";
import { action } from "./output.ts";

export function registerImageCommands(program: Command): void {
  const image = program.command("image").description("Build and list VM images");

  image
    .command("build")
    .argument("[name]", 'a built-in image: "base" (busybox, minimal) or "debian" (Debian 12 with systemd; needs root)', "base")
    .description("Build a built-in image (kernel, initramfs, root filesystem with the guest agent); unchanged inputs build nothing")
    .option("--force", "build a new version even if the current one is up to date")
    .action(
      action(async (name: string, flags: { force?: boolean }) => {
        const { consoleProgress } = await import("../image/progress.ts");
        const options = { force: flags.force ?? false };
        let built;
        if (name === "base") built = await (await import("../image/base-image.ts")).ensureBaseImage(corralHome(), consoleProgress(), options);
        else if (name === "debian") built = await (await import("../image/debian-image.ts")).ensureDebianImage(corralHome(), consoleProgress(), options);
        else throw new Error(`Unknown built-in image ${JSON.stringify(name)}: build "base" or "debian"`);
        process.stdout.write(`${built.name} ${built.version} ${built.dir}\n`);
      }),
    );

  // list, show, remove, prune, import, pull (image-catalogue-commands.ts).
  registerImageCatalogueCommands(image);
}
