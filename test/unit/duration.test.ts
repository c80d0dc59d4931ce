import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { formatDuration, MAX_DURATION_MS, parseDuration } from "../../src/protocol/duration.ts";
import { CorralError } from "../../src/protocol/errors.ts";

function rejects(text: string, message: string, field?: string): void {
  assert.throws(
    () => (field === undefined ? parseDuration(text) : parseDuration(text, field)),
    (err: unknown) => {
      assert.ok(err instanceof CorralError, "throws a CorralError");
      assert.equal(err.code, "invalid_duration");
      assert.equal(err.status, 400);
      assert.equal(err.message, message);
      return true;
    },
  );
}

const usage = (field: string, text: string): string => `Invalid ${field} ${JSON.stringify(text)}: use a duration such as "30s", "500ms" or "2m"`;
const tooLong = (field: string, text: string): string => `Invalid ${field} ${JSON.stringify(text)}: the longest allowed is 24h`;

describe("parseDuration", () => {
  test("each Go unit converts to milliseconds", () => {
    assert.equal(parseDuration("3000000ns"), 3);
    assert.equal(parseDuration("2000us"), 2);
    assert.equal(parseDuration("2000µs"), 2);
    assert.equal(parseDuration("500ms"), 500);
    assert.equal(parseDuration("30s"), 30_000);
    assert.equal(parseDuration("5m"), 300_000);
    assert.equal(parseDuration("2h"), 7_200_000);
  });

  test("compound terms add up, in any order", () => {
    assert.equal(parseDuration("1h30m"), 5_400_000);
    assert.equal(parseDuration("1m30s"), 90_000);
    assert.equal(parseDuration("2h45m30s500ms"), 9_930_500);
    assert.equal(parseDuration("30s1m"), 90_000);
    assert.equal(parseDuration("1s1s"), 2_000);
  });

  test("decimal values are allowed in each term", () => {
    assert.equal(parseDuration("1.5s"), 1_500);
    assert.equal(parseDuration("0.25m"), 15_000);
    assert.equal(parseDuration(".5s"), 500);
    assert.equal(parseDuration("1.5h"), 5_400_000);
    assert.equal(parseDuration("2.5ms"), 3);
  });

  test("sub-millisecond results round to the nearest millisecond", () => {
    assert.equal(parseDuration("1ns"), 0);
    assert.equal(parseDuration("400us"), 0);
    assert.equal(parseDuration("500us"), 1);
    assert.equal(parseDuration("1499us"), 1);
    assert.equal(parseDuration("1500us"), 2);
  });

  test("a bare number is taken as seconds", () => {
    assert.equal(parseDuration("5"), 5_000);
    assert.equal(parseDuration("0"), 0);
    assert.equal(parseDuration("2.5"), 2_500);
    assert.equal(parseDuration("0.001"), 1);
  });

  test("zero durations are valid", () => {
    assert.equal(parseDuration("0s"), 0);
    assert.equal(parseDuration("0ms"), 0);
  });

  test("surrounding whitespace is ignored", () => {
    assert.equal(parseDuration("  30s\n"), 30_000);
    assert.equal(parseDuration(" 7 "), 7_000);
  });

  test("the limit is exactly 24h", () => {
    assert.equal(MAX_DURATION_MS, 86_400_000);
    assert.equal(parseDuration("24h"), 86_400_000);
    assert.equal(parseDuration("1440m"), 86_400_000);
    assert.equal(parseDuration("86400"), 86_400_000);
    assert.equal(parseDuration("23h59m59s999ms"), 86_399_999);
  });

  test("over 24h is rejected with its own message", () => {
    rejects("25h", tooLong("timeout", "25h"));
    rejects("24h1ms", tooLong("timeout", "24h1ms"));
    rejects("24h1ns", tooLong("timeout", "24h1ns"));
    rejects("86401", tooLong("timeout", "86401"));
    rejects("1441m", tooLong("timeout", "1441m"));
    rejects("1000h", tooLong("wait", "1000h"), "wait");
  });

  test("empty and blank text is rejected", () => {
    rejects("", usage("timeout", ""));
    rejects("   ", usage("timeout", "   "));
  });

  test("text that is not a duration is rejected", () => {
    for (const text of ["abc", "s", "ms", "5 s", "1h 30m", "5S", "5sec", "5d", "1w", "1e3s", "1e3", "0x10s", "5.", ".5", "5..5s", "NaN", "Infinity"]) {
      rejects(text, usage("timeout", text));
    }
  });

  test("negative and signed values are rejected", () => {
    rejects("-5s", usage("timeout", "-5s"));
    rejects("-5", usage("timeout", "-5"));
    rejects("+5s", usage("timeout", "+5s"));
    rejects("1h-30m", usage("timeout", "1h-30m"));
  });

  test("unknown units are rejected", () => {
    rejects("10x", usage("timeout", "10x"));
    rejects("10sx", usage("timeout", "10sx"));
  });

  test("a trailing number without unit after a term is rejected", () => {
    rejects("5s5", usage("timeout", "5s5"));
    rejects("1h30", usage("timeout", "1h30"));
  });

  test("leading garbage before valid terms is rejected", () => {
    rejects("x5s", usage("timeout", "x5s"));
  });

  test("a number too large to be finite is rejected as unusable, not as too long", () => {
    const huge = `${"9".repeat(400)}s`;
    rejects(huge, usage("timeout", huge));
  });

  test("the message names the field and quotes the text as given (untrimmed)", () => {
    rejects("soon", usage("grace_period", "soon"), "grace_period");
    rejects(" x ", 'Invalid timeout " x ": use a duration such as "30s", "500ms" or "2m"');
    rejects('5"s', 'Invalid timeout "5\\"s": use a duration such as "30s", "500ms" or "2m"');
  });

  test("parsing is repeatable: no state leaks between calls", () => {
    assert.equal(parseDuration("1h30m"), 5_400_000);
    assert.throws(() => parseDuration("5s5"));
    assert.equal(parseDuration("1h30m"), 5_400_000);
    assert.equal(parseDuration("10s"), 10_000);
  });
});

describe("formatDuration", () => {
  test("below a second prints milliseconds; zero is 0s as in Go", () => {
    assert.equal(formatDuration(0), "0s");
    assert.equal(formatDuration(1), "1ms");
    assert.equal(formatDuration(500), "500ms");
    assert.equal(formatDuration(999), "999ms");
    assert.equal(formatDuration(12.4), "12.4ms");
  });

  test("seconds only", () => {
    assert.equal(formatDuration(1000), "1s");
    assert.equal(formatDuration(59_000), "59s");
  });

  test("fractions of a second are kept, as Go prints them", () => {
    assert.equal(formatDuration(1_500), "1.5s");
    assert.equal(formatDuration(59_999), "59.999s");
    assert.equal(formatDuration(90_500), "1m30.5s");
  });

  test("minutes print their seconds, Go style", () => {
    assert.equal(formatDuration(60_000), "1m0s");
    assert.equal(formatDuration(95_000), "1m35s");
    assert.equal(formatDuration(3_599_000), "59m59s");
  });

  test("hours print minutes and seconds even when zero", () => {
    assert.equal(formatDuration(3_600_000), "1h0m0s");
    assert.equal(formatDuration(3_605_000), "1h0m5s");
    assert.equal(formatDuration(5_400_000), "1h30m0s");
    assert.equal(formatDuration(86_400_000), "24h0m0s");
    assert.equal(formatDuration(90_061_000), "25h1m1s");
  });

  test("round-trips through parseDuration for whole seconds", () => {
    for (const ms of [1_000, 61_000, 3_600_000, 5_430_000, 86_400_000]) {
      assert.equal(parseDuration(formatDuration(ms)), ms);
    }
    assert.equal(parseDuration(formatDuration(250)), 250);
  });
});
