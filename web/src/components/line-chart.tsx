// A hand-drawn SVG line chart of the last few minutes: one or two series, the latest values in the legend.
/** @jsxRuntime automatic */
import { chartPath, niceMax } from "../lib/chart-path.ts";

export interface Series {
  label: string;
  values: readonly (number | null)[];
  tone: "a" | "b";
}

const WIDTH = 600;
const HEIGHT = 160;

export function LineChart(props: {
  id: string;
  title: string;
  times: readonly number[];
  series: readonly Series[];
  from: number;
  to: number;
  format: (value: number | null) => string;
  /** The y axis reaches at least this (100 for percentages). */
  floor?: number;
  /** A fixed top of the y axis (a VM's memory size) instead of one rounded from the values. */
  yMax?: number;
}) {
  const yMax =
    props.yMax !== undefined && props.yMax > 0
      ? props.yMax
      : niceMax(
          props.series.flatMap((s) => s.values),
          props.floor ?? 1,
        );
  const frame = { from: props.from, to: props.to, yMax, width: WIDTH, height: HEIGHT };
  const minutes = Math.round((props.to - props.from) / 60_000);
  return (
    <figure className="chart" data-testid={`chart-${props.id}`}>
      <figcaption>
        <span className="chart-title">{props.title}</span>
        {props.series.map((s) => (
          <span key={s.label} className={`legend legend-${s.tone}`}>
            {`${s.label} ${props.format(lastValue(s.values))}`}
          </span>
        ))}
      </figcaption>
      <svg viewBox={`0 0 ${WIDTH} ${HEIGHT}`} preserveAspectRatio="none" role="img" aria-label={`${props.title}, last ${minutes} minutes`}>
        {[0.25, 0.5, 0.75].map((f) => (
          <line key={f} className="grid" x1={0} x2={WIDTH} y1={HEIGHT * f} y2={HEIGHT * f} />
        ))}
        {props.series.map((s) => {
          const path = chartPath(props.times, s.values, frame);
          return <path key={s.label} className={`line line-${s.tone}`} d={path.d} data-points={path.points} vectorEffect="non-scaling-stroke" />;
        })}
      </svg>
      <div className="chart-axis muted">
        <span>{`${minutes} min ago`}</span>
        <span>{`max ${props.format(yMax)}`}</span>
        <span>now</span>
      </div>
    </figure>
  );
}

function lastValue(values: readonly (number | null)[]): number | null {
  for (let i = values.length - 1; i >= 0; i--) {
    const v = values[i];
    if (v !== null && v !== undefined) return v;
  }
  return null;
}
