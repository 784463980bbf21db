/**
 * What this machine's timing does on its own. A guest on a busy host wakes late, has time stolen, and sees its offset
 * to the host wobble by milliseconds all the time; only a move clearly above what the agent has seen of that noise can
 * mean "this guest was stopped". The floor is learnt from the agent's own history of moves that proved nothing.
 */
export interface NoiseFloorOptions {
  /** An explicit floor (--timing-noise): never below this. */
  overrideMs: number;
  /** Never below this either (ms). */
  minimumMs: number;
  /**
   * For this long after the agent starts (ms) the floor is at least warmUpMinimumMs: the noise is not known yet, and a
   * busy host's first spikes (80 ms of steal on this machine under stress-ng) would otherwise open episodes.
   */
  warmUpMs: number;
  warmUpMinimumMs: number;
  /** A pause opens an episode alone when it is this many times the noise's 99th percentile. */
  factor: number;
  /** How long a noise sample is remembered (ms). */
  windowMs: number;
  /** How many noise samples are kept at most (the oldest go first). */
  maxSamples: number;
}

/** Pauses: a late wake-up or stolen time. */
export const DEFAULT_PAUSE_NOISE: NoiseFloorOptions = {
  overrideMs: 0,
  minimumMs: 50,
  warmUpMs: 10 * 60_000,
  warmUpMinimumMs: 200,
  factor: 3,
  windowMs: 24 * 3600_000,
  maxSamples: 4096,
};

/**
 * Moves of the guest's offset against the host. Migration evidence when above the floor: a migration's pause shows as
 * tens of ms of lag (QEMU TCG: 50–70 ms); a loaded host's probes wobble by a few, and a TCG guest's just after boot on
 * a stressed host by 20–30 ms (the lab soak's one false episode), hence 100 ms while the floor warms up.
 */
export const DEFAULT_OFFSET_NOISE: NoiseFloorOptions = { ...DEFAULT_PAUSE_NOISE, minimumMs: 20, warmUpMinimumMs: 100 };

export class NoiseFloor {
  private readonly samples: Array<{ atMs: number; magnitudeMs: number }> = [];

  private startedAtMs: number | null = null;

  constructor(private readonly options: NoiseFloorOptions) {}

  /** The smallest move that counts now (ms). The first call starts the warm-up. */
  thresholdMs(nowMs: number): number {
    this.startedAtMs ??= nowMs;
    this.expire(nowMs);
    const minimum = nowMs - this.startedAtMs < this.options.warmUpMs ? this.options.warmUpMinimumMs : this.options.minimumMs;
    return Math.max(this.options.overrideMs, minimum, this.options.factor * this.learntMs());
  }

  /** The 99th percentile of the noise remembered (0 when none). */
  learntMs(): number {
    if (this.samples.length === 0) return 0;
    const sorted = this.samples.map((s) => s.magnitudeMs).sort((a, b) => a - b);
    return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * 0.99))]!;
  }

  get sampleCount(): number {
    return this.samples.length;
  }

  note(magnitudeMs: number, atMs: number): void {
    this.samples.push({ atMs, magnitudeMs });
    if (this.samples.length > this.options.maxSamples) this.samples.shift();
  }

  private expire(nowMs: number): void {
    while (this.samples.length > 0 && nowMs - this.samples[0]!.atMs > this.options.windowMs) this.samples.shift();
  }
}

/** How large a pause observation is: a late wake-up and stolen time are the same thing seen two ways. */
export function pauseMagnitudeMs(o: { lateByMs: number; stealMs: number }): number {
  return Math.max(o.lateByMs, o.stealMs);
}
