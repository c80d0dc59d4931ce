// `/hosts/:id`: one host, its resources and every VM it reports.
/** @jsxRuntime automatic */
import { useState } from "react";
import type { Host, HostVm } from "../../../src/protocol/controller.ts";
import { Empty, ErrorNote, Facts, HealthBadge, Loading, StateBadge, TableHead } from "../components/bits.tsx";
import { formatMiB, formatTime } from "../lib/format.ts";
import { HOST_KIND_NAMES } from "../lib/host-kinds.ts";
import { hostsChanged, useResource } from "../lib/hooks.ts";
import { paths } from "../lib/routes.ts";
import { Link } from "../lib/router.tsx";
import { HostResources, RemoveHostDialog } from "./hosts.tsx";

export function HostPage({ id }: { id: string }) {
  const base = `/api/hosts/${encodeURIComponent(id)}`;
  // What the host reports (resources, images) changes with its VMs: vms-changed for this host.
  const host = useResource<Host>(base, { staleOn: (m) => m.type === "hosts-changed" || (m.type === "vms-changed" && m.payload.hostId === id) });
  const vms = useResource<HostVm[]>(`${base}/vms`, { staleOn: (m) => hostsChanged(m) && (m.type !== "vms-changed" || m.payload.hostId === id) });
  const [removing, setRemoving] = useState(false);
  return (
    <section>
      <p className="crumbs">
        <Link href={paths.hosts()}>Hosts</Link> /
      </p>
      <div className="title-row">
        <h1>Host {id}</h1>
        {host.data && (
          <button type="button" onClick={() => setRemoving(true)}>
            Remove host
          </button>
        )}
      </div>
      <ErrorNote error={host.error} />
      {host.data ? <HostDetails host={host.data} /> : !host.error && <Loading />}
      <div className="panel">
        <h2>VMs</h2>
        <ErrorNote error={vms.error} />
        {vms.data === undefined ? !vms.error && <Loading /> : vms.data.length === 0 ? <Empty>This host runs no VMs.</Empty> : <VmTable hostId={id} vms={vms.data} />}
      </div>
      {removing && host.data && <RemoveHostDialog host={host.data} leave onDone={() => setRemoving(false)} onClose={() => setRemoving(false)} />}
    </section>
  );
}

function HostDetails({ host }: { host: Host }) {
  return (
    <div className="panel">
      <Facts
        items={[
          ["State", <StateBadge key="state" state={host.state} />],
          ["Kind", HOST_KIND_NAMES[host.kind]],
          ["Hostname", host.hostname],
          ["Address", <code key="address">{host.uri}</code>],
          ["Engines", host.engines.join(", ") || "–"],
          ["Images", host.images.join(", ") || "–"],
          ["Last seen", host.last_seen_at ? formatTime(host.last_seen_at) : "never"],
          ["Last error", host.last_error && <span className="error-text">{host.last_error}</span>],
        ]}
      />
      <h3>{host.kind === "libvirt" ? "In use by its running domains, of the host's total" : "Reserved by the controller's VMs, of the host's total"}</h3>
      <HostResources host={host} />
      <p className="muted small-text">
        In use as the host reports: {host.resource.cpu_used} of {host.resource.cpu_total} CPUs, {formatMiB(host.resource.mem_used)} of {formatMiB(host.resource.mem_total)} memory,{" "}
        {formatMiB(host.resource.disk_used)} of {formatMiB(host.resource.disk_total)} disk.
      </p>
    </div>
  );
}

function VmTable({ hostId, vms }: { hostId: string; vms: HostVm[] }) {
  return (
    <div className="table-wrap">
      <table>
        <TableHead columns={["VM", "State", "Health", "Environment", "vCPUs", "Memory"]} />
        <tbody>
          {vms.map((vm) => (
            <tr key={vm.name}>
              <th scope="row">
                <Link href={paths.vm(hostId, vm.name)}>{vm.name}</Link>
              </th>
              <td>
                <StateBadge state={vm.status} />
              </td>
              <td>{vm.health ? <HealthBadge health={vm.health} detail={vm.health_detail} /> : <span className="muted">–</span>}</td>
              <td>{vm.env_id ? <Link href={paths.env(vm.env_id)}>{vm.env_id}</Link> : <span className="muted">not the controller's</span>}</td>
              <td className="num">{vm.vcpu_count}</td>
              <td className="num">{formatMiB(vm.memory_bytes / (1024 * 1024))}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
