// The set-up step shared by `./corral up`, `npm test` and `npm run bench`: the guest kernel, the images
// `base` (minimal, built from this host's files) and `debian` (the default for new host groups, built from
// Debian's archive), and the web dashboard. Debian packages and npm packages come first, from
// scripts/bootstrap.sh, because this code needs them. Each step is cached: an unchanged host rebuilds nothing.
import { ensureBaseImage } from "../image/base-image.ts";
import { ensureDebianImage } from "../image/debian-image.ts";
import { corralHome, type CorralHome } from "../image/home.ts";
import type { ImageVersion } from "../image/image-store.ts";
import { consoleProgress, type Progress } from "../image/progress.ts";
import { ensureDashboard } from "./web-build.ts";

export interface SetupResult {
  home: CorralHome;
  baseImage: ImageVersion;
  /** Undefined when it could not be built (not root, and none built before): groups must name `base`. */
  debianImage: ImageVersion | undefined;
}

export async function runSetup(progress: Progress = consoleProgress(), home: CorralHome = corralHome()): Promise<SetupResult> {
  const baseImage = await ensureBaseImage(home, progress);
  let debianImage: ImageVersion | undefined;
  try {
    debianImage = await ensureDebianImage(home, progress);
  } catch (err) {
    if (process.getuid?.() === 0) throw err;
    progress.skip(`image "debian" not built: ${(err as Error).message}`);
  }
  await ensureDashboard(progress);
  return { home, baseImage, debianImage };
}
