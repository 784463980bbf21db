// flinch matrix's plan (the product of QEMU pairs and kernels, one folder a cell) and its run over cells. The cells'
// campaigns here are a stand-in that writes a results.json of known figures, since what is tested is the matrix's
// own bookkeeping: the real QEMU lab under it is run by test/e2e/qemu-matrix.test.ts.
import t from 'tap';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { parseQemuPair, planMatrix, readMatrix, runMatrix } from '../../../harness/matrix/matrix.js';
import { DEFAULT_CAMPAIGN_OPTIONS, type CampaignOptions } from '../../../harness/campaign/campaign-options.js';
import { LAB_RESULTS_SCHEMA, writeLabResults, type LabResults, type MigrationResult } from '../../../harness/report/lab-results.js';
import { DEFAULT_COMPARE_SETTINGS } from '../../../harness/compare/compare-results.js';
import { UserError } from '../../../contract/command-line.js';
import { tempDir } from '../../helpers/collector-fixtures.js';

t.test('QEMU pairs: SRC or SRC:DEST, nothing else', async (t) => {
  t.same(parseQemuPair('bookworm'), { qemu: 'bookworm', destQemu: null });
  t.same(parseQemuPair('bookworm:bookworm-backports'), { qemu: 'bookworm', destQemu: 'bookworm-backports' });
  for (const bad of ['', ':x', 'a:', 'a:b:c']) t.throws(() => parseQemuPair(bad), UserError, bad);
});

t.test('the plan is the product, one folder name a cell, stable and filesystem-safe', async (t) => {
  const cells = planMatrix(['bookworm', 'bookworm:bookworm-backports', '/opt/qemu 9/bin/qemu-system-x86_64'], ['bullseye', null]);
  t.equal(cells.length, 6);
  t.same(cells.map((c) => c.name), [
    'bookworm__bookworm__bullseye', 'bookworm__bookworm__default',
    'bookworm__bookworm-backports__bullseye', 'bookworm__bookworm-backports__default',
    'qemu-system-x86_64__qemu-system-x86_64__bullseye', 'qemu-system-x86_64__qemu-system-x86_64__default',
  ]);
  t.same(planMatrix(['bookworm'], []).map((c) => c.guestKernel), [null], 'no kernel given: bookworm\'s');
  t.throws(() => planMatrix(['bookworm', 'bookworm'], []), /names one cell twice/);
  t.throws(() => planMatrix([], []), /name at least one QEMU/);
});

function results(pauseMs: number, n: number, verdict: MigrationResult['verdict'] = 'noticed'): LabResults {
  const migration = (index: number): MigrationResult => ({
    index, driver: 'qmp', faults: [], faultRecords: [], from: 'a', to: 'b', startedAt: '2026-12-02T10:00:00.000Z', totalMs: 1, downtimeMs: 1, setupMs: 1,
    transferredBytes: 1, pauseMs: pauseMs + index, clockLagMs: 1, baselineOffsetMs: 0, afterOffsetMs: 0, guestSeenOffsetStepMs: null, blackout: null,
    linkEvents: [], observationsAfter: 0, timeRepliesAfter: 0, verdict, verdictSource: 'agent', reasons: [], expected: 'noticed', passed: verdict !== 'disrupted', episode: null,
  });
  return {
    schema: LAB_RESULTS_SCHEMA, startedAt: '2026-12-02T10:00:00.000Z', wallTimeMs: 1, hypervisor: { driver: 'qmp', qemu: '7.2.22', destQemu: null },
    guest: { kernel: 'k', memoryMiB: 512, bootToAgentMs: 1 }, campaign: { faults: ['none'], migrationsPerFault: n, expect: 'noticed' as const, options: {} },
    migrations: Array.from({ length: n }, (_, i) => migration(i + 1)),
  };
}

t.test('every cell runs in its own folder; a failed cell is recorded and the rest still run and are compared', async (t) => {
  const out = tempDir('flinch-matrix-');
  const cells = planMatrix(['bookworm', 'bookworm:bookworm-backports', 'broken'], []);
  const ran: CampaignOptions[] = [];
  const logs: string[] = [];
  const outcome = await runMatrix({ ...DEFAULT_CAMPAIGN_OPTIONS, outDir: out }, cells, DEFAULT_COMPARE_SETTINGS, async (options) => {
    ran.push(options);
    if (options.qemuBinary === 'broken') throw new Error('the guest did not boot: kernel panic\nmore lines');
    writeLabResults(options.outDir, results(options.destQemuBinary ? 150 : 70, 5, options.destQemuBinary ? 'disrupted' : 'noticed'));
    return 5;
  }, (line) => logs.push(line));
  t.same(ran.map((o) => [o.qemuBinary, o.destQemuBinary ?? null, path.basename(o.outDir)]), [
    ['bookworm', null, 'bookworm__bookworm__default'], ['bookworm', 'bookworm-backports', 'bookworm__bookworm-backports__default'], ['broken', null, 'broken__broken__default'],
  ]);
  t.same(outcome.cells.map((c) => [c.name, c.worseThanExpected, c.error]), [
    ['bookworm__bookworm__default', 0, null], ['bookworm__bookworm-backports__default', 5, null], ['broken__broken__default', null, 'the guest did not boot: kernel panic'],
  ]);
  t.match(logs.join('\n'), /matrix cell 3 of 3: QEMU broken, guest kernel bookworm/);
  t.equal(outcome.comparison!.campaigns.length, 2, 'the two cells with results are compared');
  t.equal(outcome.comparison!.rows[0]!.against[0]!.change, 'worse', 'the second cell is worse than the first');
  for (const file of ['matrix.json', 'comparison.txt', 'comparison.html', 'comparison.xml']) t.ok(existsSync(path.join(out, file)), file);
  t.equal(readMatrix(out).schema, 'flinch.matrix/v1');
  t.match(readFileSync(path.join(out, 'comparison.txt'), 'utf8'), /B against A: 1 worse/);
});
