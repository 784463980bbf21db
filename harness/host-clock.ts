import { performance } from 'node:perf_hooks';

/** Host CLOCK_REALTIME in ms with sub-ms precision (Date.now() alone has 1 ms steps). */
export function hostNowMs(): number {
  return performance.timeOrigin + performance.now();
}
