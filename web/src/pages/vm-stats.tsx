// Live graphs of one VM: subscribes to its stats on /ws while shown and the VM runs, keeps the last five
// minutes. The controller sends a VM that stops one last sample and ends the subscription (as Virtumancer's
// poller does): when the VM runs again, the panel subscribes again.
/** @jsxRuntime automatic */
import { useEffect, useMemo, useState } from "react";
import { LineChart } from "../components/line-chart.tsx";
import { formatMiB, formatPercent, formatRate } from "../lib/format.ts";
import { useNow } from "../lib/hooks.ts";
import { useServices } from "../lib/services.tsx";
import { addSample, emptyWindow, statsPoints } from "../lib/stats-window.ts";

export function VmStatsPanel({ hostId, vmName, running }: { hostId: string; vmName: string; running: boolean }) {
  const { live } = useServices();
  const [window, setWindow] = useState(() => emptyWindow());
  const now = useNow(1000);

  useEffect(() => {
    const off = live.onMessage((message) => {
      if (message.type !== "vm-stats-updated" || message.payload.hostId !== hostId || message.payload.vmName !== vmName) return;
      const sample = { at: Date.now(), stats: message.payload.stats };
      setWindow((w) => addSample(w, sample));
    });
    if (!running) return off;
    const unsubscribe = live.subscribeStats({ hostId, vmName });
    return () => {
      unsubscribe();
      off();
    };
  }, [live, hostId, vmName, running]);

  const points = useMemo(() => statsPoints(window), [window]);
  const times = points.map((p) => p.at);
  const from = now - window.windowMs;
  const common = { times, from, to: now };
  const memTotal = points.at(-1)?.memTotalMiB ?? 0;

  return (
    <div className="panel">
      <h2>Live</h2>
      {points.length === 0 && <p className="muted">Waiting for the first numbers from the host (every 2 s while the VM runs)…</p>}
      <div className="charts">
        <LineChart id="cpu" title="CPU" {...common} series={[{ label: "use", values: points.map((p) => p.cpuPercent), tone: "a" }]} format={formatPercent} floor={100} />
        <LineChart
          id="mem"
          title={memTotal > 0 ? `Memory (of ${formatMiB(memTotal)})` : "Memory"}
          {...common}
          series={[{ label: "used", values: points.map((p) => p.memUsedMiB), tone: "a" }]}
          format={(v) => (v === null ? "–" : formatMiB(v))}
          yMax={memTotal}
        />
        <RateChart id="disk" title="Disk" {...common} a={["read", points.map((p) => p.diskReadBps)]} b={["write", points.map((p) => p.diskWriteBps)]} />
        <RateChart id="net" title="Network" {...common} a={["in", points.map((p) => p.netRxBps)]} b={["out", points.map((p) => p.netTxBps)]} />
      </div>
    </div>
  );
}

type Named = readonly [string, (number | null)[]];

/** Two byte counters' rates on one chart (read and write, in and out). */
function RateChart(props: { id: string; title: string; times: number[]; from: number; to: number; a: Named; b: Named }) {
  const { a, b, ...rest } = props;
  return (
    <LineChart
      {...rest}
      series={[
        { label: a[0], values: a[1], tone: "a" },
        { label: b[0], values: b[1], tone: "b" },
      ]}
      format={formatRate}
      floor={1024}
    />
  );
}
