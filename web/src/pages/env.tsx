// `/envs/:id`: one environment, its VMs (with their ssh lines) and its actions.
/** @jsxRuntime automatic */
import type { EnvDetail } from "../../../src/protocol/controller.ts";
import { CopyButton, Empty, ErrorNote, Facts, HealthBadge, Loading, StateBadge, TableHead } from "../components/bits.tsx";
import { healthWorthShowing } from "../lib/health.ts";
import { Countdown } from "../components/countdown.tsx";
import { formatMiB, formatTime } from "../lib/format.ts";
import { useResource } from "../lib/hooks.ts";
import { paths } from "../lib/routes.ts";
import { Link } from "../lib/router.tsx";
import { sshCommand } from "../../../src/protocol/vm-access.ts";
import { EnvActions } from "./env-actions.tsx";

export function EnvPage({ id }: { id: string }) {
  const env = useResource<EnvDetail>(`/api/envs/${encodeURIComponent(id)}`, {
    staleOn: (m) => (m.type === "envs-changed" && m.payload.envId === id) || m.type === "vms-changed",
  });
  return (
    <section>
      <p className="crumbs">
        <Link href={paths.envs()}>Environments</Link> /
      </p>
      <div className="title-row">
        <h1>Environment {id}</h1>
        {env.data && <EnvActions env={env.data.env} onChanged={env.reload} leaveOnDelete />}
      </div>
      <ErrorNote error={env.error} />
      {env.data ? <EnvDetails env={env.data} /> : !env.error && <Loading />}
    </section>
  );
}

function EnvDetails({ env: detail }: { env: EnvDetail }) {
  const { env, vms } = detail;
  return (
    <>
      <div className="panel">
        <Facts
          items={[
            ["State", <StateBadge key="state" state={env.status} />],
            ["Owner", env.owner || "–"],
            [
              "Expires in",
              <>
                <Countdown expiresAt={env.expires_at} /> <span className="muted">({formatTime(env.expires_at)})</span>
              </>,
            ],
            ["Created", formatTime(env.created_at)],
            [
              "SSH keys",
              env.ssh_keys.length === 0
                ? "none"
                : env.ssh_keys.map((k) => (
                    <div key={k} className="mono ellipsis">
                      {k}
                    </div>
                  )),
            ],
          ]}
        />
      </div>
      <div className="panel">
        <h2>VMs</h2>
        {vms.length === 0 ? (
          <Empty>This environment has no VMs.</Empty>
        ) : (
          <div className="table-wrap">
            <table>
              <TableHead columns={["VM", "State", "Host", "Image", "Size", "IP", "SSH"]} />
              <tbody>
                {vms.map((vm) => {
                  const ssh = sshCommand(vm);
                  return (
                    <tr key={vm.id}>
                      <th scope="row">
                        <Link href={paths.vm(vm.host_id, vm.id)}>{vm.id}</Link>
                      </th>
                      <td>
                        <StateBadge state={vm.status} />
                        {healthWorthShowing(vm.health, vm.status) && vm.health && (
                          <>
                            {" "}
                            <HealthBadge health={vm.health} detail={vm.health_detail} />
                          </>
                        )}
                        {vm.error && <div className="error-text small-text">{vm.error}</div>}
                      </td>
                      <td>
                        <Link href={paths.host(vm.host_id)}>{vm.host_id}</Link>
                      </td>
                      <td>{vm.image}</td>
                      <td className="nowrap">
                        {vm.cpu} vCPU · {formatMiB(vm.mem)} · {formatMiB(vm.disk)}
                      </td>
                      <td>{vm.ip || "–"}</td>
                      <td className="nowrap">
                        {ssh ? (
                          <>
                            <code>{ssh}</code> <CopyButton text={ssh} />
                          </>
                        ) : (
                          "–"
                        )}
                      </td>
                    </tr>
                  );
                })}
              </tbody>
            </table>
          </div>
        )}
      </div>
    </>
  );
}
