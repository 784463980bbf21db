import type { ClockSampleObservation, Observation } from '../observation.js';
import type { Probe } from '../probe.js';
import { boottimeMs, monotonicMs } from './read-clocks.js';

export interface ClockProbeOptions {
  /** How often the clocks are read. */
  intervalMs: number;
  /** A move of realtime − monotonic at least this large is reported (Date.now() has 1 ms resolution). */
  realtimeStepMs: number;
  /** A move of boottime − monotonic at least this large is reported (/proc/uptime has 10 ms resolution). */
  boottimeStepMs: number;
}

export const DEFAULT_CLOCK_PROBE_OPTIONS: ClockProbeOptions = { intervalMs: 500, realtimeStepMs: 3, boottimeStepMs: 25 };

export function sampleClocks(readBoottime: () => number = boottimeMs): ClockSampleObservation {
  const realtime = Date.now();
  const monotonic = monotonicMs();
  const boottime = readBoottime();
  return {
    kind: 'clock',
    realtimeMs: realtime,
    monotonicMs: monotonic,
    boottimeMs: boottime,
    realtimeMinusMonotonicMs: realtime - monotonic,
    boottimeMinusMonotonicMs: boottime - monotonic,
    at: { realtimeMs: realtime, monotonicMs: monotonic },
  };
}

/**
 * Reads CLOCK_REALTIME, CLOCK_MONOTONIC and CLOCK_BOOTTIME together and reports a sample at start and whenever the
 * distance between them moves: a realtime step, or boottime running ahead of a frozen monotonic clock. A guest that
 * was paused under KVM/TCG sees neither (all its clocks freeze together); only the host offset shows that.
 */
export class ClockProbe implements Probe<ClockSampleObservation> {
  readonly name = 'clock';
  private timer: NodeJS.Timeout | null = null;
  private last: ClockSampleObservation | null = null;

  constructor(private readonly options: ClockProbeOptions = DEFAULT_CLOCK_PROBE_OPTIONS) {}

  async start(emit: (observation: Observation) => void): Promise<void> {
    this.last = sampleClocks();
    emit(this.last);
    this.timer = setInterval(() => {
      const sample = sampleClocks();
      const previous = this.last!;
      const realtimeMoved = Math.abs(sample.realtimeMinusMonotonicMs - previous.realtimeMinusMonotonicMs);
      const boottimeMoved = Math.abs(sample.boottimeMinusMonotonicMs - previous.boottimeMinusMonotonicMs);
      if (realtimeMoved >= this.options.realtimeStepMs || boottimeMoved >= this.options.boottimeStepMs) {
        this.last = sample;
        emit(sample);
      }
    }, this.options.intervalMs);
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  async snapshot(): Promise<ClockSampleObservation> {
    return sampleClocks();
  }
}
