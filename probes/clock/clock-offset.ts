/** One NTP-style exchange: t1/t4 on the host's clock, t2/t3 on the guest's, all ms. */
export interface TimeExchange {
  t1: number;
  t2: number;
  t3: number;
  t4: number;
}

export interface OffsetSample {
  /** Host time the exchange ended. */
  hostAtMs: number;
  /** guest − host: negative when the guest's realtime clock is behind. */
  offsetMs: number;
  rttMs: number;
}

export function offsetSample({ t1, t2, t3, t4 }: TimeExchange): OffsetSample {
  return { hostAtMs: t4, offsetMs: (t2 - t1 + (t3 - t4)) / 2, rttMs: t4 - t1 - (t3 - t2) };
}

/**
 * How close to the best round trip a sample must be to count. An exchange that straddled a guest pause has a long
 * round trip and a wrong offset (the lab notes saw 1.5 s); only exchanges near the minimum are trusted.
 */
export const RTT_SLACK_MS = 2;
/**
 * A window whose best round trip is longer than this says nothing at the millisecond scale: right after a long freeze
 * every exchange in it may have waited out the freeze (a 20 s save/restore gave a "10 s offset" from such samples).
 */
export const MAX_TRUSTED_RTT_MS = 1000;

/**
 * The guest's clock offset against the host over time. The offset at a moment is the median of the low-round-trip
 * samples around it, so one slow exchange cannot move it.
 */
export class ClockOffsetTracker {
  readonly samples: OffsetSample[] = [];

  constructor(private readonly maxSamples = 100_000) {}

  add(exchange: TimeExchange): OffsetSample {
    const sample = offsetSample(exchange);
    this.samples.push(sample);
    if (this.samples.length > this.maxSamples) this.samples.splice(0, this.samples.length - this.maxSamples);
    return sample;
  }

  /** Median offset of the trustworthy samples whose host time falls in [fromMs, toMs]; null when there are none. */
  offsetBetween(fromMs: number, toMs: number): { offsetMs: number; samples: number; minRttMs: number } | null {
    const window = this.samples.filter((s) => s.hostAtMs >= fromMs && s.hostAtMs <= toMs && s.rttMs >= 0);
    if (window.length === 0) return null;
    const minRtt = Math.min(...window.map((s) => s.rttMs));
    if (minRtt > MAX_TRUSTED_RTT_MS) return null;
    const trusted = window.filter((s) => s.rttMs <= minRtt + RTT_SLACK_MS).map((s) => s.offsetMs);
    return { offsetMs: median(trusted), samples: trusted.length, minRttMs: minRtt };
  }
}

export function median(values: readonly number[]): number {
  if (values.length === 0) throw new Error('median of nothing');
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}
