// The agent's native addon (src/guest/native/corral-native.c, at NATIVE_ADDON_PATH in the image): system
// calls Node.js lacks. Loaded on first use; an agent running without it (an image built before it existed,
// unit tests on the host) gets undefined and falls back to commands.
import { createRequire } from "node:module";

export const NATIVE_ADDON_PATH = "/opt/corral/corral-native.node";

/** The pipes of the virtio-serial port relay: frames read from the port, and bytes to write to it. */
export interface PortRelay {
  reads: number;
  writes: number;
}

export interface GuestNative {
  setHostname(name: string): void;
  setTime(ms: number): void;
  reseedRandom(seed: Buffer): void;
  setMacAddress(iface: string, mac: Buffer): void;
  /**
   * The one IPv4 address (others removed), the link up, and the default route when a gateway is given.
   * Missing in addons built before it (images keep their own addon).
   */
  setIpv4?(iface: string, address: Buffer, prefixLength: number, gateway: Buffer | null): void;
  /** Missing in addons built before the relay (images keep their own addon). */
  startPortRelay?(fd: number): PortRelay;
}

let loaded: GuestNative | null | undefined;

export function guestNative(path: string = NATIVE_ADDON_PATH): GuestNative | undefined {
  if (loaded === undefined) {
    try {
      loaded = createRequire(import.meta.url)(path) as GuestNative;
    } catch {
      loaded = null;
    }
  }
  return loaded ?? undefined;
}
