// A small strict parser of Prometheus' text exposition format (0.0.4), for tests that scrape /metrics:
// every line must be a HELP, a TYPE, a sample of a family declared before it, or blank; names, label
// names, escapes and values are checked; a series may appear once; a histogram's buckets must be
// cumulative and end at le="+Inf" equal to its _count. Anything else throws, naming the line.

export type MetricType = "counter" | "gauge" | "histogram" | "summary" | "untyped";

export interface Sample {
  /** The sample's own name (`x_bucket`, `x_sum`, … for a histogram `x`). */
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface MetricFamily {
  name: string;
  type: MetricType;
  help: string;
  samples: Sample[];
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES: readonly string[] = ["counter", "gauge", "histogram", "summary", "untyped"];

/** The sample names a family of `type` named `name` may have. */
function sampleNames(name: string, type: MetricType): string[] {
  if (type === "histogram") return [`${name}_bucket`, `${name}_sum`, `${name}_count`];
  if (type === "summary") return [name, `${name}_sum`, `${name}_count`];
  return [name];
}

/** As Prometheus reads a value (Go's strconv.ParseFloat): NaN and Inf in any case (prom-client writes "Nan"). */
function parseValue(text: string, line: number): number {
  if (/^nan$/i.test(text)) return NaN;
  const infinite = /^([+-]?)(inf|infinity)$/i.exec(text);
  if (infinite) return infinite[1] === "-" ? -Infinity : Infinity;
  if (!/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(text)) throw new Error(`line ${line}: ${JSON.stringify(text)} is not a number`);
  return Number(text);
}

/** Reads `{a="x",b="y"}` starting at `text[0] === "{"`; the labels and where the text goes on. */
function parseLabels(text: string, line: number): { labels: Record<string, string>; rest: string } {
  const labels: Record<string, string> = {};
  let i = 1;
  while (true) {
    if (text[i] === "}") return { labels, rest: text.slice(i + 1) };
    const eq = text.indexOf("=", i);
    if (eq < 0) throw new Error(`line ${line}: a label without "="`);
    const name = text.slice(i, eq);
    if (!LABEL_NAME.test(name)) throw new Error(`line ${line}: ${JSON.stringify(name)} is not a label name`);
    if (name in labels) throw new Error(`line ${line}: label ${name} given twice`);
    if (text[eq + 1] !== '"') throw new Error(`line ${line}: label ${name}'s value is not quoted`);
    let value = "";
    let j = eq + 2;
    for (; j < text.length && text[j] !== '"'; j++) {
      if (text[j] === "\\") {
        const next = text[++j];
        if (next === "\\" || next === '"') value += next;
        else if (next === "n") value += "\n";
        else throw new Error(`line ${line}: unknown escape \\${next ?? ""} in label ${name}`);
      } else value += text[j];
    }
    if (j >= text.length) throw new Error(`line ${line}: label ${name}'s value is not closed`);
    labels[name] = value;
    i = j + 1;
    if (text[i] === ",") i++;
    else if (text[i] !== "}") throw new Error(`line ${line}: expected "," or "}" after label ${name}`);
  }
}

export function parsePrometheusText(text: string): Map<string, MetricFamily> {
  const families = new Map<string, MetricFamily>();
  const owner = new Map<string, MetricFamily>();
  const seen = new Set<string>();
  const helps = new Map<string, string>();
  if (text.length > 0 && !text.endsWith("\n")) throw new Error("the exposition does not end with a newline");
  const lines = text.split("\n");
  lines.pop();
  lines.forEach((raw, index) => {
    const line = index + 1;
    if (raw.trim() === "") return;
    if (raw.startsWith("#")) {
      const help = /^# HELP ([^ ]+) (.*)$/.exec(raw);
      const type = /^# TYPE ([^ ]+) ([a-z]+)$/.exec(raw);
      if (help) {
        const name = help[1] as string;
        if (!METRIC_NAME.test(name)) throw new Error(`line ${line}: ${JSON.stringify(name)} is not a metric name`);
        if (helps.has(name)) throw new Error(`line ${line}: a second HELP for ${name}`);
        helps.set(name, help[2] as string);
        const family = families.get(name);
        if (family) family.help = help[2] as string;
      } else if (type) {
        const [, name, kind] = type as unknown as [string, string, string];
        if (!METRIC_NAME.test(name)) throw new Error(`line ${line}: ${JSON.stringify(name)} is not a metric name`);
        if (!TYPES.includes(kind)) throw new Error(`line ${line}: ${JSON.stringify(kind)} is not a metric type`);
        if (families.has(name)) throw new Error(`line ${line}: a second TYPE for ${name}`);
        const family: MetricFamily = { name, type: kind as MetricType, help: helps.get(name) ?? "", samples: [] };
        families.set(name, family);
        for (const sample of sampleNames(name, family.type)) {
          if (owner.has(sample)) throw new Error(`line ${line}: ${sample} already belongs to ${owner.get(sample)?.name}`);
          owner.set(sample, family);
        }
      }
      // Other comments are allowed by the format.
      return;
    }
    const name = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(raw)?.[0];
    if (!name) throw new Error(`line ${line}: no metric name in ${JSON.stringify(raw)}`);
    let rest = raw.slice(name.length);
    let labels: Record<string, string> = {};
    if (rest.startsWith("{")) ({ labels, rest } = parseLabels(rest, line));
    const fields = rest.trim().split(/\s+/);
    if (!rest.startsWith(" ") || fields.length < 1 || fields.length > 2)
      throw new Error(`line ${line}: expected a value (and an optional timestamp) after the series in ${JSON.stringify(raw)}`);
    if (fields[1] !== undefined && !/^-?\d+$/.test(fields[1])) throw new Error(`line ${line}: ${JSON.stringify(fields[1])} is not a timestamp`);
    const family = owner.get(name);
    if (!family) throw new Error(`line ${line}: sample ${name} comes before (or without) its family's TYPE`);
    const series = `${name}${JSON.stringify(Object.entries(labels).sort())}`;
    if (seen.has(series)) throw new Error(`line ${line}: series ${series} given twice`);
    seen.add(series);
    family.samples.push({ name, labels, value: parseValue(fields[0] as string, line) });
  });
  for (const family of families.values()) if (family.type === "histogram") checkHistogram(family);
  return families;
}

/** Buckets cumulative, +Inf last and equal to _count, per series (the labels but `le`). */
function checkHistogram(family: MetricFamily): void {
  const groups = new Map<string, { buckets: [number, number][]; count?: number; sum?: number }>();
  for (const sample of family.samples) {
    const { le, ...rest } = sample.labels;
    const key = JSON.stringify(Object.entries(rest).sort());
    const group = groups.get(key) ?? { buckets: [] };
    groups.set(key, group);
    if (sample.name.endsWith("_bucket")) {
      if (le === undefined) throw new Error(`${family.name}: a bucket without "le"`);
      group.buckets.push([parseValue(le, 0), sample.value]);
    } else if (sample.name.endsWith("_count")) group.count = sample.value;
    else group.sum = sample.value;
  }
  for (const [key, group] of groups) {
    const sorted = [...group.buckets].sort((x, y) => x[0] - y[0]);
    for (let i = 1; i < sorted.length; i++) {
      if ((sorted[i] as [number, number])[1] < (sorted[i - 1] as [number, number])[1]) throw new Error(`${family.name}${key}: buckets are not cumulative`);
    }
    const last = sorted.at(-1);
    if (!last || last[0] !== Infinity) throw new Error(`${family.name}${key}: no le="+Inf" bucket`);
    if (group.count === undefined || group.sum === undefined) throw new Error(`${family.name}${key}: _count or _sum is missing`);
    if (last[1] !== group.count) throw new Error(`${family.name}${key}: le="+Inf" is ${last[1]} but _count is ${group.count}`);
  }
}

/** The samples of `family` (by sample name, default the family's own) whose labels include `labels`. */
export function samples(families: Map<string, MetricFamily>, family: string, labels: Record<string, string> = {}, sampleName = family): Sample[] {
  const found = families.get(family);
  if (!found) throw new Error(`No metric family ${family}`);
  return found.samples.filter((s) => s.name === sampleName && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
}

/** The one sample's value (throws unless exactly one matches). */
export function sampleValue(families: Map<string, MetricFamily>, family: string, labels: Record<string, string> = {}, sampleName = family): number {
  const matching = samples(families, family, labels, sampleName);
  if (matching.length !== 1) throw new Error(`${matching.length} samples of ${sampleName} match ${JSON.stringify(labels)}`);
  return (matching[0] as Sample).value;
}
