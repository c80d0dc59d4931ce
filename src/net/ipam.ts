// Address allocation math per network mode (pure): a host group's pool of slots (bridge: addresses from the
// static list, the range or the gateway's subnet; isolated: /30 blocks of the range), what a slot means to
// the guest, the round-robin pick of the next free slot and the lookup of a static address. ipam-store.ts
// keeps the leases; this file only decides.
import { block30, formatIpv4, sizeOf, type Cidr } from "./cidr.ts";
import type { BridgeGroupNetwork, IsolatedGroupNetwork } from "./network-config.ts";

/** Device ids name TAPs and veths (`<prefix><id>`): at most five digits so names fit in 15 characters. */
export const MAX_DEVICE_ID = 99_999;

/** What one slot gives a VM: its address and gateway, and in isolated mode the /30 block around them. */
export interface SlotAddress {
  readonly address: number;
  readonly prefixLength: number;
  readonly gateway: number;
  /** Isolated mode: the block's network address (its gateway is network+1, the VM network+2). */
  readonly blockNetwork: number | undefined;
}

/** A host group's addresses as slots 0..size-1. */
export interface AddressPool {
  readonly hostgroup: string;
  readonly mode: "bridge" | "isolated";
  readonly size: number;
  /** The YAML field an operator widens when the pool is full (named in `hostgroup_full`). */
  readonly widenField: string;
  /** The subnet the pool lives in, pinned in net_groups ("192.168.137.0/24", "169.254.100.0/22"). */
  readonly subnet: string;
  slot(index: number): SlotAddress;
  /** The slot that gives `address` to a VM; undefined when the address is not in the pool. */
  slotOf(address: number): number | undefined;
}

/**
 * A bridge group's pool: the static `addresses` when given (Slicer: "auto-assigned from the gateway range if
 * empty"), else `range`, else the whole subnet; never the subnet's network, broadcast or the gateway itself.
 * Ascending, so the first VM of a `.1/24` gateway gets `.2` like Slicer's.
 */
export function bridgePool(hostgroup: string, network: BridgeGroupNetwork, configPath: string): AddressPool {
  const { address: gateway, prefixLength } = network.gateway;
  const size = 2 ** (32 - prefixLength);
  const subnetNetwork = Math.floor(gateway / size) * size;
  const usable = (a: number): boolean => a !== gateway && (prefixLength >= 31 || (a !== subnetNetwork && a !== subnetNetwork + size - 1));
  let addresses: number[];
  let widenField: string;
  if (network.addresses.length > 0) {
    addresses = [...new Set(network.addresses)].filter(usable).sort((a, b) => a - b);
    widenField = `${configPath}.addresses`;
  } else {
    const first = network.range ? network.range.first : subnetNetwork;
    const last = network.range ? network.range.last : subnetNetwork + size - 1;
    addresses = [];
    for (let a = first; a <= last; a++) if (usable(a)) addresses.push(a);
    widenField = network.range ? `${configPath}.range` : `${configPath}.gateway`;
  }
  const index = new Map(addresses.map((a, i) => [a, i]));
  return {
    hostgroup,
    mode: "bridge",
    size: addresses.length,
    widenField,
    subnet: `${formatIpv4(subnetNetwork)}/${prefixLength}`,
    slot: (i) => ({ address: addresses[i] as number, prefixLength, gateway, blockNetwork: undefined }),
    slotOf: (address) => index.get(address),
  };
}

/** An isolated group's pool: one /30 per VM (network, gateway, VM, broadcast) in `range` (or the pinned one). */
export function isolatedPool(hostgroup: string, network: IsolatedGroupNetwork, configPath: string, pinnedRange?: Cidr): AddressPool {
  const range = pinnedRange ?? network.range;
  const size = Math.floor(sizeOf(range) / 4);
  return {
    hostgroup,
    mode: "isolated",
    size,
    widenField: `${configPath}.range`,
    subnet: `${formatIpv4(range.network)}/${range.prefixLength}`,
    slot: (i) => {
      const block = block30(range, i);
      return { address: block.address, prefixLength: 30, gateway: block.gateway, blockNetwork: block.network };
    },
    slotOf: (address) => {
      const offset = address - range.network;
      if (offset < 0 || offset >= size * 4 || offset % 4 !== 2) return undefined;
      return (offset - 2) / 4;
    },
  };
}

/**
 * The next free slot at or after `cursor`, wrapping (round robin: an address just freed is not handed out
 * again at once, so peers' stale ARP entries age out first); undefined when every slot is taken.
 */
export function nextFreeSlot(size: number, cursor: number, taken: ReadonlySet<number>): number | undefined {
  if (size <= 0) return undefined;
  const start = ((cursor % size) + size) % size;
  for (let step = 0; step < size; step++) {
    const slot = (start + step) % size;
    if (!taken.has(slot)) return slot;
  }
  return undefined;
}

/** The lowest device id not in `taken`; undefined past MAX_DEVICE_ID. */
export function lowestFreeId(taken: ReadonlySet<number>, max = MAX_DEVICE_ID): number | undefined {
  for (let id = 0; id <= max; id++) if (!taken.has(id)) return id;
  return undefined;
}
