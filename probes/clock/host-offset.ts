import type { ObservationOf } from '../../contract/observation.js';
import { stampNow } from './read-clocks.js';
import { offsetSample, RTT_SLACK_MS, type TimeExchange } from '../../contract/clock-offset.js';

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
  private reported: { offsetMs: number; rttMs: number } | null = null;

  /**
   * Adds one complete exchange; returns an observation when the offset moved by more than the jitter and more than the
   * two exchanges' own uncertainty. An exchange's offset is only known to within half its round trip (a reply held up
   * on one side reads as an offset), so a move is proven only beyond half the sum of both round trips: the first
   * exchange of a connection, made while the agent was busy starting, once read 100 ms off and the next good one as a
   * "step" that licensed repairs. A sample that proves nothing but is tighter than the reference replaces it quietly.
   */
  add(exchange: TimeExchange): ObservationOf<'host-offset'> | null {
    const sample = offsetSample(exchange);
    if (sample.rttMs < 0) return null;
    this.recent.push(sample);
    if (this.recent.length > WINDOW) this.recent.shift();
    const minRtt = Math.min(...this.recent.map((s) => s.rttMs));
    // Only a low-round-trip exchange may set the offset; one that waited out a pause would mislead.
    if (sample.rttMs > minRtt + RTT_SLACK_MS) return null;
    const previous = this.reported;
    if (previous !== null) {
      const uncertaintyMs = (previous.rttMs + sample.rttMs) / 2;
      if (Math.abs(sample.offsetMs - previous.offsetMs) < REPORT_STEP_MS + uncertaintyMs) {
        if (sample.rttMs < previous.rttMs) this.reported = { offsetMs: sample.offsetMs, rttMs: sample.rttMs };
        return null;
      }
    }
    this.reported = { offsetMs: sample.offsetMs, rttMs: sample.rttMs };
    const changeMs = previous === null ? null : round(sample.offsetMs - previous.offsetMs);
    return { kind: 'host-offset', offsetMs: round(sample.offsetMs), rttMs: round(sample.rttMs), changeMs, at: stampNow() };
  }

  /** Another collector is another host, with a clock of its own: offsets to it are not comparable with the last ones. */
  reset(): void {
    this.recent.length = 0;
    this.reported = null;
  }

  get offsetMs(): number | null {
    return this.reported?.offsetMs ?? null;
  }
}

function round(value: number): number {
  return Math.round(value * 100) / 100;
}
