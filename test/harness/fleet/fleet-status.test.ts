// `flinch fleet status`'s figures from a real store (SQLite in a temp dir).
import t from 'tap';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ReportStore } from '../../../harness/collector/report-store.js';
import { fleetStatus, renderFleetStatus } from '../../../harness/fleet/fleet-status.js';
import { sampleReport } from '../../helpers/collector-fixtures.js';
import type { Report } from '../../../contract/report-schema.js';

t.test('by last verdict, worst guests first, the share of guests with a disrupted episode, and who went silent', async (t) => {
  const store = new ReportStore(path.join(mkdtempSync(path.join(os.tmpdir(), 'flinch-fleet-')), 'fleet.sqlite'));
  t.teardown(() => store.close());
  const guests: Array<[string, number, Report['verdict'][]]> = [
    ['g-calm', 10_000, ['transparent', 'noticed']],
    ['g-bad', 10_000, ['noticed', 'disrupted', 'disrupted']],
    ['g-quiet', 1_000, ['healed']],
    ['g-new', 10_000, []],
  ];
  for (const [agentId, lastSeenMs, verdicts] of guests) {
    store.registerAgent({ agentId, machineId: '', hostname: `${agentId}.example`, macs: [], xenDomid: null, agentVersion: '0.1.0' }, '0000000000000001', agentId === 'g-bad' ? 3 : 0, lastSeenMs);
    verdicts.forEach((verdict, i) => {
      const report = sampleReport(agentId, i + 1, verdict);
      store.apply([{ agentId, seq: i + 1, receivedAtMs: lastSeenMs, report, body: JSON.stringify(report) }]);
    });
    store.touch(agentId, lastSeenMs);
  }
  const status = fleetStatus(store, 20_000, 15_000);
  t.equal(status.agents, 4);
  t.equal(status.episodes, 6);
  t.same(status.byLastVerdict, { noticed: 1, disrupted: 1, healed: 1, 'none yet': 1 });
  t.equal(status.perGuest[0]!.agentId, 'g-bad', 'worst first');
  t.equal(status.perGuest[0]!.disruptedRate, 2 / 3);
  t.equal(status.guestsDisruptedRate, 1 / 4, 'one guest of four had a disrupted episode');
  t.same(status.silent.map((s) => [s.agentId, s.silentForS]), [['g-quiet', 19]], 'silent for longer than 15 s');
  t.equal(status.spoolDropped, 3);
  const text = renderFleetStatus(status, 10);
  t.match(text, /^4 agents, 6 episodes; guests with a disrupted episode: 25\.00 %; 3 spool entries dropped by agents/);
});

t.test('verdicts by guest kernel, distribution and hypervisor, from the hellos; a guest that never said is unknown', async (t) => {
  const store = new ReportStore(':memory:');
  t.teardown(() => store.close());
  const debian = { distro: 'Debian GNU/Linux', release: '12 (bookworm)', arch: 'x64', virtual: true };
  const guests: Array<[string, Record<string, unknown> | null, Report['verdict'][]]> = [
    ['k61-a', { ...debian, kernel: '6.1.0-28-cloud-amd64', hypervisor: 'KVM' }, ['transparent', 'disrupted']],
    ['k61-b', { ...debian, kernel: '6.1.0-28-cloud-amd64', hypervisor: 'Xen' }, ['transparent', 'transparent']],
    ['k612', { ...debian, release: '13 (trixie)', kernel: '6.12.57+deb13-amd64', hypervisor: 'Xen' }, ['noticed', 'transparent', 'transparent', 'transparent']],
    ['old-agent', null, ['disrupted']],
  ];
  for (const [agentId, guest, verdicts] of guests) {
    store.registerAgent({ agentId, machineId: '', hostname: agentId, macs: [], xenDomid: null, agentVersion: '0.1.0', ...(guest ? { guest: guest as never } : {}) }, '0000000000000001', 0, 1000);
    verdicts.forEach((verdict, i) => {
      const report = sampleReport(agentId, i + 1, verdict);
      store.apply([{ agentId, seq: i + 1, receivedAtMs: 1000, report, body: JSON.stringify(report) }]);
    });
  }
  const { byGuest } = fleetStatus(store, 2000, 60_000);
  t.same(byGuest.kernel.map((g) => [g.value, g.guests, g.episodes, g.disrupted, g.disruptedRate, g.guestsDisruptedRate]), [
    ['unknown', 1, 1, 1, 1, 1],
    ['6.1.0-28-cloud-amd64', 2, 4, 1, 0.25, 0.5],
    ['6.12.57+deb13-amd64', 1, 4, 0, 0, 0],
  ], 'worst share of disrupted episodes first');
  t.same(byGuest.distro.map((g) => [g.value, g.guests]), [['unknown', 1], ['Debian GNU/Linux 12 (bookworm)', 2], ['Debian GNU/Linux 13 (trixie)', 1]]);
  t.same(byGuest.hypervisor.map((g) => [g.value, g.episodes, g.disrupted]), [['unknown', 1, 1], ['KVM', 2, 1], ['Xen', 6, 0]]);
  const text = renderFleetStatus(fleetStatus(store, 2000, 60_000), 10);
  t.match(text, /by guest kernel \(worst 3\):\n(?:.*\n){2}  6\.1\.0-28-cloud-amd64 +2 +4 +25\.00 % +50\.00 %/);
});

t.test("a guest's own words reach the terminal escaped", async (t) => {
  const store = new ReportStore(':memory:');
  t.teardown(() => store.close());
  // The hello's schema refuses control characters; a store written by anything else is read with the same care.
  store.registerAgent({ agentId: 'g', machineId: '', hostname: 'g', macs: [], xenDomid: null, agentVersion: '0.1.0', guest: { distro: 'Evil\u001b[2J', release: '1', kernel: 'k\u0007', arch: 'x64', virtual: false, hypervisor: '' } }, '0000000000000001', 0, 1000);
  const text = renderFleetStatus(fleetStatus(store, 2000, 60_000), 10);
  t.notMatch(text, /[\u0007\u001b]/, 'no control character reaches the terminal');
});
