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
