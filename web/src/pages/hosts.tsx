// `/hosts`: every host with its kind, state, resources, engines and VMs; add one by address or libvirt URI,
// remove one.
/** @jsxRuntime automatic */
import { useState, type FormEvent } from "react";
import type { Host, RegisterHost } from "../../../src/protocol/controller.ts";
import { CapacityBar, Empty, ErrorNote, Loading, StateBadge, TableHead } from "../components/bits.tsx";
import { ConfirmDialog } from "../components/dialog.tsx";
import { formatMiB } from "../lib/format.ts";
import { HOST_KIND_NAMES, hostPlace } from "../lib/host-kinds.ts";
import { hostsChanged, useAction, useResource } from "../lib/hooks.ts";
import { paths } from "../lib/routes.ts";
import { Link, navigate } from "../lib/router.tsx";
import { useServices } from "../lib/services.tsx";

export function HostsPage() {
  const hosts = useResource<Host[]>("/api/hosts", { staleOn: hostsChanged });
  const [removing, setRemoving] = useState<Host | undefined>();
  return (
    <section>
      <h1>Hosts</h1>
      <ErrorNote error={hosts.error} />
      {hosts.data === undefined ? (
        !hosts.error && <Loading />
      ) : hosts.data.length === 0 ? (
        <Empty>No hosts yet. Add a Corral daemon by its address, or a libvirt daemon by its URI, below.</Empty>
      ) : (
        <HostTable hosts={hosts.data} onRemove={setRemoving} />
      )}
      <AddHostForm onAdded={hosts.reload} />
      {removing && (
        <RemoveHostDialog
          host={removing}
          onDone={() => {
            setRemoving(undefined);
            hosts.reload();
          }}
          onClose={() => setRemoving(undefined)}
        />
      )}
    </section>
  );
}

function HostTable({ hosts, onRemove }: { hosts: Host[]; onRemove: (host: Host) => void }) {
  return (
    <div className="table-wrap">
      <table>
        <TableHead columns={["Host", "Kind", "State", "Reserved / total", "Engines", "VMs"]} actions />
        <tbody>
          {hosts.map((host) => (
            <tr key={host.id}>
              <th scope="row">
                <Link href={paths.host(host.id)}>{host.id}</Link>
                <div className="muted small-text">
                  {host.hostname} · {hostPlace(host)}
                </div>
              </th>
              <td>{HOST_KIND_NAMES[host.kind]}</td>
              <td>
                <StateBadge state={host.state} />
                {host.last_error && host.state !== "online" && <div className="error-text small-text">{host.last_error}</div>}
              </td>
              <td className="resources">
                <HostResources host={host} />
              </td>
              <td>{host.engines.join(", ") || "–"}</td>
              <td className="num">{host.vm_count}</td>
              <td>
                <button type="button" className="small" onClick={() => onRemove(host)} aria-label={`Remove host ${host.id}`}>
                  Remove
                </button>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

/**
 * What the controller's VMs reserve of the host; on a libvirt host, which takes none of them, what its running
 * domains use. A disk the host does not report (0 in all) is left out.
 */
export function HostResources({ host }: { host: Host }) {
  const r = host.resource;
  const inUse = host.kind === "libvirt";
  const part = inUse ? { cpu: r.cpu_used, mem: r.mem_used, disk: r.disk_used } : host.reserved;
  const label = (what: string) => (inUse ? `${what} in use` : what);
  return (
    <div className="mini-bars">
      <CapacityBar label={label("CPU")} part={part.cpu} total={r.cpu_total} format={(n) => String(n)} />
      <CapacityBar label={label("Memory")} part={part.mem} total={r.mem_total} format={formatMiB} />
      {r.disk_total > 0 && <CapacityBar label={label("Disk")} part={part.disk} total={r.disk_total} format={formatMiB} />}
    </div>
  );
}

/** "10.0.0.2:8080" → TTstack's {addr}; "http://…" or a libvirt URI ("qemu+ssh://…") → Virtumancer's {uri}. */
export function registerBody(address: string, id: string, token: string): RegisterHost {
  const trimmed = address.trim();
  const body: RegisterHost = /^[a-z][a-z0-9+.-]*:\/\//i.test(trimmed) ? { uri: trimmed } : { addr: trimmed };
  if (id.trim()) body.id = id.trim();
  if (token.trim()) body.token = token.trim();
  return body;
}

function AddHostForm({ onAdded }: { onAdded: () => void }) {
  const { api } = useServices();
  const [address, setAddress] = useState("");
  const [id, setId] = useState("");
  const [token, setToken] = useState("");
  const action = useAction();
  const submit = async (event: FormEvent) => {
    event.preventDefault();
    const ok = await action.run(() => api.post<Host>("/api/hosts", registerBody(address, id, token)));
    if (ok) {
      setAddress("");
      setId("");
      setToken("");
      onAdded();
    }
  };
  return (
    <form className="panel form" onSubmit={submit} aria-labelledby="add-host-title">
      <h2 id="add-host-title">Add a host</h2>
      <p className="muted">
        A Corral daemon's address (HOST:PORT, or http://HOST:PORT), or a libvirt daemon's URI (qemu:///system, qemu+ssh://root@HOST/system?keyfile=PATH). The controller checks it
        answers before adding it.
      </p>
      <div className="fields">
        <div className="field">
          <label htmlFor="host-address">Address</label>
          <input id="host-address" required placeholder="10.0.0.2:8080 or qemu+ssh://root@10.0.0.2/system" value={address} onChange={(e) => setAddress(e.target.value)} />
        </div>
        <div className="field">
          <label htmlFor="host-id">Host ID (optional)</label>
          <input id="host-id" placeholder="the daemon's own id" value={id} onChange={(e) => setId(e.target.value)} />
        </div>
        <div className="field">
          <label htmlFor="host-token">Daemon token (optional; not for libvirt)</label>
          <input id="host-token" type="password" autoComplete="off" value={token} onChange={(e) => setToken(e.target.value)} />
        </div>
      </div>
      <ErrorNote error={action.error}>Could not add the host: </ErrorNote>
      <div className="actions">
        <button type="submit" className="primary" disabled={action.busy}>
          {action.busy ? "Adding…" : "Add host"}
        </button>
      </div>
    </form>
  );
}

export function RemoveHostDialog({ host, onDone, onClose, leave }: { host: Host; onDone: () => void; onClose: () => void; leave?: boolean }) {
  const { api } = useServices();
  const action = useAction();
  const confirm = async () => {
    if (await action.run(() => api.delete(`/api/hosts/${encodeURIComponent(host.id)}`))) {
      onDone();
      if (leave) navigate(paths.hosts());
    }
  };
  return (
    <ConfirmDialog title={`Remove host "${host.id}"?`} confirmLabel="Remove" busy={action.busy} error={action.error} onConfirm={confirm} onClose={onClose}>
      <p>
        The controller stops sending work to <strong>{hostPlace(host)}</strong> and forgets it. The daemon and its VMs keep running. A host that still has environments' VMs cannot
        be removed: delete those environments first.
      </p>
    </ConfirmDialog>
  );
}
