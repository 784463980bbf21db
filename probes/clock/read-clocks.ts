import { readFileSync } from 'node:fs';
import type { ClockStamp } from '../../contract/observation.js';

const NS_PER_MS = 1_000_000n;

/** CLOCK_MONOTONIC in ms, with sub-ms precision (process.hrtime reads CLOCK_MONOTONIC on Linux). */
export function monotonicMs(): number {
  const ns = process.hrtime.bigint();
  return Number(ns / NS_PER_MS) + Number(ns % NS_PER_MS) / 1e6;
}

export function stampNow(): ClockStamp {
  return { realtimeMs: Date.now(), monotonicMs: monotonicMs() };
}

/**
 * CLOCK_BOOTTIME in ms. Node exposes no clock_gettime(CLOCK_BOOTTIME); /proc/uptime is that clock at 10 ms
 * resolution, which is enough to see a suspend (Xen save/restore moves it by seconds while MONOTONIC stands still).
 */
export function boottimeMs(uptimePath = '/proc/uptime'): number {
  const text = readFileSync(uptimePath, 'utf8');
  const seconds = Number.parseFloat(text.split(' ')[0] ?? '');
  if (!Number.isFinite(seconds)) throw new Error(`cannot parse ${uptimePath}: ${JSON.stringify(text.slice(0, 40))}`);
  return seconds * 1000;
}
