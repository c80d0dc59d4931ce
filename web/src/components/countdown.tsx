// Time left to an environment's expiry, ticking each second.
/** @jsxRuntime automatic */
import { formatSecondsLeft, secondsLeft, urgency } from "../lib/countdown.ts";
import { formatTime } from "../lib/format.ts";
import { useNow } from "../lib/hooks.ts";

export function Countdown({ expiresAt, now }: { expiresAt: string; now?: number }) {
  const ticking = useNow(1000);
  const left = secondsLeft(expiresAt, now ?? ticking);
  return (
    <time className={`countdown countdown-${urgency(left)}`} dateTime={expiresAt} title={`Expires ${formatTime(expiresAt)}`}>
      {formatSecondsLeft(left)}
    </time>
  );
}
