import { randomBytes } from 'node:crypto';
import { appendFileSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { DataMessage } from '../../contract/messages.js';
import type { Observation } from '../../contract/observation.js';
import type { Report } from '../../contract/report-schema.js';

export interface SpoolOptions {
  dir: string;
  /** On-disk bound. Past it the oldest segment is dropped, and its unacknowledged entries are counted. */
  maxBytes: number;
  /** A segment is closed after this many bytes; the unit in which old data is dropped and acked data deleted. */
  segmentBytes: number;
  log: (line: string) => void;
}

export const DEFAULT_SPOOL_MAX_BYTES = 64 * 1024 * 1024;

interface Segment {
  file: string;
  firstSeq: number;
  lastSeq: number;
  bytes: number;
}

/**
 * The agent's outbox, on disk: everything it sends to a collector gets a sequence number and a line in a segment file
 * before it is sent, and stays until the collector acknowledges it, so that neither a lost connection, a paused
 * guest, a collector restart nor an agent killed with -9 loses a report. Bounded: when full, whole oldest segments go,
 * and what they held is counted in `dropped` (persisted, and told to the collector in each hello).
 *
 * Files: `seg-<firstSeq>.jsonl` (one DataMessage per line), `state.json` ({ acked, dropped, nextSeq }).
 */
export class Spool {
  private readonly segments: Segment[] = [];
  /** Unacknowledged entries, oldest first; what is re-sent on each new connection. */
  private pending: DataMessage[] = [];
  private nextSeq = 1;
  acked = 0;
  dropped = 0;
  /**
   * Names this spool's sequence: a guest reinstalled with the same agent id starts a new stream at seq 1, and the
   * collector must not take its first reports for re-sends of the old ones.
   */
  streamId = randomBytes(8).toString('hex');
  private stateDirty = false;

  constructor(private readonly options: SpoolOptions) {
    mkdirSync(options.dir, { recursive: true, mode: 0o700 });
    if (!this.load()) {
      this.stateDirty = true;
      this.saveState();
    }
  }

  get unacked(): readonly DataMessage[] {
    return this.pending;
  }

  /** The highest seq handed out: no collector can have stored more. */
  get lastSeq(): number {
    return this.nextSeq - 1;
  }

  get bytes(): number {
    return this.segments.reduce((sum, s) => sum + s.bytes, 0);
  }

  /** Numbers, persists and returns the message. */
  append(body: { type: 'observation'; observation: Observation } | { type: 'report'; report: Report }): DataMessage {
    const message = { ...body, seq: this.nextSeq++ } as DataMessage;
    const line = `${JSON.stringify(message)}\n`;
    let segment = this.segments[this.segments.length - 1];
    if (!segment || segment.bytes >= this.options.segmentBytes) {
      segment = { file: path.join(this.options.dir, `seg-${String(message.seq).padStart(16, '0')}.jsonl`), firstSeq: message.seq, lastSeq: message.seq, bytes: 0 };
      this.segments.push(segment);
    }
    appendFileSync(segment.file, line, { mode: 0o600 });
    segment.bytes += Buffer.byteLength(line);
    segment.lastSeq = message.seq;
    this.pending.push(message);
    // No state write here: the next sequence number is recovered from the segments, and the last one is always kept.
    this.enforceBound();
    return message;
  }

  /** The collector has stored everything up to `seq`. */
  acknowledge(seq: number): void {
    if (seq <= this.acked) return;
    this.acked = Math.min(seq, this.nextSeq - 1);
    let drop = 0;
    while (drop < this.pending.length && this.pending[drop]!.seq <= this.acked) drop += 1;
    if (drop > 0) this.pending = this.pending.slice(drop);
    // The segment being written stays even when fully acked; it is reused until it is full.
    while (this.segments.length > 1 && this.segments[0]!.lastSeq <= this.acked) rmSync(this.segments.shift()!.file, { force: true });
    this.stateDirty = true;
    this.saveState();
  }

  private enforceBound(): void {
    while (this.segments.length > 1 && this.bytes > this.options.maxBytes) {
      const oldest = this.segments.shift()!;
      rmSync(oldest.file, { force: true });
      const lost = this.pending.filter((m) => m.seq <= oldest.lastSeq).length;
      this.pending = this.pending.filter((m) => m.seq > oldest.lastSeq);
      this.stateDirty = true;
      if (lost > 0) {
        this.dropped += lost;
        this.saveState();
        this.options.log(`spool full (${this.options.maxBytes} bytes): dropped ${lost} unsent entries (seq ${oldest.firstSeq}..${oldest.lastSeq}); ${this.dropped} in all`);
      }
    }
  }

  private saveState(): void {
    if (!this.stateDirty) return;
    const file = path.join(this.options.dir, 'state.json');
    writeFileSync(`${file}.tmp`, JSON.stringify({ streamId: this.streamId, acked: this.acked, dropped: this.dropped, nextSeq: this.nextSeq }), { mode: 0o600 });
    renameSync(`${file}.tmp`, file);
    this.stateDirty = false;
  }

  /** Returns whether a saved state was found. */
  private load(): boolean {
    let found = false;
    try {
      const state = JSON.parse(readFileSync(path.join(this.options.dir, 'state.json'), 'utf8')) as { streamId?: unknown; acked?: unknown; dropped?: unknown; nextSeq?: unknown };
      if (typeof state.streamId === 'string' && /^[0-9a-f]{16}$/.test(state.streamId)) {
        this.streamId = state.streamId;
        found = true;
      }
      if (Number.isSafeInteger(state.acked)) this.acked = state.acked as number;
      if (Number.isSafeInteger(state.dropped)) this.dropped = state.dropped as number;
      if (Number.isSafeInteger(state.nextSeq)) this.nextSeq = state.nextSeq as number;
    } catch {
      // No state yet, or torn: the segments below say what was written.
    }
    const files = readdirSync(this.options.dir).filter((f) => /^seg-\d+\.jsonl$/.test(f)).sort();
    for (const name of files) {
      const file = path.join(this.options.dir, name);
      const segment: Segment = { file, firstSeq: Number(name.slice(4, 20)), lastSeq: 0, bytes: statSync(file).size };
      for (const line of readFileSync(file, 'utf8').split('\n')) {
        if (!line) continue;
        let message: DataMessage;
        try {
          message = JSON.parse(line) as DataMessage;
        } catch {
          continue; // a line torn by a crash mid-write: it was never sent either
        }
        if (!Number.isSafeInteger(message.seq)) continue;
        segment.lastSeq = Math.max(segment.lastSeq, message.seq);
        this.nextSeq = Math.max(this.nextSeq, message.seq + 1);
        if (message.seq > this.acked) this.pending.push(message);
      }
      this.segments.push(segment);
    }
    this.pending.sort((a, b) => a.seq - b.seq);
    while (this.segments.length > 1 && this.segments[0]!.lastSeq <= this.acked) rmSync(this.segments.shift()!.file, { force: true });
    return found;
  }
}
