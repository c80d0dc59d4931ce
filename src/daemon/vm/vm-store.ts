// VM records in SQLite (better-sqlite3: synchronous, so each method is atomic on the event loop). Writes
// are compare-and-set on (hostname, incarnation, state): a decision made about an older VM of the same name,
// or about a state that has since changed, never lands.
import Database from "better-sqlite3";
import { CorralError } from "../../protocol/errors.ts";
import { assertTransition, type VmState } from "../../protocol/vm-lifecycle.ts";

export type VmKind = "service" | "sandbox";

export interface VmRecord {
  hostname: string;
  hostgroup: string;
  kind: VmKind;
  state: VmState;
  /** Bumped each time a QEMU process is started for this record. */
  incarnation: number;
  cpus: number;
  ramBytes: number;
  persistent: boolean;
  image: string;
  imageVersion: string;
  userdata: string | null;
  sshKeys: string[];
  /** A login user created in the guest for the SSH keys (else they go to root). */
  importUser: string | null;
  tags: string[];
  ip: string;
  mac: string;
  accel: string;
  pid: number | null;
  pidStartTime: string | null;
  createdAt: string;
  updatedAt: string;
  lastError: string | null;
  /** The template this VM was cloned from (its RAM file and frozen disk back the VM's); null: cold boot. */
  template: string | null;
  /** The guest's /etc/machine-id, fixed for the VM's life. */
  machineId: string;
  /** The commit this VM was forked from (its disk is backed by the commit's); null otherwise. */
  origin: string | null;
  /** The environment a fleet controller made this VM for (TTstack's `env_id`); null for Slicer's VMs. */
  envId: string | null;
  /** The disk size the guest sees, MiB, when asked for one bigger than the image's; null: the image's. */
  diskMiB: number | null;
  /** Guest TCP ports forwarded from the daemon's address (TTstack's `ports` and `port_map`). */
  portMap: PortMapping[];
  /** The guest may not open connections out (QEMU's `restrict=on`); forwarded ports still work. */
  denyOutgoing: boolean;
  /**
   * False from the insert until the client that asked for the VM was answered: a VM nobody was told about
   * is removed (by the create when its client leaves, by recovery after a crash). True for VMs the daemon
   * makes for itself (services) and for every VM made before this mark existed.
   */
  acknowledged: boolean;
  /** When the VM's lifetime ends and the expiry reaper deletes it (RFC 3339); null: it has none. */
  expiresAt: string | null;
  /**
   * The VM's own egress lists instead of its host group's (bridge and isolated modes): an absent list
   * inherits the group's, `[]` clears it (Slicer's fork policy). As written; parsed where it is applied.
   */
  networkPolicy: NetworkPolicyLists;
}

export interface NetworkPolicyLists {
  allow?: string[];
  drop?: string[];
}

export interface PortMapping {
  guest: number;
  host: number;
}

export type NewVm = Omit<
  VmRecord,
  | "hostname"
  | "state"
  | "incarnation"
  | "pid"
  | "pidStartTime"
  | "createdAt"
  | "updatedAt"
  | "lastError"
  | "template"
  | "origin"
  | "envId"
  | "diskMiB"
  | "portMap"
  | "denyOutgoing"
  | "acknowledged"
  | "expiresAt"
  | "networkPolicy"
> &
  Partial<Pick<VmRecord, "envId" | "diskMiB" | "portMap" | "denyOutgoing" | "acknowledged" | "networkPolicy">> & {
    /** Milliseconds from creation to expiry (`expires_at` is `created_at` plus this); absent or null: none. */
    lifetimeMs?: number | null;
  };

interface Row {
  hostname: string;
  hostgroup: string;
  kind: VmKind;
  state: VmState;
  incarnation: number;
  cpus: number;
  ram_bytes: number;
  persistent: number;
  image: string;
  image_version: string;
  userdata: string | null;
  ssh_keys: string;
  import_user: string | null;
  tags: string;
  ip: string;
  mac: string;
  accel: string;
  pid: number | null;
  pid_start_time: string | null;
  created_at: string;
  updated_at: string;
  last_error: string | null;
  template: string | null;
  machine_id: string;
  origin: string | null;
  env_id: string | null;
  disk_mib: number | null;
  port_map: string;
  deny_outgoing: number;
  acknowledged: number;
  expires_at: string | null;
  network: string;
}

const SCHEMA_VERSION = 7;

const MIGRATIONS: Record<number, string> = {
  1: `
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE vms (
      hostname TEXT PRIMARY KEY,
      hostgroup TEXT NOT NULL,
      kind TEXT NOT NULL CHECK (kind IN ('service', 'sandbox')),
      state TEXT NOT NULL,
      incarnation INTEGER NOT NULL,
      cpus INTEGER NOT NULL,
      ram_bytes INTEGER NOT NULL,
      persistent INTEGER NOT NULL,
      image TEXT NOT NULL,
      image_version TEXT NOT NULL,
      userdata TEXT,
      ssh_keys TEXT NOT NULL,
      tags TEXT NOT NULL,
      ip TEXT NOT NULL,
      mac TEXT NOT NULL,
      accel TEXT NOT NULL,
      pid INTEGER,
      pid_start_time TEXT,
      created_at TEXT NOT NULL,
      updated_at TEXT NOT NULL,
      last_error TEXT
    );
    CREATE INDEX vms_by_group ON vms (hostgroup);
    CREATE TABLE hostgroup_counters (hostgroup TEXT PRIMARY KEY, next_index INTEGER NOT NULL);
  `,
  2: `ALTER TABLE vms ADD COLUMN import_user TEXT;`,
  3: `
    ALTER TABLE vms ADD COLUMN template TEXT;
    ALTER TABLE vms ADD COLUMN machine_id TEXT NOT NULL DEFAULT '';
  `,
  4: `ALTER TABLE vms ADD COLUMN origin TEXT;`,
  5: `
    ALTER TABLE vms ADD COLUMN env_id TEXT;
    ALTER TABLE vms ADD COLUMN disk_mib INTEGER;
    ALTER TABLE vms ADD COLUMN port_map TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE vms ADD COLUMN deny_outgoing INTEGER NOT NULL DEFAULT 0;
  `,
  // VMs from before the mark existed were all answered (or are services): they count as acknowledged.
  6: `
    ALTER TABLE vms ADD COLUMN acknowledged INTEGER NOT NULL DEFAULT 1;
    ALTER TABLE vms ADD COLUMN expires_at TEXT;
    CREATE INDEX vms_by_expiry ON vms (expires_at) WHERE expires_at IS NOT NULL;
  `,
  // A VM's egress policy override (bridge and isolated modes); its address lease lives in net_leases.
  7: `ALTER TABLE vms ADD COLUMN network TEXT NOT NULL DEFAULT '{}';`,
};

function fromRow(row: Row): VmRecord {
  return {
    hostname: row.hostname,
    hostgroup: row.hostgroup,
    kind: row.kind,
    state: row.state,
    incarnation: row.incarnation,
    cpus: row.cpus,
    ramBytes: row.ram_bytes,
    persistent: row.persistent === 1,
    image: row.image,
    imageVersion: row.image_version,
    userdata: row.userdata,
    sshKeys: JSON.parse(row.ssh_keys) as string[],
    importUser: row.import_user,
    tags: JSON.parse(row.tags) as string[],
    ip: row.ip,
    mac: row.mac,
    accel: row.accel,
    pid: row.pid,
    pidStartTime: row.pid_start_time,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    lastError: row.last_error,
    template: row.template,
    machineId: row.machine_id,
    origin: row.origin,
    envId: row.env_id,
    diskMiB: row.disk_mib,
    portMap: JSON.parse(row.port_map) as PortMapping[],
    denyOutgoing: row.deny_outgoing === 1,
    acknowledged: row.acknowledged === 1,
    expiresAt: row.expires_at,
    networkPolicy: JSON.parse(row.network) as NetworkPolicyLists,
  };
}

export interface StatePatch {
  pid?: number | null;
  pidStartTime?: string | null;
  lastError?: string | null;
  incarnation?: number;
  imageVersion?: string;
  template?: string | null;
  origin?: string | null;
}

export class VmStore {
  private readonly db: Database.Database;
  private readonly deleteHooks: ((hostname: string) => void)[] = [];

  constructor(
    file: string,
    private readonly now: () => Date = () => new Date(),
  ) {
    this.db = new Database(file);
    this.db.pragma("journal_mode = WAL");
    this.db.pragma("synchronous = NORMAL");
    this.db.pragma("busy_timeout = 5000");
    this.migrate();
  }

  close(): void {
    this.db.close();
  }

  /** The handle, for stores that keep their tables in the same file and share transactions (IpamStore). */
  get database(): Database.Database {
    return this.db;
  }

  /** Runs `fn` in one transaction (nested calls become savepoints): a record and its lease land together. */
  transaction<T>(fn: () => T): T {
    return this.db.transaction(fn)();
  }

  /**
   * Runs `hook` inside the transaction that deletes a record, whoever deletes it (delete, rollback,
   * recovery): the VM's address lease goes with its record, or neither does.
   */
  onDelete(hook: (hostname: string) => void): void {
    this.deleteHooks.push(hook);
  }

  private migrate(): void {
    const current = this.db.pragma("user_version", { simple: true }) as number;
    if (current > SCHEMA_VERSION) {
      throw new Error(`The state database was written by a newer Corral (schema ${current}, this one knows ${SCHEMA_VERSION})`);
    }
    for (let version = current + 1; version <= SCHEMA_VERSION; version++) {
      this.db.transaction(() => {
        this.db.exec(MIGRATIONS[version] as string);
        this.db.pragma(`user_version = ${version}`);
      })();
    }
  }

  /**
   * The next incarnation number, from one sequence for the whole store: a VM recreated under an old name
   * never repeats an incarnation of its predecessor.
   */
  nextIncarnation(): number {
    return this.db.transaction(() => {
      const next = Number(this.getMeta("incarnation_seq") ?? "0") + 1;
      this.setMeta("incarnation_seq", String(next));
      return next;
    })();
  }

  getMeta(key: string): string | undefined {
    const row = this.db.prepare("SELECT value FROM meta WHERE key = ?").get(key) as { value: string } | undefined;
    return row?.value;
  }

  setMeta(key: string, value: string): void {
    this.db.prepare("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value").run(key, value);
  }

  get(hostname: string): VmRecord | undefined {
    const row = this.db.prepare("SELECT * FROM vms WHERE hostname = ?").get(hostname) as Row | undefined;
    return row ? fromRow(row) : undefined;
  }

  list(): VmRecord[] {
    return (this.db.prepare("SELECT * FROM vms ORDER BY created_at, hostname").all() as Row[]).map(fromRow);
  }

  countByState(): Partial<Record<VmState, number>> {
    const counts: Partial<Record<VmState, number>> = {};
    for (const row of this.db.prepare("SELECT state, COUNT(*) AS n FROM vms GROUP BY state").all() as { state: VmState; n: number }[]) counts[row.state] = row.n;
    return counts;
  }

  listGroup(hostgroup: string): VmRecord[] {
    return (this.db.prepare("SELECT * FROM vms WHERE hostgroup = ? ORDER BY created_at, hostname").all(hostgroup) as Row[]).map(fromRow);
  }

  /**
   * Inserts a sandbox under the next free `GROUP-N` name, in one transaction so concurrent creates never get
   * the same name. Numbers are never reused; indexes up to `reserved` belong to the group's services.
   */
  insertSandbox(vm: NewVm, reserved: number): VmRecord {
    return this.db.transaction(() => {
      const counter = this.db.prepare("SELECT next_index FROM hostgroup_counters WHERE hostgroup = ?").get(vm.hostgroup) as { next_index: number } | undefined;
      let index = Math.max(counter?.next_index ?? 1, reserved + 1);
      while (this.get(`${vm.hostgroup}-${index}`)) index++;
      this.db
        .prepare("INSERT INTO hostgroup_counters (hostgroup, next_index) VALUES (?, ?) ON CONFLICT (hostgroup) DO UPDATE SET next_index = excluded.next_index")
        .run(vm.hostgroup, index + 1);
      return this.insert(`${vm.hostgroup}-${index}`, vm);
    })();
  }

  /** Inserts a record with a fixed name (services); conflict when the name is taken. */
  insertNamed(hostname: string, vm: NewVm): VmRecord {
    if (this.get(hostname)) throw new CorralError("conflict", `A VM named "${hostname}" already exists`);
    return this.insert(hostname, vm);
  }

  private insert(hostname: string, vm: NewVm): VmRecord {
    const created = this.now();
    const now = created.toISOString();
    const expiresAt = vm.lifetimeMs == null ? null : new Date(created.getTime() + vm.lifetimeMs).toISOString();
    this.db
      .prepare(
        `INSERT INTO vms (hostname, hostgroup, kind, state, incarnation, cpus, ram_bytes, persistent, image, image_version,
          userdata, ssh_keys, import_user, tags, ip, mac, accel, pid, pid_start_time, created_at, updated_at, last_error, machine_id,
          env_id, disk_mib, port_map, deny_outgoing, acknowledged, expires_at, network)
         VALUES (?, ?, ?, 'creating', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, ?, ?, NULL, ?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(
        hostname,
        vm.hostgroup,
        vm.kind,
        this.nextIncarnation(),
        vm.cpus,
        vm.ramBytes,
        vm.persistent ? 1 : 0,
        vm.image,
        vm.imageVersion,
        vm.userdata,
        JSON.stringify(vm.sshKeys),
        vm.importUser,
        JSON.stringify(vm.tags),
        vm.ip,
        vm.mac,
        vm.accel,
        now,
        now,
        vm.machineId,
        vm.envId ?? null,
        vm.diskMiB ?? null,
        JSON.stringify(vm.portMap ?? []),
        vm.denyOutgoing ? 1 : 0,
        vm.acknowledged === false ? 0 : 1,
        expiresAt,
        JSON.stringify(vm.networkPolicy ?? {}),
      );
    return this.get(hostname) as VmRecord;
  }

  /**
   * Moves `vm` to `to` if the stored record still has the VM's incarnation and state; returns the new record.
   * Throws `conflict` when the table forbids the move, or when the record changed meanwhile.
   */
  transition(vm: VmRecord, to: VmState, patch: StatePatch = {}): VmRecord {
    assertTransition(vm.hostname, vm.state, to);
    const sets = ["state = @to", "updated_at = @now"];
    const params: Record<string, unknown> = { to, now: this.now().toISOString(), hostname: vm.hostname, incarnation: vm.incarnation, from: vm.state };
    if (patch.pid !== undefined) {
      sets.push("pid = @pid");
      params.pid = patch.pid;
    }
    if (patch.pidStartTime !== undefined) {
      sets.push("pid_start_time = @pidStartTime");
      params.pidStartTime = patch.pidStartTime;
    }
    if (patch.lastError !== undefined) {
      sets.push("last_error = @lastError");
      params.lastError = patch.lastError;
    }
    if (patch.incarnation !== undefined) {
      sets.push("incarnation = @newIncarnation");
      params.newIncarnation = patch.incarnation;
    }
    if (patch.imageVersion !== undefined) {
      sets.push("image_version = @imageVersion");
      params.imageVersion = patch.imageVersion;
    }
    if (patch.template !== undefined) {
      sets.push("template = @template");
      params.template = patch.template;
    }
    if (patch.origin !== undefined) {
      sets.push("origin = @origin");
      params.origin = patch.origin;
    }
    const result = this.db.prepare(`UPDATE vms SET ${sets.join(", ")} WHERE hostname = @hostname AND incarnation = @incarnation AND state = @from`).run(params);
    if (result.changes !== 1) {
      throw new CorralError("conflict", `VM "${vm.hostname}" changed while it was being moved from ${vm.state} to ${to}`);
    }
    return this.get(vm.hostname) as VmRecord;
  }

  /** Replaces a VM's tags (any state); returns the record. */
  setTags(hostname: string, tags: readonly string[]): VmRecord | undefined {
    this.db.prepare("UPDATE vms SET tags = ?, updated_at = ? WHERE hostname = ?").run(JSON.stringify(tags), this.now().toISOString(), hostname);
    return this.get(hostname);
  }

  /** Replaces the host ports of a VM's forwards (any state: ports are chosen again when taken at a start). */
  setPortMap(hostname: string, portMap: readonly PortMapping[]): void {
    this.db.prepare("UPDATE vms SET port_map = ?, updated_at = ? WHERE hostname = ?").run(JSON.stringify(portMap), this.now().toISOString(), hostname);
  }

  /**
   * Marks the VM's create as answered to its client, if the record is still the VM that create made (same
   * name and creation time); returns whether it is now acknowledged.
   */
  acknowledge(hostname: string, createdAt: string): boolean {
    return this.db.prepare("UPDATE vms SET acknowledged = 1 WHERE hostname = ? AND created_at = ?").run(hostname, createdAt).changes === 1;
  }

  /** Sets or clears when the VM expires (any state); returns the record. */
  setExpiry(hostname: string, expiresAt: Date | null): VmRecord | undefined {
    this.db.prepare("UPDATE vms SET expires_at = ?, updated_at = ? WHERE hostname = ?").run(expiresAt?.toISOString() ?? null, this.now().toISOString(), hostname);
    return this.get(hostname);
  }

  /**
   * The VMs whose lifetime has ended at `now`, soonest first. A VM whose create is not yet acknowledged is
   * left to that create (its answer, or its rollback), so a lifetime shorter than the boot never pulls a VM
   * out from under a client waiting for it: it expires right after its answer.
   */
  listExpired(now: Date): VmRecord[] {
    return (
      this.db.prepare("SELECT * FROM vms WHERE expires_at IS NOT NULL AND expires_at <= ? AND acknowledged = 1 ORDER BY expires_at, hostname").all(now.toISOString()) as Row[]
    ).map(fromRow);
  }

  /** Notes why the last start failed, without changing the state. */
  recordError(hostname: string, incarnation: number, message: string): void {
    this.db.prepare("UPDATE vms SET last_error = ?, updated_at = ? WHERE hostname = ? AND incarnation = ?").run(message, this.now().toISOString(), hostname, incarnation);
  }

  /** The templates that VM records still use (their files must stay). */
  templatesInUse(): Set<string> {
    const rows = this.db.prepare("SELECT DISTINCT template FROM vms WHERE template IS NOT NULL").all() as { template: string }[];
    return new Set(rows.map((r) => r.template));
  }

  /** The VMs forked from a commit (they need its disk). */
  forksOf(commitId: string): string[] {
    return (this.db.prepare("SELECT hostname FROM vms WHERE origin = ? ORDER BY hostname").all(commitId) as { hostname: string }[]).map((r) => r.hostname);
  }

  /** Sets the address and MAC a lease gave the VM (any state). */
  setAddress(hostname: string, ip: string, mac: string): void {
    this.db.prepare("UPDATE vms SET ip = ?, mac = ?, updated_at = ? WHERE hostname = ?").run(ip, mac, this.now().toISOString(), hostname);
  }

  /** Stores a VM's egress override and deny_outgoing (PATCH /vm/HOST/network); returns the record. */
  setNetworkPolicy(hostname: string, policy: NetworkPolicyLists, denyOutgoing: boolean): VmRecord | undefined {
    this.db
      .prepare("UPDATE vms SET network = ?, deny_outgoing = ?, updated_at = ? WHERE hostname = ?")
      .run(JSON.stringify(policy), denyOutgoing ? 1 : 0, this.now().toISOString(), hostname);
    return this.get(hostname);
  }

  /** Deletes the record if it is still the given incarnation (with the delete hooks, one transaction); returns whether it did. */
  delete(hostname: string, incarnation: number): boolean {
    return this.db.transaction(() => {
      const deleted = this.db.prepare("DELETE FROM vms WHERE hostname = ? AND incarnation = ?").run(hostname, incarnation).changes === 1;
      if (deleted) for (const hook of this.deleteHooks) hook(hostname);
      return deleted;
    })();
  }
}
