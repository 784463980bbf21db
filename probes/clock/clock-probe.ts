import { readFileSync } from 'node:fs';
import type { ObservationOf, Observation } from '../../contract/observation.js';
import type { Probe } from '../probe.js';
import { boottimeMs, monotonicMs, stampNow } from './read-clocks.js';

export interface ClockProbeOptions {
  /** How often the clocks are read. Low on purpose: every reading costs a wake-up (see BENCHMARKS.md). */
  intervalMs: number;
  /** A move of realtime − monotonic at least this large is reported (Date.now() has 1 ms resolution). */
  realtimeStepMs: number;
  /** A move of boottime − monotonic at least this large is reported (/proc/uptime has 10 ms resolution). */
  boottimeStepMs: number;
  /** A wake-up this late, or this much steal in one interval, is reported as a pause. */
  pauseThresholdMs: number;
  /** Late wake-ups this soon after start are the agent's own start-up work, not a pause of the guest (ms). */
  warmUpMs: number;
  procStat: string;
  clocksourcePath: string;
}

export const DEFAULT_CLOCK_PROBE_OPTIONS: ClockProbeOptions = {
  intervalMs: 500,
  realtimeStepMs: 3,
  boottimeStepMs: 25,
  pauseThresholdMs: 10,
  warmUpMs: 3000,
  procStat: '/proc/stat',
  clocksourcePath: '/sys/devices/system/clocksource/clocksource0/current_clocksource',
};

export interface ClockSnapshot {
  sample: ObservationOf<'clock'>;
  clocksource: string | null;
  stealMs: number | null;
}

/** Total steal time, ms: the 8th value of /proc/stat's "cpu" line, in USER_HZ (100 Hz) ticks. */
export function readStealMs(procStat = '/proc/stat'): number | null {
  try {
    const line = readFileSync(procStat, 'utf8').split('\n', 1)[0] ?? '';
    const fields = line.trim().split(/\s+/);
    if (fields[0] !== 'cpu' || fields.length < 9) return null;
    return Number(fields[8]) * 10;
  } catch {
    return null;
  }
}

export function readClocksource(file: string): string | null {
  try {
    return readFileSync(file, 'utf8').trim();
  } catch {
    return null;
  }
}

/** A read of the three clocks that took longer than this (monotonic before to after) is tried again. */
const TIGHT_READ_MS = 2;
const READ_TRIES = 5;

/**
 * Reads realtime, monotonic and boottime as one sample. The three reads are not atomic, and boottime's is a file read
 * that a busy (nested, emulated) guest can hold up for tens of ms: that delay would show as boottime, and against it
 * realtime, moving. So the reads are bracketed by two monotonic reads and tried again when the bracket is wide;
 * the tightest is kept, with monotonic taken at its middle.
 */
export function sampleClocks(readBoottime: () => number = boottimeMs, readMonotonic: () => number = monotonicMs): ObservationOf<'clock'> {
  let best: { realtime: number; monotonic: number; boottime: number; spread: number } | null = null;
  for (let attempt = 0; attempt < READ_TRIES && (best === null || best.spread > TIGHT_READ_MS); attempt += 1) {
    const before = readMonotonic();
    const realtime = Date.now();
    const boottime = readBoottime();
    const after = readMonotonic();
    if (best === null || after - before < best.spread) best = { realtime, monotonic: (before + after) / 2, boottime, spread: after - before };
  }
  const { realtime, monotonic, boottime, spread } = best!;
  return {
    kind: 'clock',
    realtimeMs: realtime,
    monotonicMs: monotonic,
    boottimeMs: boottime,
    realtimeMinusMonotonicMs: realtime - monotonic,
    boottimeMinusMonotonicMs: boottime - monotonic,
    readSpreadMs: Math.round(spread * 1000) / 1000,
    at: { realtimeMs: realtime, monotonicMs: monotonic },
  };
}

/** How far the differences of two samples can be off from their reads alone (each read's midpoint error, added). */
export function readSlackMs(a: Pick<ObservationOf<'clock'>, 'readSpreadMs'>, b: Pick<ObservationOf<'clock'>, 'readSpreadMs'>): number {
  return ((a.readSpreadMs ?? 0) + (b.readSpreadMs ?? 0)) / 2;
}

/**
 * Reads the three clocks together and reports a sample at start and whenever the distance between them moves: a
 * realtime step, or boottime running ahead of a frozen monotonic clock (a Xen suspend). The same low-rate tick finds
 * pauses with 10 ms resolution from kernel counters rather than from frequent wake-ups: a wake-up that came late by
 * at least the threshold, or steal time that grew by as much. A 10 ms timer would cost ~0.6 % of a core in Node 20
 * here; this costs a read of /proc/uptime and /proc/stat twice a second.
 */
export class ClockProbe implements Probe<ClockSnapshot> {
  readonly name = 'clock';
  private timer: NodeJS.Timeout | null = null;
  private last: ObservationOf<'clock'> | null = null;

  constructor(private readonly options: ClockProbeOptions = DEFAULT_CLOCK_PROBE_OPTIONS) {}

  async start(emit: (observation: Observation) => void): Promise<void> {
    this.last = sampleClocks();
    emit(this.last);
    let expected = monotonicMs() + this.options.intervalMs;
    let steal = readStealMs(this.options.procStat);
    const warmUntil = monotonicMs() + this.options.warmUpMs;
    this.timer = setInterval(() => {
      const sample = sampleClocks();
      const lateByMs = sample.monotonicMs - expected;
      expected = sample.monotonicMs + this.options.intervalMs;
      const stealNow = readStealMs(this.options.procStat);
      const stealMs = steal !== null && stealNow !== null ? stealNow - steal : 0;
      steal = stealNow;
      const warm = sample.monotonicMs >= warmUntil;
      if (warm && (lateByMs >= this.options.pauseThresholdMs || stealMs >= this.options.pauseThresholdMs)) {
        emit({ kind: 'pause', lateByMs: Math.max(0, Math.round(lateByMs * 10) / 10), stealMs, at: stampNow() });
      }
      const previous = this.last!;
      const realtimeMoved = Math.abs(sample.realtimeMinusMonotonicMs - previous.realtimeMinusMonotonicMs);
      const boottimeMoved = Math.abs(sample.boottimeMinusMonotonicMs - previous.boottimeMinusMonotonicMs);
      const slack = readSlackMs(previous, sample);
      if (realtimeMoved >= this.options.realtimeStepMs + slack || boottimeMoved >= this.options.boottimeStepMs + slack) {
        this.last = sample;
        emit(sample);
      }
    }, this.options.intervalMs);
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  async snapshot(): Promise<ClockSnapshot> {
    return {
      sample: sampleClocks(),
      clocksource: readClocksource(this.options.clocksourcePath),
      stealMs: readStealMs(this.options.procStat),
    };
  }
}
