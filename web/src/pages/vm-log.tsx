// A VM's serial log (GET /api/hosts/HOST/vms/NAME/logs?lines=N), refreshed on demand and slowly.
/** @jsxRuntime automatic */
import { useEffect, useId, useRef, useState } from "react";
import { ErrorNote } from "../components/bits.tsx";
import { useResource } from "../lib/hooks.ts";

/** 0 asks for the whole log. */
const LINE_CHOICES = [100, 500, 2000, 0] as const;

/** The log's text: the daemon answers Slicer's `{"hostname", "lines", "content"}`; plain text is taken as is. */
export function logText(body: string): string {
  try {
    const parsed = JSON.parse(body) as { content?: unknown };
    if (typeof parsed.content === "string") return parsed.content;
  } catch {
    // Not JSON: the log itself.
  }
  return body;
}

export function VmLogPanel({ hostId, vmName }: { hostId: string; vmName: string }) {
  const [lines, setLines] = useState<number>(LINE_CHOICES[0]);
  const linesId = useId();
  const log = useResource<string>(`/api/hosts/${encodeURIComponent(hostId)}/vms/${encodeURIComponent(vmName)}/logs?lines=${lines}`, { text: true });
  const text = log.data === undefined ? undefined : logText(log.data);
  return (
    <div className="panel">
      <div className="title-row">
        <h2>Serial log</h2>
        <span className="actions">
          <label htmlFor={linesId}>Lines</label>
          <select id={linesId} value={lines} onChange={(e) => setLines(Number(e.target.value))}>
            {LINE_CHOICES.map((n) => (
              <option key={n} value={n}>
                {n === 0 ? "all" : `last ${n}`}
              </option>
            ))}
          </select>
          <button type="button" className="small" onClick={log.reload} disabled={log.loading}>
            Refresh log
          </button>
        </span>
      </div>
      <ErrorNote error={log.error}>Could not read the log: </ErrorNote>
      {text !== undefined && (text.trim() === "" ? <p className="muted">The log is empty.</p> : <LogText text={text} />)}
    </div>
  );
}

/** Scrolled to the end when new text arrives, as a console reads. */
function LogText({ text }: { text: string }) {
  const ref = useRef<HTMLPreElement>(null);
  // biome-ignore lint/correctness/useExhaustiveDependencies: `text` is not read inside: new text scrolls the log to its end
  useEffect(() => {
    if (ref.current) ref.current.scrollTop = ref.current.scrollHeight;
  }, [text]);
  return (
    // biome-ignore lint/a11y/noNoninteractiveTabindex: a scrolling region must take focus so that keyboards can scroll it
    // biome-ignore lint/a11y/useAriaPropsSupportedByRole: the label names the region that takes focus
    <pre ref={ref} className="log" tabIndex={0} aria-label="Serial log">
      {text}
    </pre>
  );
}
