import t from 'tap';
import { ClockOffsetTracker, median, offsetSample } from '../../../probes/clock/clock-offset.js';

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
