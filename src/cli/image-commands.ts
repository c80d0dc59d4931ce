// `corral image build|list`: images on this host (no daemon needed).
import type { Command } from "commander";
import { corralHome } from "../image/home.ts";
import { ImageStore } from "../image/image-store.ts";
import { action, formatBytes, printJson, printTable } from "./output.ts";

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
          process.stdout.write("No images. Build them with: corral image build base; corral image build debian\n");
          return;
        }
        printTable(
          ["NAME", "VERSION", "KERNEL", "DISK", "ON HOST", "BUILT", "VERSIONS"],
          images.map((i) => [i.name, i.version, i.kernel_release, formatBytes(i.disk_size_bytes), formatBytes(i.disk_usage_bytes), i.created_at.slice(0, 19).replace("T", " "), String(i.versions)]),
        );
      }),
    );
}
