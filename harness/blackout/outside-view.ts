import type { LineMonitor } from '../../system/line-monitor.js';
import { sendTimestampRequests, type TimestampReply } from '../../system/hping3.js';
import { hostNowMs } from '../host-clock.js';
import { gapAround, longestGap } from './reply-gaps.js';

const DAY_MS = 86_400_000;
/** Past this many replies the oldest are forgotten: hours of history at 5 ms. */
const MAX_REPLIES = 2_000_000;
/** Replies read for each side's offset: half a second at 5 ms. */
const OFFSET_SAMPLES = 100;
/**
 * A reply whose round trip is this much above the quickest of its side is left out of the offset: its half round
 * trip no longer bounds where in it the peer stamped it.
 */
const RTT_SLACK_MS = 1;

/** One reply on this host's timeline. */
interface Sample {
  sentAtMs: number;
  receivedAtMs: number;
  /** The peer's clock minus this host's, read from the reply (ms; the RFC 792 stamps have 1 ms steps). */
  offsetMs: number;
  rttMs: number;
}

/** An RFC 792 stamp (ms since midnight UTC) as host ms, on the day that puts it nearest `nearMs`. */
export function stampToEpochMs(stamp: number, nearMs: number): number {
  const midnight = Math.floor(nearMs / DAY_MS) * DAY_MS;
  const candidates = [midnight - DAY_MS, midnight, midnight + DAY_MS].map((m) => m + stamp);
  return candidates.reduce((best, c) => (Math.abs(c - nearMs) < Math.abs(best - nearMs) ? c : best));
}

/**
 * A reply as a sample, read at `readAtMs`: sent when the originate stamp says (this host's clock), and the peer's
 * offset as its receive stamp minus the moment halfway through the round trip. Both stamps are whole ms, so a single
 * offset is good to about ±1 ms; many of them average finer. The round trip is hping3's unless the reply was read
 * sooner than that after it was sent: hping3 3.a2 now and then adds a whole second to it.
 */
export function sampleOf(reply: TimestampReply, readAtMs: number): Sample {
  const sentAtMs = stampToEpochMs(reply.originate, readAtMs);
  const peerAtMs = stampToEpochMs(reply.receive, readAtMs);
  const rttMs = Math.max(0, Math.min(reply.rttMs, readAtMs - sentAtMs));
  return { sentAtMs, receivedAtMs: sentAtMs + rttMs, offsetMs: peerAtMs - (sentAtMs + rttMs / 2), rttMs };
}

/** The guest's offset from the quick replies among `samples`: their median, and how far it can be off. */
function offsetOf(samples: readonly Sample[]): { offsetMs: number; uncertaintyMs: number } | null {
  if (samples.length === 0) return null;
  const quickest = Math.min(...samples.map((s) => s.rttMs));
  const quick = samples.filter((s) => s.rttMs <= quickest + RTT_SLACK_MS).map((s) => s.offsetMs).sort((a, b) => a - b);
  const median = quick[Math.floor(quick.length / 2)]!;
  // Whole-ms stamps on both ends, and half the worst round trip used.
  return { offsetMs: median, uncertaintyMs: 1 + (quickest + RTT_SLACK_MS) / 2 };
}

export interface OutsideFigures {
  sent: number;
  received: number;
  /** The longest stretch without a reply, between replies (or the window's edges). */
  longestGapMs: number;
  /** The gap around RESUME (or completion): the last reply before it to the first after it; null without both. */
  resumeGapMs: number | null;
  /** How far the guest's clock fell behind across the migration, from the offsets before and after; null if unread. */
  clockLagMs: number | null;
  clockLagUncertaintyMs: number | null;
}

/**
 * The guest seen with nothing of flinch in it: ICMP timestamp requests (RFC 792 type 13) every 1–10 ms, which the
 * guest's kernel answers (Linux and the BSDs do). Each reply is an echo for the blackout and an offset of the guest
 * clock for its lag: one probe stream gives both.
 */
export class OutsideView {
  private readonly samples: Sample[] = [];
  private monitor: LineMonitor | null = null;

  constructor(
    private readonly host: string,
    readonly intervalMs: number,
    /** Where hping3 runs; here when absent. */
    private readonly netns?: string,
  ) {
    if (!(intervalMs >= 1 && intervalMs <= 10)) throw new Error(`ICMP probe interval ${intervalMs} ms: choose 1 to 10 ms`);
  }

  async start(): Promise<void> {
    this.monitor = sendTimestampRequests(this.host, this.intervalMs, (reply) => {
      this.samples.push(sampleOf(reply, hostNowMs()));
      if (this.samples.length > MAX_REPLIES) this.samples.shift();
    }, this.netns);
    await this.monitor.ready;
  }

  get answering(): boolean {
    return this.samples.length > 0;
  }

  /**
   * What the replies to requests sent in [fromMs, toMs] say: the blackout, the gap around `resumedAtMs`, and the
   * clock lag between the offset just before `beforeMs` (the migration's start) and the first quick replies after
   * `afterMs` (its end, once settled). Call it a little after toMs, so that late replies are in.
   */
  window(fromMs: number, toMs: number, marks: { beforeMs: number; resumedAtMs: number; afterMs: number }): OutsideFigures {
    const sent = Math.max(0, Math.round((toMs - fromMs) / this.intervalMs));
    const { gap, received } = longestGap(this.samples, fromMs, toMs);
    const resumeGap = this.gapAround(marks.resumedAtMs, fromMs, toMs);
    const offsetBefore = offsetOf(this.samples.filter((s) => s.sentAtMs < marks.beforeMs).slice(-OFFSET_SAMPLES));
    const offsetAfter = offsetOf(this.samples.filter((s) => s.sentAtMs >= marks.afterMs).slice(0, OFFSET_SAMPLES));
    const lag = offsetBefore && offsetAfter ? offsetBefore.offsetMs - offsetAfter.offsetMs : null;
    const round = (x: number) => Math.round(x * 10) / 10;
    return {
      sent,
      received,
      longestGapMs: round(gap.toMs - gap.fromMs),
      resumeGapMs: resumeGap ? round(resumeGap.toMs - resumeGap.fromMs) : null,
      clockLagMs: lag === null ? null : round(lag),
      clockLagUncertaintyMs: offsetBefore && offsetAfter ? round(offsetBefore.uncertaintyMs + offsetAfter.uncertaintyMs) : null,
    };
  }

  /**
   * The gap around `atMs` (a RESUME): from the last reply before it to the first after it; null without replies on
   * both sides. The reply before may be older than fromMs: a fault before the migration silences the guest.
   */
  gapAround(atMs: number, fromMs: number, toMs: number): { fromMs: number; toMs: number } | null {
    return gapAround(this.samples, atMs, fromMs, toMs);
  }

  async stop(): Promise<void> {
    await this.monitor?.stop();
  }
}
