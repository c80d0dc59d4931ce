// The daemon's address leases and DNAT port maps in SQLite (corral.db, beside the VM records, same handle):
// allocate, release, rename and sweep, each one transaction, so no address, device id or host port is ever
// given twice. Its own schema version lives in meta key `net_schema` (VmStore's user_version stays VmStore's).
import type Database from "better-sqlite3";
import { CorralError } from "../protocol/errors.ts";
import { formatIpv4, parseIpv4 } from "./cidr.ts";
import { lowestFreeId, nextFreeSlot, type AddressPool, type SlotAddress } from "./ipam.ts";

export type LeaseOwnerKind = "vm" | "pool";

export interface Lease {
  readonly hostgroup: string;
  readonly slot: number;
  readonly deviceId: number;
  readonly address: string;
  readonly mac: string;
  /** The VM's hostname, or the warm pool's folder name for a pool clone not yet handed out. */
  readonly owner: string;
  readonly ownerKind: LeaseOwnerKind;
  readonly createdAt: string;
}

export interface PortMap {
  readonly hostPort: number;
  readonly guestPort: number;
  readonly owner: string;
}

const NET_SCHEMA = 1;

const MIGRATIONS: Record<number, string> = {
  1: `
    CREATE TABLE net_leases (
      hostgroup  TEXT NOT NULL,
      slot       INTEGER NOT NULL,
      device_id  INTEGER NOT NULL UNIQUE,
      address    TEXT NOT NULL UNIQUE,
      mac        TEXT NOT NULL,
      owner      TEXT NOT NULL UNIQUE,
      owner_kind TEXT NOT NULL CHECK (owner_kind IN ('vm', 'pool')),
      created_at TEXT NOT NULL,
      PRIMARY KEY (hostgroup, slot)
    );
    CREATE TABLE net_port_maps (
      protocol   TEXT NOT NULL CHECK (protocol IN ('tcp')),
      host_port  INTEGER NOT NULL,
      owner      TEXT NOT NULL,
      guest_port INTEGER NOT NULL,
      PRIMARY KEY (protocol, host_port)
    );
    CREATE INDEX net_port_maps_by_owner ON net_port_maps (owner);
    CREATE TABLE net_groups (hostgroup TEXT PRIMARY KEY, mode TEXT NOT NULL, subnet TEXT NOT NULL, cursor INTEGER NOT NULL);
  `,
};

interface LeaseRow {
  hostgroup: string;
  slot: number;
  device_id: number;
  address: string;
  mac: string;
  owner: string;
  owner_kind: LeaseOwnerKind;
  created_at: string;
}

function fromRow(row: LeaseRow): Lease {
  return {
    hostgroup: row.hostgroup,
    slot: row.slot,
    deviceId: row.device_id,
    address: row.address,
    mac: row.mac,
    owner: row.owner,
    ownerKind: row.owner_kind,
    createdAt: row.created_at,
  };
}

export interface AllocateRequest {
  readonly owner: string;
  readonly ownerKind: LeaseOwnerKind;
  readonly mac: string;
  /** A static address (Slicer's `ip` on create): must be in the pool and free. */
  readonly ip?: string;
}

export class IpamStore {
  constructor(
    private readonly db: Database.Database,
    private readonly now: () => Date = () => new Date(),
  ) {
    this.migrate();
  }

  private migrate(): void {
    this.db.exec("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)");
    const row = this.db.prepare("SELECT value FROM meta WHERE key = 'net_schema'").get() as { value: string } | undefined;
    const current = row ? Number(row.value) : 0;
    if (current > NET_SCHEMA) throw new Error(`The network tables were written by a newer Corral (net schema ${current}, this one knows ${NET_SCHEMA})`);
    for (let version = current + 1; version <= NET_SCHEMA; version++) {
      this.db.transaction(() => {
        this.db.exec(MIGRATIONS[version] as string);
        this.db.prepare("INSERT INTO meta (key, value) VALUES ('net_schema', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value").run(String(version));
      })();
    }
  }

  /**
   * Pins a group's subnet at its first start and answers the pinned one: a derived isolated range stays where
   * it was even if a later start would derive another. A changed subnet is taken only while the group holds
   * no lease; otherwise the start is refused with a sentence naming the leases.
   */
  pinGroup(hostgroup: string, mode: "bridge" | "isolated", subnet: string, options: { keepPinned?: boolean } = {}): string {
    return this.db.transaction(() => {
      const row = this.db.prepare("SELECT mode, subnet FROM net_groups WHERE hostgroup = ?").get(hostgroup) as { mode: string; subnet: string } | undefined;
      if (!row) {
        this.db.prepare("INSERT INTO net_groups (hostgroup, mode, subnet, cursor) VALUES (?, ?, ?, 0)").run(hostgroup, mode, subnet);
        return subnet;
      }
      if (row.mode === mode && (row.subnet === subnet || options.keepPinned)) return row.subnet;
      const leases = this.groupLeases(hostgroup);
      if (leases.length > 0) {
        const owners = leases
          .slice(0, 5)
          .map((l) => `"${l.owner}" (${l.address})`)
          .join(", ");
        throw new Error(
          `Cannot start: host group "${hostgroup}" changed its network from ${row.mode} ${row.subnet} to ${mode} ${subnet} while ` +
            `${leases.length} VM(s) hold addresses in the old one: ${owners}${leases.length > 5 ? ", …" : ""}. Delete them first, or put the old network back`,
        );
      }
      this.db.prepare("UPDATE net_groups SET mode = ?, subnet = ?, cursor = 0 WHERE hostgroup = ?").run(mode, subnet, hostgroup);
      return subnet;
    })();
  }

  /** Takes a lease in `pool` for `request.owner`: a static address or the next free slot from the group's cursor. */
  allocate(pool: AddressPool, request: AllocateRequest): Lease {
    return this.db.transaction(() => {
      if (this.leaseOf(request.owner)) throw new CorralError("conflict", `"${request.owner}" already holds an address`);
      const taken = new Set((this.db.prepare("SELECT slot FROM net_leases WHERE hostgroup = ?").all(pool.hostgroup) as { slot: number }[]).map((r) => r.slot));
      let slot: number | undefined;
      if (request.ip !== undefined) {
        const wanted = parseIpv4(request.ip);
        slot = wanted === undefined ? undefined : pool.slotOf(wanted);
        if (slot === undefined) {
          throw new CorralError("invalid_request", `Address "${request.ip}" is not in host group "${pool.hostgroup}"'s pool (${pool.subnet}, ${pool.widenField})`);
        }
        const holder = this.db.prepare("SELECT owner FROM net_leases WHERE address = ?").get(formatIpv4(pool.slot(slot).address)) as { owner: string } | undefined;
        if (holder) throw new CorralError("address_in_use", `Address "${request.ip}" is in use by "${holder.owner}"`);
      } else {
        slot = nextFreeSlot(pool.size, this.cursor(pool.hostgroup), taken);
        if (slot === undefined) {
          throw new CorralError(
            "hostgroup_full",
            `Host group "${pool.hostgroup}" has no free address: its ${pool.size} addresses are leased; delete a VM or widen ${pool.widenField}`,
          );
        }
      }
      const address = formatIpv4(pool.slot(slot).address);
      const holder = this.db.prepare("SELECT owner, hostgroup FROM net_leases WHERE address = ?").get(address) as { owner: string; hostgroup: string } | undefined;
      if (holder) throw new CorralError("address_in_use", `Address "${address}" is in use by "${holder.owner}" of host group "${holder.hostgroup}"`);
      const ids = new Set((this.db.prepare("SELECT device_id FROM net_leases").all() as { device_id: number }[]).map((r) => r.device_id));
      const deviceId = lowestFreeId(ids);
      if (deviceId === undefined) throw new CorralError("hostgroup_full", "This daemon has no free network device number: delete a VM");
      this.db
        .prepare("INSERT INTO net_leases (hostgroup, slot, device_id, address, mac, owner, owner_kind, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
        .run(pool.hostgroup, slot, deviceId, address, request.mac, request.owner, request.ownerKind, this.now().toISOString());
      this.db
        .prepare("INSERT INTO net_groups (hostgroup, mode, subnet, cursor) VALUES (?, ?, ?, ?) ON CONFLICT (hostgroup) DO UPDATE SET cursor = excluded.cursor")
        .run(pool.hostgroup, pool.mode, pool.subnet, (slot + 1) % Math.max(pool.size, 1));
      return this.leaseOf(request.owner) as Lease;
    })();
  }

  private cursor(hostgroup: string): number {
    const row = this.db.prepare("SELECT cursor FROM net_groups WHERE hostgroup = ?").get(hostgroup) as { cursor: number } | undefined;
    return row?.cursor ?? 0;
  }

  leaseOf(owner: string): Lease | undefined {
    const row = this.db.prepare("SELECT * FROM net_leases WHERE owner = ?").get(owner) as LeaseRow | undefined;
    return row ? fromRow(row) : undefined;
  }

  leases(): Lease[] {
    return (this.db.prepare("SELECT * FROM net_leases ORDER BY hostgroup, slot").all() as LeaseRow[]).map(fromRow);
  }

  groupLeases(hostgroup: string): Lease[] {
    return (this.db.prepare("SELECT * FROM net_leases WHERE hostgroup = ? ORDER BY slot").all(hostgroup) as LeaseRow[]).map(fromRow);
  }

  /** What a lease gives the guest, read back through its group's pool. */
  static slotOf(pool: AddressPool, lease: Lease): SlotAddress {
    return pool.slot(lease.slot);
  }

  /** Frees the owner's lease and port maps; true if it held a lease. */
  release(owner: string): boolean {
    return this.db.transaction(() => {
      this.db.prepare("DELETE FROM net_port_maps WHERE owner = ?").run(owner);
      return this.db.prepare("DELETE FROM net_leases WHERE owner = ?").run(owner).changes === 1;
    })();
  }

  /** A warm-pool clone handed out: its lease (and port maps) now belong to the VM's hostname. */
  rename(from: string, to: string): void {
    this.db.transaction(() => {
      const changed = this.db.prepare("UPDATE net_leases SET owner = ?, owner_kind = 'vm' WHERE owner = ?").run(to, from).changes;
      if (changed !== 1) throw new CorralError("conflict", `"${from}" holds no address to hand to "${to}"`);
      this.db.prepare("UPDATE net_port_maps SET owner = ? WHERE owner = ?").run(to, from);
    })();
  }

  /** Releases every lease and port map whose owner is not in `owners` (VM records and pool folders); returns them. */
  sweep(owners: ReadonlySet<string>): Lease[] {
    return this.db.transaction(() => {
      const stale = this.leases().filter((l) => !owners.has(l.owner));
      for (const lease of stale) this.release(lease.owner);
      const portOwners = (this.db.prepare("SELECT DISTINCT owner FROM net_port_maps").all() as { owner: string }[]).map((r) => r.owner);
      for (const owner of portOwners) if (!owners.has(owner)) this.db.prepare("DELETE FROM net_port_maps WHERE owner = ?").run(owner);
      return stale;
    })();
  }

  /**
   * Host ports for `guestPorts` from `range`, lowest free first, skipping ports `usable` refuses (bound on
   * the host). Replaces the owner's earlier maps. TTstack's `port_map`: guest port → host port.
   */
  allocatePorts(owner: string, guestPorts: readonly number[], range: { first: number; last: number }, usable: (port: number) => boolean = () => true): PortMap[] {
    return this.db.transaction(() => {
      this.db.prepare("DELETE FROM net_port_maps WHERE owner = ?").run(owner);
      const taken = new Set((this.db.prepare("SELECT host_port FROM net_port_maps WHERE protocol = 'tcp'").all() as { host_port: number }[]).map((r) => r.host_port));
      const maps: PortMap[] = [];
      let candidate = range.first;
      for (const guestPort of guestPorts) {
        while (candidate <= range.last && (taken.has(candidate) || !usable(candidate))) candidate++;
        if (candidate > range.last) {
          throw new CorralError("hostgroup_full", `No free host port for a port map: ports ${range.first}-${range.last} are all in use; widen config.network.port_range`);
        }
        this.db.prepare("INSERT INTO net_port_maps (protocol, host_port, owner, guest_port) VALUES ('tcp', ?, ?, ?)").run(candidate, owner, guestPort);
        maps.push({ hostPort: candidate, guestPort, owner });
        taken.add(candidate);
      }
      return maps;
    })();
  }

  portMaps(owner?: string): PortMap[] {
    const rows = (
      owner === undefined
        ? this.db.prepare("SELECT host_port, guest_port, owner FROM net_port_maps ORDER BY host_port").all()
        : this.db.prepare("SELECT host_port, guest_port, owner FROM net_port_maps WHERE owner = ? ORDER BY host_port").all(owner)
    ) as { host_port: number; guest_port: number; owner: string }[];
    return rows.map((r) => ({ hostPort: r.host_port, guestPort: r.guest_port, owner: r.owner }));
  }
}
