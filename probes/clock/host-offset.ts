import type { HostOffsetObservation } from '../observation.js';
import { stampNow } from './read-clocks.js';
import { offsetSample, RTT_SLACK_MS, type TimeExchange } from './clock-offset.js';

/** Smallest offset change worth reporting; below it is probe jitter (guest stamps have 1 ms resolution). */
const REPORT_STEP_MS = 2;
const WINDOW = 8;

/**
 * The guest's own view of its offset against the host. The collector stamps t1 and t4 on the host; the agent stamps
 * t2 and t3 and learns each exchange's t4 with the next probe, so it holds all four stamps. Inside a KVM or TCG
 * guest every clock freezes during a migration's downtime; this offset is the one place the guest itself sees it.
 */
export class HostOffsetTracker {
  private readonly recent: Array<{ offsetMs: number; rttMs: number }> = [];
  private reported: number | null = null;

  /** Adds one complete exchange; returns an observation when the offset moved by more than the jitter. */
  add(exchange: TimeExchange): HostOffsetObservation | null {
    const sample = offsetSample(exchange);
    if (sample.rttMs < 0) return null;
    this.recent.push(sample);
    if (this.recent.length > WINDOW) this.recent.shift();
    const minRtt = Math.min(...this.recent.map((s) => s.rttMs));
    // Only a low-round-trip exchange may set the offset; one that waited out a pause would mislead.
    if (sample.rttMs > minRtt + RTT_SLACK_MS) return null;
    if (this.reported !== null && Math.abs(sample.offsetMs - this.reported) < REPORT_STEP_MS) return null;
    const changeMs = this.reported === null ? null : round(sample.offsetMs - this.reported);
    this.reported = sample.offsetMs;
    return { kind: 'host-offset', offsetMs: round(sample.offsetMs), rttMs: round(sample.rttMs), changeMs, at: stampNow() };
  }

  get offsetMs(): number | null {
    return this.reported;
  }
}

function round(value: number): number {
  return Math.round(value * 100) / 100;
}
