// The guest runtime as an OCI import uses it: Corral's own init under tini for any image, or the agent as a
// systemd unit when the image boots systemd (src/image/guest-runtime.ts decides and installs).
import { CorralError } from "../../protocol/errors.ts";
import type { GuestRuntime } from "./import-image.ts";

export const ociGuestRuntime: GuestRuntime = {
  async install() {
    throw new CorralError("unavailable", "Imports need the guest runtime, which this build does not have yet");
  },
  async inputs() {
    return {};
  },
};
