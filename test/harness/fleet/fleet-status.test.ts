// `flinch fleet status`'s figures from real stores: each test runs on SQLite (a temp file) and on PostgreSQL (a real
// server in a temporary cluster), which must give the same figures.
import t, { type Test } from 'tap';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ReportStore } from '../../../harness/collector/report-store.js';
import { PostgresStore } from '../../../harness/collector/postgres-store.js';
import type { FleetStore } from '../../../harness/collector/store.js';
import { campaignOf, fleetStatus, renderFleetStatus, UNANNOUNCED } from '../../../harness/fleet/fleet-status.js';
import { sampleReport } from '../../helpers/collector-fixtures.js';
import { startPostgres } from '../../helpers/postgres.js';
import type { Report } from '../../../contract/report-schema.js';

const postgres = await startPostgres({ fsync: false });
t.teardown(() => postgres.stop());
let databases = 0;

/** Runs `body` once per kind of store, each fresh. */
function onEachStore(name: string, body: (t: Test, store: FleetStore) => Promise<void>): void {
  t.test(`${name} (SQLite)`, async (t) => {
    const store = new ReportStore(path.join(mkdtempSync(path.join(os.tmpdir(), 'flinch-fleet-')), 'fleet.sqlite'));
    t.teardown(() => store.close());
    await body(t, store);
  });
  t.test(`${name} (PostgreSQL)`, async (t) => {
    const store = await PostgresStore.open(await postgres.database(`fleet_${(databases += 1)}`));
    t.teardown(() => store.close());
    await body(t, store);
  });
}

onEachStore('by last verdict, worst guests first, the share of guests with a disrupted episode, and who went silent', async (t, store) => {
  const guests: Array<[string, number, Report['verdict'][]]> = [
    ['g-calm', 10_000, ['transparent', 'noticed']],
    ['g-bad', 10_000, ['noticed', 'disrupted', 'disrupted']],
    ['g-quiet', 1_000, ['healed']],
    ['g-new', 10_000, []],
  ];
  for (const [agentId, lastSeenMs, verdicts] of guests) {
    await store.registerAgent({ agentId, machineId: '', hostname: `${agentId}.example`, macs: [], xenDomid: null, agentVersion: '0.1.0' }, '0000000000000001', agentId === 'g-bad' ? 3 : 0, lastSeenMs);
    for (const [i, verdict] of verdicts.entries()) {
      const report = sampleReport(agentId, i + 1, verdict);
      await store.apply([{ agentId, seq: i + 1, receivedAtMs: lastSeenMs, report, body: JSON.stringify(report) }]);
    }
    await store.touch(agentId, lastSeenMs);
  }
  const status = await fleetStatus(store, 20_000, 15_000);
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

onEachStore('verdicts by guest kernel, distribution and hypervisor, from the hellos; a guest that never said is unknown', async (t, store) => {
  const debian = { distro: 'Debian GNU/Linux', release: '12 (bookworm)', arch: 'x64', virtual: true };
  const guests: Array<[string, Record<string, unknown> | null, Report['verdict'][]]> = [
    ['k61-a', { ...debian, kernel: '6.1.0-28-cloud-amd64', hypervisor: 'KVM' }, ['transparent', 'disrupted']],
    ['k61-b', { ...debian, kernel: '6.1.0-28-cloud-amd64', hypervisor: 'Xen' }, ['transparent', 'transparent']],
    ['k612', { ...debian, release: '13 (trixie)', kernel: '6.12.57+deb13-amd64', hypervisor: 'Xen' }, ['noticed', 'transparent', 'transparent', 'transparent']],
    ['old-agent', null, ['disrupted']],
  ];
  for (const [agentId, guest, verdicts] of guests) {
    await store.registerAgent({ agentId, machineId: '', hostname: agentId, macs: [], xenDomid: null, agentVersion: '0.1.0', ...(guest ? { guest: guest as never } : {}) }, '0000000000000001', 0, 1000);
    for (const [i, verdict] of verdicts.entries()) {
      const report = sampleReport(agentId, i + 1, verdict);
      await store.apply([{ agentId, seq: i + 1, receivedAtMs: 1000, report, body: JSON.stringify(report) }]);
    }
  }
  const { byGuest } = await fleetStatus(store, 2000, 60_000);
  t.same(byGuest.kernel.map((g) => [g.value, g.guests, g.episodes, g.disrupted, g.disruptedRate, g.guestsDisruptedRate]), [
    ['unknown', 1, 1, 1, 1, 1],
    ['6.1.0-28-cloud-amd64', 2, 4, 1, 0.25, 0.5],
    ['6.12.57+deb13-amd64', 1, 4, 0, 0, 0],
  ], 'worst share of disrupted episodes first');
  t.same(byGuest.distro.map((g) => [g.value, g.guests]), [['unknown', 1], ['Debian GNU/Linux 12 (bookworm)', 2], ['Debian GNU/Linux 13 (trixie)', 1]]);
  t.same(byGuest.hypervisor.map((g) => [g.value, g.episodes, g.disrupted]), [['unknown', 1, 1], ['KVM', 2, 1], ['Xen', 6, 0]]);
  const text = renderFleetStatus(await fleetStatus(store, 2000, 60_000), 10);
  t.match(text, /by guest kernel \(worst 3\):\n(?:.*\n){2}  6\.1\.0-28-cloud-amd64 +2 +4 +25\.00 % +50\.00 %/);
});

onEachStore("a guest's own words reach the terminal escaped", async (t, store) => {
  // The hello's schema refuses control characters; a store written by anything else is read with the same care.
  await store.registerAgent({ agentId: 'g', machineId: '', hostname: 'g', macs: [], xenDomid: null, agentVersion: '0.1.0', guest: { distro: 'Evil\u001b[2J', release: '1', kernel: 'k\u0007', arch: 'x64', virtual: false, hypervisor: '' } }, '0000000000000001', 0, 1000);
  const text = renderFleetStatus(await fleetStatus(store, 2000, 60_000), 10);
  t.notMatch(text, /[\u0007\u001b]/, 'no control character reaches the terminal');
});

onEachStore("the seed's figure per hour and per campaign: guests with a disrupted episode", async (t, store) => {
  const HOUR = 3_600_000;
  const start = Date.parse('2026-12-01T10:00:00Z');
  // Two campaigns an hour apart (a harness names migrations <campaign>-<index>), and one episode nobody announced.
  const episodes: Array<[string, number, string | null, Report['verdict']]> = [
    ['a', start + 60_000, 'lab-1000-0', 'transparent'],
    ['b', start + 120_000, 'lab-1000-0', 'disrupted'],
    ['b', start + 180_000, 'lab-1000-1', 'disrupted'],
    ['c', start + 240_000, 'lab-1000-1', 'noticed'],
    ['a', start + HOUR + 60_000, 'lab-2000-0', 'disrupted'],
    ['c', start + HOUR + 60_000, 'lab-2000-0', 'transparent'],
    ['c', start + HOUR + 90_000, null, 'noticed'],
  ];
  const seqs = new Map<string, number>();
  for (const agentId of ['a', 'b', 'c']) await store.registerAgent({ agentId, machineId: '', hostname: agentId, macs: [], xenDomid: null, agentVersion: '0.1.0' }, '0000000000000001', 0, start);
  for (const [agentId, at, migrationId, verdict] of episodes) {
    const seq = (seqs.get(agentId) ?? 0) + 1;
    seqs.set(agentId, seq);
    const report = sampleReport(agentId, seq, verdict);
    report.episode.migrationId = migrationId;
    await store.apply([{ agentId, seq, receivedAtMs: at, report, body: JSON.stringify(report) }]);
  }
  const status = await fleetStatus(store, start + 2 * HOUR, 60_000);
  t.same(status.byHour.map((h) => [h.value, h.guests, h.episodes, h.guestsDisrupted]), [
    ['2026-12-01T10:00:00.000Z', 3, 4, 1],
    ['2026-12-01T11:00:00.000Z', 2, 3, 1],
  ], 'per hour, oldest first: b disrupted in the first, a in the second');
  t.same(status.byCampaign.map((c) => [c.value, c.guests, c.episodes, c.guestsDisrupted]), [
    ['lab-2000', 2, 2, 1],
    ['lab-1000', 3, 4, 1],
    [UNANNOUNCED, 1, 1, 0],
  ], 'per campaign, the latest first, the unannounced last');
  t.equal(status.byHour[0]!.guestsDisruptedRate, 1 / 3);
  const text = renderFleetStatus(status, 10);
  t.match(text, /per hour \(last 2\):\n.*\n  2026-12-01T10:00:00\.000Z +3 +4 +1 \(33\.33 %\)/);
  t.match(text, /per campaign \(latest 3\):\n.*\n  lab-2000 +2 +2 +1 \(50\.00 %\)/);
});

t.test('a campaign is its migration id without the last part', async (t) => {
  t.equal(campaignOf('lab-1764000000000-12'), 'lab-1764000000000');
  t.equal(campaignOf('rollout-7'), 'rollout');
  t.equal(campaignOf('single'), 'single');
  t.equal(campaignOf('-x'), '-x', 'a leading dash is not a cut');
  t.equal(campaignOf(null), UNANNOUNCED);
});
