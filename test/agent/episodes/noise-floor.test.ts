// The noise floor decides whether a pause or an offset move is evidence of a migration or this host's own jitter.
import t from 'tap';
import fc from 'fast-check';
import { DEFAULT_PAUSE_NOISE, NoiseFloor, pauseMagnitudeMs } from '../../../agent/episodes/noise-floor.js';

const HOUR = 3600_000;

t.test('warm-up first, then the learnt 99th percentile times the factor, never below the minimum or the override', async (t) => {
  const floor = new NoiseFloor(DEFAULT_PAUSE_NOISE);
  t.equal(floor.thresholdMs(0), 200, 'warming up: the noise is not known yet');
  t.equal(floor.thresholdMs(11 * 60_000), 50, 'warm: the minimum');
  for (let i = 0; i < 100; i += 1) floor.note(i < 99 ? 10 : 400, 12 * 60_000 + i);
  t.equal(floor.learntMs(), 400, 'the 99th percentile of 100 samples is the largest');
  t.equal(floor.thresholdMs(13 * 60_000), 1200);
  t.equal(floor.thresholdMs(25 * HOUR), 50, 'a day later the samples have expired');
  const pinned = new NoiseFloor({ ...DEFAULT_PAUSE_NOISE, overrideMs: 500 });
  t.equal(pinned.thresholdMs(11 * 60_000), 500, '--timing-noise wins over a lower floor');
  t.equal(pauseMagnitudeMs({ lateByMs: 30, stealMs: 120 }), 120);
});

t.test('after warm-up the floor is the factor times the p99 of what it kept, computed here independently', async (t) => {
  fc.assert(
    fc.property(fc.array(fc.double({ min: 0, max: 5000, noNaN: true }), { minLength: 1, maxLength: 300 }), fc.integer({ min: 1, max: 400 }), (moves, maxSamples) => {
      const floor = new NoiseFloor({ ...DEFAULT_PAUSE_NOISE, maxSamples });
      floor.thresholdMs(0);
      moves.forEach((move, i) => floor.note(move, HOUR + i));
      const kept = moves.slice(-maxSamples).sort((a, b) => a - b);
      const p99 = kept[Math.min(kept.length - 1, Math.floor(kept.length * 0.99))]!;
      return floor.sampleCount === kept.length && floor.thresholdMs(HOUR + moves.length) === Math.max(50, 3 * p99);
    }),
    { seed: 20261201, numRuns: 500 },
  );
});
