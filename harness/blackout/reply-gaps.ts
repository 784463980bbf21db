import { hostNowMs } from '../host-clock.js';

/** A probe that came back: when it was sent and when its reply arrived, host ms. */
export interface Reply {
  sentAtMs: number;
  receivedAtMs: number;
}

/** How far before a window the reply before its resume gap is looked for: a fault can silence the guest that long. */
const GAP_LOOKBACK_MS = 60_000;

/**
 * The longest stretch without a reply to the probes sent in [fromMs, toMs], measured between replies (or the
 * window's edges, the end no later than now), and how many replies there were, taken in the order given.
 */
export function longestGap(replies: Iterable<Reply>, fromMs: number, toMs: number): { gap: { fromMs: number; toMs: number }; received: number } {
  let received = 0;
  let previous = fromMs;
  let gap = { fromMs, toMs: fromMs };
  for (const { sentAtMs, receivedAtMs } of replies) {
    // Not a break past toMs: ICMP replies are kept in the order they came, which a late one can break.
    if (sentAtMs < fromMs || sentAtMs > toMs) continue;
    received += 1;
    if (receivedAtMs - previous > gap.toMs - gap.fromMs) gap = { fromMs: previous, toMs: receivedAtMs };
    previous = Math.max(previous, receivedAtMs);
  }
  const end = Math.min(toMs, hostNowMs());
  if (end - previous > gap.toMs - gap.fromMs) gap = { fromMs: previous, toMs: end };
  return { gap, received };
}

/**
 * The gap around `atMs` (a RESUME): from the last reply before it to the first after it, among the probes sent up to
 * toMs; null without replies on both sides. The reply before may be older than fromMs: a fault before the migration
 * silences the guest.
 */
export function gapAround(replies: Iterable<Reply>, atMs: number, fromMs: number, toMs: number): { fromMs: number; toMs: number } | null {
  let before = -Infinity;
  let after = Infinity;
  for (const { sentAtMs, receivedAtMs } of replies) {
    if (sentAtMs < fromMs - GAP_LOOKBACK_MS || sentAtMs > toMs) continue;
    if (receivedAtMs <= atMs) before = Math.max(before, receivedAtMs);
    else after = Math.min(after, receivedAtMs);
  }
  return Number.isFinite(before) && Number.isFinite(after) ? { fromMs: before, toMs: after } : null;
}
