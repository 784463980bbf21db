import t from 'tap';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { readStealMs, sampleClocks } from '../../../probes/clock/clock-probe.js';
import { HostOffsetTracker } from '../../../probes/clock/host-offset.js';
import type { ObservationOf } from '../../../contract/observation.js';
import { startAgent } from '../../helpers/agent-process.js';

t.test('steal time from /proc/stat, in ms', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'flinch-stat-'));
  const file = path.join(dir, 'stat');
  writeFileSync(file, 'cpu  4705 356 584 3699 23 23 0 17 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n');
  t.equal(readStealMs(file), 170);
  writeFileSync(file, 'intr 1 2 3\n');
  t.equal(readStealMs(file), null);
  t.equal(readStealMs(path.join(dir, 'missing')), null);
  t.type(readStealMs(), 'number', 'this machine has a /proc/stat');
});

t.test('a clock sample relates the three clocks', async (t) => {
  const s = sampleClocks(() => 5000);
  t.equal(s.boottimeMs, 5000);
  t.equal(s.realtimeMinusMonotonicMs, s.realtimeMs - s.monotonicMs);
  t.equal(s.boottimeMinusMonotonicMs, 5000 - s.monotonicMs);
});

t.test('a clock read held up (a busy emulated guest) is read again: the delay is not taken for a boottime move', async (t) => {
  // Monotonic is scripted: the first bracket spans 80 ms (the /proc/uptime read was held up), the second 0.5 ms.
  const monotonic = [1000, 1080, 2000, 2000.5];
  const boottimes = [11_000, 12_000];
  const s = sampleClocks(() => boottimes.shift()!, () => monotonic.shift()!);
  t.equal(s.boottimeMs, 12_000, 'the tight read is kept');
  t.equal(s.monotonicMs, 2000.25, 'monotonic at the middle of its bracket');
  t.equal(s.boottimeMinusMonotonicMs, 10_000 - 0.25);
  const slow = Array.from({ length: 10 }, (_, i) => [i * 100, i * 100 + 50 - i]).flat();
  const worst = sampleClocks(() => 5000, () => slow.shift()!);
  t.equal(worst.monotonicMs, 400 + (50 - 4) / 2, 'after five wide reads the tightest of them is used');
});

t.test("the guest's own host offset: a migration's downtime shows as a step", async (t) => {
  const tracker = new HostOffsetTracker();
  const exchange = (hostMs: number, guestBehindMs: number, rtt = 2) => ({
    t1: hostMs, t2: hostMs + rtt / 2 - guestBehindMs, t3: hostMs + rtt / 2 - guestBehindMs, t4: hostMs + rtt,
  });
  t.match(tracker.add(exchange(1000, 600)), { offsetMs: -600, changeMs: null });
  t.equal(tracker.add(exchange(1200, 600.5)), null, 'jitter below 2 ms is not reported');
  t.equal(tracker.add(exchange(1400, 600, 1500)), null, 'an exchange that waited out a pause is not trusted');
  t.match(tracker.add(exchange(3000, 680)), { offsetMs: -680, changeMs: -80 });
});

t.test('a move within the exchanges own uncertainty (half their round trips) is no step', async (t) => {
  const tracker = new HostOffsetTracker();
  // The first exchange of a connection, its request held up 200 ms before the agent stamped it: the offset reads +100.
  t.match(tracker.add({ t1: 1000, t2: 1200, t3: 1200, t4: 1200 }), { offsetMs: 100, changeMs: null });
  // The next exchanges are tight and show the true offset, 0: 100 ms away, but within (200 + 2) / 2 + 2.
  t.equal(tracker.add({ t1: 2000, t2: 2001, t3: 2001, t4: 2002 }), null, 'no 100 ms "step" from a slow first exchange');
  t.equal(tracker.offsetMs, 0, 'the tighter exchange became the reference');
  t.equal(tracker.add({ t1: 3000, t2: 3001.5, t3: 3001.5, t4: 3002 }), null, 'jitter');
  t.match(tracker.add({ t1: 4000, t2: 3931, t3: 3931, t4: 4002 }), { changeMs: -70 }, 'a real 70 ms lag, between tight exchanges, is a step');
});

t.test('a real pause (the agent stopped with SIGSTOP) is reported with its length', async (t) => {
  const agent = startAgent(t, ['watch', '--json', '--probes', 'clock']);
  await agent.waitFor((o) => o.kind === 'probe-status' && o.probe === 'clock', 0, 10_000);
  await new Promise((r) => setTimeout(r, 3500)); // past the probe's 3 s start-up grace
  agent.child.kill('SIGSTOP');
  await new Promise((r) => setTimeout(r, 700));
  agent.child.kill('SIGCONT');
  // The stop's own pause: a busy host can give a few-ms one before it, which is not the one asked about.
  const pause = (await agent.waitFor((o) => o.kind === 'pause' && o.lateByMs >= 100, 0, 5000)) as ObservationOf<'pause'>;
  t.ok(pause.lateByMs >= 150, `woke up ${pause.lateByMs} ms late`);
  t.ok(pause.lateByMs <= 1500, 'and not absurdly late');
});
