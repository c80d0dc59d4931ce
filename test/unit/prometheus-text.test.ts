// The test helper that reads /metrics (test/helpers/prometheus-text.ts): it reads what prom-client writes,
// and refuses what Prometheus would not take, so a scrape test cannot pass on a malformed exposition.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import { parsePrometheusText, sampleValue } from "../helpers/prometheus-text.ts";

describe("parsePrometheusText", () => {
  test("reads prom-client's exposition: counters, labelled gauges with escapes, histograms", async () => {
    const registry = new Registry();
    new Counter({ name: "things_total", help: "Things", registers: [registry] }).inc(3);
    new Gauge({ name: "odd", help: 'Labels with \\ and " and a\nnewline', labelNames: ["v"], registers: [registry] }).set({ v: 'a"b\\c\nd' }, -1.5);
    const histogram = new Histogram({ name: "took_seconds", help: "Took", labelNames: ["kind"], buckets: [0.1, 1], registers: [registry] });
    histogram.observe({ kind: "x" }, 0.05);
    histogram.observe({ kind: "x" }, 5);
    const families = parsePrometheusText(await registry.metrics());
    assert.equal(sampleValue(families, "things_total"), 3);
    assert.equal(sampleValue(families, "odd", { v: 'a"b\\c\nd' }), -1.5);
    assert.equal(sampleValue(families, "took_seconds", { kind: "x", le: "0.1" }, "took_seconds_bucket"), 1);
    assert.equal(sampleValue(families, "took_seconds", { kind: "x", le: "+Inf" }, "took_seconds_bucket"), 2);
    assert.equal(sampleValue(families, "took_seconds", { kind: "x" }, "took_seconds_count"), 2);
    assert.equal(families.get("took_seconds")?.type, "histogram");
  });

  const refused: [string, string, RegExp][] = [
    ["a sample before its TYPE", "x 1\n", /before \(or without\) its family's TYPE/],
    ["a bad value", "# TYPE x gauge\nx one\n", /is not a number/],
    ["a repeated series", '# TYPE x gauge\nx{a="1"} 1\nx{a="1"} 2\n', /given twice/],
    ["an unquoted label", "# TYPE x gauge\nx{a=1} 1\n", /not quoted/],
    ["an unknown escape", '# TYPE x gauge\nx{a="\\t"} 1\n', /unknown escape/],
    ["a missing newline at the end", "# TYPE x gauge\nx 1", /newline/],
    ["buckets that shrink", '# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 1\n', /not cumulative/],
    ["+Inf unequal to _count", '# TYPE h histogram\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 2\n', /_count is 2/],
    ["an unknown type", "# TYPE x meter\n", /not a metric type/],
  ];
  for (const [what, text, message] of refused) {
    test(`refuses ${what}`, () => {
      assert.throws(() => parsePrometheusText(text), message);
    });
  }
});
