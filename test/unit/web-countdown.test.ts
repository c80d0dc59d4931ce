import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { formatSecondsLeft, formatTimeLeft, secondsLeft, SOON_SECONDS, urgency } from "../../web/src/lib/countdown.ts";

const NOW = Date.parse("2025-01-01T12:00:00.000Z");
const at = (seconds: number): string => new Date(NOW + seconds * 1000).toISOString();

describe("countdown", () => {
  test("formats hours with zero-padded minutes, minutes with zero-padded seconds", () => {
    assert.equal(formatTimeLeft(at(3600 + 2 * 60 + 59), NOW), "1h 02m");
    assert.equal(formatTimeLeft(at(4 * 60 + 5), NOW), "4m 05s");
    assert.equal(formatTimeLeft(at(45), NOW), "45s");
    assert.equal(formatTimeLeft(at(1), NOW), "1s");
    assert.equal(formatTimeLeft(at(60), NOW), "1m 00s");
    assert.equal(formatTimeLeft(at(3600), NOW), "1h 00m");
  });

  test("a day or more shows days and hours", () => {
    assert.equal(formatTimeLeft(at(86400), NOW), "1d 00h");
    assert.equal(formatTimeLeft(at(30 * 86400 - 1), NOW), "29d 23h");
  });

  test("zero and negative time left is expired", () => {
    assert.equal(formatTimeLeft(at(0), NOW), "expired");
    assert.equal(formatTimeLeft(at(-1), NOW), "expired");
    assert.equal(formatTimeLeft(at(-86400), NOW), "expired");
    assert.equal(formatSecondsLeft(-0.5), "expired");
  });

  test("a part second left counts down, never up", () => {
    assert.equal(secondsLeft(NOW + 1999, NOW), 1);
    assert.equal(secondsLeft(NOW + 999, NOW), 0);
    assert.equal(formatTimeLeft(NOW + 999, NOW), "expired");
    assert.equal(secondsLeft(NOW - 1, NOW), -1);
  });

  test("takes an ISO string, a Date or epoch ms", () => {
    assert.equal(secondsLeft(at(90), NOW), 90);
    assert.equal(secondsLeft(new Date(NOW + 90_000), NOW), 90);
    assert.equal(secondsLeft(NOW + 90_000, NOW), 90);
  });

  test("a date that does not parse says unknown, not expired", () => {
    assert.ok(Number.isNaN(secondsLeft("not a date", NOW)));
    assert.equal(formatTimeLeft("not a date", NOW), "unknown");
    assert.equal(urgency(Number.NaN), "ok");
  });

  test("urgency: soon under five minutes, expired at zero", () => {
    assert.equal(urgency(SOON_SECONDS), "ok");
    assert.equal(urgency(SOON_SECONDS - 1), "soon");
    assert.equal(urgency(1), "soon");
    assert.equal(urgency(0), "expired");
    assert.equal(urgency(-10), "expired");
  });
});
