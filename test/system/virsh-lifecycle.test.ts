// `virsh event --timestamp` lines as libvirt 9.0 (Debian 12) prints them, and the pause they bound. The real virsh
// against a real libvirtd is in the libvirt driver's and campaign's tests.
import t from 'tap';
import { parseLifecycleLine, pauseFromLifecycle, type LifecycleEvent } from '../../system/virsh.js';

t.test('lifecycle lines', async (t) => {
  t.same(parseLifecycleLine("2026-12-01 23:00:00.123+0000: event 'lifecycle' for domain 'flinch-lv': Suspended Migrated"), {
    atMs: Date.UTC(2026, 11, 1, 23, 0, 0, 123), domain: 'flinch-lv', event: 'Suspended', detail: 'Migrated',
  });
  t.equal(parseLifecycleLine("2026-12-01 23:00:00.123+0000: event 'reboot' for domain 'x'"), null, 'another event type');
  t.equal(parseLifecycleLine('events received: 3'), null);
  t.equal(parseLifecycleLine("event 'lifecycle' for domain 'x': Started Booted"), null, 'no timestamp: not ours');
});

t.test('the pause: the first stop after the start to the first run after it, for this domain only', async (t) => {
  const at = (ms: number, domain: string, event: string, detail: string): LifecycleEvent => ({ atMs: ms, domain, event, detail });
  const events = [
    at(900, 'g', 'Resumed', 'Unpaused'),
    at(1000, 'other', 'Suspended', 'Paused'),
    at(1100, 'g', 'Suspended', 'Migrated'),
    at(1190, 'g', 'Resumed', 'Migrated'),
    at(1200, 'g', 'Stopped', 'Migrated'),
  ];
  t.same(pauseFromLifecycle(events, 'g', 950), { stoppedAtMs: 1100, resumedAtMs: 1190 }, 'a live migration');
  // A live migration between two libvirtds, in the order their two virsh watchers received it (a real run, ms after
  // the first): the destination says Started at the very start, long before the switch-over.
  const live = [at(0, 'g', 'Started', 'Migrated'), at(490, 'g', 'Suspended', 'Migrated'), at(724, 'g', 'Defined', 'Added'), at(733, 'g', 'Resumed', 'Migrated'), at(3383, 'g', 'Stopped', 'Migrated')];
  t.same(pauseFromLifecycle(live, 'g', 0), { stoppedAtMs: 490, resumedAtMs: 733 }, 'a live migration: the switch-over to the destination running');
  // The order libvirt 9.0 gave a `virsh save` then `virsh restore` (stamps from a real run, in ms after the first).
  const saveRestore = [at(0, 'g', 'Suspended', 'Paused'), at(2884, 'g', 'Stopped', 'Saved'), at(12070, 'g', 'Started', 'Restored'), at(12079, 'g', 'Resumed', 'Snapshot')];
  t.same(pauseFromLifecycle(saveRestore, 'g', 0), { stoppedAtMs: 0, resumedAtMs: 12079 }, 'a save/restore: from the pause before the save to the vCPUs running, not to "Started"');
  t.equal(pauseFromLifecycle(events.slice(0, 3), 'g', 950), null, 'not resumed yet');
});
