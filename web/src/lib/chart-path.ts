// The SVG path of a line chart: time on x over a fixed window, value on y from 0 to a rounded maximum;
// null values break the line (a gap, a counter reset) rather than drawing a made-up slope.

export interface ChartFrame {
  from: number;
  to: number;
  yMax: number;
  width: number;
  height: number;
}

export interface ChartPath {
  d: string;
  /** Points drawn (nulls and points outside the window are not). */
  points: number;
}

export function chartPath(times: readonly number[], values: readonly (number | null)[], frame: ChartFrame): ChartPath {
  const span = Math.max(1, frame.to - frame.from);
  const yMax = frame.yMax > 0 ? frame.yMax : 1;
  let d = "";
  let points = 0;
  let pen: "up" | "down" = "up";
  for (let i = 0; i < times.length; i++) {
    const t = times[i];
    const v = values[i];
    if (t === undefined || v === null || v === undefined || !Number.isFinite(v) || t < frame.from || t > frame.to) {
      pen = "up";
      continue;
    }
    const x = ((t - frame.from) / span) * frame.width;
    const y = frame.height - (Math.min(v, yMax) / yMax) * frame.height;
    d += `${pen === "up" ? "M" : "L"}${x.toFixed(1)} ${y.toFixed(1)}`;
    pen = "down";
    points += 1;
  }
  return { d, points };
}

/** A round upper bound for the y axis: 1, 2 or 5 times a power of ten, at least `floor`. */
export function niceMax(values: readonly (number | null)[], floor = 1): number {
  const max = values.reduce<number>((m, v) => (v !== null && Number.isFinite(v) && v > m ? v : m), 0);
  const target = Math.max(max, floor);
  const power = 10 ** Math.floor(Math.log10(target));
  for (const step of [1, 2, 5, 10]) if (step * power >= target) return step * power;
  return 10 * power;
}
