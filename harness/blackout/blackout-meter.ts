import dgram from 'node:dgram';
import { hostNowMs } from '../host-clock.js';
import { gapAround, longestGap, type Reply } from './reply-gaps.js';

const MAGIC = 0x464c424b; // "FLBK"
const PROBE_BYTES = 16;
/** Past this many probes the oldest are forgotten: hours of history at 5 ms. */
const MAX_PROBES = 2_000_000;

export interface BlackoutFigures {
  sent: number;
  received: number;
  lost: number;
  /** The longest stretch without an echo arriving, measured between echoes (or the window's edges). */
  longestGapMs: number;
}

/**
 * Measures the network blackout from outside: a UDP probe to the guest's echo responder every `intervalMs`
 * (1–10 ms), each with a sequence number, and the host time every echo comes back.
 */
export class BlackoutMeter {
  private readonly socket = dgram.createSocket('udp4');
  private readonly sentAt: number[] = [];
  private readonly receivedAt = new Map<number, number>();
  private firstSeq = 0;
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly target: { host: string; port: number },
    private readonly intervalMs: number,
  ) {
    if (!(intervalMs >= 1 && intervalMs <= 10)) throw new Error(`blackout probe interval ${intervalMs} ms: choose 1 to 10 ms`);
    this.socket.on('message', (message) => {
      if (message.length !== PROBE_BYTES || message.readUInt32BE(0) !== MAGIC) return;
      const seq = message.readUInt32BE(4);
      if (seq >= this.firstSeq && seq < this.firstSeq + this.sentAt.length && !this.receivedAt.has(seq)) this.receivedAt.set(seq, hostNowMs());
    });
    this.socket.on('error', () => undefined);
  }

  start(): void {
    const probe = Buffer.alloc(PROBE_BYTES);
    probe.writeUInt32BE(MAGIC, 0);
    this.timer = setInterval(() => {
      const seq = this.firstSeq + this.sentAt.length;
      probe.writeUInt32BE(seq >>> 0, 4);
      probe.writeDoubleBE(hostNowMs(), 8);
      this.sentAt.push(hostNowMs());
      this.socket.send(probe, this.target.port, this.target.host);
      if (this.sentAt.length > MAX_PROBES) {
        this.sentAt.shift();
        this.receivedAt.delete(this.firstSeq);
        this.firstSeq += 1;
      }
    }, this.intervalMs);
  }

  /** What the probes sent in [fromMs, toMs] saw. Call it a little after toMs, so that late echoes are in. */
  window(fromMs: number, toMs: number): BlackoutFigures {
    const sent = this.sentAt.filter((at) => at >= fromMs && at <= toMs).length;
    const { gap, received } = longestGap(this.replies(), fromMs, toMs);
    return { sent, received, lost: sent - received, longestGapMs: Math.round((gap.toMs - gap.fromMs) * 10) / 10 };
  }

  /** The gap around `atMs` (a RESUME): the last echo before it to the first after it; null without both. */
  gapAround(atMs: number, fromMs: number, toMs: number): { fromMs: number; toMs: number } | null {
    return gapAround(this.replies(), atMs, fromMs, toMs);
  }

  /** The probes that came back, in the order sent. */
  private *replies(): Iterable<Reply> {
    for (let i = 0; i < this.sentAt.length; i += 1) {
      const receivedAtMs = this.receivedAt.get(this.firstSeq + i);
      if (receivedAtMs !== undefined) yield { sentAtMs: this.sentAt[i]!, receivedAtMs };
    }
  }

  /** True once at least one echo came back: the guest's responder is up. */
  get answering(): boolean {
    return this.receivedAt.size > 0;
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.socket.close();
  }
}
