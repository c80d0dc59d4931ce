// Stop, start and delete for one environment, with the delete confirmed in a dialog; errors shown beside
// the buttons that caused them.
/** @jsxRuntime automatic */
import { useState } from "react";
import type { Env } from "../../../src/protocol/controller.ts";
import { ErrorNote } from "../components/bits.tsx";
import { ConfirmDialog } from "../components/dialog.tsx";
import { useAction } from "../lib/hooks.ts";
import { paths } from "../lib/routes.ts";
import { navigate } from "../lib/router.tsx";
import { useServices } from "../lib/services.tsx";

const STOPPABLE = new Set(["running", "partial", "starting"]);
const STARTABLE = new Set(["stopped", "partial", "failed"]);

/** Stop, start and delete; the environment's state is Corral's (`status`), richer than TTstack's `state`. */
export function EnvActions({ env, onChanged, leaveOnDelete }: { env: Env; onChanged: () => void; leaveOnDelete?: boolean }) {
  const { api } = useServices();
  const power = useAction();
  const remove = useAction();
  const [confirming, setConfirming] = useState(false);
  const base = `/api/envs/${encodeURIComponent(env.id)}`;
  const deleting = env.status === "deleting";

  const act = async (what: "stop" | "start") => {
    if (await power.run(() => api.post<undefined>(`${base}/${what}`))) onChanged();
  };
  const confirmDelete = async () => {
    if (await remove.run(() => api.delete<undefined>(base))) {
      setConfirming(false);
      onChanged();
      if (leaveOnDelete) navigate(paths.envs());
    }
  };

  return (
    <div className="row-actions">
      <span className="actions">
        {STOPPABLE.has(env.status) && (
          <button type="button" className="small" disabled={power.busy} onClick={() => act("stop")} aria-label={`Stop ${env.id}`}>
            Stop
          </button>
        )}
        {STARTABLE.has(env.status) && (
          <button type="button" className="small" disabled={power.busy} onClick={() => act("start")} aria-label={`Start ${env.id}`}>
            Start
          </button>
        )}
        <button
          type="button"
          className="small danger"
          disabled={deleting}
          onClick={() => {
            remove.clear();
            setConfirming(true);
          }}
          aria-label={`Delete ${env.id}`}
        >
          Delete
        </button>
      </span>
      <ErrorNote error={power.error} />
      {confirming && (
        <ConfirmDialog
          title={`Delete environment "${env.id}"?`}
          confirmLabel="Delete"
          busy={remove.busy}
          error={remove.error}
          onConfirm={confirmDelete}
          onClose={() => setConfirming(false)}
        >
          <p>
            {env.vm_ids.length === 1 ? "Its VM is destroyed on its host, with its disk." : `Its ${env.vm_ids.length} VMs are destroyed on their hosts, with their disks.`} This
            cannot be undone.
          </p>
        </ConfirmDialog>
      )}
    </div>
  );
}
