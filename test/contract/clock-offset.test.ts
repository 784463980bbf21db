import t from 'tap';
import { ClockOffsetTracker, median, offsetSample } from '../../contract/clock-offset.js';

t.test('NTP arithmetic: offset and round trip from the four stamps', async (t) => {
  // Guest 100 ms behind the host, 4 ms each way, 1 ms inside the guest.
  const s = offsetSample({ t1: 1000, t2: 904, t3: 905, t4: 1009 });
  t.equal(s.offsetMs, -100);
  t.equal(s.rttMs, 8);
  t.equal(s.hostAtMs, 1009);
});

t.test('exchanges that straddled a guest pause are not trusted', async (t) => {
  const tracker = new ClockOffsetTracker();
  for (let i = 0; i < 5; i += 1) tracker.add({ t1: 1000 + i * 100, t2: 1000 + i * 100 - 50 + 1, t3: 1000 + i * 100 - 50 + 1, t4: 1000 + i * 100 + 2 });
  // Probe sent before a 1.5 s pause, answered after it: its naive offset is far off.
  tracker.add({ t1: 1600, t2: 1560, t3: 1560, t4: 3100 });
  const result = tracker.offsetBetween(0, 5000)!;
  t.equal(result.offsetMs, -50, 'the slow exchange did not move the median');
  t.equal(result.samples, 5);
  t.equal(result.minRttMs, 2);
});

t.test('a window holding only exchanges that waited out a long freeze has no offset, rather than a wrong one', async (t) => {
  const tracker = new ClockOffsetTracker();
  // Sent just before a 20 s save/restore, answered just after: the naive offset is off by half the freeze.
  tracker.add({ t1: 1000, t2: 11_000, t3: 11_000, t4: 21_000 });
  tracker.add({ t1: 1200, t2: 11_100, t3: 11_100, t4: 21_050 });
  t.equal(tracker.offsetBetween(20_000, 22_000), null);
  tracker.add({ t1: 21_100, t2: 21_102, t3: 21_102, t4: 21_104 });
  t.equal(tracker.offsetBetween(20_000, 22_000)!.offsetMs, 0, 'one fresh exchange is enough');
});

t.test('a window with no exchanges has no offset', async (t) => {
  const tracker = new ClockOffsetTracker();
  tracker.add({ t1: 0, t2: 0, t3: 0, t4: 1 });
  t.equal(tracker.offsetBetween(10, 20), null);
});

t.test('the tracker is bounded', async (t) => {
  const tracker = new ClockOffsetTracker(10);
  for (let i = 0; i < 25; i += 1) tracker.add({ t1: i, t2: i, t3: i, t4: i + 1 });
  t.equal(tracker.samples.length, 10);
  t.equal(tracker.samples[0]!.hostAtMs, 16);
});

t.test('median', async (t) => {
  t.equal(median([3, 1, 2]), 2);
  t.equal(median([4, 1, 3, 2]), 2.5);
  t.throws(() => median([]));
});

t.test("a migration's step, measured with the guest clock's own drift taken out", async (t) => {
  // The landing CI's TCG guest: its clock ran 13 000 ppm slow, and the migration froze it for 74 ms at host 10 000 ms.
  const drift = -0.013;
  const guestOffset = (hostMs: number) => -500 + drift * (hostMs - 5000) - (hostMs >= 10_000 ? 74 : 0);
  const tracker = new ClockOffsetTracker();
  const exchange = (hostMs: number, rtt = 2) => {
    const guest = hostMs + rtt / 2 + guestOffset(hostMs);
    tracker.add({ t1: hostMs, t2: guest, t3: guest, t4: hostMs + rtt });
  };
  for (let h = 5000; h <= 8000; h += 100) exchange(h);
  for (let h = 10_500; h <= 13_000; h += 100) exchange(h);
  const naive = tracker.offsetBetween(5000, 8002)!.offsetMs - tracker.offsetBetween(10_500, 13_002)!.offsetMs;
  t.ok(Math.abs(naive - 74) > 50, `the windows' medians alone are far off (${naive.toFixed(1)} ms)`);
  const step = tracker.stepAcross({ fromMs: 5000, toMs: 8002 }, { fromMs: 10_500, toMs: 13_002 }, 10_000)!;
  t.ok(Math.abs(step.lagMs - 74) < 1, `the step: ${step.lagMs.toFixed(2)} ms`);
  t.ok(Math.abs(step.driftPpm + 13_000) < 100, `the drift: ${step.driftPpm.toFixed(0)} ppm`);

  // A stray exchange within the round-trip slack but 30 ms off does not bend the rate (Theil-Sen, not least squares).
  const guest = 7050 + 1 + guestOffset(7050) + 30;
  tracker.add({ t1: 7050, t2: guest, t3: guest, t4: 7052 });
  t.ok(Math.abs(tracker.stepAcross({ fromMs: 5000, toMs: 8002 }, { fromMs: 10_500, toMs: 13_002 }, 10_000)!.lagMs - 74) < 1, 'one stray exchange moves nothing');
});

t.test('too few or too close exchanges teach no rate: the windows are compared as they are', async (t) => {
  const tracker = new ClockOffsetTracker();
  for (const h of [1000, 1100, 1200]) tracker.add({ t1: h, t2: h + 1 - 50, t3: h + 1 - 50, t4: h + 2 });
  for (const h of [3000, 3100]) tracker.add({ t1: h, t2: h + 1 - 130, t3: h + 1 - 130, t4: h + 2 });
  const step = tracker.stepAcross({ fromMs: 0, toMs: 2000 }, { fromMs: 2500, toMs: 4000 }, 2500)!;
  t.equal(step.driftPpm, 0);
  t.equal(step.lagMs, 80);
  t.equal(tracker.stepAcross({ fromMs: 0, toMs: 500 }, { fromMs: 2500, toMs: 4000 }, 2500), null, 'no exchange before: no step');
});

t.test('after a migration, exchanges the slow guest held up are not read: the lag comes from the first quick ones', async (t) => {
  // The landing CI's first migration: for three seconds after resuming, the TCG guest answered 370 ms late (its
  // requests waited, so each read the offset 185 ms high); then as quickly as before.
  const tracker = new ClockOffsetTracker();
  const exchange = (hostMs: number, offsetMs: number, inboundDelayMs = 1) => {
    const guest = hostMs + inboundDelayMs + offsetMs;
    tracker.add({ t1: hostMs, t2: guest, t3: guest, t4: hostMs + inboundDelayMs + 1 });
  };
  for (let h = 1000; h <= 4000; h += 200) exchange(h, -495);
  for (let h = 6000; h <= 9000; h += 200) exchange(h, -569, 370);
  for (let h = 9200; h <= 11_000; h += 200) exchange(h, -569);
  t.ok(Math.abs(tracker.offsetBetween(6000, 9000)!.offsetMs + 569) > 150, 'the slow window alone reads far off');
  const step = tracker.stepAcross({ fromMs: 1000, toMs: 4002 }, { fromMs: 6000, toMs: 11_002 }, 5500)!;
  t.equal(step.lagMs, 74);
  t.equal(step.uncertaintyMs, 2, 'read from quick exchanges only (2 ms round trips)');
  t.equal(tracker.goodExchangesSince({ fromMs: 1000, toMs: 4002 }, 6000), 10, 'the quick ones are counted, the slow not');
  t.equal(tracker.stepAcross({ fromMs: 1000, toMs: 4002 }, { fromMs: 6000, toMs: 9002 }, 5500), null, 'none quick yet: no lag rather than a wrong one');
});

t.test('when the window had to end early (the clock was healed), its slow exchanges are used, their error in the uncertainty', async (t) => {
  const tracker = new ClockOffsetTracker();
  for (let h = 1000; h <= 4000; h += 200) tracker.add({ t1: h, t2: h + 1 - 500, t3: h + 1 - 500, t4: h + 2 });
  // After a 12 s save/restore the guest answers 300 ms late, until the safety net steps its clock back.
  for (let h = 17_000; h <= 19_000; h += 200) tracker.add({ t1: h, t2: h + 300 - 12_500, t3: h + 300 - 12_500, t4: h + 301 });
  t.equal(tracker.stepAcross({ fromMs: 1000, toMs: 4002 }, { fromMs: 17_000, toMs: 19_400 }, 16_000), null, 'not asked to: none as quick as before, no lag');
  const step = tracker.stepAcross({ fromMs: 1000, toMs: 4002 }, { fromMs: 17_000, toMs: 19_400 }, 16_000, { acceptSlow: true })!;
  t.ok(Math.abs(step.lagMs - 12_000) <= step.uncertaintyMs, `12 s within its uncertainty: ${step.lagMs} ± ${step.uncertaintyMs}`);
  t.ok(step.uncertaintyMs > 100, 'and that uncertainty says the exchanges were slow');
});
