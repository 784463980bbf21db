import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/** Long enough for the probes' first readings, the safety net's baseline and the collector's hello to be done. */
export const STARTUP_SETTLE_MS = 10_000;

/**
 * Collects the start-up's garbage once, when the agent has settled. An idle agent allocates so little that V8 never
 * runs a full collection of its own, so everything start-up left behind (schema compilation, the probes' first
 * dumps, the young generation grown for them) stayed resident: 16 MB of a 67 MB agent (BENCHMARKS.md, issue 19).
 * `gc` is exposed for this one call; V8 installs it in contexts created after the flag, hence the new context.
 */
export function collectStartupGarbage(): boolean {
  try {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as unknown;
    if (typeof gc !== 'function') return false;
    (gc as () => void)();
    return true;
  } catch {
    return false;
  }
}

/** Schedules collectStartupGarbage() without holding the process open. */
export function collectStartupGarbageLater(delayMs = STARTUP_SETTLE_MS): void {
  setTimeout(collectStartupGarbage, delayMs).unref();
}
