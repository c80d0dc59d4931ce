// The image folder's public face: kernels, images, overlays and the set-up progress reporter.
export { BASE_IMAGE, ensureBaseImage } from "./base-image.ts";
export { corralHome, type CorralHome } from "./home.ts";
export { ImageStore, type ImageSummary, type ImageVersion, type ImageManifest, type ImageConfig, type ImageSource, type ImageParent } from "./image-store.ts";
export { createOverlay, createOverlayOn, imageSizeMiB } from "./overlay.ts";
export { consoleProgress, silentProgress, type Progress } from "./progress.ts";
export { findInstalledKernel, ensureKernel, type KernelInfo } from "./kernel.ts";
export { ImageCatalogue, type ImageDetail, type ImageVersionDetail, type PruneResult } from "./image-catalogue.ts";
export { registerImageUser, scanImageUses, type ImageUse } from "./image-usage.ts";
export { OciImports, type PullRequest } from "./oci/oci-imports.ts";
export type { GuestRuntime } from "./oci/import-image.ts";
export { ociGuestRuntime } from "./oci/runtime.ts";
