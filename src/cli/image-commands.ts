// `corral image build` (the default image, on this host; no daemon needed) and the catalogue's commands.
import type { Command } from "commander";
import { corralHome } from "../image/home.ts";
import { registerImageCatalogueCommands } from "./image-catalogue-commands.ts";
import { action } from "./output.ts";

export function registerImageCommands(program: Command): void {
  const image = program.command("image").description("Build and list VM images");

  image
    .command("build")
    .description('Build the default image "base" (kernel, initramfs, root filesystem with the guest agent)')
    .option("--force", "build a new version even if the current one is up to date")
    .action(
      action(async (flags: { force?: boolean }) => {
        const { ensureBaseImage } = await import("../image/base-image.ts");
        const { consoleProgress } = await import("../image/progress.ts");
        const built = await ensureBaseImage(corralHome(), consoleProgress(), { force: flags.force ?? false });
        process.stdout.write(`${built.name} ${built.version} ${built.dir}\n`);
      }),
    );

  // list, show, remove, prune, import, pull (image-catalogue-commands.ts).
  registerImageCatalogueCommands(image);
}
