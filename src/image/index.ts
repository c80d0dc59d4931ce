// The image folder's public face: kernels, images (base, debian), the guest runtime every image gets, overlays and
// the set-up progress reporter.
export { BASE_IMAGE, ensureBaseImage } from "./base-image.ts";
export { corralHome, type CorralHome } from "./home.ts";
export { ImageStore, type ImageConfig, type ImageManifest, type ImageParent, type ImageSource, type ImageSummary, type ImageVersion } from "./image-store.ts";
export { createOverlay, createOverlayOn, imageSizeMiB } from "./overlay.ts";
export { consoleProgress, silentProgress, type Progress } from "./progress.ts";
export { findInstalledKernel, ensureKernel, type KernelInfo } from "./kernel.ts";
export { DEBIAN_IMAGE } from "./debian-recipe.ts";
export { ensureDebianImage } from "./debian-image.ts";
export { detectGuestInit, guestRuntimeInputs, installGuestRuntime, type GuestInit, type GuestRuntimeOptions } from "./guest-runtime.ts";
export { ImageCatalogue, type ImageDetail, type ImageVersionDetail, type PruneResult } from "./image-catalogue.ts";
export { registerImageUser, scanImageUses, type ImageUse } from "./image-usage.ts";
export { OciImports, type PullRequest } from "./oci/oci-imports.ts";
export type { GuestRuntime } from "./oci/import-image.ts";
export { ociGuestRuntime } from "./oci/runtime.ts";
