// The kernel command line contract between the host (src/engine) and the images (src/image).

/** With this argument the initramfs only prints PROBE_MARKER and powers off (the KVM probe). */
export const PROBE_ARGUMENT = "corral.probe";
export const PROBE_MARKER = "CORRAL_PROBE_OK";

/** Read by the base image's boot script. */
export const BOOT_ARGS = {
  hostname: "corral.hostname",
  ip: "corral.ip",
  gateway: "corral.gw",
  dns: "corral.dns",
  /** The disk is bigger than the image: grow the root filesystem to fill it. */
  growRootfs: "corral.growfs",
} as const;
