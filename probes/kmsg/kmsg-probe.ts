import type { ObservationOf, Observation } from '../../contract/observation.js';
import { ProbeUnavailableError, type Probe } from '../probe.js';
import { stampNow } from '../clock/read-clocks.js';
import { parseKmsgRecord, tagKmsgMessage } from './parse-kmsg.js';
import { NonblockingDevice } from '../nonblocking-device.js';

/** The kernel hands out one record per read(); none is longer than this (PRINTK_MESSAGE_MAX plus the prefix). */
const RECORD_BUFFER_BYTES = 8192;

export interface KmsgProbeOptions {
  path: string;
  /** How often new records are collected; kernel-log evidence arrives at most this late. */
  pollMs: number;
  /** Report the records already in the buffer at start (marked replay) as well as new ones. */
  replay: boolean;
}

/**
 * Once a second: each wake-up costs an idle agent more than the read it makes (at five a second the kernel log's
 * timer was a quarter of the agent's idle CPU, BENCHMARKS.md), and a migration's kernel lines matter within its
 * episode's seconds, not its milliseconds; the records keep the kernel's own timestamps.
 */
export const DEFAULT_KMSG_PROBE_OPTIONS: KmsgProbeOptions = { path: '/dev/kmsg', pollMs: 1000, replay: false };

export interface KmsgSnapshot {
  lastSeq: number | null;
  recordsSeen: number;
  lost: number;
}

/**
 * Reads /dev/kmsg as structured records, one per read(), from a non-blocking descriptor drained on a low-rate timer
 * (see NonblockingDevice). Records already in the ring buffer at start are marked `replay`. When the reader falls
 * behind and the kernel overwrites records, read() fails with EPIPE and the next read returns the oldest record
 * left; the loss is counted from the sequence gap and reported with that record.
 */
export class KmsgProbe implements Probe<KmsgSnapshot> {
  readonly name = 'kmsg';
  private device: NonblockingDevice | null = null;
  private lastSeq: number | null = null;
  private recordsSeen = 0;
  private lost = 0;

  constructor(private readonly options: KmsgProbeOptions = DEFAULT_KMSG_PROBE_OPTIONS) {}

  async start(emit: (observation: Observation) => void): Promise<void> {
    let device: NonblockingDevice;
    try {
      device = new NonblockingDevice(this.options.path, 'read', RECORD_BUFFER_BYTES);
    } catch (error) {
      throw new ProbeUnavailableError(this.name, `cannot open ${this.options.path}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
    }
    this.device = device;
    // What is in the ring buffer already is history: read now, reported only when asked for, marked replay.
    device.drain((chunk) => this.handle(chunk.toString('utf8'), true, this.options.replay ? emit : null));
    device.poll(
      this.options.pollMs,
      (chunk) => this.handle(chunk.toString('utf8'), false, emit),
      (error) => emit({ kind: 'probe-status', probe: this.name, status: 'failed', reason: error.message, at: stampNow() }),
    );
  }

  async stop(): Promise<void> {
    this.device?.close();
    this.device = null;
  }

  async snapshot(): Promise<KmsgSnapshot> {
    return { lastSeq: this.lastSeq, recordsSeen: this.recordsSeen, lost: this.lost };
  }

  private handle(raw: string, replay: boolean, emit: ((observation: Observation) => void) | null): void {
    const record = parseKmsgRecord(raw);
    if (!record) return;
    const accepted = acceptSequence(this.lastSeq, record.seq);
    if (!accepted) return;
    const { lostBefore } = accepted;
    this.lost += lostBefore;
    this.lastSeq = record.seq;
    this.recordsSeen += 1;
    if (!emit) return;
    const observation: ObservationOf<'kmsg'> = {
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
 * Sequence bookkeeping: null for a record already seen; otherwise how many records the kernel overwrote before we
 * could read them (the gap an EPIPE leaves).
 */
export function acceptSequence(lastSeq: number | null, seq: number): { lostBefore: number } | null {
  if (lastSeq === null) return { lostBefore: 0 };
  if (seq <= lastSeq) return null;
  return { lostBefore: seq - lastSeq - 1 };
}
