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
    const trusted = this.trustedBetween(fromMs, toMs);
    if (!trusted) return null;
    return { offsetMs: median(trusted.samples.map((s) => s.offsetMs)), samples: trusted.samples.length, minRttMs: trusted.minRttMs };
  }

  /**
   * How far the guest's clock stepped at host time `atMs`, between the offset before (samples in `before`) and after
   * (samples in `after`), with the guest clock's own drift taken out. A guest clock runs at its own rate: a TCG guest
   * whose TSC was calibrated on a loaded host drifted 13 000 ppm, 188 ms in 14 s, so comparing the two windows' medians
   * read a 74 ms downtime as a lag of -111 ms. The rate is learnt from the before window (Theil-Sen, robust to a stray
   * exchange), both windows are carried to `atMs` along it, and the step is what is left between them.
   */
  stepAcross(before: TimeWindow, after: TimeWindow, atMs: number): ClockStep | null {
    const b = this.trustedBetween(before.fromMs, before.toMs);
    const a = this.trustedBetween(after.fromMs, after.toMs);
    if (!b || !a) return null;
    const span = Math.max(...b.samples.map((s) => s.hostAtMs)) - Math.min(...b.samples.map((s) => s.hostAtMs));
    const rate = b.samples.length >= MIN_DRIFT_SAMPLES && span >= MIN_DRIFT_SPAN_MS ? theilSenSlope(b.samples) : 0;
    const carried = (samples: readonly OffsetSample[]) => median(samples.map((s) => s.offsetMs + rate * (atMs - s.hostAtMs)));
    const beforeMs = carried(b.samples);
    const afterMs = carried(a.samples);
    return { beforeMs, afterMs, lagMs: beforeMs - afterMs, driftPpm: rate * 1e6 };
  }

  private trustedBetween(fromMs: number, toMs: number): { samples: OffsetSample[]; minRttMs: number } | null {
    const window = this.samples.filter((s) => s.hostAtMs >= fromMs && s.hostAtMs <= toMs && s.rttMs >= 0);
    if (window.length === 0) return null;
    const minRtt = Math.min(...window.map((s) => s.rttMs));
    if (minRtt > MAX_TRUSTED_RTT_MS) return null;
    return { samples: window.filter((s) => s.rttMs <= minRtt + RTT_SLACK_MS), minRttMs: minRtt };
  }
}

export interface TimeWindow {
  fromMs: number;
  toMs: number;
}

export interface ClockStep {
  /** The offset before, carried along the drift to the step's moment. */
  beforeMs: number;
  afterMs: number;
  /** before − after: positive when the guest fell behind. */
  lagMs: number;
  /** The guest clock's rate against the host's, in parts per million (positive: it runs fast). */
  driftPpm: number;
}

/** A rate is learnt only from enough exchanges over long enough that one ms of jitter is not read as drift. */
const MIN_DRIFT_SAMPLES = 5;
const MIN_DRIFT_SPAN_MS = 1000;
const MAX_SLOPE_PAIRS = 20_000;

/** Median of the pairwise slopes (ms of offset per ms of host time); pairs are thinned evenly past MAX_SLOPE_PAIRS. */
function theilSenSlope(samples: readonly OffsetSample[]): number {
  const sorted = [...samples].sort((x, y) => x.hostAtMs - y.hostAtMs);
  const stride = Math.max(1, Math.ceil((sorted.length * sorted.length) / 2 / MAX_SLOPE_PAIRS));
  const slopes: number[] = [];
  let pair = 0;
  for (let i = 0; i < sorted.length; i += 1) {
    for (let j = i + 1; j < sorted.length; j += 1) {
      if (pair++ % stride !== 0) continue;
      const dt = sorted[j]!.hostAtMs - sorted[i]!.hostAtMs;
      if (dt > 0) slopes.push((sorted[j]!.offsetMs - sorted[i]!.offsetMs) / dt);
    }
  }
  return slopes.length > 0 ? median(slopes) : 0;
}

export function median(values: readonly number[]): number {
  if (values.length === 0) throw new Error('median of nothing');
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}
