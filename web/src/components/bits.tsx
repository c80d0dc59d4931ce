// Small pieces every page uses: state badges, error and empty notes, capacity bars, a copy button.
/** @jsxRuntime automatic */
import { Fragment, useState, type ReactNode } from "react";
import type { ApiError } from "../lib/api.ts";
import { percentOf } from "../lib/format.ts";
import { healthLabel, healthTone } from "../lib/health.ts";

const GOOD = new Set(["online", "running"]);
const BUSY = new Set(["creating", "booting", "starting", "stopping", "deleting", "pending", "suspending", "partial", "paused"]);
const BAD = new Set(["offline", "failed", "error", "lost"]);

export function StateBadge({ state }: { state: string }) {
  const tone = GOOD.has(state) ? "good" : BUSY.has(state) ? "busy" : BAD.has(state) ? "bad" : "idle";
  return <span className={`badge badge-${tone}`}>{state}</span>;
}

/** A VM's health (src/protocol/vm-health.ts); the detail, when there is one, shows on hover. */
export function HealthBadge({ health, detail }: { health: string; detail?: string | undefined }) {
  return (
    <span className={`badge badge-${healthTone(health)}`} title={detail}>
      {healthLabel(health)}
    </span>
  );
}

export function ErrorNote({ error, children }: { error: ApiError | Error | string | undefined; children?: ReactNode }) {
  if (error === undefined) return null;
  return (
    <p className="error" role="alert">
      {children}
      {typeof error === "string" ? error : error.message}
    </p>
  );
}

export function Empty({ children }: { children: ReactNode }) {
  return <div className="empty">{children}</div>;
}

export function Loading() {
  return <p className="muted">Loading…</p>;
}

export function CapacityBar({ label, part, total, format }: { label: string; part: number; total: number; format: (n: number) => string }) {
  const percent = percentOf(part, total);
  const tone = percent >= 90 ? "bad" : percent >= 70 ? "busy" : "good";
  return (
    <div className="capacity">
      <div className="capacity-label">
        <span>{label}</span>
        <span className="muted">
          {format(part)} of {format(total)}
        </span>
      </div>
      {/* biome-ignore lint/a11y/useSemanticElements: <meter> cannot carry the coloured fill; the role gives readers the same value */}
      <div className="bar" role="meter" aria-label={label} aria-valuemin={0} aria-valuemax={100} aria-valuenow={Math.round(percent)}>
        <div className={`bar-fill bar-${tone}`} style={{ width: `${percent}%` }} />
      </div>
    </div>
  );
}

export function CopyButton({ text, label = "Copy" }: { text: string; label?: string }) {
  const [copied, setCopied] = useState<"no" | "yes" | "failed">("no");
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(text);
      setCopied("yes");
    } catch {
      setCopied("failed");
    }
    setTimeout(() => setCopied("no"), 2000);
  };
  return (
    <button type="button" className="small" onClick={copy} aria-label={`${label}: ${text}`}>
      {copied === "yes" ? "Copied" : copied === "failed" ? "Select and copy" : label}
    </button>
  );
}

/** A table's header row: column names, and a last unnamed column for row actions when `actions` is set. */
export function TableHead({ columns, actions }: { columns: readonly string[]; actions?: boolean }) {
  return (
    <thead>
      <tr>
        {columns.map((name) => (
          <th key={name} scope="col">
            {name}
          </th>
        ))}
        {actions && (
          <th scope="col">
            <span className="visually-hidden">Actions</span>
          </th>
        )}
      </tr>
    </thead>
  );
}

/** Label and value pairs; a null value leaves its row out. */
export function Facts({ items }: { items: readonly (readonly [string, ReactNode])[] }) {
  return (
    <dl className="facts">
      {items
        .filter(([, value]) => value !== null && value !== undefined && value !== false)
        .map(([label, value]) => (
          <Fragment key={label}>
            <dt>{label}</dt>
            <dd>{value}</dd>
          </Fragment>
        ))}
    </dl>
  );
}
