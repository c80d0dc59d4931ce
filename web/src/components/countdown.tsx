// Time left to an environment's expiry, ticking each second.
/** @jsxRuntime automatic */
import { formatSecondsLeft, secondsLeft, urgency } from "../lib/countdown.ts";
import { formatTime } from "../lib/format.ts";
import { useNow } from "../lib/hooks.ts";

/** `expiresAt`: RFC 3339 text, or Unix seconds as TTstack's answers give them. */
export function Countdown({ expiresAt, now }: { expiresAt: string | number; now?: number }) {
  const ticking = useNow(1000);
  const end = typeof expiresAt === "number" ? new Date(expiresAt * 1000) : new Date(expiresAt);
  const left = secondsLeft(end, now ?? ticking);
  return (
    <time
      className={`countdown countdown-${urgency(left)}`}
      dateTime={Number.isNaN(end.getTime()) ? String(expiresAt) : end.toISOString()}
      title={`Expires ${formatTime(expiresAt)}`}
    >
      {formatSecondsLeft(left)}
    </time>
  );
}
