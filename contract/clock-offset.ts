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
   * How far the guest's clock stepped at host time `atMs`: the offset just before (the last good exchanges in `before`)
   * against the offset just after (the first good exchanges in `after`), both carried to `atMs` along the guest clock's
   * own drift.
   *
   * - "Good" is measured against the before window's best round trip (within twice it, or the 2 ms slack), because a
   *   TCG guest runs slowly for seconds after a migration: every exchange of the landing CI's 3 s after window had
   *   waited, its best one read the offset 185 ms high, and a 74 ms downtime came out as a lag of -111 ms. Until the
   *   guest answers as fast as it did before, its exchanges say little.
   * - The exchanges nearest the step are used: the drift between them is smallest, and a clock the safety net heals
   *   later in the window does not mix in.
   * - The drift is learnt from the before window (Theil-Sen, robust to a stray exchange).
   *
   * `uncertaintyMs` bounds the error: half the round trips of the worst exchanges used on each side.
   */
  stepAcross(before: TimeWindow, after: TimeWindow, atMs: number, options: { acceptSlow?: boolean } = {}): ClockStep | null {
    const b = this.trustedBetween(before.fromMs, before.toMs);
    if (!b) return null;
    const good = quickAs(b.minRttMs);
    let afterGood = this.samples.filter((s) => s.hostAtMs >= after.fromMs && s.hostAtMs <= after.toMs && good(s));
    // None as quick as before, and no waiting for them (the agent healed the clock meanwhile): the window's own best,
    // its larger error in uncertaintyMs.
    if (afterGood.length === 0 && options.acceptSlow) afterGood = this.trustedBetween(after.fromMs, after.toMs)?.samples ?? [];
    if (afterGood.length === 0) return null;
    const beforeGood = this.samples.filter((s) => s.hostAtMs >= before.fromMs && s.hostAtMs <= before.toMs && good(s));
    const span = Math.max(...b.samples.map((s) => s.hostAtMs)) - Math.min(...b.samples.map((s) => s.hostAtMs));
    const rate = b.samples.length >= MIN_DRIFT_SAMPLES && span >= MIN_DRIFT_SPAN_MS ? theilSenSlope(b.samples) : 0;
    const byTime = (x: OffsetSample, y: OffsetSample) => x.hostAtMs - y.hostAtMs;
    const beforeUsed = [...beforeGood].sort(byTime).slice(-SAMPLES_EACH_SIDE);
    const afterUsed = [...afterGood].sort(byTime).slice(0, SAMPLES_EACH_SIDE);
    const carried = (samples: readonly OffsetSample[]) => median(samples.map((s) => s.offsetMs + rate * (atMs - s.hostAtMs)));
    const beforeMs = carried(beforeUsed);
    const afterMs = carried(afterUsed);
    const worstRtt = (samples: readonly OffsetSample[]) => Math.max(...samples.map((s) => s.rttMs));
    return { beforeMs, afterMs, lagMs: beforeMs - afterMs, driftPpm: rate * 1e6, uncertaintyMs: (worstRtt(beforeUsed) + worstRtt(afterUsed)) / 2 };
  }

  /** How many good exchanges after `fromMs` there are: whether the after side of stepAcross has enough yet. */
  goodExchangesSince(before: TimeWindow, fromMs: number): number {
    const b = this.trustedBetween(before.fromMs, before.toMs);
    if (!b) return 0;
    const good = quickAs(b.minRttMs);
    return this.samples.filter((s) => s.hostAtMs >= fromMs && good(s)).length;
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
  /** Half the round trips of the worst exchanges used, before and after: the lag is known to within this. */
  uncertaintyMs: number;
}

/** An exchange as quick as the best before the step: within twice its round trip, or the slack. */
function quickAs(bestRttMs: number): (s: OffsetSample) => boolean {
  return (s) => s.rttMs >= 0 && s.rttMs <= bestRttMs + Math.max(RTT_SLACK_MS, bestRttMs);
}

/** A rate is learnt only from enough exchanges over long enough that one ms of jitter is not read as drift. */
const MIN_DRIFT_SAMPLES = 5;
const MIN_DRIFT_SPAN_MS = 1000;
const MAX_SLOPE_PAIRS = 20_000;
/** Exchanges used on each side of a step: enough for a median that one odd exchange cannot move. */
export const SAMPLES_EACH_SIDE = 5;

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
