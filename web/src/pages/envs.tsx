// `/envs`: the environments a page at a time (lib/env-pages.ts) with their owner, VMs, state and time left;
// Previous and Next; the create form; stop, start, delete. A change event re-reads the page shown only.
/** @jsxRuntime automatic */
import { useState } from "react";
import type { Env } from "../../../src/protocol/controller.ts";
import { Empty, ErrorNote, Loading, StateBadge, TableHead } from "../components/bits.tsx";
import { Countdown } from "../components/countdown.tsx";
import { ENV_PAGE_SIZE, envPagePath, FIRST_PAGE, nextPage, pageRange, previousPage, type EnvPageAnswer, type PageTrail } from "../lib/env-pages.ts";
import { envsChanged, useResource } from "../lib/hooks.ts";
import { paths } from "../lib/routes.ts";
import { Link } from "../lib/router.tsx";
import { CreateEnvForm } from "./create-env-form.tsx";
import { EnvActions } from "./env-actions.tsx";

export function EnvsPage() {
  const [trail, setTrail] = useState<PageTrail>(FIRST_PAGE);
  const page = useResource<EnvPageAnswer>(envPagePath(trail), { staleOn: envsChanged });
  const [creating, setCreating] = useState(false);
  const envs = page.data?.data;
  // Only once there is more than one page (kept while a later page loads); above the table and below it (a page is a long scroll).
  const paged = trail.length > 1 || (page.data?.next ?? null) !== null;
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
            page.reload();
          }}
          onCancel={() => setCreating(false)}
        />
      )}
      <ErrorNote error={page.error} />
      {paged && <Pager place="top" trail={trail} shown={envs?.length ?? 0} next={page.data?.next ?? null} onMove={setTrail} />}
      {envs === undefined ? (
        !page.error && <Loading />
      ) : envs.length === 0 && trail.length === 1 ? (
        <Empty>No environments. Create one with “New environment”: one or more VMs with your SSH keys, for a set lifetime.</Empty>
      ) : envs.length === 0 ? (
        <Empty>No environments on this page any more: the ones it showed were deleted.</Empty>
      ) : (
        <EnvTable envs={envs} onChanged={page.reload} />
      )}
      {paged && <Pager place="bottom" trail={trail} shown={envs?.length ?? 0} next={page.data?.next ?? null} onMove={setTrail} />}
    </section>
  );
}

/** Previous and Next, and which environments the page holds. */
function Pager({ place, trail, shown, next, onMove }: { place: "top" | "bottom"; trail: PageTrail; shown: number; next: string | null; onMove: (trail: PageTrail) => void }) {
  return (
    <nav className={`pager pager-${place}`} aria-label={`Environment pages (${place})`}>
      <span className="muted">
        Environments {pageRange(trail, shown)}, {ENV_PAGE_SIZE} a page
      </span>
      <span className="actions">
        <button type="button" disabled={trail.length === 1} onClick={() => onMove(previousPage(trail))}>
          Previous
        </button>
        <button type="button" disabled={next === null} onClick={() => next !== null && onMove(nextPage(trail, next))}>
          Next
        </button>
      </span>
    </nav>
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
