// `/envs`: every environment with its owner, VMs, state and time left; the create form; stop, start, delete.
/** @jsxRuntime automatic */
import { useState } from "react";
import type { Env } from "../../../src/protocol/controller.ts";
import { Empty, ErrorNote, Loading, StateBadge, TableHead } from "../components/bits.tsx";
import { Countdown } from "../components/countdown.tsx";
import { envsChanged, useResource } from "../lib/hooks.ts";
import { paths } from "../lib/routes.ts";
import { Link } from "../lib/router.tsx";
import { CreateEnvForm } from "./create-env-form.tsx";
import { EnvActions } from "./env-actions.tsx";

export function EnvsPage() {
  const envs = useResource<Env[]>("/api/envs", { staleOn: envsChanged });
  const [creating, setCreating] = useState(false);
  return (
    <section>
      <div className="title-row">
        <h1>Environments</h1>
        {!creating && (
          <button type="button" className="primary" onClick={() => setCreating(true)}>
            New environment
          </button>
        )}
      </div>
      {creating && (
        <CreateEnvForm
          onCreated={() => {
            setCreating(false);
            envs.reload();
          }}
          onCancel={() => setCreating(false)}
        />
      )}
      <ErrorNote error={envs.error} />
      {envs.data === undefined ? (
        !envs.error && <Loading />
      ) : envs.data.length === 0 ? (
        <Empty>No environments. Create one with “New environment”: one or more VMs with your SSH keys, for a set lifetime.</Empty>
      ) : (
        <EnvTable envs={envs.data} onChanged={envs.reload} />
      )}
    </section>
  );
}

export function EnvTable({ envs, onChanged }: { envs: Env[]; onChanged: () => void }) {
  return (
    <div className="table-wrap">
      <table>
        <TableHead columns={["Environment", "Owner", "VMs", "State", "Expires in"]} actions />
        <tbody>
          {envs.map((env) => (
            <tr key={env.id}>
              <th scope="row">
                <Link href={paths.env(env.id)}>{env.id}</Link>
              </th>
              <td>{env.owner || <span className="muted">–</span>}</td>
              <td className="num">{env.vm_ids.length}</td>
              <td>
                <StateBadge state={env.status} />
              </td>
              <td>
                <Countdown expiresAt={env.expires_at} />
              </td>
              <td>
                <EnvActions env={env} onChanged={onChanged} />
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
