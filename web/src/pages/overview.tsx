// `/`: fleet totals (GET /api/status) as cards and capacity bars, and the latest /ws events.
/** @jsxRuntime automatic */
import { useEffect, useState } from "react";
import type { FleetStatus } from "../../../src/protocol/controller.ts";
import { CapacityBar, Empty, ErrorNote, Loading } from "../components/bits.tsx";
import { formatClock, formatMiB } from "../lib/format.ts";
import { anyChange, useResource } from "../lib/hooks.ts";
import type { LiveEvent } from "../lib/live.ts";
import { paths } from "../lib/routes.ts";
import { Link } from "../lib/router.tsx";
import { useServices } from "../lib/services.tsx";

export function OverviewPage() {
  const status = useResource<FleetStatus>("/api/status", { staleOn: anyChange });
  return (
    <section>
      <h1>Overview</h1>
      <ErrorNote error={status.error} />
      {status.data ? <Totals status={status.data} /> : !status.error && <Loading />}
      <RecentEvents />
    </section>
  );
}

function Totals({ status }: { status: FleetStatus }) {
  const vcpus = (n: number) => `${n} vCPU${n === 1 ? "" : "s"}`;
  return (
    <>
      <div className="cards">
        <Card
          label="Hosts online"
          value={`${status.hosts_online} / ${status.hosts}`}
          note={status.hosts_offline > 0 ? `${status.hosts_offline} offline` : undefined}
          href={paths.hosts()}
        />
        <Card label="VMs running" value={`${status.vms_running} / ${status.total_vms}`} note={status.vms_stopped > 0 ? `${status.vms_stopped} stopped` : undefined} />
        <Card label="Environments" value={String(status.total_envs)} href={paths.envs()} />
      </div>
      <div className="panel">
        <h2>Reserved of total (online hosts)</h2>
        {status.hosts_online === 0 ? (
          <Empty>
            No host is online. <Link href={paths.hosts()}>Add a host</Link> to run environments.
          </Empty>
        ) : (
          <>
            <CapacityBar label="CPU" part={status.cpu_reserved} total={status.cpu_total} format={vcpus} />
            <CapacityBar label="Memory" part={status.mem_reserved} total={status.mem_total} format={formatMiB} />
            <CapacityBar label="Disk" part={status.disk_reserved} total={status.disk_total} format={formatMiB} />
          </>
        )}
      </div>
    </>
  );
}

function Card({ label, value, note, href }: { label: string; value: string; note?: string | undefined; href?: string }) {
  return (
    <div className="card">
      <div className="card-label">{href ? <Link href={href}>{label}</Link> : label}</div>
      <div className="card-value">{value}</div>
      {note && <div className="card-note">{note}</div>}
    </div>
  );
}

function RecentEvents() {
  const { live } = useServices();
  const [events, setEvents] = useState<readonly LiveEvent[]>(live.events);
  useEffect(() => live.onMessage(() => setEvents(live.events)), [live]);
  return (
    <div className="panel">
      <h2>Recent events</h2>
      {events.length === 0 ? (
        <Empty>No events since this page opened. Changes to hosts, VMs and environments show up here as they happen.</Empty>
      ) : (
        <ul className="events" aria-live="polite">
          {events.slice(0, 20).map((event, i) => (
            // biome-ignore lint/suspicious/noArrayIndexKey: events have no id; two at the same instant differ by place
            <li key={`${event.at}-${i}`}>
              <time className="muted">{formatClock(event.at)}</time> <EventText event={event} />
            </li>
          ))}
        </ul>
      )}
    </div>
  );
}

function EventText({ event }: { event: LiveEvent }) {
  const m = event.message;
  switch (m.type) {
    case "hosts-changed":
      return <span>Hosts changed</span>;
    case "vms-changed":
      return (
        <span>
          VMs changed on host <Link href={paths.host(m.payload.hostId)}>{m.payload.hostId}</Link>
        </span>
      );
    case "host-connection-changed":
      return (
        <span>
          Host <Link href={paths.host(m.payload.hostId)}>{m.payload.hostId}</Link> {m.payload.connected ? "connected" : "disconnected"}
        </span>
      );
    case "envs-changed":
      return (
        <span>
          Environment <Link href={paths.env(m.payload.envId)}>{m.payload.envId}</Link> changed
        </span>
      );
    case "error":
      return <span className="error-text">Error from the controller: {m.payload.error}</span>;
  }
}
