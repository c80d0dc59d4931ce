// `corral image build|list`: images on this host (no daemon needed).
import type { Command } from "commander";
import { corralHome } from "../image/home.ts";
import { ImageStore } from "../image/image-store.ts";
import { action, formatBytes, printJson, printTable } from "./output.ts";

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
