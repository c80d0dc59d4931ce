// The guest runtime as an OCI import uses it (src/image/guest-runtime.ts installs it): the agent as a systemd
// unit when the image boots systemd, otherwise Corral's own init under tini, whatever init (or none) the
// image has.
import { detectGuestInit, guestRuntimeInputs, installGuestRuntime } from "../guest-runtime.ts";
import type { GuestRuntime } from "./import-image.ts";

export const ociGuestRuntime: GuestRuntime = {
  install: (root, { kernel, config, cacheDir }) => installGuestRuntime(root, { kernel, init: detectGuestInit(root), config, cacheDir }),
  inputs: guestRuntimeInputs,
};
