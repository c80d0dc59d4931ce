// `/vms/:hostId/:vmName`: one VM: state, host, image, address, ports and ssh line, hardware, power actions,
// live graphs, the serial log and a terminal on its shell.
/** @jsxRuntime automatic */
import { lazy, Suspense, useState } from "react";
import type { FleetVm, Host, HostVm, VmAction, WsServerMessage } from "../../../src/protocol/controller.ts";
import type { VmHardware } from "../../../src/protocol/ttstack-agent.ts";
import { CopyButton, Empty, ErrorNote, Facts, HealthBadge, Loading, StateBadge, TableHead } from "../components/bits.tsx";
import { healthWorthShowing } from "../lib/health.ts";
import { ConfirmDialog } from "../components/dialog.tsx";
import { formatMiB } from "../lib/format.ts";
import { hasConsole, isOn, isRunning } from "../lib/host-kinds.ts";
import { useAction, useResource } from "../lib/hooks.ts";
import { paths } from "../lib/routes.ts";
import { Link } from "../lib/router.tsx";
import { useServices } from "../lib/services.tsx";
import { hostPort, sshCommand } from "../../../src/protocol/vm-access.ts";
import { VmLogPanel } from "./vm-log.tsx";
import { VmStatsPanel } from "./vm-stats.tsx";

/** `confirm`: the hard actions, which cut the guest off without letting it flush, ask first. */
const POWER: { action: VmAction; label: string; when: "off" | "on"; confirm?: string }[] = [
  { action: "start", label: "Start", when: "off" },
  { action: "shutdown", label: "Shut down", when: "on" },
  { action: "reboot", label: "Reboot", when: "on" },
  { action: "destroy", label: "Force off", when: "on", confirm: "It is powered off at once, like pulling the plug: what the guest has not written to its disk is lost." },
  { action: "reset", label: "Reset", when: "on", confirm: "It is restarted at once, like pressing a reset button: what the guest has not written to its disk is lost." },
];
// xterm.js is most of the bundle's weight: loaded when a terminal is first opened.
const ShellTerminal = lazy(async () => ({ default: (await import("../components/terminal.tsx")).ShellTerminal }));

export function VmPage({ hostId, vmName }: { hostId: string; vmName: string }) {
  const hostBase = `/api/hosts/${encodeURIComponent(hostId)}`;
  const vmBase = `${hostBase}/vms/${encodeURIComponent(vmName)}`;
  const ofThisHost = (m: WsServerMessage) => m.type === "vms-changed" && m.payload.hostId === hostId;
  const hostVms = useResource<HostVm[]>(`${hostBase}/vms`, { staleOn: ofThisHost });
  const fleetVm = useResource<FleetVm>(`/api/vms/${encodeURIComponent(vmName)}`, { staleOn: ofThisHost });
  const hardware = useResource<VmHardware>(`${vmBase}/hardware`, { staleOn: ofThisHost });
  // Its kind says which panels apply (a libvirt domain has no shell or log through the controller).
  const host = useResource<Host>(hostBase, { staleOn: (m) => m.type === "hosts-changed" });
  const withConsole = hasConsole(host.data?.kind);
  const [terminalOpen, setTerminalOpen] = useState(false);

  const listed = hostVms.data?.find((vm) => vm.name === vmName);
  // /api/vms/ID knows only the controller's VMs; one with the same name on another host is not this one.
  const fleet = fleetVm.data && fleetVm.data.host_id === hostId ? fleetVm.data : undefined;
  const state = listed?.status ?? fleet?.status;
  const health = listed?.health ?? fleet?.health;
  const healthDetail = listed?.health_detail ?? fleet?.health_detail;
  const missing = hostVms.data !== undefined && listed === undefined;

  return (
    <section>
      <p className="crumbs">
        <Link href={paths.host(hostId)}>Host {hostId}</Link> /{" "}
        {fleet && (
          <>
            <Link href={paths.env(fleet.env_id)}>Environment {fleet.env_id}</Link> /
          </>
        )}
      </p>
      <div className="title-row">
        <h1>VM {vmName}</h1>
        <span className="badges">
          {state && <StateBadge state={state} />}
          {health && state && healthWorthShowing(health, state) && <HealthBadge health={health} detail={healthDetail} />}
        </span>
      </div>
      {healthDetail && health !== "ok" && (
        <p className={health === "disk_full" || health === "io_error" || health === "unresponsive" ? "error" : "muted"} role="status">
          {healthDetail}
        </p>
      )}
      <ErrorNote error={hostVms.error} />
      {missing && <ErrorNote error={`Host "${hostId}" does not report a VM named "${vmName}" (it may have been deleted).`} />}
      {hostVms.data === undefined && !hostVms.error && <Loading />}
      <div className="two-col">
        <div className="panel">
          <h2>Details</h2>
          <Facts
            items={[
              ["State", state ? <StateBadge key="state" state={state} /> : "–"],
              ["Health", health ? <HealthBadge key="health" health={health} detail={healthDetail} /> : "–"],
              [
                "Host",
                <>
                  <Link href={paths.host(hostId)}>{hostId}</Link>
                  {fleet && <span className="muted"> ({fleet.host_addr})</span>}
                </>,
              ],
              ["Image", fleet?.image ?? "–"],
              ["IP", fleet?.ip || "–"],
              [
                "Size",
                fleet
                  ? `${fleet.cpu} vCPU · ${formatMiB(fleet.mem)} memory · ${formatMiB(fleet.disk)} disk`
                  : listed
                    ? `${listed.vcpu_count} vCPU · ${formatMiB(listed.memory_bytes / (1024 * 1024))} memory`
                    : "–",
              ],
              ["Outgoing traffic", fleet && (fleet.deny_outgoing ? "denied" : "allowed")],
              ["Error", fleet?.error && <span className="error-text">{fleet.error}</span>],
            ]}
          />
          <PowerActions vmBase={vmBase} on={isOn(state)} onDone={hostVms.reload} />
        </div>
        <div className="panel">
          <h2>Access</h2>
          {fleet ? <PortMap vm={fleet} /> : <Empty>Ports and the ssh line are known for the controller's VMs only.</Empty>}
        </div>
      </div>
      <Hardware hardware={hardware.data} error={hardware.error} />
      <VmStatsPanel hostId={hostId} vmName={vmName} running={isRunning(state)} />
      {withConsole && (
        <>
          <div className="panel">
            <div className="title-row">
              <h2>Terminal</h2>
              {!terminalOpen && (
                <button type="button" onClick={() => setTerminalOpen(true)}>
                  Open terminal
                </button>
              )}
            </div>
            {terminalOpen ? (
              <Suspense fallback={<p className="muted">Loading the terminal…</p>}>
                <ShellTerminal hostId={hostId} vmName={vmName} onClose={() => setTerminalOpen(false)} />
              </Suspense>
            ) : (
              <p className="muted">A root shell in the VM, through the controller and the VM's host.</p>
            )}
          </div>
          <VmLogPanel hostId={hostId} vmName={vmName} />
        </>
      )}
      {!withConsole && (
        <div className="panel">
          <h2>Terminal and log</h2>
          <p className="muted">Host {hostId} is a libvirt daemon: the controller opens no shell and reads no serial log of its domains.</p>
        </div>
      )}
    </section>
  );
}

function PowerActions({ vmBase, on, onDone }: { vmBase: string; on: boolean; onDone: () => void }) {
  const { api } = useServices();
  const action = useAction();
  const [running, setRunning] = useState<VmAction | undefined>();
  const [confirming, setConfirming] = useState<(typeof POWER)[number] | undefined>();
  const act = async (what: VmAction) => {
    setRunning(what);
    const done = await action.run(() => api.post(`${vmBase}/action`, { action: what }));
    setRunning(undefined);
    if (!done) return;
    setConfirming(undefined);
    onDone();
  };
  return (
    <div>
      {/* biome-ignore lint/a11y/useSemanticElements: a row of buttons, not a form's fieldset */}
      <div className="actions wrap" role="group" aria-label="Power">
        {POWER.map((p) => (
          <button key={p.action} type="button" className="small" disabled={action.busy || (p.when === "on") !== on} onClick={() => (p.confirm ? setConfirming(p) : act(p.action))}>
            {running === p.action ? `${p.label}…` : p.label}
          </button>
        ))}
      </div>
      {!confirming && <ErrorNote error={action.error} />}
      {confirming && (
        <ConfirmDialog
          title={`${confirming.label} this VM?`}
          confirmLabel={confirming.label}
          busy={action.busy}
          error={action.error}
          onConfirm={() => act(confirming.action)}
          onClose={() => setConfirming(undefined)}
        >
          <p>{confirming.confirm}</p>
        </ConfirmDialog>
      )}
    </div>
  );
}

function PortMap({ vm }: { vm: FleetVm }) {
  const ssh = sshCommand(vm);
  const entries = Object.entries(vm.port_map).sort(([a], [b]) => Number(a) - Number(b));
  return (
    <>
      {ssh && (
        <p className="ssh">
          <code>{ssh}</code> <CopyButton text={ssh} />
        </p>
      )}
      {entries.length === 0 ? (
        <Empty>No ports are mapped yet.</Empty>
      ) : (
        <table className="compact">
          <caption className="visually-hidden">Port map</caption>
          <TableHead columns={["VM port", "Reach it at"]} />
          <tbody>
            {entries.map(([guest, host]) => (
              <tr key={guest}>
                <td className="num">{guest}</td>
                <td>
                  <code>{hostPort(vm.host_addr, host)}</code>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </>
  );
}

function Hardware({ hardware, error }: { hardware: VmHardware | undefined; error: Error | undefined }) {
  return (
    <div className="panel">
      <h2>Hardware</h2>
      <ErrorNote error={error}>Could not read the hardware: </ErrorNote>
      {hardware && (
        <div className="two-col">
          <div className="table-wrap">
            <table className="compact">
              <caption>Disks</caption>
              <TableHead columns={["Device", "Format", "Size", "Path"]} />
              <tbody>
                {hardware.disks.map((disk) => (
                  <tr key={`${disk.target.dev}-${disk.path}`}>
                    <td>
                      {disk.target.dev} <span className="muted">({disk.target.bus})</span>
                    </td>
                    <td>{disk.driver.type}</td>
                    <td className="num">{formatMiB(disk.size_mib)}</td>
                    <td className="mono ellipsis" title={disk.path}>
                      {disk.path}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
          <div className="table-wrap">
            <table className="compact">
              <caption>Networks</caption>
              <TableHead columns={["Mode", "Address", "MAC", "Device", "Model"]} />
              <tbody>
                {hardware.networks.map((net) => (
                  <tr key={net.mac.address}>
                    <td>{net.source.mode}</td>
                    <td className="mono">
                      {net.ip ? (
                        <>
                          {net.ip.address} <span className="muted">via {net.ip.gateway}</span>
                        </>
                      ) : (
                        "–"
                      )}
                    </td>
                    <td className="mono">{net.mac.address}</td>
                    <td className="mono">
                      {net.target?.dev ?? "–"}
                      {net.source.bridge && <span className="muted"> on {net.source.bridge}</span>}
                    </td>
                    <td>{net.model.model_type}</td>
                  </tr>
                ))}
              </tbody>
            </table>
            {hardware.networks.map((net) => net.policy && <EgressPolicy key={`policy-${net.mac.address}`} policy={net.policy} />)}
          </div>
        </div>
      )}
    </div>
  );
}

/** The egress policy in force: Slicer's lists after the VM's own override, and TTstack's deny_outgoing. */
function EgressPolicy({ policy }: { policy: NonNullable<VmHardware["networks"][number]["policy"]> }) {
  const list = (entries: string[]) => (entries.length === 0 ? "none" : entries.join(", "));
  return (
    <Facts
      items={[
        [
          "Allowed",
          <span key="allowed" className="mono">
            {list(policy.allow)}
          </span>,
        ],
        [
          "Dropped",
          <span key="dropped" className="mono">
            {list(policy.drop)}
          </span>,
        ],
        ["Policy from", policy.source === "override" ? "this VM" : "its host group"],
        ["New connections", policy.deny_outgoing ? "denied (answers on mapped ports flow)" : "allowed"],
      ]}
    />
  );
}
