import { closeSync, constants, openSync, read, readSync } from 'node:fs';
import type { KernelLogObservation, Observation } from '../observation.js';
import { ProbeUnavailableError, type Probe } from '../probe.js';
import { stampNow } from '../clock/read-clocks.js';
import { parseKmsgRecord, tagKmsgMessage } from './parse-kmsg.js';

/** The kernel hands out one record per read(); none is longer than this (PRINTK_MESSAGE_MAX plus the prefix). */
const RECORD_BUFFER_BYTES = 8192;

export interface KmsgProbeOptions {
  path: string;
  /** Report the records already in the buffer at start (marked replay) as well as new ones. */
  replay: boolean;
}

export interface KmsgSnapshot {
  lastSeq: number | null;
  recordsSeen: number;
  lost: number;
}

/**
 * Reads /dev/kmsg as structured records. Records already in the ring buffer at start are read without blocking and
 * marked `replay`; a second, blocking descriptor then delivers new ones (records up to the last replayed sequence
 * number are skipped). When the reader falls behind and the kernel overwrites records, read() fails with EPIPE; the
 * loss is counted from the sequence gap and reported with the next record.
 */
export class KmsgProbe implements Probe<KmsgSnapshot> {
  readonly name = 'kmsg';
  private fd: number | null = null;
  private stopped = false;
  private lastSeq: number | null = null;
  private recordsSeen = 0;
  private lost = 0;

  constructor(private readonly options: KmsgProbeOptions = { path: '/dev/kmsg', replay: false }) {}

  async start(emit: (observation: Observation) => void): Promise<void> {
    let replayFd: number;
    try {
      replayFd = openSync(this.options.path, constants.O_RDONLY | constants.O_NONBLOCK);
    } catch (error) {
      throw new ProbeUnavailableError(this.name, `cannot open ${this.options.path}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
    }
    const buffer = Buffer.alloc(RECORD_BUFFER_BYTES);
    try {
      for (;;) {
        let n: number;
        try {
          n = readSync(replayFd, buffer, 0, buffer.length, null);
        } catch (error) {
          const code = (error as NodeJS.ErrnoException).code;
          if (code === 'EAGAIN') break;
          if (code === 'EPIPE') continue;
          throw error;
        }
        if (n <= 0) break;
        this.handle(buffer.toString('utf8', 0, n), true, this.options.replay ? emit : null);
      }
    } finally {
      closeSync(replayFd);
    }
    this.fd = openSync(this.options.path, constants.O_RDONLY);
    this.readLoop(emit, buffer);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    // The blocking read holds a thread-pool thread until the next record arrives; closing is deferred to it.
  }

  async snapshot(): Promise<KmsgSnapshot> {
    return { lastSeq: this.lastSeq, recordsSeen: this.recordsSeen, lost: this.lost };
  }

  private readLoop(emit: (observation: Observation) => void, buffer: Buffer): void {
    const fd = this.fd!;
    read(fd, buffer, 0, buffer.length, null, (error, n) => {
      if (this.stopped) {
        closeSync(fd);
        return;
      }
      if (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EPIPE') {
          emit({ kind: 'probe-status', probe: this.name, status: 'failed', reason: error.message, at: stampNow() });
          return;
        }
      } else if (n > 0) {
        this.handle(buffer.toString('utf8', 0, n), false, emit);
      }
      this.readLoop(emit, buffer);
    });
  }

  private handle(raw: string, replay: boolean, emit: ((observation: Observation) => void) | null): void {
    const record = parseKmsgRecord(raw);
    if (!record) return;
    const accepted = acceptSequence(this.lastSeq, record.seq);
    if (!accepted) return; // already delivered by the replay pass
    const { lostBefore } = accepted;
    this.lost += lostBefore;
    this.lastSeq = record.seq;
    this.recordsSeen += 1;
    if (!emit) return;
    const observation: KernelLogObservation = {
      kind: 'kmsg',
      seq: record.seq,
      kernelTimeMs: record.kernelTimeMs,
      priority: record.priority,
      facility: record.facility,
      message: record.message,
      raw: record.raw,
      tags: tagKmsgMessage(record.message),
      lostBefore,
      replay,
      at: stampNow(),
    };
    emit(observation);
  }
}

/**
 * Sequence bookkeeping: null for a record already seen (the blocking descriptor starts again at the oldest record);
 * otherwise how many records the kernel overwrote before we could read them (the gap an EPIPE leaves).
 */
export function acceptSequence(lastSeq: number | null, seq: number): { lostBefore: number } | null {
  if (lastSeq === null) return { lostBefore: 0 };
  if (seq <= lastSeq) return null;
  return { lostBefore: seq - lastSeq - 1 };
}
