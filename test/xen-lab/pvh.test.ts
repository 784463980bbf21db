// End to end on a real Xen, nothing mocked: `flinch lab --hypervisor xen` boots Debian's Xen 4.17 with a PV dom0
// nested under QEMU TCG, creates a domU with the real xen-netfront and the single-file agent, and moves it with the real
// xl (save/restore, migrate to localhost). Every cycle must be flagged from inside the guest with the evidence netfront
// and Xen really leave, and the xenstore probe must read the domid and watch the vif state of a real xenstored
// (this replaces the in-process fake xenstored of test/probes/xen as the proof).
// Not part of `npm test`: `npm run test:xen` runs it (README, "Nested Xen lab").
import t from 'tap';
import { mkdtempSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { LabResults } from '../../harness/report/lab-results.js';
import { FLINCH, runCli } from '../helpers/run-cli.js';
import { assertCycleFlagged, reportsOf } from './cycle-evidence.js';

t.test('PVH domU: save/restore and migrate', async (t) => {
  const out = mkdtempSync(path.join(os.tmpdir(), 'flinch-xen-pvh-'));
  const run = await runCli([FLINCH, 'lab', '--hypervisor', 'xen', '--guest', 'pvh', '--faults', 'none', '--out', out], { timeoutMs: 1_200_000 });
  t.equal(run.code, 0, `exits 0; stderr: ${run.stderr.slice(-800)}`);
  const results = JSON.parse(readFileSync(path.join(out, 'results.json'), 'utf8')) as LabResults;
  t.equal(results.guest.type, 'pvh');
  t.same(results.migrations.map((m) => m.method), ['save-restore', 'migrate']);
  const reports = reportsOf(out);
  for (const m of results.migrations) {
    t.test(`xl ${m.method} (${m.from} → ${m.to})`, async (t) => {
      assertCycleFlagged(t, m, reports.find((r) => r.episode.id === m.episode?.id));
      t.equal(m.verdict, 'noticed');
    });
  }
});
