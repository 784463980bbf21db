// The collector's small parts, alone: the schedule that spreads pings and time probes, and the frame budget.
import t from 'tap';
import { SPREAD_TICK_MS, SpreadSchedule } from '../../../harness/collector/spread-schedule.js';
import { closeReason, FrameBucket } from '../../../harness/collector/frame-limits.js';
import { ProtocolError } from '../../../contract/messages.js';
import { RateLimitedLog } from '../../../harness/collector/rate-limited-log.js';

t.test('a spread schedule visits every member once an interval, a slice a tick', async (t) => {
  const members = Array.from({ length: 1000 }, (_, i) => i);
  const schedule = new SpreadSchedule(1000);
  const ticksPerInterval = 1000 / SPREAD_TICK_MS;
  const seen: number[] = [];
  const slices: number[] = [];
  for (let tick = 0; tick < ticksPerInterval; tick += 1) {
    const due = schedule.due(members);
    slices.push(due.length);
    seen.push(...due);
  }
  t.same(seen, members, 'each once, in order, within one interval');
  t.ok(Math.max(...slices) <= Math.ceil(members.length / ticksPerInterval), `no tick does more than its share (${Math.max(...slices)})`);
  const few = new SpreadSchedule(1000);
  const visits = Array.from({ length: 2 * ticksPerInterval }, () => few.due(['a', 'b', 'c']).length).reduce((a, b) => a + b, 0);
  t.equal(visits, 6, 'three members over two intervals: twice each, not every tick');
});

t.test('a frame bucket allows a burst of twice its rate, then refuses as rate-limit', async (t) => {
  const bucket = new FrameBucket(10);
  for (let i = 0; i < 20; i += 1) bucket.spend();
  t.throws(() => bucket.spend(), new ProtocolError('more than 10 frames a second', 'rate-limit'));
});

t.test('a close reason is printable ASCII within 123 bytes', async (t) => {
  t.equal(closeReason('bad: €\u0000x'), 'bad: ??x');
  t.equal(Buffer.byteLength(closeReason('€'.repeat(500))), 123);
});

t.test('a rate-limited log says each kind a few times a window, then how many it left out', async (t) => {
  const lines: string[] = [];
  let now = 0;
  const log = new RateLimitedLog((line) => lines.push(line), 2, 60_000, () => now);
  for (let i = 0; i < 5; i += 1) log.say('oversize', `frame ${i}`);
  log.say('schema', 'another kind is counted apart');
  now = 60_000;
  log.say('oversize', 'frame 5');
  t.same(lines, ['frame 0', 'frame 1', 'another kind is counted apart', 'oversize: 3 more like this in the last 60 s', 'frame 5']);
});
